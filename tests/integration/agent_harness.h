// Test harness for tests that drive the real gputierd against the real
// kernel: a private pin directory, run directory and cgroups per test, all
// removed afterwards, so an agent running on the node is never disturbed.
#ifndef GPUTIER_TESTS_INTEGRATION_AGENT_HARNESS_H_
#define GPUTIER_TESTS_INTEGRATION_AGENT_HARNESS_H_

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"

namespace gputier::testing {

// A cgroup v2 directory made for one test and removed by the destructor.
class TestCgroup {
 public:
  explicit TestCgroup(const std::string& name);
  ~TestCgroup();
  TestCgroup(const TestCgroup&) = delete;
  TestCgroup& operator=(const TestCgroup&) = delete;

  uint64_t id() const { return id_; }
  const std::string& path() const { return path_; }          // absolute
  const std::string& relative() const { return relative_; }  // from the cgroup2 root

  // Forks a child, moves it into this cgroup, runs `body` there and waits.
  // `body` must only make raw syscalls (open/ioctl/write/close): anything
  // else could touch the counters it is meant to prove. Returns its exit code.
  int RunInside(const std::function<int()>& body) const;

  // Removes the cgroup now (it must be empty).
  bool Remove();

 private:
  std::string path_;
  std::string relative_;
  uint64_t id_ = 0;
  bool removed_ = false;
};

// Forks a child, moves it into the cgroup directory `cgroup_dir` (absolute,
// e.g. a container's), runs `body` there and waits. Returns body's exit code,
// or -1 (no pipe), -2 (the child could not be moved), -3 (it was killed).
int RunInCgroup(const std::string& cgroup_dir, const std::function<int()>& body);

// What a test process does inside a cgroup, with raw syscalls only (so that
// nothing but these operations can move its counters): each file opened
// `opens_per_file` times; the GPU device opened once and ioctl'ed
// `gpu_ioctls` times (if > 0); `write_calls` writes of `bytes_per_write`
// (<= 4096) bytes to `write_path` (if > 0).
struct RawWorkload {
  std::vector<std::string> files;
  int opens_per_file = 0;
  std::string gpu_path;
  int gpu_ioctls = 0;
  std::string write_path;
  int write_calls = 0;
  int bytes_per_write = 0;
};

// Runs `w` in a child moved into `cg`; returns its exit code: 0, or 10 (an
// open failed), 11 (the GPU device did not open), 12/13 (writing failed).
int RunRawWorkload(const TestCgroup& cg, const RawWorkload& w);

// A running gputierd with private directories.
class AgentProcess {
 public:
  struct Options {
    std::string mode;         // --mode
    std::string config_yaml;  // written to a file passed as --config
    // More gputierd flags. Without a --metrics-address among them the agent
    // runs with --metrics-address=off (never the node agent's port).
    std::vector<std::string> extra_args;
  };
  AgentProcess();
  ~AgentProcess();  // stops the agent, unpins, removes the directories

  // Starts gputierd and waits until it reports ready; returns the mode it
  // chose ("lsm" or "tracepoint").
  absl::StatusOr<std::string> Start(const Options& options);
  // SIGTERM and wait; the pins stay.
  absl::Status Stop();
  // SIGKILL and reap (a crash: nothing is cleaned up); Start() may follow.
  void Kill();

  // The "cgroups" of `gputierctl status --json` against this agent's control socket.
  absl::StatusOr<nlohmann::json> Status() const;
  // The "tiering" part of `gputierctl status --json`: {"tiers", "containers"}.
  absl::StatusOr<nlohmann::json> Tiering() const;
  // The tiering row of one container ("containers" of Tiering()), or null.
  nlohmann::json TieringRow(const std::string& container_id) const;
  // For failure messages: the tiering status (or why there is none) and the
  // tail of the agent's log.
  std::string TieringDiag() const;
  // The status object of one cgroup, or null if the agent has none.
  absl::StatusOr<nlohmann::json> StatusOf(uint64_t cgroup_id) const;
  // Runs `gputierctl <args> --run-dir=<this agent's>`; returns its stdout.
  absl::StatusOr<std::string> Ctl(const std::string& args) const;

  // `gputierctl audit --json` against this agent's pins.
  absl::StatusOr<nlohmann::json> Audit() const;
  // `gputierctl audit --events --json`: the guard and tamper records.
  absl::StatusOr<nlohmann::json> AuditEvents() const;
  // The "enforcement" part of `gputierctl status --json`.
  absl::StatusOr<nlohmann::json> Enforcement() const;
  // Polls status until the cgroup's verdict is `want` or `limit` passes;
  // returns the last status row seen (null if none).
  nlohmann::json WaitForVerdict(uint64_t cgroup_id, const std::string& want,
                                std::chrono::milliseconds limit) const;
  // The audit object of one cgroup, or null if it has no entry.
  absl::StatusOr<nlohmann::json> AuditCgroup(uint64_t cgroup_id) const;

  const std::string& pin_dir() const { return pin_dir_; }
  pid_t pid() const { return pid_; }
  const std::string& work_dir() const { return work_dir_; }
  // The tier roots used when the config names none: <work dir>/tiers/<which>.
  std::string tier_root(const std::string& which) const { return work_dir_ + "/tiers/" + which; }
  const std::string& log_path() const { return log_path_; }
  std::string LogTail() const;

 private:
  // `gputierctl audit --json <flags>` against this agent's pins: an array.
  absl::StatusOr<nlohmann::json> AuditJson(const char* flags) const;
  // One top-level part of `gputierctl status --json`.
  absl::StatusOr<nlohmann::json> StatusPart(const char* key) const;

  std::string pin_dir_;
  std::string work_dir_;
  std::string log_path_;
  pid_t pid_ = -1;
};

// Polls `done` every `every` until it holds or `timeout` passes; returns
// its last answer.
bool WaitFor(const std::function<bool()>& done, std::chrono::milliseconds timeout,
             std::chrono::milliseconds every = std::chrono::milliseconds(50));

// A GPU test device: a char device node in /dev with /dev/full's number
// (1:7), which opens and answers ioctls (ENOTTY) without any GPU driver.
// Selected through the agent's config; removed by the destructor.
class GpuTestDevice {
 public:
  GpuTestDevice();
  ~GpuTestDevice();
  const std::string& path() const { return path_; }
  // The config lines that select it.
  std::string ConfigYaml() const;

 private:
  std::string path_;
};

// Directory holding gputierd and gputierctl.
std::string BinaryDir();

// Creates a file of `size` bytes.
void WriteFile(const std::string& path, size_t size);

// The whole file ("" if it cannot be read): tests compare contents.
std::string SlurpFile(const std::string& path);

// Whether something is at `path` (lstat: a dangling symlink counts).
bool PathExists(const std::string& path);

// The mode integration tests ask for and the mode they expect the agent to
// pick: GPUTIER_TEST_MODE (default "tracepoint") and GPUTIER_EXPECT_MODE
// (default: the same, or "tracepoint" for auto).
std::string RequestedMode();
std::string ExpectedMode();

}  // namespace gputier::testing

#endif  // GPUTIER_TESTS_INTEGRATION_AGENT_HARNESS_H_
