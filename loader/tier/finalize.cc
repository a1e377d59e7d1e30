// The exit of a container: when none of its processes is left, every fast
// upper layer is folded into its slow one, the partition freed, a cgroup
// gputierd froze thawed, the slow layer moved into quarantine
// (<slow_root>/.exited/, exited.cc) and the record dropped.
#include <sys/stat.h>

#include <string>

#include "loader/base/log.h"
#include "loader/tier/fs/tier_partition.h"
#include "loader/tier/tier_manager.h"

namespace gputier {

absl::Status TierManager::Finalize(TierRecord& record) {
  absl::StatusOr<PartitionPaths> part = PlanPartition(options_.config.fast_root, record.key);
  if (!part.ok()) return part.status();
  uint64_t bytes = 0;
  if (record.partition) {
    absl::StatusOr<bool> mounted = PartitionMounted(*part);
    if (!mounted.ok()) return mounted.status();
    struct stat st;
    const bool image = lstat(part->image.c_str(), &st) == 0;
    if (!*mounted && image) {
      if (absl::Status s = AttachPartition(*part); !s.ok()) return s;
      mounted = true;
    }
    if (*mounted) {
      for (const auto& [path, tier] : record.paths) {
        if (absl::Status s = FoldFastIntoSlow(record, path, &bytes); !s.ok()) return s;
      }
    }
    if (absl::Status s = FreePartition(*part); !s.ok()) return s;
  }
  if (record.froze) {
    // Its processes are gone or in another mount namespace; the cgroup may
    // not be (a missing cgroup needs no thaw). Retried until it works.
    if (absl::Status s = ThawRecorded(record); !s.ok()) return s;
  }
  LogInfo("tier: container %s is gone: %d bytes written back from the fast tier into %s/%s", record.container_id,
          bytes, options_.config.slow_root, record.key);
  // Out of reach of any later container, kept tiers.exited_retention for an
  // operator, then removed (exited.cc). Idempotent: a retry finds it moved.
  if (absl::Status s = QuarantineSlowLayer(record); !s.ok()) return s;
  if (absl::Status s = store_.Remove(record.container_id); !s.ok()) return s;
  return absl::OkStatus();
}

}  // namespace gputier
