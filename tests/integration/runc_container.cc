#include "tests/integration/runc_container.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "tests/integration/agent_harness.h"
#include "tests/integration/busybox_rootfs.h"

namespace gputier::testing {

std::string RuncTestsCannotRunBecause() {
  if (geteuid() != 0) return "needs root (runc, mounts, BPF)";
  struct stat st;
  if (stat("/bin/busybox", &st) != 0) return "needs busybox-static (/bin/busybox)";
  absl::StatusOr<CommandResult> runc = RunCommand({"runc", "--version"});
  if (!runc.ok() || runc->exit_code != 0) return "needs runc in PATH";
  return "";
}

absl::StatusOr<pid_t> StartCommand(const std::vector<std::string>& argv, const std::string& log) {
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t child = fork();
  if (child < 0) return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
  if (child == 0) {
    int in = open("/dev/null", O_RDONLY);
    int out = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (in < 0 || out < 0) _exit(126);
    dup2(in, 0);
    dup2(out, 1);
    dup2(out, 2);
    execvp(args[0], args.data());
    _exit(127);
  }
  return child;
}

namespace {

namespace fs = std::filesystem;

// No runtime command a test makes (runc, podman, ctr, tar) takes this long;
// one that does is hung, and the test says which instead of running into
// ctest's timeout with nothing to show.
constexpr int kCommandTimeoutMs = 120'000;

// Runs argv with stdout+stderr written to `log` (a file, never a pipe: a
// detached container inherits runc's stdio and would hold a pipe open).
absl::StatusOr<int> Spawn(const std::vector<std::string>& argv, const std::string& log) {
  absl::StatusOr<pid_t> started = StartCommand(argv, log);
  if (!started.ok()) return started.status();
  const pid_t child = *started;
  const int pidfd = static_cast<int>(syscall(SYS_pidfd_open, child, 0));
  if (pidfd >= 0) {
    pollfd p = {pidfd, POLLIN, 0};
    int ready;
    while ((ready = poll(&p, 1, kCommandTimeoutMs)) < 0 && errno == EINTR) {
    }
    close(pidfd);
    if (ready == 0) {
      kill(child, SIGKILL);
      waitpid(child, nullptr, 0);
      return absl::DeadlineExceededError(absl::StrCat("`", absl::StrJoin(argv, " "), "` ran for more than ",
                                                      kCommandTimeoutMs / 1000, " s and was killed; its output: ",
                                                      SlurpFile(log)));
    }
  }
  int status = 0;
  while (waitpid(child, &status, 0) < 0) {
    if (errno != EINTR) return absl::InternalError("waitpid");
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + WTERMSIG(status);
}

}  // namespace

TempDir::TempDir(const std::string& prefix) {
  std::string tmpl = absl::StrCat("/tmp/", prefix, "-XXXXXX");
  if (mkdtemp(tmpl.data()) != nullptr) path_ = tmpl;
}

TempDir::~TempDir() {
  if (path_.empty()) return;
  std::error_code ec;
  fs::remove_all(path_, ec);  // removes symlinks, never follows them
}

absl::StatusOr<CommandResult> RunCommand(const std::vector<std::string>& argv) {
  TempDir dir("gputier-cmd");
  if (dir.path().empty()) return absl::InternalError("mkdtemp failed");
  std::string log = dir.path() + "/out";
  absl::StatusOr<int> rc = Spawn(argv, log);
  if (!rc.ok()) return rc.status();
  return CommandResult{*rc, SlurpFile(log)};
}

absl::StatusOr<std::unique_ptr<RuncContainer>> RuncContainer::Start(const Options& options) {
  static std::atomic<int> counter{0};
  std::unique_ptr<RuncContainer> c(new RuncContainer());
  c->dir_ = std::make_unique<TempDir>("gputier-runc");
  const std::string& dir = c->dir_->path();
  if (dir.empty()) return absl::InternalError("mkdtemp for the container failed");
  c->id_ = options.id.empty() ? absl::StrCat("gputier-test-", getpid(), "-", counter++) : options.id;
  c->state_root_ = options.state_root.empty() ? dir + "/runc-state" : options.state_root;
  std::string bundle = dir + "/bundle";
  c->rootfs_ = bundle + "/rootfs";

  std::vector<std::string> directories = options.directories;
  for (const auto& [host, in_container] : options.binds) directories.push_back(in_container);  // mount points
  if (absl::Status made = MakeBusyboxRootfs(c->rootfs_, directories); !made.ok()) return made;
  std::error_code ec;
  fs::create_directories(c->state_root_, ec);

  absl::StatusOr<CommandResult> spec = RunCommand({"runc", "spec", "--bundle", bundle});
  if (!spec.ok()) return spec.status();
  if (spec->exit_code != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "runc spec failed (is runc installed?): ", spec->output));
  }
  nlohmann::json config = nlohmann::json::parse(SlurpFile(bundle + "/config.json"));
  config["process"]["terminal"] = false;
  config["process"]["args"] = {"sh", "-c", options.script};
  config["root"]["readonly"] = false;
  config["hostname"] = c->id_;
  for (const auto& [host, in_container] : options.binds) {
    config["mounts"].push_back(
        {{"destination", in_container}, {"type", "bind"}, {"source", host}, {"options", {"rbind", "rw"}}});
  }
  std::ofstream(bundle + "/config.json") << config.dump(2);

  std::string pid_file = dir + "/init.pid";
  absl::StatusOr<int> run = Spawn({"runc", "--root", c->state_root_, "run", "-d", "--bundle",
                                   bundle, "--pid-file", pid_file, c->id_},
                                  dir + "/console.log");
  if (!run.ok()) return run.status();
  c->started_ = true;  // from here on the destructor cleans up runc state
  if (*run != 0) {
    return absl::InternalError(absl::StrCat("runc run exited ", *run, ": ",
                                            SlurpFile(dir + "/console.log")));
  }
  int pid = 0;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(SlurpFile(pid_file)), &pid) || pid <= 0) {
    return absl::InternalError(absl::StrCat("no pid in ", pid_file));
  }
  c->pid_ = pid;
  for (absl::string_view line :
       absl::StrSplit(SlurpFile(absl::StrCat("/proc/", pid, "/cgroup")), '\n')) {
    if (absl::ConsumePrefix(&line, "0::")) c->cgroup_ = std::string(line);
  }
  return c;
}

RuncContainer::~RuncContainer() {
  if (started_) {
    (void)RunCommand({"runc", "--root", state_root_, "kill", id_, "KILL"});
    // delete -f also kills; retry briefly while init is still exiting.
    for (int i = 0; i < 50; ++i) {
      absl::StatusOr<CommandResult> del =
          RunCommand({"runc", "--root", state_root_, "delete", "-f", id_});
      if (del.ok() && del->exit_code == 0) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
}

absl::StatusOr<CommandResult> RuncContainer::Exec(const std::string& script) const {
  return RunCommand({"runc", "--root", state_root_, "exec", id_, "sh", "-c", script});
}

absl::Status RuncContainer::Kill() const {
  absl::StatusOr<CommandResult> kill = RunCommand({"runc", "--root", state_root_, "kill", id_, "KILL"});
  if (!kill.ok()) return kill.status();
  if (kill->exit_code != 0) {
    return absl::InternalError(absl::StrCat("runc kill ", id_, " KILL exited ", kill->exit_code, ": ",
                                            kill->output));
  }
  std::string last;
  for (int i = 0; i < 100; ++i) {
    absl::StatusOr<CommandResult> state = RunCommand({"runc", "--root", state_root_, "state", id_});
    if (state.ok() && state->exit_code == 0) {
      nlohmann::json j = nlohmann::json::parse(state->output, nullptr, false);
      if (!j.is_discarded() && j.value("status", "") == "stopped") return absl::OkStatus();
      last = state->output;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return absl::DeadlineExceededError(absl::StrCat("container ", id_, " not stopped 5 s after runc kill: ", last));
}

}  // namespace gputier::testing
