#include "tests/integration/podman_container.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "tests/integration/agent_harness.h"
#include "tests/integration/busybox_rootfs.h"
#include "tests/integration/host_mounts.h"

namespace gputier::testing {
namespace {

// The parent cgroups podman's cgroupfs manager makes and leaves.
const std::vector<std::string>& PodmanParentCgroups() {
  static const std::vector<std::string> dirs = {"/libpod_parent/conmon", "/libpod_parent"};
  return dirs;
}

// "--ulimit NAME=N:N" with N at most `most` and at most this process's own
// soft limit: podman's default raises limits, which needs CAP_SYS_RESOURCE
// (measured here: nproc equal to the caller's own 96367 is refused too,
// 4096 is not).
std::string UlimitArg(const char* name, int resource, rlim_t most) {
  struct rlimit rl;
  getrlimit(resource, &rl);
  const rlim_t n = std::min(most, rl.rlim_cur);
  return absl::StrCat(name, "=", n, ":", n);
}

}  // namespace

std::string PodmanTestsCannotRunBecause() {
  if (std::string why = RuncTestsCannotRunBecause(); !why.empty()) return why;
  absl::StatusOr<CommandResult> v = RunCommand({"podman", "--version"});
  if (!v.ok() || v->exit_code != 0) return "needs podman in PATH (Debian package podman)";
  absl::StatusOr<CommandResult> tar = RunCommand({"tar", "--version"});
  if (!tar.ok() || tar->exit_code != 0) return "needs tar in PATH";
  return "";
}

absl::StatusOr<std::unique_ptr<PodmanStore>> PodmanStore::Create(const Options& options) {
  static std::atomic<int> counter{0};
  std::unique_ptr<PodmanStore> s(new PodmanStore());
  s->cgroups_before_ = CgroupDirsNow(PodmanParentCgroups());
  s->dir_ = std::make_unique<TempDir>("gputier-podman");
  const std::string& dir = s->dir_->path();
  if (dir.empty()) return absl::InternalError("mkdtemp for the podman store failed");
  s->base_args_ = {"--root",           dir + "/root", "--runroot", dir + "/runroot", "--tmpdir",
                   dir + "/tmp",       "--storage-driver", "overlay", "--events-backend", "none",
                   "--runtime",        "runc"};
  s->base_args_.insert(s->base_args_.end(), options.global_args.begin(), options.global_args.end());

  const std::string rootfs = dir + "/rootfs";
  if (absl::Status made = MakeBusyboxRootfs(rootfs, options.directories); !made.ok()) return made;
  const std::string tarball = dir + "/rootfs.tar";
  absl::StatusOr<CommandResult> tar = RunCommand({"tar", "-C", rootfs, "-cf", tarball, "."});
  if (!tar.ok()) return tar.status();
  if (tar->exit_code != 0) return absl::InternalError(absl::StrCat("tar of the rootfs failed: ", tar->output));
  s->image_ = absl::StrCat("localhost/gputier-test-", getpid(), "-", counter++, ":1");
  absl::StatusOr<std::string> imported = s->PodmanOk({"import", tarball, s->image_});
  if (!imported.ok()) return imported.status();
  return s;
}

PodmanStore::~PodmanStore() {
  if (dir_ == nullptr || dir_->path().empty()) return;
  if (!image_.empty()) {
    (void)Podman({"rm", "--all", "--force", "--time", "0"});
    (void)Podman({"image", "rm", "--all", "--force"});
  }
  UnmountAllUnder(dir_->path());  // the overlay store, if anything is left
  // A conmon of this store, or the `podman container cleanup` it runs at
  // the container's exit, may still be in the conmon cgroup a moment after
  // `rm` (seconds on a loaded machine).
  WaitFor(
      [&] {
        for (pid_t pid : CgroupPids("/libpod_parent/conmon")) {
          if (absl::StrContains(SlurpFile(absl::StrCat("/proc/", pid, "/cmdline")), dir_->path())) return false;
        }
        return true;
      },
      std::chrono::seconds(20), std::chrono::milliseconds(100));
  RemoveCgroupDirs(PodmanParentCgroups(), cgroups_before_);
}

absl::StatusOr<CommandResult> PodmanStore::Podman(const std::vector<std::string>& args) const {
  std::vector<std::string> argv = {"podman"};
  argv.insert(argv.end(), base_args_.begin(), base_args_.end());
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv);
}

absl::StatusOr<std::string> PodmanStore::PodmanOk(const std::vector<std::string>& args) const {
  return OutputIfExitedZero(Podman(args), absl::StrCat("podman ", absl::StrJoin(args, " ")));
}

absl::Status PodmanStore::SaveOciArchive(const std::string& path) const {
  return PodmanOk({"save", "--format", "oci-archive", "-o", path, image_}).status();
}

std::vector<std::string> PodmanStore::StateRoots() const { return {"/run/runc"}; }

absl::StatusOr<std::unique_ptr<PodmanContainer>> PodmanContainer::Start(const PodmanStore& store,
                                                                        const RuntimeContainerOptions& options) {
  std::unique_ptr<PodmanContainer> c(new PodmanContainer(store));
  std::vector<std::string> args = {"run",      "--detach",
                                   "--network", "none",
                                   "--ulimit", UlimitArg("nofile", RLIMIT_NOFILE, 1024),
                                   "--ulimit", UlimitArg("nproc", RLIMIT_NPROC, 4096)};
  for (const std::string& d : options.devices) args.insert(args.end(), {"--device", d});
  for (const auto& [k, v] : options.annotations) args.insert(args.end(), {"--annotation", absl::StrCat(k, "=", v)});
  args.insert(args.end(), options.extra_args.begin(), options.extra_args.end());
  args.insert(args.end(), {store.image(), "sh", "-c", options.script});
  absl::StatusOr<CommandResult> run = store.Podman(args);
  if (!run.ok()) return run.status();
  // The id is the last line; podman may warn before it.
  std::vector<std::string> lines = absl::StrSplit(run->output, '\n', absl::SkipWhitespace());
  if (!lines.empty()) c->id_ = std::string(absl::StripAsciiWhitespace(lines.back()));
  if (run->exit_code != 0) {
    c->removed_ = true;
    (void)store.Podman({"rm", "--force", "--time", "0", c->id_});
    return OutputIfExitedZero(*run, absl::StrCat("podman ", absl::StrJoin(args, " "))).status();
  }
  absl::StatusOr<nlohmann::json> info = c->Inspect();
  if (!info.ok()) return info.status();
  c->pid_ = (*info)["State"].value("Pid", 0);
  if (c->pid_ <= 0) return absl::InternalError(absl::StrCat("podman container ", c->id_, " has no pid: ", info->dump()));
  c->cgroup_ = CgroupOfPid(c->pid_);
  return c;
}

PodmanContainer::~PodmanContainer() {
  if (!removed_ && !id_.empty()) (void)store_.Podman({"rm", "--force", "--time", "0", id_});
}

absl::StatusOr<nlohmann::json> PodmanContainer::Inspect() const {
  absl::StatusOr<std::string> out = store_.PodmanOk({"inspect", id_});
  if (!out.ok()) return out.status();
  nlohmann::json j = nlohmann::json::parse(*out, nullptr, false);
  if (!j.is_array() || j.empty()) return absl::InternalError(absl::StrCat("podman inspect ", id_, ": ", *out));
  return j[0];
}

absl::StatusOr<CommandResult> PodmanContainer::Exec(const std::string& script) const {
  return store_.Podman({"exec", id_, "sh", "-c", script});
}

absl::StatusOr<bool> PodmanContainer::Exited() const {
  absl::StatusOr<nlohmann::json> info = Inspect();
  if (!info.ok()) return info.status();
  return !(*info)["State"].value("Running", false);
}

absl::Status PodmanContainer::Stop(std::chrono::seconds grace) {
  return store_.PodmanOk({"stop", "--time", absl::StrCat(grace.count()), id_}).status();
}

absl::Status PodmanContainer::Kill() {
  if (absl::StatusOr<std::string> k = store_.PodmanOk({"kill", id_}); !k.ok()) return k.status();
  if (!WaitExited(std::chrono::seconds(10))) {
    return absl::DeadlineExceededError(absl::StrCat("podman container ", id_, " still running 10 s after kill"));
  }
  return absl::OkStatus();
}

absl::Status PodmanContainer::Remove() {
  removed_ = true;
  return store_.PodmanOk({"rm", "--force", "--time", "0", id_}).status();
}

}  // namespace gputier::testing
