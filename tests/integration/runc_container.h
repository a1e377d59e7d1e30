// A real OCI container for tests: a busybox rootfs run detached by runc.
//
// Each container gets a private temp directory holding its bundle
// (config.json, rootfs/), runc's state (--root, so /run/runc is never
// touched) and its console log; the id is "gputier-test-<pid>-<n>". The
// destructor kills and deletes the container and removes the directory.
// Works with cgroup v2, v1 and hybrid hosts (runc picks the layout).
#ifndef GPUTIER_TESTS_INTEGRATION_RUNC_CONTAINER_H_
#define GPUTIER_TESTS_INTEGRATION_RUNC_CONTAINER_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace gputier::testing {

// A directory made with mkdtemp under /tmp, removed (recursively, never
// following symlinks) by the destructor.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix);
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

struct CommandResult {
  int exit_code = -1;  // 128 + signal when killed
  std::string output;  // stdout and stderr together
};

// Runs argv[0] (searched in PATH) with stdin from /dev/null; waits, at most
// 2 minutes (then kills it and returns DeadlineExceeded with its output).
absl::StatusOr<CommandResult> RunCommand(const std::vector<std::string>& argv);

// Starts argv[0] (searched in PATH) with stdin from /dev/null and stdout and
// stderr appended to the file `log`; returns its pid (the caller reaps it).
absl::StatusOr<pid_t> StartCommand(const std::vector<std::string>& argv, const std::string& log);

// Why tests with real runc containers cannot run here ("needs root", "needs
// runc in PATH", ...), or empty when they can.
std::string RuncTestsCannotRunBecause();

class RuncContainer {
 public:
  struct Options {
    // Run by the container's init as `sh -c <script>`; keep it running.
    std::string script = "exec sleep 100000";
    // Directories created in the rootfs before start (e.g. "/data").
    std::vector<std::string> directories = {"/data"};
    // runc's --root (its state directory), e.g. one shared by many
    // containers so that one agent config names them all. Empty: a private
    // one in the container's temp directory.
    std::string state_root;
    // Host directories bind-mounted into the container (read-write), as
    // {host path, container path}; the container path is created first.
    std::vector<std::pair<std::string, std::string>> binds;
    // The container id; empty: "gputier-test-<pid>-<n>". Reusing the id of
    // a deleted container (same state_root) starts a new one under it.
    std::string id;
  };

  // Builds the rootfs and config, runs the container detached, waits until
  // its init is running.
  static absl::StatusOr<std::unique_ptr<RuncContainer>> Start(const Options& options);
  ~RuncContainer();
  RuncContainer(const RuncContainer&) = delete;
  RuncContainer& operator=(const RuncContainer&) = delete;

  const std::string& id() const { return id_; }
  pid_t pid() const { return pid_; }                  // init, host pid namespace
  const std::string& cgroup() const { return cgroup_; }  // its "0::" cgroup path
  const std::string& rootfs() const { return rootfs_; }  // host path of its rootfs
  const std::string& state_root() const { return state_root_; }  // its `runc --root`

  // Runs `sh -c <script>` inside the container (runc exec).
  absl::StatusOr<CommandResult> Exec(const std::string& script) const;

  // Kills the container's init (`runc kill KILL`) and waits until runc
  // reports the container stopped. The container is not deleted: its state,
  // cgroup and temp directory stay until the destructor.
  absl::Status Kill() const;

 private:
  RuncContainer() = default;
  std::unique_ptr<TempDir> dir_;
  std::string id_;
  std::string state_root_;
  std::string rootfs_;
  std::string cgroup_;
  pid_t pid_ = 0;
  bool started_ = false;
};

}  // namespace gputier::testing

#endif  // GPUTIER_TESTS_INTEGRATION_RUNC_CONTAINER_H_
