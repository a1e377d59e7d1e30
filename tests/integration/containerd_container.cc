#include "tests/integration/containerd_container.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "tests/integration/agent_harness.h"
#include "tests/integration/host_mounts.h"

namespace gputier::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

// `bytes` random bytes as lower-case hex.
std::string RandomHex(size_t bytes) {
  std::string raw(bytes, '\0');
  std::ifstream("/dev/urandom", std::ios::binary).read(raw.data(), static_cast<std::streamsize>(bytes));
  std::string out;
  for (unsigned char c : raw) absl::StrAppendFormat(&out, "%02x", c);
  return out;
}

// A pod UID as the API server makes them: 8-4-4-4-12 hex digits.
std::string RandomPodUid() {
  const std::string h = RandomHex(16);
  return absl::StrCat(h.substr(0, 8), "-", h.substr(8, 4), "-", h.substr(12, 4), "-", h.substr(16, 4), "-",
                      h.substr(20));
}

}  // namespace

std::string ContainerdTestsCannotRunBecause() {
  if (std::string why = RuncTestsCannotRunBecause(); !why.empty()) return why;
  absl::StatusOr<CommandResult> v = RunCommand({"containerd", "--version"});
  if (!v.ok() || v->exit_code != 0) return "needs containerd in PATH (Debian package containerd)";
  v = RunCommand({"ctr", "--version"});
  if (!v.ok() || v->exit_code != 0) return "needs ctr in PATH (Debian package containerd)";
  return "";
}

std::string SystemdCgroupsCannotRunBecause() {
  struct stat st;
  if (stat("/run/systemd/system", &st) != 0) {
    return "runc's systemd cgroup driver needs systemd as init (no /run/systemd/system here)";
  }
  return "";
}

namespace {

// The QoS parents every kubelet-shaped pod cgroup is made under.
const std::vector<std::string>& KubepodsParents() {
  static const std::vector<std::string> dirs = {"/kubepods/burstable", "/kubepods/besteffort", "/kubepods"};
  return dirs;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ContainerdDaemon>> ContainerdDaemon::Start(const std::string& oci_archive) {
  std::unique_ptr<ContainerdDaemon> d(new ContainerdDaemon());
  d->parents_before_ = CgroupDirsNow(KubepodsParents());
  d->dir_ = std::make_unique<TempDir>("gputier-containerd");
  const std::string& dir = d->dir_->path();
  if (dir.empty()) return absl::InternalError("mkdtemp for containerd failed");
  d->address_ = dir + "/containerd.sock";
  const std::string config = dir + "/config.toml";
  // The CRI plugin is off: it would read the node's CNI and kubelet setup.
  std::ofstream(config) << "version = 2\n"
                        << "root = \"" << dir << "/root\"\n"
                        << "state = \"" << dir << "/state\"\n"
                        << "disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n"
                        << "[grpc]\n  address = \"" << d->address_ << "\"\n"
                        << "[ttrpc]\n  address = \"" << d->address_ << ".ttrpc\"\n"
                        << "[debug]\n  address = \"\"\n"
                        << "[metrics]\n  address = \"\"\n";
  absl::StatusOr<pid_t> pid = StartCommand({"containerd", "--config", config}, dir + "/containerd.log");
  if (!pid.ok()) return pid.status();
  d->pid_ = *pid;
  const bool up = WaitFor(
      [&] {
        absl::StatusOr<CommandResult> v = d->Ctr({"version"});
        return v.ok() && v->exit_code == 0;
      },
      seconds(20), milliseconds(100));
  if (!up) {
    return absl::DeadlineExceededError(absl::StrCat("containerd did not answer on ", d->address_,
                                                    " in 20 s: ", SlurpFile(dir + "/containerd.log")));
  }
  absl::StatusOr<std::string> imported = d->CtrOk({"image", "import", oci_archive});
  if (!imported.ok()) return imported.status();
  absl::StatusOr<std::string> images = d->CtrOk({"image", "ls", "--quiet"});
  if (!images.ok()) return images.status();
  std::vector<std::string> names = absl::StrSplit(*images, '\n', absl::SkipWhitespace());
  if (names.size() != 1) {
    return absl::InternalError(absl::StrCat("importing ", oci_archive, " gave images: ", *images));
  }
  d->image_ = names[0];
  return d;
}

ContainerdDaemon::~ContainerdDaemon() {
  if (pid_ <= 0) return;
  // Whatever a test left: tasks (their shims exit with them), containers, images.
  if (absl::StatusOr<std::string> tasks = CtrOk({"task", "ls", "--quiet"}); tasks.ok()) {
    for (absl::string_view id : absl::StrSplit(*tasks, '\n', absl::SkipWhitespace())) {
      (void)Ctr({"task", "delete", "--force", std::string(id)});
    }
  }
  if (absl::StatusOr<std::string> cs = CtrOk({"container", "ls", "--quiet"}); cs.ok()) {
    for (absl::string_view id : absl::StrSplit(*cs, '\n', absl::SkipWhitespace())) {
      (void)Ctr({"container", "delete", std::string(id)});
    }
  }
  if (!image_.empty()) (void)Ctr({"image", "rm", image_});
  kill(pid_, SIGTERM);
  int status = 0;
  bool reaped = WaitFor([&] { return waitpid(pid_, &status, WNOHANG) == pid_; }, seconds(10));
  if (!reaped) {
    kill(pid_, SIGKILL);
    waitpid(pid_, &status, 0);
  }
  UnmountAllUnder(dir_->path());
  RemoveCgroupDirs(KubepodsParents(), parents_before_);
}

absl::StatusOr<CommandResult> ContainerdDaemon::Ctr(const std::vector<std::string>& args) const {
  std::vector<std::string> argv = {"ctr", "--address", address_, "--namespace", kNamespace};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv);
}

absl::StatusOr<std::string> ContainerdDaemon::CtrOk(const std::vector<std::string>& args) const {
  return OutputIfExitedZero(Ctr(args), absl::StrCat("ctr ", absl::StrJoin(args, " ")));
}

absl::StatusOr<std::unique_ptr<ContainerdContainer>> ContainerdContainer::Start(const ContainerdDaemon& daemon,
                                                                                const Options& options) {
  std::unique_ptr<ContainerdContainer> c(new ContainerdContainer(daemon));
  c->id_ = RandomHex(32);
  c->pod_uid_ = RandomPodUid();
  const bool guaranteed = options.qos == "guaranteed";
  std::string cgroup_arg;
  if (options.driver == CgroupDriver::kCgroupfs) {
    // What the kubelet's cgroupfs driver asks for.
    const std::string kubepods = guaranteed ? "/kubepods" : absl::StrCat("/kubepods/", options.qos);
    const std::string pod = absl::StrCat(kubepods, "/pod", c->pod_uid_);
    c->pod_cgroups_ = {pod};  // the parents are shared: the daemon removes them
    cgroup_arg = absl::StrCat(pod, "/", c->id_);
  } else {
    // The systemd driver: slice:prefix:name, as the CRI plugin passes it.
    std::string uid = c->pod_uid_;
    for (char& ch : uid) ch = ch == '-' ? '_' : ch;
    const std::string qos = guaranteed ? "" : absl::StrCat("-", options.qos);
    cgroup_arg = absl::StrCat("kubepods", qos, "-pod", uid, ".slice:cri-containerd:", c->id_);
  }
  c->cgroups_before_ = CgroupDirsNow(c->pod_cgroups_);

  const std::string pid_file = absl::StrCat(daemon.dir(), "/", c->id_, ".pid");
  std::vector<std::string> args = {"run", "--detach", "--null-io", "--runc-root", daemon.runc_root(),
                                   "--cgroup", cgroup_arg, "--pid-file", pid_file};
  if (options.driver == CgroupDriver::kSystemd) args.push_back("--runc-systemd-cgroup");
  for (const std::string& dev : options.container.devices) args.insert(args.end(), {"--device", dev});
  for (const auto& [k, v] : options.container.annotations) {
    args.insert(args.end(), {"--annotation", absl::StrCat(k, "=", v)});
  }
  args.insert(args.end(), options.container.extra_args.begin(), options.container.extra_args.end());
  args.insert(args.end(), {daemon.image(), c->id_, "sh", "-c", options.container.script});
  absl::StatusOr<std::string> run = daemon.CtrOk(args);
  if (!run.ok()) return run.status();  // the destructor deletes what was made
  int pid = 0;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(SlurpFile(pid_file)), &pid) || pid <= 0) {
    return absl::InternalError(absl::StrCat("ctr run wrote no pid to ", pid_file));
  }
  c->pid_ = pid;
  c->cgroup_ = CgroupOfPid(pid);
  return c;
}

ContainerdContainer::~ContainerdContainer() {
  if (!removed_) (void)Remove();
  RemoveCgroupDirs(pod_cgroups_, cgroups_before_);
}

absl::StatusOr<CommandResult> ContainerdContainer::Exec(const std::string& script) const {
  static std::atomic<int> counter{0};
  return daemon_.Ctr({"task", "exec", "--exec-id", absl::StrCat("exec-", getpid(), "-", counter++), id_, "sh", "-c",
                      script});
}

absl::StatusOr<std::string> ContainerdContainer::TaskStatus() const {
  absl::StatusOr<std::string> tasks = daemon_.CtrOk({"task", "ls"});
  if (!tasks.ok()) return tasks.status();
  // "TASK  PID  STATUS" rows.
  for (absl::string_view line : absl::StrSplit(*tasks, '\n', absl::SkipWhitespace())) {
    std::vector<absl::string_view> f = absl::StrSplit(line, ' ', absl::SkipWhitespace());
    if (f.size() >= 3 && f[0] == id_) return std::string(f[2]);
  }
  return std::string();
}

absl::StatusOr<bool> ContainerdContainer::Exited() const {
  absl::StatusOr<std::string> status = TaskStatus();
  if (!status.ok()) return status.status();
  return *status != "RUNNING" && *status != "CREATED" && *status != "PAUSED" && *status != "PAUSING";
}

absl::Status ContainerdContainer::Stop(std::chrono::seconds grace) {
  if (absl::StatusOr<std::string> k = daemon_.CtrOk({"task", "kill", "--signal", "SIGTERM", id_}); !k.ok()) {
    return k.status();
  }
  if (!WaitExited(grace)) {
    if (absl::StatusOr<std::string> k = daemon_.CtrOk({"task", "kill", "--signal", "SIGKILL", id_}); !k.ok()) {
      return k.status();
    }
    if (!WaitExited(seconds(10))) {
      return absl::DeadlineExceededError(absl::StrCat("containerd task ", id_, " still running 10 s after SIGKILL"));
    }
  }
  return daemon_.CtrOk({"task", "delete", id_}).status();
}

absl::Status ContainerdContainer::Kill() {
  if (absl::StatusOr<std::string> k = daemon_.CtrOk({"task", "kill", "--signal", "SIGKILL", id_}); !k.ok()) {
    return k.status();
  }
  if (!WaitExited(seconds(10))) {
    return absl::DeadlineExceededError(absl::StrCat("containerd task ", id_, " still running 10 s after SIGKILL"));
  }
  return daemon_.CtrOk({"task", "delete", id_}).status();
}

absl::Status ContainerdContainer::Remove() {
  removed_ = true;
  absl::StatusOr<std::string> status = TaskStatus();
  if (status.ok() && !status->empty()) {
    if (absl::StatusOr<std::string> d = daemon_.CtrOk({"task", "delete", "--force", id_}); !d.ok()) {
      return d.status();
    }
  }
  absl::StatusOr<CommandResult> d = daemon_.Ctr({"container", "delete", id_});
  if (!d.ok()) return d.status();
  if (d->exit_code != 0 && !absl::StrContains(d->output, "not found")) {
    return absl::InternalError(absl::StrCat("ctr container delete ", id_, ": ", d->output));
  }
  return absl::OkStatus();
}

}  // namespace gputier::testing
