// One tiered directory's two overlays, as TierManager's moves use them:
// where the slow and fast layers of a directory live (LayoutsOf), which of
// them is mounted in the container (Observe), mounting either
// (MountSlow/MountFast), and folding the fast upper layer into the slow one
// (FoldFastIntoSlow).
#include <sys/stat.h>

#include <cerrno>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "loader/config/container_path.h"
#include "loader/tier/fs/tier_mount.h"
#include "loader/tier/fs/tier_partition.h"
#include "loader/tier/fs/tier_writeback.h"
#include "loader/tier/tier_manager.h"

namespace gputier {
namespace {

// Mounts `layout` (over `extra_lowers`, then the original directory) at
// `path` in the mount namespace of `pid`.
absl::Status MountLayout(pid_t pid, const std::string& path, const TierLayout& layout,
                         std::vector<std::string> extra_lowers, uint64_t* mount_id) {
  TierMountRequest request;
  request.pid = pid;
  request.path = ContainerPath{path};
  request.layout = layout;
  request.extra_lowers = std::move(extra_lowers);
  absl::StatusOr<TierMount> mount = MountTier(request);
  if (mount.ok() && mount_id != nullptr) *mount_id = mount->mount_id;
  return mount.status();
}

}  // namespace

absl::StatusOr<TierManager::PathLayouts> TierManager::LayoutsOf(const TierRecord& record,
                                                                const std::string& path) const {
  const ContainerPath cpath{path};
  absl::StatusOr<TierLayout> slow = PlanTierLayout(options_.config.slow_root, record.key, cpath);
  absl::StatusOr<PartitionPaths> part = PlanPartition(options_.config.fast_root, record.key);
  if (!slow.ok()) return slow.status();
  if (!part.ok()) return part.status();
  PathLayouts out;
  out.slow = *std::move(slow);
  out.fast.dir = absl::StrCat(part->mount_point, "/", EscapeContainerPath(cpath));
  out.fast.upper = absl::StrCat(out.fast.dir, "/upper");
  out.fast.work = absl::StrCat(out.fast.dir, "/work");
  return out;
}

absl::StatusOr<TierManager::Observed> TierManager::Observe(pid_t pid, const TierRecord& record,
                                                           const std::string& path, uint64_t* mount_id) {
  ContainerPath cpath{path};
  absl::StatusOr<PathMount> m = InspectContainerPath(pid, cpath);
  if (!m.ok()) return m.status();
  if (mount_id != nullptr) *mount_id = m->mount_id;
  if (!m->is_mount_root || m->fstype != "overlay") return Observed::kNone;
  absl::StatusOr<PathLayouts> layouts = LayoutsOf(record, path);
  if (!layouts.ok()) return layouts.status();
  if (m->upperdir == layouts->slow.upper) return Observed::kSlow;
  if (m->upperdir == layouts->fast.upper) return Observed::kFast;
  return absl::FailedPreconditionError(absl::StrCat(
      "container path '", path, "' is already an overlay not made by gputier (upperdir ", m->upperdir,
      "); it is left alone"));
}

absl::Status TierManager::MountSlow(pid_t pid, const TierRecord& record, const std::string& path) {
  absl::StatusOr<PathLayouts> layouts = LayoutsOf(record, path);
  if (!layouts.ok()) return layouts.status();
  return MountLayout(pid, path, layouts->slow, {}, nullptr);
}

absl::Status TierManager::MountFast(pid_t pid, const TierRecord& record, const std::string& path,
                                    uint64_t* mount_id) {
  absl::StatusOr<PathLayouts> layouts = LayoutsOf(record, path);
  if (!layouts.ok()) return layouts.status();
  // Inside the agent's own partition mount: no container controls this path.
  if (mkdir(layouts->fast.dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return absl::ErrnoToStatus(errno, absl::StrCat("creating ", layouts->fast.dir));
  }
  return MountLayout(pid, path, layouts->fast, {layouts->slow.upper}, mount_id);
}

absl::Status TierManager::FoldFastIntoSlow(const TierRecord& record, const std::string& path,
                                           uint64_t* bytes) {
  absl::StatusOr<PathLayouts> layouts = LayoutsOf(record, path);
  if (!layouts.ok()) return layouts.status();
  // The fast layers are only reachable while the partition is mounted: a
  // fold with it unmounted would find nothing and lose what it holds.
  if (record.partition) {
    absl::StatusOr<PartitionPaths> part = PlanPartition(options_.config.fast_root, record.key);
    if (!part.ok()) return part.status();
    absl::StatusOr<bool> mounted = PartitionMounted(*part);
    if (!mounted.ok()) return mounted.status();
    struct stat image;
    if (!*mounted && lstat(part->image.c_str(), &image) == 0) {
      if (absl::Status s = AttachPartition(*part); !s.ok()) return s;
    }
  }
  struct stat st;
  if (lstat(layouts->fast.upper.c_str(), &st) != 0 && errno == ENOENT) return absl::OkStatus();  // nothing there
  absl::StatusOr<WriteBackStats> stats = MergeUpperLayer(layouts->fast.upper, layouts->slow.upper);
  if (!stats.ok()) return stats.status();
  if (bytes != nullptr) *bytes += stats->bytes;
  return absl::OkStatus();
}

}  // namespace gputier
