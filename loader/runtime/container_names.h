// What each container is called (namespace/pod/container or podman's name),
// learned once per cgroup for the classifier (OS adapter over a pure cache).
//
// A name exists only for a container its runtime confirms
// (ConfirmWithRuntime) and is read from its config.json annotations
// (ReadWorkload): a cgroup named like a container proves nothing, and a
// plain cgroup keeps its short id or path. The answer is kept per cgroup, so
// config.json is read once per container, not once per tick; a container
// its runtime does not know yet (it is still starting) is asked about again
// after a back-off (1 s, doubling to 1 min). At most `max_entries` cgroups
// are kept, the oldest forgotten first (it is then looked up again if it is
// still asked about).
#ifndef GPUTIER_LOADER_RUNTIME_CONTAINER_NAMES_H_
#define GPUTIER_LOADER_RUNTIME_CONTAINER_NAMES_H_

#include <cstddef>
#include <deque>
#include <functional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "loader/config/config.h"

namespace gputier {

// The name of container `id` (runtime `runtime`, as its cgroup says) in
// `cgroup`: confirmed with its runtime, then its config.json. "" when the
// runtime confirms it but it has no name; NotFound/FailedPrecondition as
// ConfirmWithRuntime; an unreadable config.json gives "".
absl::StatusOr<std::string> LookUpContainerName(const TierConfig& config, const std::string& runtime,
                                                const std::string& id, const std::string& cgroup);

class ContainerNameCache {
 public:
  using Lookup = std::function<absl::StatusOr<std::string>(const std::string& runtime, const std::string& id,
                                                           const std::string& cgroup)>;
  static constexpr size_t kDefaultMaxEntries = 4096;

  explicit ContainerNameCache(Lookup lookup, size_t max_entries = kDefaultMaxEntries);

  // The container's name, "" while unknown (not confirmed yet, or no name).
  std::string NameOf(const std::string& runtime, const std::string& id, const std::string& cgroup,
                     absl::Time now);

  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    std::string id;  // the answer holds for this id only
    std::string name;
    bool settled = false;  // confirmed: never asked again
    absl::Time retry_at = absl::InfinitePast();
    absl::Duration backoff = absl::Seconds(1);
  };
  Lookup lookup_;
  size_t max_entries_;
  absl::flat_hash_map<std::string, Entry> entries_;  // by cgroup path
  std::deque<std::string> order_;                    // cgroup paths, oldest first
};

}  // namespace gputier

#endif  // GPUTIER_LOADER_RUNTIME_CONTAINER_NAMES_H_
