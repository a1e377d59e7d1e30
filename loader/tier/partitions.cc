// Freeing a fast partition, and the spare: a partition no directory uses
// any more (or a fast layer that was folded back) is discarded
// (FreePartitionIfUnused, DiscardFastLayer); a partition is set aside in one
// rename and released on the freeing thread (FreePartition, FreerLoop); one
// empty spare partition is kept ready for the next promotion (KeepSpare,
// TakePartition) and released at stop.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "loader/base/fd.h"
#include "loader/base/log.h"
#include "loader/tier/tier_manager.h"
#include "loader/tier/tier_manager_internal.h"
#include "loader/tier/fs/tier_partition.h"
#include "loader/config/container_path.h"
#include "loader/tier/fs/tier_writeback.h"

namespace gputier {
namespace {

using tier_internal::kErrorRetry;

// The directory of the spare partition under the fast root: a valid
// directory name that no container runtime gives a container (ids never
// start with '.'; Adopt refuses such ids).
constexpr char kSpareId[] = ".gputier-spare";

}  // namespace

absl::StatusOr<PartitionPaths> TierManager::SparePaths() const {
  return PlanPartition(options_.config.fast_root, kSpareId);
}

bool TierManager::SpareReady() {
  absl::StatusOr<PartitionPaths> spare = SparePaths();
  if (!spare.ok()) return false;
  absl::StatusOr<bool> mounted = PartitionMounted(*spare);
  return mounted.ok() && *mounted;
}

absl::Status TierManager::TakePartition(const PartitionPaths& part) {
  absl::StatusOr<PartitionPaths> spare = SparePaths();
  if (spare.ok() && SpareReady()) {
    // The spare is a whole, empty partition: renaming its directory (the
    // mount inside moves with it) hands it over in one step.
    if (rename(spare->dir.c_str(), part.dir.c_str()) == 0) {
      absl::StatusOr<bool> mounted = PartitionMounted(part);
      if (mounted.ok() && *mounted) return absl::OkStatus();
    } else {
      LogWarning("tier: taking the spare partition failed (%s); making one", strerror(errno));
    }
  }
  return CreatePartition(part, options_.config.partition_size);
}

void TierManager::KeepSpare(bool wanted) {
  absl::StatusOr<PartitionPaths> spare = SparePaths();
  if (!spare.ok()) return;
  const bool ready = SpareReady();
  if (!wanted) {
    if (ready || access(spare->dir.c_str(), F_OK) == 0) {
      if (absl::Status s = FreePartition(*spare); !s.ok()) {
        LogWarning("tier: releasing the spare fast partition: %s", s.message());
      }
    }
    return;
  }
  if (ready) return;
  absl::StatusOr<SpaceUsage> fs = FilesystemUsage(options_.config.fast_root);
  if (!fs.ok() || !PromotionFits(fs->total_bytes, fs->used_bytes, options_.config)) return;
  if (absl::Status s = CreatePartition(*spare, options_.config.partition_size); !s.ok()) {
    LogWarning("tier: making the spare fast partition: %s", s.message());
  }
}

void TierManager::ReleaseSpareAtStop() {
  absl::StatusOr<PartitionPaths> spare = SparePaths();
  if (!spare.ok() || access(spare->dir.c_str(), F_OK) != 0) return;
  PartitionRelease what;
  if (absl::Status s = ReleasePartition(*spare, &what); !s.ok()) {
    LogWarning("tier: releasing the spare fast partition at stop: %s; the next gputierd reuses or frees it "
               "(gputierctl uninstall removes it too)",
               s.message());
    return;
  }
  LogInfo("tier: released the spare fast partition %s%s", spare->dir,
          what.loop_index >= 0 ? absl::StrCat(" (/dev/loop", what.loop_index, " freed)") : "");
}

absl::Status TierManager::FreePartitionIfUnused(TierRecord& record) {
  if (record.AnyFast() || record.op != TierOp::kNone || !record.partition) return absl::OkStatus();
  absl::StatusOr<PartitionPaths> part = PlanPartition(options_.config.fast_root, record.key);
  if (!part.ok()) return part.status();
  if (absl::Status s = FreePartition(*part); !s.ok()) return s;
  record.partition = false;
  return Save(record);
}

absl::Status TierManager::DiscardFastLayer(TierRecord& record, const std::string& path) {
  if (!record.AnyFast() && record.op == TierOp::kNone) return FreePartitionIfUnused(record);
  // The partition stays for the other fast directories: only this layer
  // goes (best effort: a promotion clears it anyway before mounting it).
  absl::StatusOr<PartitionPaths> part = PlanPartition(options_.config.fast_root, record.key);
  if (!part.ok()) return absl::OkStatus();
  Fd mnt(open(part->mount_point.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (mnt.valid()) (void)RemoveTree(mnt.get(), EscapeContainerPath(ContainerPath{path}));
  return absl::OkStatus();
}

absl::Status TierManager::FreePartition(const PartitionPaths& part) {
  absl::StatusOr<std::optional<AsidePartition>> aside = SetPartitionAside(part);
  if (!aside.ok()) {
    LogDebug("tier: %s is released in place: %s", part.dir, aside.status().message());
    return ReleasePartition(part);
  }
  if (!aside->has_value()) return absl::OkStatus();  // nothing there
  {
    std::lock_guard<std::mutex> lock(free_mu_);
    freeing_.push_back({**std::move(aside)});
  }
  free_wake_.notify_all();
  return absl::OkStatus();
}

uint64_t TierManager::FreeingBytes() {
  std::lock_guard<std::mutex> lock(free_mu_);
  uint64_t bytes = 0;
  for (const Freeing& f : freeing_) {
    if (f.error.empty()) bytes += f.part.image_bytes;
  }
  return bytes;
}

void TierManager::FreerLoop() {
  std::unique_lock<std::mutex> lock(free_mu_);
  while (true) {
    // The first entry that is due; at shutdown each gets one more try.
    auto due = freeing_.end();
    absl::Time next = absl::InfiniteFuture();
    for (auto it = freeing_.begin(); it != freeing_.end(); ++it) {
      if (free_stop_ ? !it->last_try : it->retry_at <= absl::Now()) {
        due = it;
        break;
      }
      next = std::min(next, it->retry_at);
    }
    if (due == freeing_.end()) {
      if (free_stop_) break;
      if (next == absl::InfiniteFuture()) {
        free_wake_.wait(lock);
      } else {
        free_wake_.wait_for(lock, absl::ToChronoMilliseconds(next - absl::Now() + absl::Milliseconds(1)));
      }
      continue;
    }
    due->last_try = free_stop_;
    const PartitionPaths paths = due->part.paths;
    lock.unlock();  // only this thread removes entries: `due` stays valid
    absl::Status s = ReleasePartition(paths);
    if (s.ok() && access(paths.dir.c_str(), F_OK) == 0) {
      s = absl::FailedPreconditionError(absl::StrCat(
          "'", paths.dir, "' was released but is not empty; remove what was put there by hand"));
    }
    lock.lock();
    if (s.ok()) {
      if (!due->error.empty()) LogInfo("tier: freed %s after all", paths.dir);
      freeing_.erase(due);
      continue;
    }
    if (std::string(s.message()) != due->error) {
      LogWarning("tier: freeing the fast partition set aside at %s: %s; retrying every %s", paths.dir,
                 s.message(), absl::FormatDuration(kErrorRetry));
    }
    due->error = std::string(s.message());
    due->retry_at = absl::Now() + kErrorRetry;
  }
  for (const Freeing& f : freeing_) {
    LogWarning("tier: %s is left set aside (%s); the next gputierd frees it", f.part.paths.dir, f.error);
  }
}

}  // namespace gputier
