// Internals shared by the files that implement TierManager (tier_manager.cc
// and the files beside it that hold its cycle and its moves); nothing else
// includes this.
#ifndef GPUTIER_LOADER_TIER_TIER_MANAGER_INTERNAL_H_
#define GPUTIER_LOADER_TIER_TIER_MANAGER_INTERNAL_H_

#include "absl/time/time.h"

namespace gputier {
namespace tier_internal {

// The backoff after a failed step, recovery or partition free.
constexpr absl::Duration kErrorRetry = absl::Seconds(5);

// Milliseconds since `t0` (how long a move took).
inline double MsSince(absl::Time t0) { return absl::ToDoubleMilliseconds(absl::Now() - t0); }

}  // namespace tier_internal
}  // namespace gputier

#endif  // GPUTIER_LOADER_TIER_TIER_MANAGER_INTERNAL_H_
