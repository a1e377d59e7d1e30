#include "loader/tier/tier_uninstall.h"

#include <dirent.h>
#include <sys/stat.h>

#include <cerrno>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "loader/cgroup/cgroup_freezer.h"
#include "loader/tier/fs/tier_mount.h"
#include "loader/tier/fs/tier_partition.h"
#include "loader/config/container_path.h"
#include "loader/tier/tier_record.h"
#include "loader/tier/fs/tier_writeback.h"

namespace gputier {
namespace {

// The directory name of the spare partition (TierManager's kSpareId).
constexpr char kSpareName[] = ".gputier-spare";

bool Exists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

// What a released partition was, as one line.
std::string ReleasedLine(const std::string& what, const PartitionPaths& p, const PartitionRelease& r) {
  std::string line = absl::StrCat("released ", what, " ", p.dir, ":");
  std::string sep = " ";
  if (r.unmounted) {
    absl::StrAppend(&line, sep, "unmounted ", p.mount_point);
    sep = ", ";
  }
  if (r.loop_index >= 0) {
    absl::StrAppend(&line, sep, "freed /dev/loop", r.loop_index);
    sep = ", ";
  }
  if (r.image_removed) {
    absl::StrAppend(&line, sep, "removed ", p.image);
    sep = ", ";
  }
  if (r.dir_removed) absl::StrAppend(&line, sep, "removed the directory");
  return line;
}

// mkdir -p of `dir` below `root` (which exists), 0700.
absl::Status MakeDirsBelow(const std::string& root, const std::string& dir) {
  for (size_t pos = root.size() + 1; pos <= dir.size(); ++pos) {
    if (pos != dir.size() && dir[pos] != '/') continue;
    if (mkdir(dir.substr(0, pos).c_str(), 0700) != 0 && errno != EEXIST) {
      return absl::ErrnoToStatus(errno, absl::StrCat("creating ", dir.substr(0, pos)));
    }
  }
  return absl::OkStatus();
}

struct ContainerPartition {
  PartitionPaths paths;
  TierRecord record;
};

}  // namespace

absl::Status RemoveTierLeftovers(const TierConfig& tiers, const std::string& state_dir,
                                 const std::string& cgroup_root,
                                 const std::function<void(const std::string&)>& removed) {
  const std::string& fast = tiers.fast_root;
  DIR* d = opendir(fast.c_str());
  if (d == nullptr) {
    if (errno == ENOENT) return absl::OkStatus();  // no fast root: nothing of gputier's there
    return absl::ErrnoToStatus(errno, absl::StrCat("reading the fast tier root ", fast));
  }
  std::vector<std::string> names;
  while (struct dirent* e = readdir(d)) names.emplace_back(e->d_name);
  closedir(d);

  TierRecordStore store(absl::StrCat(state_dir, "/tier"));
  TierRecordStore::Loaded loaded = store.LoadAll();
  std::map<std::string, TierRecord> records;
  for (TierRecord& r : loaded.records) records.emplace(r.key, std::move(r));  // partitions are named by key

  // First look at everything, refuse before touching anything.
  std::vector<PartitionPaths> empty_ones;  // the spare, partitions set aside
  std::vector<ContainerPartition> containers;
  for (const std::string& name : names) {
    if (name == "." || name == "..") continue;
    const bool ours = name == kSpareName || absl::StartsWith(name, kAsidePrefix);
    if (!ours && !ValidateTierKey(name).ok()) continue;  // not a name gputier gives a directory
    absl::StatusOr<PartitionPaths> p = PlanPartition(fast, name);
    if (!p.ok()) continue;
    if (!Exists(p->image) && !Exists(p->mount_point)) continue;  // not a partition
    if (ours) {
      empty_ones.push_back(*std::move(p));
      continue;
    }
    auto r = records.find(name);
    if (r == records.end()) {
      return absl::FailedPreconditionError(absl::StrCat(
          p->dir, " holds a fast partition (tier key ", name, ") and no record of it is in ", store.dir(),
          "; pass the --state-dir and --config gputierd ran with, or copy out what you need and remove it by "
          "hand"));
    }
    absl::StatusOr<std::vector<pid_t>> procs = CgroupProcs(absl::StrCat(cgroup_root, r->second.cgroup));
    if (procs.ok() && !procs->empty()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "container ", r->second.container_id, " still runs with a partition on the fast tier (", p->dir,
          "); stop the container, or start gputierd and run `gputierctl tier ", r->second.container_id,
          " slow`, then run uninstall again"));
    }
    containers.push_back({*std::move(p), r->second});
  }

  // Containers first: a partition still busy (its container's mount
  // namespace going away) fails before anything else was done.
  for (ContainerPartition& c : containers) {
    const TierRecord& record = c.record;
    // As gputierd does at container exit: the fast layers go into the slow
    // ones first (idempotent), so nothing the container wrote is lost.
    absl::StatusOr<bool> mounted = PartitionMounted(c.paths);
    if (!mounted.ok()) return mounted.status();
    if (!*mounted && Exists(c.paths.image)) {
      if (absl::Status s = AttachPartition(c.paths); !s.ok()) return s;
    }
    for (const auto& [path, tier] : record.paths) {
      const ContainerPath cpath{path};
      const std::string fast_upper =
          absl::StrCat(c.paths.mount_point, "/", EscapeContainerPath(cpath), "/upper");
      if (!Exists(fast_upper)) continue;
      absl::StatusOr<TierLayout> slow = PlanTierLayout(tiers.slow_root, record.key, cpath);
      if (!slow.ok()) return slow.status();
      if (absl::Status s = MakeDirsBelow(tiers.slow_root, slow->upper); !s.ok()) return s;
      absl::StatusOr<WriteBackStats> stats = MergeUpperLayer(fast_upper, slow->upper);
      if (!stats.ok()) return stats.status();
      removed(absl::StrCat("wrote back ", stats->bytes, " bytes of container ", record.container_id, "'s ", path,
                           " from the fast tier to ", slow->upper));
    }
    PartitionRelease what;
    if (absl::Status s = ReleasePartition(c.paths, &what); !s.ok()) return s;
    removed(ReleasedLine(absl::StrCat("the partition of container ", record.container_id), c.paths, what));
    if (record.froze) {
      if (absl::Status s = ThawCgroup(absl::StrCat(cgroup_root, record.cgroup)); !s.ok()) return s;
    }
    if (absl::Status s = store.Remove(record.container_id); !s.ok()) return s;
    removed(absl::StrCat("removed the tier record ", store.dir(), "/", record.container_id,
                         ".json (the container is gone; its data is in ", tiers.slow_root, "/",
                         record.key, ")"));
  }
  for (const PartitionPaths& p : empty_ones) {
    PartitionRelease what;
    if (absl::Status s = ReleasePartition(p, &what); !s.ok()) return s;
    removed(ReleasedLine(absl::StartsWith(p.dir, absl::StrCat(fast, "/", kSpareName)) ? "the spare partition"
                                                                                        : "the partition set aside",
                         p, what));
  }
  return absl::OkStatus();
}

}  // namespace gputier
