// From a cgroup v2 path to the container it holds.
//
// Pure string logic (tests/cgroup_path_test.cc has a table per runtime).
// Paths are relative to the cgroup2 mount, starting with "/".
#ifndef GPUTIER_LOADER_CGROUP_CGROUP_PATH_H_
#define GPUTIER_LOADER_CGROUP_CGROUP_PATH_H_

#include <optional>
#include <string>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/string_view.h"

namespace gputier {

struct ContainerIdentity {
  std::string container_id;  // full id as the runtime names it
  std::string runtime;       // "containerd", "cri-o", "docker", "podman", "runc", "cri"
  std::string pod_uid;       // Kubernetes pod UID with dashes, empty outside pods
  std::string qos;           // "guaranteed", "burstable", "besteffort", empty outside pods
};

// Identifies the container whose cgroup is `cgroup_path`, or nullopt for a
// host cgroup (/, /system.slice/ssh.service, a pod's own slice, conmon scopes).
// `runc_ids` are the container ids found in runc's state directory: plain runc
// places a container at "/<id>" (cgroupfs) or "/.../runc-<id>.scope" (systemd),
// and a bare "/<id>" is only a container when runc knows that id.
std::optional<ContainerIdentity> IdentifyContainer(
    absl::string_view cgroup_path,
    const absl::flat_hash_set<std::string>& runc_ids = {});

}  // namespace gputier

#endif  // GPUTIER_LOADER_CGROUP_CGROUP_PATH_H_
