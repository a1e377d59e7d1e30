// Recovery: on start (and after a failed thaw), each record is checked
// against what is mounted in its container and a step left in flight is
// finished or rolled back (Recover); while running, each directory is
// checked every second to still carry its overlay (CheckOverlays,
// RemountSlow); and a cgroup gputierd froze is thawed (ThawRecorded).
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "loader/cgroup/cgroup_freezer.h"
#include "loader/base/log.h"
#include "loader/tier/tier_manager.h"

namespace gputier {

absl::Status TierManager::Recover(TierRecord& record) {
  Live& live = live_[record.container_id];
  absl::StatusOr<pid_t> pid = PidOf(record);
  if (!pid.ok()) return absl::OkStatus();  // gone: the next cycle finalizes it
  std::vector<std::string> folded;  // fast layers now in the slow ones: never to be mounted again
  if (record.op != TierOp::kNone) {
    if (absl::Status s = FinishInterruptedStep(*pid, record, folded); !s.ok()) return s;
  }
  // Every recorded directory must carry the overlay its record names.
  for (auto& [path, tier] : record.paths) {
    uint64_t mount_id = 0;
    absl::StatusOr<Observed> seen = Observe(*pid, record, path, &mount_id);
    if (!seen.ok()) return seen.status();
    if (*seen != Observed::kNone) {
      tier = *seen == Observed::kFast ? Tier::kFast : Tier::kSlow;
      if (tier == Tier::kFast) live.fast_mounts[path] = mount_id;
      continue;
    }
    if (tier == Tier::kFast) {
      if (absl::Status s = FoldFastIntoSlow(record, path, nullptr); !s.ok()) return s;
      folded.push_back(path);
    }
    if (absl::Status s = MountSlow(*pid, record, path); !s.ok()) return s;
    tier = Tier::kSlow;
  }
  if (absl::Status s = Save(record); !s.ok()) return s;
  if (record.froze) {
    LogInfo("tier: container %s: thawing it (frozen by gputierd mid-step)", Shown(record.container_id));
    if (absl::Status s = ThawRecorded(record); !s.ok()) return s;
  }
  for (const std::string& path : folded) {
    if (absl::Status s = DiscardFastLayer(record, path); !s.ok()) return s;
  }
  return FreePartitionIfUnused(record);
}

absl::Status TierManager::FinishInterruptedStep(pid_t pid, TierRecord& record, std::vector<std::string>& folded) {
  const std::string path = record.op_path;
  absl::StatusOr<Observed> seen = Observe(pid, record, path, nullptr);
  if (!seen.ok()) return seen.status();
  LogInfo("tier: container %s: finishing a %s of %s interrupted by a restart (found %s)", Shown(record.container_id),
          TierOpName(record.op), path,
          *seen == Observed::kFast ? "the fast overlay" : *seen == Observed::kSlow ? "the slow overlay" : "no overlay");
  if (record.op == TierOp::kPromote) {
    if (*seen == Observed::kFast) record.paths[path] = Tier::kFast;
    if (*seen == Observed::kNone) {
      if (absl::Status s = MountSlow(pid, record, path); !s.ok()) return s;
      record.paths[path] = Tier::kSlow;
    }
  } else {
    if (*seen == Observed::kNone) {
      if (absl::Status s = FoldFastIntoSlow(record, path, nullptr); !s.ok()) return s;
      if (absl::Status s = MountSlow(pid, record, path); !s.ok()) return s;
    }
    if (*seen != Observed::kFast) {
      record.paths[path] = Tier::kSlow;
      folded.push_back(path);
    }
  }
  record.op = TierOp::kNone;
  record.op_path.clear();
  return Save(record);
}

absl::Status TierManager::CheckOverlays(TierRecord& record, Live& live) {
  absl::StatusOr<pid_t> pid = PidOf(record);
  if (!pid.ok()) return absl::OkStatus();  // gone: the next cycle finalizes it
  std::vector<std::string> paths;
  for (const auto& [path, tier] : record.paths) paths.push_back(path);
  for (const std::string& path : paths) {
    uint64_t mount_id = 0;
    absl::StatusOr<Observed> seen = Observe(*pid, record, path, &mount_id);
    if (!seen.ok()) continue;  // the step that needs this directory reports it
    if (*seen == Observed::kFast) live.fast_mounts[path] = mount_id;
    if (*seen != Observed::kNone) continue;
    absl::Status s = record.paths[path] == Tier::kFast ? Demote(record, path) : RemountSlow(*pid, record, path);
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status TierManager::RemountSlow(pid_t pid, const TierRecord& record, const std::string& path) {
  Live& live = live_[record.container_id];
  if (live.lost_reported.insert(path).second) {
    LogWarning("tier: container %s: %s lost its slow-tier overlay while gputierd ran (unmounted inside the "
               "container?); mounting it again (what was written to the directory meanwhile stays in it, "
               "under the overlay)",
               record.container_id, path);
  }
  if (absl::Status s = MountSlow(pid, record, path); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("mounting the lost slow-tier overlay of '", path,
                                               "' again: ", s.message()));
  }
  live.lost_reported.erase(path);
  LogInfo("tier: container %s %s is on the slow tier again", Shown(record.container_id), path);
  return absl::OkStatus();
}

absl::Status TierManager::ThawRecorded(TierRecord& record) {
  if (absl::Status s = ThawCgroup(CgroupDir(record)); !s.ok()) return s;
  record.froze = false;
  return Save(record);
}

}  // namespace gputier
