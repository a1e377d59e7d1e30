// A container's identity and per-workload overrides, from its OCI bundle's
// config.json annotations (pure; no syscalls).
//
// The text comes from a file a tenant's orchestrator shapes: it is parsed
// without exceptions escaping, and every value is checked before use.
#ifndef GPUTIER_LOADER_RUNTIME_OCI_CONFIG_H_
#define GPUTIER_LOADER_RUNTIME_OCI_CONFIG_H_

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace gputier {

// The annotation keys read.
inline constexpr absl::string_view kCriSandboxName = "io.kubernetes.cri.sandbox-name";
inline constexpr absl::string_view kCriSandboxNamespace = "io.kubernetes.cri.sandbox-namespace";
inline constexpr absl::string_view kCriContainerName = "io.kubernetes.cri.container-name";
inline constexpr absl::string_view kCrioPodName = "io.kubernetes.pod.name";
inline constexpr absl::string_view kCrioPodNamespace = "io.kubernetes.pod.namespace";
inline constexpr absl::string_view kCrioContainerName = "io.kubernetes.container.name";
inline constexpr absl::string_view kTierAnnotation = "gputier.io/tier";
inline constexpr absl::string_view kTieredPathsAnnotation = "gputier.io/tiered-paths";
inline constexpr absl::string_view kGpuDataPathsAnnotation = "gputier.io/gpu-data-paths";

// At most this many directories in either path annotation.
inline constexpr size_t kMaxAnnotatedPaths = 16;

// Who a container is, as its operator knows it. Each field is empty where
// unknown, and holds only [A-Za-z0-9._-] (a name with other bytes is not
// used: names must read the same in logs, JSON and on a command line).
struct WorkloadIdentity {
  std::string pod_namespace;
  std::string pod;
  std::string container;  // Kubernetes container name, or podman's name
};

// What a container's annotations override of the config.
struct WorkloadOverrides {
  std::optional<std::string> tier;  // "auto", "fast" or "slow"
  std::optional<std::vector<std::string>> tiered_paths;    // normalised
  std::optional<std::vector<std::string>> gpu_data_paths;  // normalised
};

struct OciWorkload {
  std::map<std::string, std::string> annotations;
  // "root": {"path": ...}, as written (absolute, or relative to the bundle);
  // empty when absent or not a string.
  std::string root_path;
  WorkloadIdentity identity;
  WorkloadOverrides overrides;
  // One sentence per annotation ignored for a bad value: the container, the
  // key, what is wrong and the fix.
  std::vector<std::string> warnings;
};

// Parses config.json text (at most kMaxRuntimeFileBytes): its string
// "annotations", then identity and overrides from them. `container_id`
// names the container in warnings. An error only when the text is not a
// JSON object; bad annotations are warnings.
absl::StatusOr<OciWorkload> ParseOciConfig(absl::string_view json, absl::string_view container_id);

// Identity and overrides from annotations; warnings appended to `warnings`.
WorkloadIdentity IdentityFromAnnotations(const std::map<std::string, std::string>& annotations);
WorkloadOverrides OverridesFromAnnotations(const std::map<std::string, std::string>& annotations,
                                           absl::string_view shown_name, std::vector<std::string>* warnings);

// "namespace/pod/container" where all are known, the container name where
// only it is (podman), otherwise the first 12 characters of the id.
std::string DisplayName(const WorkloadIdentity& identity, absl::string_view container_id);

// podman keeps its container names beside the bundles of its storage:
// <graphroot>/overlay-containers/containers.json for a bundle
// <graphroot>/overlay-containers/<id>/userdata. That file's path, or nullopt
// when `bundle` has another shape.
std::optional<std::string> PodmanNamesFile(absl::string_view bundle, absl::string_view container_id);

// The first usable name of `container_id` in containers.json text, or "".
std::string PodmanNameOf(absl::string_view containers_json, absl::string_view container_id);

}  // namespace gputier

#endif  // GPUTIER_LOADER_RUNTIME_OCI_CONFIG_H_
