#include "tests/integration/agent_harness.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "loader/cgroup/cgroup_resolver.h"

namespace gputier::testing {
namespace {

// A child forked without exec (RunInCgroup) keeps every fd the test process
// had at that instant. popen() holds its pipe's write end for a moment; a
// cgroup child forked by another thread in that moment would keep it, and
// the reader here would wait for EOF until that child exits (seen as a
// `status` that took 60 s while a holder thread ran). Both take this lock.
std::mutex& ForkLock() {
  static std::mutex* mu = new std::mutex;
  return *mu;
}

absl::StatusOr<std::string> RunCapture(const std::string& cmd) {
  FILE* p = nullptr;
  {
    std::lock_guard<std::mutex> hold(ForkLock());
    p = popen(cmd.c_str(), "re");
  }
  if (p == nullptr) return absl::ErrnoToStatus(errno, cmd);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  int rc = pclose(p);
  if (rc != 0) return absl::InternalError(absl::StrCat(cmd, " exited ", rc, ": ", out));
  return out;
}

}  // namespace

std::string BinaryDir() {
  const char* env = getenv("GPUTIER_BIN_DIR");
  return env != nullptr ? env : GPUTIER_BIN_DIR;
}

std::string RequestedMode() {
  const char* env = getenv("GPUTIER_TEST_MODE");
  return env != nullptr && *env ? env : "tracepoint";
}

std::string ExpectedMode() {
  const char* env = getenv("GPUTIER_EXPECT_MODE");
  if (env != nullptr && *env) return env;
  return RequestedMode() == "auto" ? "tracepoint" : RequestedMode();
}

std::string SlurpFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool PathExists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

void WriteFile(const std::string& path, size_t size) {
  std::ofstream out(path, std::ios::binary);
  out << std::string(size, 'x');
}

TestCgroup::TestCgroup(const std::string& name) {
  absl::StatusOr<CgroupResolver> resolver = CgroupResolver::Create();
  if (!resolver.ok()) {
    fprintf(stderr, "no cgroup2: %s\n", std::string(resolver.status().message()).c_str());
    abort();
  }
  relative_ = absl::StrFormat("/gputier-test-%d-%s", getpid(), name);
  path_ = resolver->mount_point() + relative_;
  if (mkdir(path_.c_str(), 0755) != 0 && errno != EEXIST) {
    fprintf(stderr, "mkdir %s: %s\n", path_.c_str(), strerror(errno));
    abort();
  }
  id_ = *resolver->IdOf(relative_);
}

TestCgroup::~TestCgroup() { Remove(); }

bool TestCgroup::Remove() {
  if (removed_) return true;
  removed_ = rmdir(path_.c_str()) == 0 || errno == ENOENT;
  return removed_;
}

int RunInCgroup(const std::string& cgroup_dir, const std::function<int()>& body) {
  int go[2];
  pid_t pid = -1;
  {
    std::lock_guard<std::mutex> hold(ForkLock());
    if (pipe2(go, O_CLOEXEC) != 0) return -1;
    pid = fork();
  }
  if (pid < 0) {
    close(go[0]);
    close(go[1]);
    return -1;
  }
  if (pid == 0) {
    close(go[1]);
    char c;
    if (read(go[0], &c, 1) != 1) _exit(120);
    _exit(body());
  }
  close(go[0]);
  std::string procs = cgroup_dir + "/cgroup.procs";
  int fd = open(procs.c_str(), O_WRONLY | O_CLOEXEC);
  std::string pid_text = std::to_string(pid);
  bool moved = fd >= 0 && write(fd, pid_text.data(), pid_text.size()) == static_cast<ssize_t>(pid_text.size());
  if (fd >= 0) close(fd);
  if (!moved) kill(pid, SIGKILL);
  if (write(go[1], "g", 1) != 1) kill(pid, SIGKILL);
  close(go[1]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (!moved) return -2;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -3;
}

int TestCgroup::RunInside(const std::function<int()>& body) const { return RunInCgroup(path_, body); }

int RunRawWorkload(const TestCgroup& cg, const RawWorkload& w) {
  return cg.RunInside([&]() -> int {
    for (const std::string& p : w.files) {
      for (int i = 0; i < w.opens_per_file; ++i) {
        int fd = open(p.c_str(), O_RDONLY);
        if (fd < 0) return 10;
        close(fd);
      }
    }
    if (w.gpu_ioctls > 0) {
      int fd = open(w.gpu_path.c_str(), O_RDWR);
      if (fd < 0) return 11;
      for (int i = 0; i < w.gpu_ioctls; ++i) ioctl(fd, 0x6400 + i, 0);  // ENOTTY: still an ioctl
      close(fd);
    }
    if (w.write_calls > 0) {
      int fd = open(w.write_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (fd < 0) return 12;
      char buf[4096] = {};
      for (int i = 0; i < w.write_calls; ++i) {
        if (write(fd, buf, w.bytes_per_write) != w.bytes_per_write) return 13;
      }
      close(fd);
    }
    return 0;
  });
}

AgentProcess::AgentProcess() {
  pin_dir_ = absl::StrFormat("/sys/fs/bpf/gputier-test-%d", getpid());
  char tmpl[] = "/tmp/gputier-test-XXXXXX";
  char* dir = mkdtemp(tmpl);
  if (dir == nullptr) abort();
  work_dir_ = dir;
  log_path_ = work_dir_ + "/gputierd.log";
}

AgentProcess::~AgentProcess() {
  (void)Stop();
  std::string ctl = absl::StrCat(BinaryDir(), "/gputierctl unpin --pin-dir ", pin_dir_, " >/dev/null 2>&1");
  (void)system(ctl.c_str());
  rmdir(pin_dir_.c_str());
  // Fast partitions a failed test left mounted under the work dir go first
  // (deepest first); rm never crosses into a mount.
  std::vector<std::string> mounts;
  std::ifstream info("/proc/self/mountinfo");
  for (std::string line; std::getline(info, line);) {
    std::vector<std::string> f = absl::StrSplit(line, ' ');
    if (f.size() > 4 && absl::StartsWith(f[4], work_dir_ + "/")) mounts.push_back(f[4]);
  }
  std::sort(mounts.rbegin(), mounts.rend());
  for (const std::string& m : mounts) umount2(m.c_str(), MNT_DETACH);
  std::string rm = absl::StrCat("rm -rf --one-file-system ", work_dir_);
  (void)system(rm.c_str());
}

absl::StatusOr<std::string> AgentProcess::Start(const Options& options) {
  std::string config = work_dir_ + "/config.yaml";
  std::string yaml = options.config_yaml;
  if (!absl::StrContains(yaml, "tiers:")) {
    // Never the node's /var/lib/gputier: tiers of this agent live in its work dir.
    absl::StrAppend(&yaml, "\ntiers:\n  fast: ", tier_root("fast"), "\n  slow: ", tier_root("slow"), "\n");
  }
  std::ofstream(config) << yaml;
  // The parent of the default tier roots: gputierd makes only a configured
  // root's last directory.
  mkdir((work_dir_ + "/tiers").c_str(), 0700);
  std::string ready = work_dir_ + "/ready";
  unlink(ready.c_str());
  pid_ = fork();
  if (pid_ == 0) {
    int log = open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    dup2(log, 1);
    dup2(log, 2);
    std::string bin = BinaryDir() + "/gputierd";
    std::string mode = "--mode=" + options.mode;
    std::string pin = "--pin-dir=" + pin_dir_;
    std::string run = "--run-dir=" + work_dir_ + "/run";
    std::string cfg = "--config=" + config;
    std::string rdy = "--ready-file=" + ready;
    std::string state = "--state-dir=" + work_dir_ + "/state";
    std::vector<std::string> args = {bin, mode, pin, run, cfg, rdy, state, "--quiet"};
    bool metrics_given = false;
    for (const std::string& a : options.extra_args) {
      metrics_given |= absl::StartsWith(a, "--metrics-address") || absl::StartsWith(a, "--metrics_address");
      args.push_back(a);
    }
    if (!metrics_given) args.push_back("--metrics-address=off");
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(bin.c_str(), argv.data());
    _exit(127);
  }
  // TCG VMs are slow: allow two minutes for load + verification.
  for (int i = 0; i < 1200; ++i) {
    struct stat st;
    if (stat(ready.c_str(), &st) == 0) {
      return std::string(absl::StripAsciiWhitespace(SlurpFile(ready)));
    }
    int status;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return absl::InternalError(absl::StrCat("gputierd exited before it was ready:\n", LogTail()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return absl::DeadlineExceededError(absl::StrCat("gputierd not ready after 120 s:\n", LogTail()));
}

absl::Status AgentProcess::Stop() {
  if (pid_ <= 0) return absl::OkStatus();
  kill(pid_, SIGTERM);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::InternalError(absl::StrCat("gputierd did not exit cleanly:\n", LogTail()));
  }
  return absl::OkStatus();
}

void AgentProcess::Kill() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  int status = 0;
  while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
}

std::string AgentProcess::LogTail() const {
  std::string log = SlurpFile(log_path_);
  return log.size() > 4000 ? log.substr(log.size() - 4000) : log;
}

absl::StatusOr<nlohmann::json> AgentProcess::AuditJson(const char* flags) const {
  absl::StatusOr<std::string> out =
      RunCapture(absl::StrCat(BinaryDir(), "/gputierctl audit --json ", flags, " --pin-dir ", pin_dir_));
  if (!out.ok()) return out.status();
  nlohmann::json j = nlohmann::json::parse(*out, nullptr, false);
  if (j.is_discarded() || !j.is_array()) return absl::InternalError(absl::StrCat("bad audit JSON: ", *out));
  return j;
}

absl::StatusOr<nlohmann::json> AgentProcess::Audit() const { return AuditJson(""); }

absl::StatusOr<nlohmann::json> AgentProcess::AuditEvents() const { return AuditJson("--events"); }

absl::StatusOr<std::string> AgentProcess::Ctl(const std::string& args) const {
  return RunCapture(absl::StrCat(BinaryDir(), "/gputierctl ", args, " --run-dir=", work_dir_, "/run"));
}

absl::StatusOr<nlohmann::json> AgentProcess::StatusPart(const char* key) const {
  absl::StatusOr<std::string> out = Ctl("status --json");
  if (!out.ok()) return out.status();
  nlohmann::json j = nlohmann::json::parse(*out, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains(key)) {
    return absl::InternalError(absl::StrCat("bad status JSON (no \"", key, "\"): ", *out));
  }
  return j[key];
}

absl::StatusOr<nlohmann::json> AgentProcess::Status() const {
  absl::StatusOr<nlohmann::json> cgroups = StatusPart("cgroups");
  if (cgroups.ok() && !cgroups->is_array()) return absl::InternalError("status: \"cgroups\" is not a list");
  return cgroups;
}

absl::StatusOr<nlohmann::json> AgentProcess::Tiering() const { return StatusPart("tiering"); }

nlohmann::json AgentProcess::TieringRow(const std::string& container_id) const {
  absl::StatusOr<nlohmann::json> t = Tiering();
  if (!t.ok()) return nullptr;
  for (const nlohmann::json& r : (*t)["containers"]) {
    if (r["container_id"] == container_id) return r;
  }
  return nullptr;
}

std::string AgentProcess::TieringDiag() const {
  absl::StatusOr<nlohmann::json> t =
      pid_ > 0 ? Tiering() : absl::StatusOr<nlohmann::json>(absl::UnavailableError("stopped"));
  return absl::StrCat("tiering: ", t.ok() ? t->dump() : std::string(t.status().message()),
                      "\n--- gputierd log (tail) ---\n", LogTail());
}

absl::StatusOr<nlohmann::json> AgentProcess::Enforcement() const { return StatusPart("enforcement"); }

nlohmann::json AgentProcess::WaitForVerdict(uint64_t cgroup_id, const std::string& want,
                                            std::chrono::milliseconds limit) const {
  nlohmann::json row = nullptr;
  auto deadline = std::chrono::steady_clock::now() + limit;
  do {
    absl::StatusOr<nlohmann::json> r = StatusOf(cgroup_id);
    if (r.ok()) row = *r;
    if (!row.is_null() && row.at("verdict") == want) return row;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  } while (std::chrono::steady_clock::now() < deadline);
  return row;
}

absl::StatusOr<nlohmann::json> AgentProcess::StatusOf(uint64_t cgroup_id) const {
  absl::StatusOr<nlohmann::json> all = Status();
  if (!all.ok()) return all.status();
  for (const nlohmann::json& row : *all) {
    if (row.at("cgroup_id").get<uint64_t>() == cgroup_id) return row;
  }
  return nlohmann::json(nullptr);
}

GpuTestDevice::GpuTestDevice() : path_(absl::StrCat("/dev/gputier-test-", getpid(), "-gpu0")) {
  unlink(path_.c_str());
  if (mknod(path_.c_str(), S_IFCHR | 0600, makedev(1, 7)) != 0) {
    fprintf(stderr, "mknod %s: %s\n", path_.c_str(), strerror(errno));
    abort();
  }
}

GpuTestDevice::~GpuTestDevice() { unlink(path_.c_str()); }

std::string GpuTestDevice::ConfigYaml() const {
  return absl::StrCat("gpu_devices:\n  - path: ", path_, "\n");
}

absl::StatusOr<nlohmann::json> AgentProcess::AuditCgroup(uint64_t cgroup_id) const {
  absl::StatusOr<nlohmann::json> all = Audit();
  if (!all.ok()) return all.status();
  for (const nlohmann::json& row : *all) {
    if (row.at("cgroup_id").get<uint64_t>() == cgroup_id) return row;
  }
  return nlohmann::json(nullptr);
}

bool WaitFor(const std::function<bool()>& done, std::chrono::milliseconds timeout,
             std::chrono::milliseconds every) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (done()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(every);
  }
}

}  // namespace gputier::testing
