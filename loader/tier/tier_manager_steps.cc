// TierManager's steps: converging a container on its desired tiers
// (Converge), promoting a directory to the fast tier, demoting it (or folding
// back a fast layer whose overlay was lost), and writing a gone container's
// fast data back (Finalize); with the overlay helpers they share (LayoutsOf,
// Observe, MountSlow/MountFast, FoldFastIntoSlow, Thaw).
#include <fcntl.h>
#include <sys/stat.h>

#include <cerrno>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "loader/cgroup/cgroup_freezer.h"
#include "loader/base/fd.h"
#include "loader/base/log.h"
#include "loader/base/mount_refs.h"
#include "loader/base/read_file.h"
#include "loader/tier/tier_manager.h"
#include "loader/tier/fs/tier_mount.h"
#include "loader/tier/fs/tier_partition.h"
#include "loader/config/container_path.h"
#include "loader/tier/fs/tier_writeback.h"

namespace gputier {
namespace {

double MsSince(absl::Time t0) { return absl::ToDoubleMilliseconds(absl::Now() - t0); }

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

absl::StatusOr<TierManager::PathLayouts> TierManager::LayoutsOf(const TierRecord& record,
                                                                const std::string& path) const {
  const ContainerPath cpath{path};
  absl::StatusOr<TierLayout> slow = PlanTierLayout(options_.config.slow_root, record.container_id, cpath);
  absl::StatusOr<PartitionPaths> part = PlanPartition(options_.config.fast_root, record.container_id);
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
  TierMountRequest request;
  request.pid = pid;
  request.path = ContainerPath{path};
  request.layout = layouts->slow;
  absl::StatusOr<TierMount> mount = MountTier(request);
  return mount.status();
}

absl::Status TierManager::MountFast(pid_t pid, const TierRecord& record, const std::string& path,
                                    uint64_t* mount_id) {
  absl::StatusOr<PathLayouts> layouts = LayoutsOf(record, path);
  if (!layouts.ok()) return layouts.status();
  TierMountRequest request;
  request.pid = pid;
  request.path = ContainerPath{path};
  request.layout = layouts->fast;
  request.extra_lowers = {layouts->slow.upper};
  // Inside the agent's own partition mount: no container controls this path.
  if (mkdir(request.layout.dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return absl::ErrnoToStatus(errno, absl::StrCat("creating ", request.layout.dir));
  }
  absl::StatusOr<TierMount> mount = MountTier(request);
  if (mount.ok() && mount_id != nullptr) *mount_id = mount->mount_id;
  return mount.status();
}

absl::Status TierManager::FoldFastIntoSlow(const TierRecord& record, const std::string& path,
                                           uint64_t* bytes) {
  absl::StatusOr<PathLayouts> layouts = LayoutsOf(record, path);
  if (!layouts.ok()) return layouts.status();
  // The fast layers are only reachable while the partition is mounted: a
  // fold with it unmounted would find nothing and lose what it holds.
  if (record.partition) {
    absl::StatusOr<PartitionPaths> part = PlanPartition(options_.config.fast_root, record.container_id);
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

absl::Status TierManager::Thaw(TierRecord& record, ScopedFreeze& freeze) {
  if (absl::Status s = freeze.Thaw(); !s.ok()) return s;
  record.froze = false;
  return Save(record);
}

absl::Status TierManager::Converge(TierRecord& record, Live& live,
                                   const std::map<std::string, Tier>& desired, bool may_promote) {
  for (const auto& [path, want] : desired) {
    if (!record.paths.count(path)) {
      absl::StatusOr<pid_t> pid = PidOf(record);
      if (!pid.ok()) return pid.status();
      if (absl::Status s = MountSlow(*pid, record, path); !s.ok()) return s;
      record.paths[path] = Tier::kSlow;
      if (absl::Status s = Save(record); !s.ok()) return s;
      LogInfo("tier: container %s %s is on the slow tier", record.container_id, path);
    }
    if (record.paths[path] == want) continue;
    absl::Status s;
    if (want == Tier::kFast) {
      if (!may_promote) {
        return absl::ResourceExhaustedError(absl::StrCat(
            "promotion of '", path, "' refused: a new ", options_.config.partition_size >> 20,
            " MiB partition would take the fast tier past its high watermark (",
            options_.config.high_watermark * 100, "%); it stays on the slow tier"));
      }
      s = Promote(record, path);
    } else {
      s = Demote(record, path);
    }
    RefreshBytes(record, live, /*force=*/true);
    if (!s.ok()) return s;
  }
  // A partition whose freeing failed earlier (it stays recorded) is freed now.
  if (absl::Status s = FreePartitionIfUnused(record); !s.ok()) return s;
  live.last_error.clear();
  return absl::OkStatus();
}

absl::Status TierManager::Promote(TierRecord& record, const std::string& path) {
  const absl::Time t0 = absl::Now();
  Live& live = live_[record.container_id];
  absl::StatusOr<pid_t> pid = PidOf(record);
  if (!pid.ok()) return pid.status();
  uint64_t slow_mount = 0;
  absl::StatusOr<Observed> seen = Observe(*pid, record, path, &slow_mount);
  if (!seen.ok()) return seen.status();
  if (*seen == Observed::kFast) {
    record.paths[path] = Tier::kFast;
    return Save(record);
  }
  if (*seen == Observed::kNone) {
    // The record says slow (else this is no promotion): its overlay first.
    if (absl::Status s = RemountSlow(*pid, record, path); !s.ok()) return s;
    seen = Observe(*pid, record, path, &slow_mount);
    if (!seen.ok()) return seen.status();
    if (*seen != Observed::kSlow) {
      return absl::InternalError(absl::StrCat("container path '", path,
                                              "' shows no slow-tier overlay right after it was mounted; retrying"));
    }
  }
  absl::StatusOr<PartitionPaths> part = PlanPartition(options_.config.fast_root, record.container_id);
  if (!part.ok()) return part.status();
  absl::StatusOr<bool> mounted = PartitionMounted(*part);
  if (!mounted.ok()) return mounted.status();
  // One write records the intent: the partition about to exist, the step,
  // and the freeze about to happen (each is undone by recovery if need be).
  record.partition = true;
  record.op = TierOp::kPromote;
  record.op_path = path;
  record.froze = true;
  if (absl::Status s = Save(record); !s.ok()) return s;
  auto abandon = [&](absl::Status why) {
    record.froze = false;  // not frozen: a freeze that fails thaws again
    record.op = TierOp::kNone;
    record.op_path.clear();
    (void)Save(record);
    (void)FreePartitionIfUnused(record);
    return why;
  };
  if (!*mounted) {
    absl::Status made = record.AnyFast() ? AttachPartition(*part) : TakePartition(*part);
    if (!made.ok()) return abandon(made);
  }
  // A fast layer left from before (folded into the slow one since, or never
  // mounted) would hide newer slow files: a promotion starts empty.
  {
    Fd mnt(open(part->mount_point.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    absl::Status cleared = mnt.valid() ? RemoveTree(mnt.get(), EscapeContainerPath(ContainerPath{path}))
                                       : absl::ErrnoToStatus(errno, absl::StrCat("opening ", part->mount_point));
    if (!cleared.ok()) return abandon(cleared);
  }
  absl::StatusOr<ScopedFreeze> freeze = ScopedFreeze::Freeze(CgroupDir(record), options_.freeze_timeout);
  if (!freeze.ok()) return abandon(freeze.status());
  absl::Status result = UnmountTier(*pid, ContainerPath{path}, slow_mount);
  uint64_t fast_mount = 0;
  if (result.ok()) {
    result = MountFast(*pid, record, path, &fast_mount);
    if (!result.ok()) {
      // Put the slow overlay back: the container never saw the gap (frozen).
      if (absl::Status back = MountSlow(*pid, record, path); !back.ok()) {
        LogError("tier: container %s: %s, and remounting the slow overlay failed too: %s",
                 record.container_id, result.message(), back.message());
      }
    }
  }
  if (result.ok()) {
    record.paths[path] = Tier::kFast;
    live.fast_mounts[path] = fast_mount;
    live.last_promotion_ms = MsSince(t0);
    ++live.promotions;
  }
  record.op = TierOp::kNone;
  record.op_path.clear();
  if (absl::Status s = Save(record); !s.ok() && result.ok()) result = s;
  if (absl::Status s = Thaw(record, *freeze); !s.ok() && result.ok()) result = s;
  if (!result.ok()) {
    (void)FreePartitionIfUnused(record);
    return result;
  }
  LogInfo("tier: container %s %s -> fast in %.1f ms", record.container_id, path, live.last_promotion_ms);
  return absl::OkStatus();
}

absl::Status TierManager::Demote(TierRecord& record, const std::string& path) {
  const absl::Time t0 = absl::Now();
  Live& live = live_[record.container_id];
  absl::StatusOr<pid_t> pid = PidOf(record);
  if (!pid.ok()) return pid.status();
  uint64_t fast_mount = 0;
  absl::StatusOr<Observed> seen = Observe(*pid, record, path, &fast_mount);
  if (!seen.ok()) return seen.status();
  if (*seen == Observed::kSlow) {
    record.paths[path] = Tier::kSlow;
    return Save(record);
  }
  // No overlay at all: the fast one was unmounted while gputierd ran. Its
  // layer is folded back all the same; references into it can only be
  // looked for by the mount id it had (unless that id is in use again).
  const bool lost = *seen == Observed::kNone;
  if (lost) {
    auto known = live.fast_mounts.find(path);
    fast_mount = known != live.fast_mounts.end() && !MountListed(*pid, known->second) ? known->second : 0;
    if (live.lost_reported.insert(path).second) {
      LogWarning("tier: container %s: %s lost its fast-tier overlay while gputierd ran (unmounted inside the "
                 "container?); folding its fast layer back into the slow one and mounting the slow overlay "
                 "again",
                 record.container_id, path);
    }
  }
  record.op = TierOp::kDemote;
  record.op_path = path;
  record.froze = true;
  if (absl::Status s = Save(record); !s.ok()) return s;
  absl::StatusOr<ScopedFreeze> freeze = ScopedFreeze::Freeze(CgroupDir(record), options_.freeze_timeout);
  if (!freeze.ok()) {
    record.froze = false;  // not frozen: a freeze that fails thaws again
    record.op = TierOp::kNone;
    record.op_path.clear();
    (void)Save(record);
    return freeze.status();
  }
  absl::Status result;
  if (fast_mount != 0) {
    absl::StatusOr<std::vector<pid_t>> procs = CgroupProcs(CgroupDir(record));
    if (!procs.ok()) result = procs.status();
    if (result.ok()) {
      absl::StatusOr<std::vector<MountReference>> refs = FindMountReferences(*procs, fast_mount);
      if (!refs.ok()) {
        result = refs.status();
      } else if (!refs->empty()) {
        result = absl::UnavailableError(absl::StrCat(
            lost ? "folding back the lost fast overlay of '" : "demotion of '", path,
            "' waits: the container holds ", refs->size(), " reference(s) into ",
            lost ? "that overlay, detached but alive" : "the fast overlay", " (", RefsText(*refs),
            "); retrying until they are closed"));
      }
    }
  }
  bool unmounted = false;
  if (result.ok() && !lost) {
    result = UnmountTier(*pid, ContainerPath{path}, fast_mount);
    unmounted = result.ok();
  }
  if (result.ok()) {
    live.last_writeback_bytes = 0;
    result = FoldFastIntoSlow(record, path, &live.last_writeback_bytes);
    if (result.ok()) result = MountSlow(*pid, record, path);
  }
  if (!result.ok() && unmounted) {
    // The fast upper is untouched by a write-back: mounting it again shows
    // exactly what the container saw.
    if (absl::Status back = MountFast(*pid, record, path); !back.ok()) {
      LogError("tier: container %s: %s, and remounting the fast overlay failed too: %s",
               record.container_id, result.message(), back.message());
    }
  }
  if (result.ok()) {
    record.paths[path] = Tier::kSlow;
    live.fast_mounts.erase(path);
    live.lost_reported.erase(path);
    live.last_demotion_ms = MsSince(t0);
    ++live.demotions;
    live.writeback_bytes += live.last_writeback_bytes;
  }
  record.op = TierOp::kNone;
  record.op_path.clear();
  if (absl::Status s = Save(record); !s.ok() && result.ok()) result = s;
  if (absl::Status s = Thaw(record, *freeze); !s.ok() && result.ok()) result = s;
  if (!result.ok()) return result;
  if (lost) {
    LogInfo("tier: container %s %s is on the slow tier again (%d bytes written back from its lost fast overlay)",
            record.container_id, path, live.last_writeback_bytes);
  } else {
    LogInfo("tier: container %s %s -> slow in %.1f ms (%d bytes written back)", record.container_id, path,
            live.last_demotion_ms, live.last_writeback_bytes);
  }
  return DiscardFastLayer(record, path);
}

absl::Status TierManager::Finalize(TierRecord& record) {
  absl::StatusOr<PartitionPaths> part = PlanPartition(options_.config.fast_root, record.container_id);
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
  if (absl::Status s = store_.Remove(record.container_id); !s.ok()) return s;
  LogInfo("tier: container %s is gone: %d bytes written back from the fast tier; its data stays in %s/%s",
          record.container_id, bytes, options_.config.slow_root, record.container_id);
  return absl::OkStatus();
}

}  // namespace gputier
