// Where each container runtime keeps its containers: one table (pure).
//
// gputier finds containers by their cgroups (loader/cgroup/cgroup_path.h)
// and confirms each with the runtime that made it before anything is mounted
// (runtime_confirm.h). Everything runtime-specific that confirmation and
// identity need lives in RuntimeTable(): the OCI runtime state directories
// ("--root") a runtime's containers are kept under by default, whether the
// state sits one level deeper under a namespace (containerd, docker), and
// which cgroup shapes the runtime makes. The state files themselves are the
// OCI runtime's (runc's state.json, crun's status), parsed here too.
#ifndef GPUTIER_LOADER_RUNTIME_RUNTIME_TABLE_H_
#define GPUTIER_LOADER_RUNTIME_RUNTIME_TABLE_H_

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "loader/config/config.h"

namespace gputier {

struct RuntimeLayout {
  std::string name;  // the key under `runtime_roots:`
  // ContainerIdentity::runtime values (loader/cgroup/cgroup_path.h) of the
  // cgroups this runtime's containers get.
  std::vector<std::string> cgroup_runtimes;
  // OCI runtime state directories used when `runtime_roots:` does not name
  // this runtime.
  std::vector<std::string> default_roots;
  // State is <root>/<namespace>/<id> (containerd's runc v2 shim, docker)
  // instead of <root>/<id>.
  bool namespaced = false;
  // Where the OCI bundle (config.json) is, in words (docs/RUNTIMES.md).
  std::string bundle_at;
};

// One entry per runtime: runc, podman, containerd, cri-o, docker.
const std::vector<RuntimeLayout>& RuntimeTable();

// The entry named `name`, or nullptr.
const RuntimeLayout* FindRuntime(absl::string_view name);

// The runtimes that make cgroups identified as `cgroup_runtime`; every
// runtime when it is empty or none claims it.
std::vector<const RuntimeLayout*> RuntimesForCgroup(absl::string_view cgroup_runtime);

// The state directories to look in for `runtime`: `runtime_roots:` where it
// names the runtime, its defaults otherwise.
const std::vector<std::string>& RootsOf(const TierConfig& config, const RuntimeLayout& runtime);

// What an OCI runtime keeps of a running container.
struct RuntimeState {
  std::string id;       // as the runtime names it (empty: the directory's name)
  pid_t init_pid = 0;   // the container's init, in gputierd's pid namespace
  std::string bundle;   // the OCI bundle directory (holds config.json)
};

// runc's <root>/<id>/state.json: "id", "init_process_pid", and the bundle
// from the "bundle=<dir>" label runc keeps in "config"."labels".
absl::StatusOr<RuntimeState> ParseRuncState(absl::string_view json);

// crun's <root>/<id>/status: "pid" and "bundle" (no id: the directory names it).
absl::StatusOr<RuntimeState> ParseCrunStatus(absl::string_view json);

// The state files an OCI runtime keeps in a container's state directory, in
// the order they are tried.
inline constexpr absl::string_view kRuncStateFile = "state.json";
inline constexpr absl::string_view kCrunStateFile = "status";

// The largest state file or config.json read (bytes); bigger is refused.
inline constexpr size_t kMaxRuntimeFileBytes = size_t{1} << 20;

}  // namespace gputier

#endif  // GPUTIER_LOADER_RUNTIME_RUNTIME_TABLE_H_
