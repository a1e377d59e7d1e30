#include "loader/cgroup/cgroup_path.h"

#include <cstddef>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

// The layouts recognised, by runtime (see tests/cgroup_path_test.cc):
//
//   docker      /docker/<id>                     (cgroupfs driver)
//               /system.slice/docker-<id>.scope  (systemd driver)
//   Kubernetes
//   /kubepods.slice/kubepods-<qos>.slice/kubepods-<qos>-pod<uid>.slice/
//                   {cri-containerd,crio,docker}-<id>.scope   (systemd driver)
//               /kubepods/<qos>/pod<uid>/{<id>,crio-<id>}      (cgroupfs
//               driver) guaranteed pods sit directly under kubepods{.slice}
//   containerd  /system.slice/nerdctl-<id>.scope, /<namespace>/<id>
//   cri-o       /.../crio-<id>.scope, /.../crio-<id>
//   podman      /machine.slice/libpod-<id>.scope, /libpod_parent/libpod-<id>,
//               /user.slice/.../user@<uid>.service/user.slice/libpod-<id>.scope
//   runc        /<id>, /.../<id> (id known to runc), /.../runc-<id>.scope
//
// The leftmost component that names a container wins, so sub-cgroups a
// container creates inside its own cgroup (/docker/<id>/init, podman's
// .../libpod-<id>.scope/container) belong to that container. Conmon scopes
// (crio-conmon-<id>, libpod-conmon-<id>) hold the monitor, not the container,
// and are host cgroups.

namespace gputier {
namespace {

constexpr size_t kRuntimeIdLength = 64;

// docker, containerd, cri-o and podman ids: 64 lower-case hex digits.
bool IsRuntimeId(absl::string_view id) {
  if (id.size() != kRuntimeIdLength) return false;
  for (char c : id) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

// "<prefix><id><suffix>" with a runtime id, or nullopt.
std::optional<std::string> IdBetween(absl::string_view component,
                                     absl::string_view prefix,
                                     absl::string_view suffix) {
  if (!absl::ConsumePrefix(&component, prefix)) return std::nullopt;
  if (!absl::ConsumeSuffix(&component, suffix)) return std::nullopt;
  if (!IsRuntimeId(component)) return std::nullopt;
  return std::string(component);
}

ContainerIdentity Identity(std::string id, absl::string_view runtime) {
  ContainerIdentity identity;
  identity.container_id = std::move(id);
  identity.runtime = std::string(runtime);
  return identity;
}

// A pod UID as it appears in a cgroup name: lower-case hex with dashes
// (cgroupfs) or underscores (systemd, where "-" separates slice levels).
// Static pods use a 32-digit hash without separators.
bool IsPodUid(absl::string_view uid) {
  if (uid.empty() || uid.size() > 64) return false;
  for (char c : uid) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || c == '-' ||
          c == '_')) {
      return false;
    }
  }
  return true;
}

struct PodCgroup {
  std::string uid;  // with dashes
  std::string qos;
};

// "[<anything>-]kubepods[-<qos>]-pod<uid>.slice" (systemd driver; a
// kubelet --cgroup-root adds the prefix, e.g. "kubelet-kubepods-...").
std::optional<PodCgroup> SystemdPodSlice(absl::string_view component) {
  if (!absl::ConsumeSuffix(&component, ".slice")) return std::nullopt;
  const size_t pod = component.rfind("-pod");
  if (pod == absl::string_view::npos) return std::nullopt;
  absl::string_view uid = component.substr(pod + 4);
  absl::string_view parent = component.substr(0, pod);
  if (!IsPodUid(uid)) return std::nullopt;

  std::string qos;
  if (absl::ConsumeSuffix(&parent, "-burstable")) {
    qos = "burstable";
  } else if (absl::ConsumeSuffix(&parent, "-besteffort")) {
    qos = "besteffort";
  } else {
    qos = "guaranteed";
  }
  if (parent != "kubepods" && !absl::EndsWith(parent, "-kubepods")) {
    return std::nullopt;
  }
  return PodCgroup{absl::StrReplaceAll(uid, {{"_", "-"}}), qos};
}

// "pod<uid>" under ".../kubepods[/<qos>]" (cgroupfs driver).
std::optional<PodCgroup> CgroupfsPodDir(
    const std::vector<absl::string_view>& components, size_t index) {
  absl::string_view component = components[index];
  if (!absl::ConsumePrefix(&component, "pod") || !IsPodUid(component)) {
    return std::nullopt;
  }
  if (index >= 1 && components[index - 1] == "kubepods") {
    return PodCgroup{std::string(component), "guaranteed"};
  }
  if (index >= 2 && components[index - 2] == "kubepods" &&
      (components[index - 1] == "burstable" ||
       components[index - 1] == "besteffort")) {
    return PodCgroup{std::string(component),
                     std::string(components[index - 1])};
  }
  return std::nullopt;
}

// A container cgroup named "<prefix><id><suffix>" by its runtime.
struct ScopePattern {
  absl::string_view prefix;
  absl::string_view suffix;  // "" for cgroupfs-driver names
  absl::string_view runtime;
};

// Systemd-driver scopes first, then their cgroupfs spellings.
constexpr ScopePattern kPodScopes[] = {
    {"cri-containerd-", ".scope", "containerd"},
    {"crio-", ".scope", "cri-o"},
    {"crio-", "", "cri-o"},
    {"docker-", ".scope", "docker"},
};
constexpr ScopePattern kRuntimeScopes[] = {
    {"docker-", ".scope", "docker"},
    {"nerdctl-", ".scope", "containerd"},
    {"cri-containerd-", ".scope", "containerd"},
    {"crio-", ".scope", "cri-o"},
    {"crio-", "", "cri-o"},
    {"libpod-", ".scope", "podman"},
    {"libpod-", "", "podman"},
};

std::optional<ContainerIdentity> MatchScope(absl::string_view component,
                                            absl::Span<const ScopePattern> patterns) {
  for (const ScopePattern& p : patterns) {
    if (auto id = IdBetween(component, p.prefix, p.suffix)) {
      return Identity(*std::move(id), std::string(p.runtime));
    }
  }
  return std::nullopt;
}

// The container directly under a pod's cgroup. The pause ("sandbox")
// container is a container here too; callers group by pod_uid.
std::optional<ContainerIdentity> PodContainer(absl::string_view component) {
  if (auto c = MatchScope(component, kPodScopes)) return c;
  if (IsRuntimeId(component)) {
    // cgroupfs driver: containerd and cri-dockerd both use the bare id.
    return Identity(std::string(component), "cri");
  }
  return std::nullopt;
}

bool IsSystemdUnit(absl::string_view component) {
  return absl::EndsWith(component, ".slice") ||
         absl::EndsWith(component, ".scope") ||
         absl::EndsWith(component, ".service");
}

// A containerd namespace name ("default", "k8s.io", "moby"...): letters and
// digits, separated by single '.', '_' or '-'.
bool IsContainerdNamespace(absl::string_view name) {
  if (name.empty() || name == "docker" || name == "kubepods" ||
      name == "libpod_parent" || IsSystemdUnit(name)) {
    return false;
  }
  bool after_separator = true;
  for (char c : name) {
    const bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                       (c >= '0' && c <= '9');
    if (alnum) {
      after_separator = false;
    } else if ((c == '.' || c == '_' || c == '-') && !after_separator) {
      after_separator = true;
    } else {
      return false;
    }
  }
  return !after_separator;
}

// A container named by components[index] outside a Kubernetes pod.
std::optional<ContainerIdentity> RuntimeContainer(
    const std::vector<absl::string_view>& components, size_t index,
    const absl::flat_hash_set<std::string>& runc_ids) {
  const absl::string_view component = components[index];
  const absl::string_view parent = index > 0 ? components[index - 1] : "";

  if (parent == "docker" && IsRuntimeId(component)) {
    return Identity(std::string(component), "docker");
  }
  if (auto c = MatchScope(component, kRuntimeScopes)) return c;
  absl::string_view runc_scope = component;
  if (absl::ConsumePrefix(&runc_scope, "runc-") &&
      absl::ConsumeSuffix(&runc_scope, ".scope") && !runc_scope.empty()) {
    return Identity(std::string(runc_scope), "runc");
  }
  if (runc_ids.contains(component)) {
    return Identity(std::string(component), "runc");
  }
  if (index == 1 && IsRuntimeId(component) && IsContainerdNamespace(parent)) {
    return Identity(std::string(component), "containerd");
  }
  return std::nullopt;
}

}  // namespace

std::optional<ContainerIdentity> IdentifyContainer(
    absl::string_view cgroup_path,
    const absl::flat_hash_set<std::string>& runc_ids) {
  const std::vector<absl::string_view> components =
      absl::StrSplit(cgroup_path, '/', absl::SkipEmpty());

  for (size_t i = 0; i < components.size(); ++i) {
    std::optional<PodCgroup> pod = SystemdPodSlice(components[i]);
    if (!pod) pod = CgroupfsPodDir(components, i);
    if (pod) {
      // The pod's own cgroup, or something in it that is not a container
      // (a conmon scope), is no container.
      if (i + 1 >= components.size()) return std::nullopt;
      std::optional<ContainerIdentity> container =
          PodContainer(components[i + 1]);
      if (!container) return std::nullopt;
      container->pod_uid = std::move(pod->uid);
      container->qos = std::move(pod->qos);
      return container;
    }
    if (std::optional<ContainerIdentity> container =
            RuntimeContainer(components, i, runc_ids)) {
      return container;
    }
  }
  return std::nullopt;
}

}  // namespace gputier
