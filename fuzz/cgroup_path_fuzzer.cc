// Fuzzes the cgroup path -> container identity parser. Cgroup paths are
// named by whoever creates the cgroup (any container runtime, any user with
// a delegated subtree), so every byte string is possible.
//
// Input: the cgroup path, then optionally "\n" and runc container ids, one a
// line (the names found in runc's state directory).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "loader/cgroup/cgroup_path.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t newline = input.find('\n');
  const absl::string_view path = input.substr(0, newline);
  absl::flat_hash_set<std::string> runc_ids;
  if (newline != absl::string_view::npos) {
    for (absl::string_view id : absl::StrSplit(input.substr(newline + 1), '\n', absl::SkipEmpty())) {
      runc_ids.insert(std::string(id));
    }
  }
  const std::optional<gputier::ContainerIdentity> identity = gputier::IdentifyContainer(path, runc_ids);
  if (!identity) return 0;
  // Every identity names a container of a known runtime, by a component of
  // the path; a pod's QoS class is one of the three.
  if (identity->container_id.empty() || identity->container_id.find('/') != std::string::npos ||
      path.find(identity->container_id) == absl::string_view::npos) {
    std::abort();
  }
  static const absl::flat_hash_set<std::string> kRuntimes = {"containerd", "cri-o", "docker",
                                                             "podman", "runc", "cri"};
  if (!kRuntimes.contains(identity->runtime)) std::abort();
  if (!identity->qos.empty() && identity->qos != "guaranteed" && identity->qos != "burstable" &&
      identity->qos != "besteffort") {
    std::abort();
  }
  if (identity->qos.empty() != identity->pod_uid.empty()) std::abort();
  return 0;
}
