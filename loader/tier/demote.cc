// A demotion: one directory of a container from the fast tier back to the
// slow one. The container is frozen; while any of its processes holds
// anything open on the fast overlay it is thawed and the demotion retried
// later; else the fast overlay is detached, its upper layer folded into the
// slow upper (MergeUpperLayer), the slow overlay mounted, the record saved,
// the container thawed, and the fast layer (or the whole partition with the
// last fast directory) freed. The same move folds back the fast layer of a
// directory whose overlay was unmounted inside the container. Opening and
// closing shared with the promotion are in step.cc.
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "loader/base/log.h"
#include "loader/base/mount_refs.h"
#include "loader/base/read_file.h"
#include "loader/cgroup/cgroup_freezer.h"
#include "loader/config/container_path.h"
#include "loader/tier/fs/tier_mount.h"
#include "loader/tier/tier_manager.h"
#include "loader/tier/tier_manager_internal.h"

namespace gputier {
namespace {

std::string RefsText(const std::vector<MountReference>& refs) {
  std::vector<std::string> parts;
  for (size_t i = 0; i < refs.size() && i < 3; ++i) {
    parts.push_back(absl::StrCat("pid ", refs[i].pid, " ", refs[i].kind, " ", refs[i].detail));
  }
  if (refs.size() > 3) parts.push_back(absl::StrCat(refs.size() - 3, " more"));
  return absl::StrJoin(parts, "; ");
}

// Whether the mount `mount_id` is attached in the mount namespace of `pid`.
bool MountListed(pid_t pid, uint64_t mount_id) {
  absl::StatusOr<std::string> text = ReadFile(absl::StrCat("/proc/", pid, "/mountinfo"));
  if (!text.ok()) return false;
  absl::StatusOr<std::vector<MountinfoEntry>> mounts = ParseMountinfo(*text);
  if (!mounts.ok()) return false;
  for (const MountinfoEntry& m : *mounts) {
    if (m.mount_id == mount_id) return true;
  }
  return false;
}

}  // namespace

absl::Status TierManager::Demote(TierRecord& record, const std::string& path) {
  const absl::Time t0 = absl::Now();
  Live& live = live_[record.container_id];
  absl::StatusOr<Found> found = LookUp(record, path);
  if (!found.ok()) return found.status();
  if (found->seen == Observed::kSlow) return RecordTier(record, path, Tier::kSlow);
  // No overlay at all: the fast one was unmounted while gputierd ran. Its
  // layer is folded back all the same.
  const bool lost = found->seen == Observed::kNone;
  if (lost) found->mount_id = ReportLostFastOverlay(record, live, found->pid, path);
  if (absl::Status s = BeginStep(record, TierOp::kDemote, path); !s.ok()) return s;
  absl::StatusOr<ScopedFreeze> freeze = Freeze(record);
  if (!freeze.ok()) return freeze.status();
  absl::Status result = CheckFastOverlayUnused(record, found->mount_id, lost, path);
  if (result.ok()) result = SwapFastForSlow(*found, lost, record, live, path);
  if (result.ok()) {
    live.fast_mounts.erase(path);
    live.lost_reported.erase(path);
    live.last_demotion_ms = tier_internal::MsSince(t0);
    ++live.demotions;
    live.writeback_bytes += live.last_writeback_bytes;
  }
  result = EndStep(record, path, Tier::kSlow, *freeze, result);
  if (!result.ok()) return result;
  if (lost) {
    LogInfo("tier: container %s %s is on the slow tier again (%d bytes written back from its lost fast overlay)",
            Shown(record.container_id), path, live.last_writeback_bytes);
  } else {
    LogInfo("tier: container %s %s -> slow in %.1f ms (%d bytes written back)", Shown(record.container_id), path,
            live.last_demotion_ms, live.last_writeback_bytes);
  }
  return DiscardFastLayer(record, path);
}

uint64_t TierManager::ReportLostFastOverlay(const TierRecord& record, Live& live, pid_t pid,
                                            const std::string& path) {
  // References into a detached overlay can only be looked for by the mount
  // id it had (unless that id is in use again).
  auto known = live.fast_mounts.find(path);
  const uint64_t mount_id =
      known != live.fast_mounts.end() && !MountListed(pid, known->second) ? known->second : 0;
  if (live.lost_reported.insert(path).second) {
    LogWarning("tier: container %s: %s lost its fast-tier overlay while gputierd ran (unmounted inside the "
               "container?); folding its fast layer back into the slow one and mounting the slow overlay "
               "again",
               record.container_id, path);
  }
  return mount_id;
}

absl::Status TierManager::CheckFastOverlayUnused(const TierRecord& record, uint64_t fast_mount, bool lost,
                                                 const std::string& path) {
  if (fast_mount == 0) return absl::OkStatus();
  absl::StatusOr<std::vector<pid_t>> procs = CgroupProcs(CgroupDir(record));
  if (!procs.ok()) return procs.status();
  absl::StatusOr<std::vector<MountReference>> refs = FindMountReferences(*procs, fast_mount);
  if (!refs.ok()) return refs.status();
  if (refs->empty()) return absl::OkStatus();
  return absl::UnavailableError(absl::StrCat(
      lost ? "folding back the lost fast overlay of '" : "demotion of '", path, "' waits: the container holds ",
      refs->size(), " reference(s) into ", lost ? "that overlay, detached but alive" : "the fast overlay", " (",
      RefsText(*refs), "); retrying until they are closed"));
}

absl::Status TierManager::SwapFastForSlow(const Found& found, bool lost, const TierRecord& record, Live& live,
                                          const std::string& path) {
  if (!lost) {
    if (absl::Status s = UnmountTier(found.pid, ContainerPath{path}, found.mount_id); !s.ok()) return s;
  }
  live.last_writeback_bytes = 0;
  absl::Status result = FoldFastIntoSlow(record, path, &live.last_writeback_bytes);
  if (result.ok()) result = MountSlow(found.pid, record, path);
  if (!result.ok() && !lost) {
    // The fast upper is untouched by a write-back: mounting it again shows
    // exactly what the container saw.
    if (absl::Status back = MountFast(found.pid, record, path); !back.ok()) {
      LogError("tier: container %s: %s, and remounting the fast overlay failed too: %s",
               record.container_id, result.message(), back.message());
    }
  }
  return result;
}

}  // namespace gputier
