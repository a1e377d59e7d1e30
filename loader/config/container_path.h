// A container path, checked as a string (pure; no syscalls).
//
// A container path ("/data") names a directory inside a container's root
// filesystem. Configuration, overrides and tier records carry such paths;
// each is validated and normalised here before anything opens it
// (loader/tier/fs/tier_path.h opens it safely inside the container's root).
#ifndef GPUTIER_LOADER_CONFIG_CONTAINER_PATH_H_
#define GPUTIER_LOADER_CONFIG_CONTAINER_PATH_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace gputier {

// A container path after validation: absolute, normalised ("/a/b"), never "/".
struct ContainerPath {
  std::string path;
};

// Validates and normalises `path` (pure; no syscalls). Refuses relative
// paths, "..", NUL bytes, "/" itself and paths longer than PATH_MAX.
absl::StatusOr<ContainerPath> ParseContainerPath(absl::string_view path);

// The directory name a container path gets under a tier root: the path
// without its leading "/", with "%" written "%25" and "/" written "%2F", so
// that different paths never share a directory ("/a/b" -> "a%2Fb").
std::string EscapeContainerPath(const ContainerPath& path);

// Refuses a container id that cannot be a single directory name (empty, ".",
// "..", longer than 128 bytes, or with bytes outside [A-Za-z0-9_.-]).
absl::Status ValidateContainerId(absl::string_view id);

// The name of a container's tier directories (slow layer, fast partition):
// "<container id>-<inode of its cgroup directory>", so that a later
// container that reuses an id (the cgroup is then a new one, with another
// inode) never finds an earlier one's layers. At most 128 + 1 + 20 bytes,
// well within a directory name's 255.
std::string TierKeyFor(absl::string_view container_id, uint64_t cgroup_inode);
inline constexpr size_t kMaxTierKeyBytes = 160;

// Refuses a tier directory name that cannot be a single directory name
// (as ValidateContainerId, up to kMaxTierKeyBytes).
absl::Status ValidateTierKey(absl::string_view key);

}  // namespace gputier

#endif  // GPUTIER_LOADER_CONFIG_CONTAINER_PATH_H_
