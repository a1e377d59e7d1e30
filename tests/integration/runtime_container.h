// A container started by a real container runtime (podman, containerd), as
// the end-to-end tests drive it: what gputier sees of it (its id, init pid
// and cgroup) and the runtime's own verbs to end it, so that one test body
// runs against every runtime.
#ifndef GPUTIER_TESTS_INTEGRATION_RUNTIME_CONTAINER_H_
#define GPUTIER_TESTS_INTEGRATION_RUNTIME_CONTAINER_H_

#include <sys/types.h>

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tests/integration/runc_container.h"

namespace gputier::testing {

// How a test wants a container started, whatever the runtime.
struct RuntimeContainerOptions {
  // Run by the container's init as `sh -c <script>`.
  std::string script = "exec sleep 100000";
  // Host device nodes passed in with --device (same path inside).
  std::vector<std::string> devices;
  // OCI annotations (podman --annotation, ctr --annotation).
  std::map<std::string, std::string> annotations;
  // More arguments for the runtime's run command, before the image
  // (e.g. podman's --name, ctr's --label).
  std::vector<std::string> extra_args;
};

class RuntimeContainer {
 public:
  virtual ~RuntimeContainer() = default;

  // "podman", "containerd".
  virtual std::string runtime() const = 0;
  // The full id, as the runtime and gputier (from the cgroup) name it.
  virtual const std::string& id() const = 0;
  // Its init, in the host's pid namespace (0 once it is gone).
  virtual pid_t pid() const = 0;
  // Its "0::" cgroup path, relative to the cgroup2 mount.
  virtual const std::string& cgroup() const = 0;

  // Runs `sh -c <script>` inside (podman exec, ctr task exec).
  virtual absl::StatusOr<CommandResult> Exec(const std::string& script) const = 0;
  // Whether the runtime says the container's init has exited.
  virtual absl::StatusOr<bool> Exited() const = 0;

  // The runtime's stop: SIGTERM, SIGKILL after `grace`, and what the
  // runtime does after an exit (podman's cleanup; containerd's task delete,
  // as the CRI plugin does). Returns once stopped.
  virtual absl::Status Stop(std::chrono::seconds grace) = 0;
  // SIGKILL through the runtime; returns once the runtime reports it exited.
  virtual absl::Status Kill() = 0;
  // `rm -f`: kills if running and deletes the container.
  virtual absl::Status Remove() = 0;

  // Polls Exited() until true or `timeout`.
  bool WaitExited(std::chrono::milliseconds timeout) const;
};

// The output of a command run with RunCommand if it exited 0; else an error
// naming `command` (its command line), its exit code and output.
absl::StatusOr<std::string> OutputIfExitedZero(const absl::StatusOr<CommandResult>& result,
                                               const std::string& command);

// The cgroup2 path of `pid` ("0::" line of /proc/<pid>/cgroup), or "".
std::string CgroupOfPid(pid_t pid);

// Removes the cgroup directory `relative` (from each hierarchy's root: v1
// controllers and cgroup2) in every cgroup hierarchy where it is empty and
// was not present in `existed_before` (CgroupDirsNow's full paths, so one
// hierarchy's old directory never keeps another's new one); deepest first.
// Runtimes make parent cgroups (/libpod_parent, /kubepods/burstable/pod<uid>)
// and leave them.
void RemoveCgroupDirs(const std::vector<std::string>& relative, const std::vector<std::string>& existed_before);

// The full paths (<hierarchy root><relative>) of those of `relative` that
// exist now, in every hierarchy.
std::vector<std::string> CgroupDirsNow(const std::vector<std::string>& relative);

// The pids in cgroup `relative` (the union over every hierarchy).
std::vector<pid_t> CgroupPids(const std::string& relative);

// Of `relative`, those that exist in some cgroup hierarchy now.
std::vector<std::string> ExistingCgroupDirs(const std::vector<std::string>& relative);

}  // namespace gputier::testing

#endif  // GPUTIER_TESTS_INTEGRATION_RUNTIME_CONTAINER_H_
