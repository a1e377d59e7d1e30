// A promotion: one directory of a container from the slow tier to the fast
// one. Its partition is made (or the spare taken, or it is attached again),
// the directory's fast layer in it emptied, the container frozen, the slow
// overlay detached and [upper fast | lowers: slow upper, original] mounted
// in its place, the record saved, the container thawed. Opening and closing
// shared with the demotion are in step.cc.
#include <fcntl.h>

#include <cerrno>
#include <string>

#include "absl/strings/str_cat.h"
#include "loader/base/fd.h"
#include "loader/base/log.h"
#include "loader/config/container_path.h"
#include "loader/tier/fs/tier_mount.h"
#include "loader/tier/fs/tier_partition.h"
#include "loader/tier/fs/tier_writeback.h"
#include "loader/tier/tier_manager.h"
#include "loader/tier/tier_manager_internal.h"

namespace gputier {

absl::Status TierManager::Promote(TierRecord& record, const std::string& path) {
  const absl::Time t0 = absl::Now();
  Live& live = live_[record.container_id];
  absl::StatusOr<Found> found = LookUp(record, path);
  if (!found.ok()) return found.status();
  if (found->seen == Observed::kFast) return RecordTier(record, path, Tier::kFast);
  if (found->seen == Observed::kNone) {
    // The record says slow (else this is no promotion): its overlay first.
    if (absl::Status s = RestoreSlowBeforePromotion(record, path, *found); !s.ok()) return s;
  }
  absl::StatusOr<PartitionPaths> part = PlanPartition(options_.config.fast_root, record.key);
  if (!part.ok()) return part.status();
  absl::StatusOr<bool> mounted = PartitionMounted(*part);
  if (!mounted.ok()) return mounted.status();
  // One write records the intent: the partition about to exist, the step,
  // and the freeze about to happen (each is undone by recovery if need be).
  record.partition = true;
  if (absl::Status s = BeginStep(record, TierOp::kPromote, path); !s.ok()) return s;
  if (absl::Status s = PreparePartition(record, *part, *mounted, path); !s.ok()) return AbandonStep(record, s);
  absl::StatusOr<ScopedFreeze> freeze = Freeze(record);
  if (!freeze.ok()) return freeze.status();
  uint64_t fast_mount = 0;
  absl::Status result = SwapSlowForFast(*found, record, path, &fast_mount);
  if (result.ok()) {
    live.fast_mounts[path] = fast_mount;
    live.last_promotion_ms = tier_internal::MsSince(t0);
    ++live.promotions;
  }
  result = EndStep(record, path, Tier::kFast, *freeze, result);
  if (!result.ok()) {
    (void)FreePartitionIfUnused(record);
    return result;
  }
  LogInfo("tier: container %s %s -> fast in %.1f ms", Shown(record.container_id), path, live.last_promotion_ms);
  return absl::OkStatus();
}

absl::Status TierManager::RestoreSlowBeforePromotion(TierRecord& record, const std::string& path,
                                                     Found& found) {
  if (absl::Status s = RemountSlow(found.pid, record, path); !s.ok()) return s;
  absl::StatusOr<Observed> seen = Observe(found.pid, record, path, &found.mount_id);
  if (!seen.ok()) return seen.status();
  if (*seen != Observed::kSlow) {
    return absl::InternalError(absl::StrCat("container path '", path,
                                            "' shows no slow-tier overlay right after it was mounted; retrying"));
  }
  found.seen = *seen;
  return absl::OkStatus();
}

absl::Status TierManager::PreparePartition(const TierRecord& record, const PartitionPaths& part, bool mounted,
                                           const std::string& path) {
  if (!mounted) {
    absl::Status made = record.AnyFast() ? AttachPartition(part) : TakePartition(part);
    if (!made.ok()) return made;
  }
  // A fast layer left from before (folded into the slow one since, or never
  // mounted) would hide newer slow files: a promotion starts empty.
  Fd mnt(open(part.mount_point.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!mnt.valid()) return absl::ErrnoToStatus(errno, absl::StrCat("opening ", part.mount_point));
  return RemoveTree(mnt.get(), EscapeContainerPath(ContainerPath{path}));
}

absl::Status TierManager::SwapSlowForFast(const Found& found, const TierRecord& record, const std::string& path,
                                          uint64_t* fast_mount) {
  if (absl::Status s = UnmountTier(found.pid, ContainerPath{path}, found.mount_id); !s.ok()) return s;
  absl::Status result = MountFast(found.pid, record, path, fast_mount);
  if (!result.ok()) {
    // Put the slow overlay back: the container never saw the gap (frozen).
    if (absl::Status back = MountSlow(found.pid, record, path); !back.ok()) {
      LogError("tier: container %s: %s, and remounting the slow overlay failed too: %s",
               record.container_id, result.message(), back.message());
    }
  }
  return result;
}

}  // namespace gputier
