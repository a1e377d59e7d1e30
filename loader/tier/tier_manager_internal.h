// Internals shared by the files that implement TierManager (tier_manager.cc
// and the files beside it that hold its cycle and its moves); nothing else
// includes this.
#ifndef GPUTIER_LOADER_TIER_TIER_MANAGER_INTERNAL_H_
#define GPUTIER_LOADER_TIER_TIER_MANAGER_INTERNAL_H_

#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "absl/time/time.h"

namespace gputier {
namespace tier_internal {

// The backoff after a failed step, recovery or partition free.
constexpr absl::Duration kErrorRetry = absl::Seconds(5);

// Milliseconds since `t0` (how long a move took).
inline double MsSince(absl::Time t0) { return absl::ToDoubleMilliseconds(absl::Now() - t0); }

// The host's view a container's process must have left: the mount
// namespace and root of pid 1 and of gputierd itself (pid 1's may be
// unreadable; gputierd's own namespace always is, unless /proc is hidden).
struct HostView {
  std::vector<uint64_t> mnt_ns;
  std::vector<std::pair<dev_t, ino_t>> roots;
  bool own_mnt_ns_seen = false;
};
HostView HostViewNow();

// Whether the mount namespace `mnt_ns_ino` is one of the host's.
bool InHostMountNs(uint64_t mnt_ns_ino, const HostView& host);
// Whether `pid`'s root is one of the host's; nullopt when it cannot be read
// (the process is gone or hidden).
std::optional<bool> SameRootAsHost(pid_t pid, const HostView& host);
// Whether `pid` (whose mount namespace is `mnt_ns`) still has the host's
// mount namespace or root; a process whose root cannot be read counts as
// the host's (never taken for a container).
bool SharesHostView(pid_t pid, const struct stat& mnt_ns, const HostView& host);

}  // namespace tier_internal
}  // namespace gputier

#endif  // GPUTIER_LOADER_TIER_TIER_MANAGER_INTERNAL_H_
