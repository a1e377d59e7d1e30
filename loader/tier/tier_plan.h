// Which tier each tiered directory of a container should be on, and which
// containers leave the fast tier when it fills. Pure (tests/tier_plan_test.cc).
//
//   verdict GPU          every managed path fast
//   verdict MIXED        gpu_data_paths fast, tiered_paths slow (claim 7)
//   CPU / UNKNOWN        every managed path slow
//   override fast|slow   every managed path on that tier, whatever the verdict
//
// The paths are the config's, or, for a container whose OCI annotations name
// them (gputier.io/tiered-paths, gputier.io/gpu-data-paths), those (PathsFor).
#ifndef GPUTIER_LOADER_TIER_TIER_PLAN_H_
#define GPUTIER_LOADER_TIER_TIER_PLAN_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "loader/config/config.h"
#include "policy/verdict.h"

namespace gputier {

enum class Tier { kSlow, kFast };
absl::string_view TierName(Tier tier);  // "slow", "fast"
absl::StatusOr<Tier> ParseTier(absl::string_view name);

// `gputierctl tier <container> fast|slow|auto`.
enum class TierOverride { kAuto, kFast, kSlow };
absl::string_view TierOverrideName(TierOverride o);
absl::StatusOr<TierOverride> ParseTierOverride(absl::string_view name);

// The directories tiered in one container, in two kinds.
struct ContainerPaths {
  std::vector<std::string> tiered_paths;
  std::vector<std::string> gpu_data_paths;  // fast for MIXED too
  bool operator==(const ContainerPaths& o) const {
    return tiered_paths == o.tiered_paths && gpu_data_paths == o.gpu_data_paths;
  }
};

// A container's paths: each list from its annotation where it has one (as
// parsed and validated by OverridesFromAnnotations), the config's
// otherwise. A config directory of the other kind that is, holds or lies
// inside an annotated one is dropped: the container's annotation describes
// its own layout, and one directory cannot carry two overlays.
ContainerPaths PathsFor(const TierConfig& config, const std::optional<std::vector<std::string>>& tiered,
                        const std::optional<std::vector<std::string>>& gpu_data);

// Every directory tiered: tiered_paths, then gpu_data_paths.
std::vector<std::string> ManagedPaths(const ContainerPaths& paths);
std::vector<std::string> ManagedPaths(const TierConfig& config);  // the config's

// The tier each managed path should be on (see the table above).
std::map<std::string, Tier> DesiredTiers(const ContainerPaths& paths, Verdict verdict,
                                         TierOverride override_tier);
std::map<std::string, Tier> DesiredTiers(const TierConfig& config, Verdict verdict,
                                         TierOverride override_tier);  // the config's paths

// Whether a new fast partition keeps the fast filesystem at or below the
// high watermark (`used` counts bytes in use on it now).
bool PromotionFits(uint64_t total, uint64_t used, const TierConfig& config);

struct FastHolder {
  std::string container_id;
  uint64_t last_active_ns = 0;  // the cgroup's last counted activity
  bool operator_pinned = false;  // `gputierctl tier ... fast`: demoted last
};

// When the fast filesystem is above the high watermark: the containers to
// demote, least recently active first (operator-pinned ones last), until the
// use projected after freeing their partitions is at or below the low
// watermark. Empty when at or below the high watermark.
std::vector<std::string> PickDemotions(uint64_t total, uint64_t used, const TierConfig& config,
                                       std::vector<FastHolder> holders);

// A step that waits on the container (a demotion while it holds files open
// on the fast overlay) is retried every kBusyRetry until it has waited
// `deadline` (tiers.demote_wait); after that the container stays where it
// is and the retry interval grows with the time waited past the deadline
// (so it doubles: 50 ms, 100 ms, 200 ms, ...), at most kBlockedRetryMax.
inline constexpr absl::Duration kBusyRetry = absl::Milliseconds(50);
inline constexpr absl::Duration kBlockedRetryMax = absl::Minutes(1);
absl::Duration BlockedStepRetry(absl::Duration waited, absl::Duration deadline);

}  // namespace gputier

#endif  // GPUTIER_LOADER_TIER_TIER_PLAN_H_
