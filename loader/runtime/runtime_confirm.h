// A container found by its cgroup, confirmed with its runtime (OS adapter).
//
// A cgroup name alone proves nothing: anyone who can make a cgroup can name
// it like a runtime's. Before gputier mounts anything into a container it
// asks the runtime: the container's state directory must exist under one of
// the runtime's configured roots (RuntimeTable(), `runtime_roots:`), name
// the same id, and say that the container's init process is in this cgroup.
// (That the process has left the host's mount namespace is checked by the
// tier manager when it picks the process.)
#ifndef GPUTIER_LOADER_RUNTIME_RUNTIME_CONFIRM_H_
#define GPUTIER_LOADER_RUNTIME_RUNTIME_CONFIRM_H_

#include <sys/types.h>

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "loader/config/config.h"
#include "loader/runtime/oci_config.h"
#include "loader/runtime/runtime_table.h"

namespace gputier {

struct ConfirmedContainer {
  std::string runtime;    // RuntimeLayout::name
  std::string state_dir;  // where the runtime keeps it
  RuntimeState state;
};

// Confirms container `id`, whose cgroup is `cgroup` (relative to the cgroup2
// mount at `cgroup_root`) and was identified as `cgroup_runtime`, with the
// runtimes that make such cgroups. NotFound when no runtime knows the id
// (the error names the roots looked in and the config key to fix);
// FailedPrecondition when a runtime knows it but its init process is in
// another cgroup.
absl::StatusOr<ConfirmedContainer> ConfirmWithRuntime(const TierConfig& config,
                                                      absl::string_view cgroup_runtime,
                                                      const std::string& id,
                                                      const std::string& cgroup);

// The confirmed container's identity and overrides: its bundle's
// config.json annotations, and podman's name for it where the bundle is in
// podman's storage. A bundle that cannot be read or parsed is an error (the
// caller names the container by its short id and applies the config).
absl::StatusOr<OciWorkload> ReadWorkload(const ConfirmedContainer& container);

// Reads <bundle>/config.json as root reads a file it does not trust: the
// bundle directory opened O_DIRECTORY, config.json beneath it with
// RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS and O_NOFOLLOW, a regular file of at
// most kMaxRuntimeFileBytes.
absl::StatusOr<std::string> ReadBundleConfig(const std::string& bundle);

// The cgroup v2 path of `pid` (its "0::" line of /proc/<pid>/cgroup), or ""
// when it is gone.
std::string CgroupOfPid(pid_t pid);

// Reads a runtime-written file `name` under directory fd `dir_fd` the same
// way, refusing one larger than `max_bytes`.
absl::StatusOr<std::string> ReadBeneath(int dir_fd, const std::string& name, const std::string& shown,
                                        size_t max_bytes);

}  // namespace gputier

#endif  // GPUTIER_LOADER_RUNTIME_RUNTIME_CONFIRM_H_
