#include "loader/tier_manager.h"

#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <set>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "loader/cgroup_freezer.h"
#include "loader/clock.h"
#include "loader/config_tiers.h"
#include "loader/fd.h"
#include "loader/log.h"
#include "loader/mount_refs.h"
#include "loader/read_file.h"
#include "loader/tier_mount.h"
#include "loader/tier_partition.h"
#include "loader/tier_path.h"
#include "loader/tier_writeback.h"

namespace gputier {
namespace {

constexpr absl::Duration kCycle = absl::Milliseconds(250);
constexpr absl::Duration kBusyRetry = absl::Milliseconds(50);
constexpr absl::Duration kErrorRetry = absl::Seconds(5);
constexpr absl::Duration kBytesEvery = absl::Seconds(30);
// How often each container's directories are checked for their overlays.
constexpr absl::Duration kOverlaysEvery = absl::Seconds(1);
// The directory of the spare partition under the fast root: a valid
// directory name that no container runtime gives a container (ids never
// start with '.'; Adopt refuses such ids).
constexpr char kSpareId[] = ".gputier-spare";

absl::Status MakeTierRoot(const std::string& root) {
  for (size_t pos = 1; pos <= root.size(); ++pos) {
    if (pos != root.size() && root[pos] != '/') continue;
    if (mkdir(root.substr(0, pos).c_str(), 0700) != 0 && errno != EEXIST) {
      return absl::ErrnoToStatus(errno, absl::StrCat("creating tier root ", root.substr(0, pos)));
    }
  }
  // A tier root must be a real directory, not a symlink to somewhere else.
  Fd fd(open(root.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "tier root ", root, " is not a directory (", strerror(errno),
        "); point tiers.fast/tiers.slow at a directory on the tier's filesystem"));
  }
  return absl::OkStatus();
}

uint64_t g_walk_bytes = 0;
int AddBytes(const char*, const struct stat* st, int type, struct FTW*) {
  if (type == FTW_F) g_walk_bytes += static_cast<uint64_t>(st->st_blocks) * 512;
  return 0;
}

// Allocated bytes of the files below `dir` (0 when it does not exist). Never
// follows symlinks or leaves the filesystem. Worker thread only.
uint64_t DirBytes(const std::string& dir) {
  g_walk_bytes = 0;
  struct stat st;
  if (lstat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) return 0;
  nftw(dir.c_str(), AddBytes, 16, FTW_PHYS | FTW_MOUNT);
  return g_walk_bytes;
}

double MsSince(absl::Time t0) { return absl::ToDoubleMilliseconds(absl::Now() - t0); }

// When `pid` started (clock ticks after boot, field 22 of /proc/<pid>/stat);
// 0 when it is gone.
uint64_t ProcessStartTime(pid_t pid) {
  Fd fd(open(absl::StrCat("/proc/", pid, "/stat").c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return 0;
  char buf[1024];
  ssize_t n = read(fd.get(), buf, sizeof(buf) - 1);
  if (n <= 0) return 0;
  absl::string_view text(buf, static_cast<size_t>(n));
  const size_t paren = text.rfind(')');  // the command name may hold spaces and ')'
  if (paren == absl::string_view::npos || paren + 2 > text.size()) return 0;
  std::vector<absl::string_view> fields = absl::StrSplit(text.substr(paren + 2), ' ');
  uint64_t start = 0;  // fields[0] is field 3 (the state)
  if (fields.size() < 20 || !absl::SimpleAtoi(fields[19], &start)) return 0;
  return start;
}

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

TierManager::TierManager(Options options)
    : options_(std::move(options)), store_(absl::StrCat(options_.state_dir, "/tier")) {}

TierManager::~TierManager() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  // The worker sets nothing aside any more: free what is queued, then stop.
  {
    std::lock_guard<std::mutex> lock(free_mu_);
    free_stop_ = true;
  }
  free_wake_.notify_all();
  if (freer_.joinable()) freer_.join();
}

absl::StatusOr<std::unique_ptr<TierManager>> TierManager::Create(Options options) {
  const TierConfig& c = options.config;
  for (const std::string* root : {&c.fast_root, &c.slow_root}) {
    if (absl::Status s = ValidateTierRoot(*root); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("tier root: ", s.message()));
    }
    if (absl::Status s = MakeTierRoot(*root); !s.ok()) return s;
  }
  auto manager = std::unique_ptr<TierManager>(new TierManager(std::move(options)));
  if (absl::Status s = manager->store_.Init(); !s.ok()) return s;
  TierRecordStore::Loaded loaded = manager->store_.LoadAll();
  for (const std::string& why : loaded.refused) LogWarning("tier record: %s", why);
  for (TierRecord& r : loaded.records) {
    const std::string id = r.container_id;
    manager->live_[id].cgroup = r.cgroup;
    manager->records_.emplace(id, std::move(r));
  }
  const TierConfig& t = manager->options_.config;
  LogInfo("tiers: fast %s, slow %s%s; each fast partition %d MiB; watermarks %.0f%%/%.0f%%", t.fast_root,
          t.slow_root,
          t.embedded_roots ? " (built-in default: both on the local disk, since the config names no "
                             "tiers)"
                           : "",
          t.partition_size >> 20, t.high_watermark * 100, t.low_watermark * 100);
  if (ManagedPaths(t).empty()) {
    LogInfo("tiering: no tiered_paths or gpu_data_paths configured, so no container directory is moved");
  } else {
    LogInfo("tiering: %s%s%s", absl::StrJoin(t.tiered_paths, ", "),
            t.gpu_data_paths.empty() ? "" : "; GPU data (fast for MIXED too): ",
            absl::StrJoin(t.gpu_data_paths, ", "));
  }
  if (!manager->records_.empty()) {
    LogInfo("tiering: %zu container record(s) from %s", manager->records_.size(), manager->store_.dir());
  }
  absl::StatusOr<std::vector<AsidePartition>> aside = PartitionsSetAside(t.fast_root);
  if (!aside.ok()) {
    LogWarning("tier: looking for partitions set aside by an earlier gputierd: %s", aside.status().message());
  } else if (!aside->empty()) {
    LogInfo("tier: freeing %zu partition(s) that an earlier gputierd set aside", aside->size());
    for (AsidePartition& a : *aside) manager->freeing_.push_back({std::move(a)});
  }
  manager->Publish();
  return manager;
}

void TierManager::Start() {
  freer_ = std::thread([this] { FreerLoop(); });
  thread_ = std::thread([this] { Loop(); });
}

void TierManager::UpdateContainers(std::vector<ContainerVerdictView> containers) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    view_ = std::move(containers);
    have_view_ = true;
    poked_ = true;
  }
  wake_.notify_all();
}

absl::Status TierManager::SetOverride(const ContainerVerdictView& container, TierOverride choice) {
  if (ManagedPaths(options_.config).empty()) {
    return absl::FailedPreconditionError(
        "no tiered_paths or gpu_data_paths are configured, so there is nothing to tier; add them to the "
        "config (docs/TIERING.md)");
  }
  if (absl::Status s = ValidateContainerId(container.container_id); !s.ok()) return s;
  {
    std::lock_guard<std::mutex> lock(mu_);
    overrides_[container.container_id] = {container.cgroup_path, choice};
    prompt_.insert(container.container_id);
    poked_ = true;
  }
  wake_.notify_all();
  return absl::OkStatus();
}

nlohmann::json TierManager::StatusJson() {
  std::lock_guard<std::mutex> lock(mu_);
  return status_;
}

void TierManager::Loop() {
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      wake_.wait_for(lock, absl::ToChronoMilliseconds(kCycle), [this] { return stop_ || poked_; });
      if (stop_) return;
      poked_ = false;
    }
    Cycle();
    Publish();
  }
}

std::string TierManager::CgroupDir(const TierRecord& record) const {
  return absl::StrCat(options_.cgroup_root, record.cgroup);
}

absl::Status TierManager::Save(const TierRecord& record) { return store_.Save(record); }

void TierManager::NoteError(const std::string& id, const absl::Status& status, absl::Duration retry) {
  Live& live = live_[id];
  const std::string text(status.message());
  if (text != live.last_error) {
    LogWarning("tier: container %s: %s", id, text);
    live.last_error = text;
  }
  live.retry_at = absl::Now() + retry;
}

absl::StatusOr<pid_t> TierManager::PidOf(const TierRecord& record) {
  absl::StatusOr<std::vector<pid_t>> procs = CgroupProcs(CgroupDir(record));
  if (!procs.ok() || procs->empty()) {
    return absl::NotFoundError(absl::StrCat("container ", record.container_id, " has no process left"));
  }
  // The oldest process of the container (its init, normally), not the
  // lowest pid: once pids wrap, the lowest is often a short-lived child that
  // is gone before the step uses it.
  pid_t oldest = 0;
  uint64_t oldest_start = 0;
  for (pid_t pid : *procs) {
    struct stat st;
    if (stat(absl::StrCat("/proc/", pid, "/ns/mnt").c_str(), &st) != 0) continue;
    if (record.mnt_ns != 0 && st.st_ino != record.mnt_ns) continue;
    const uint64_t start = ProcessStartTime(pid);
    if (start == 0) continue;  // gone already
    if (oldest == 0 || start < oldest_start) {
      oldest = pid;
      oldest_start = start;
    }
  }
  if (oldest != 0) return oldest;
  return absl::FailedPreconditionError(absl::StrCat(
      "no process of container ", record.container_id, " is in its recorded mount namespace any more"));
}

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
  LogInfo("tier: container %s %s is on the slow tier again", record.container_id, path);
  return absl::OkStatus();
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

absl::Status TierManager::FreePartitionIfUnused(TierRecord& record) {
  if (record.AnyFast() || record.op != TierOp::kNone || !record.partition) return absl::OkStatus();
  absl::StatusOr<PartitionPaths> part = PlanPartition(options_.config.fast_root, record.container_id);
  if (!part.ok()) return part.status();
  if (absl::Status s = FreePartition(*part); !s.ok()) return s;
  record.partition = false;
  return Save(record);
}

absl::Status TierManager::DiscardFastLayer(TierRecord& record, const std::string& path) {
  if (!record.AnyFast() && record.op == TierOp::kNone) return FreePartitionIfUnused(record);
  // The partition stays for the other fast directories: only this layer
  // goes (best effort: a promotion clears it anyway before mounting it).
  absl::StatusOr<PartitionPaths> part = PlanPartition(options_.config.fast_root, record.container_id);
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

absl::Status TierManager::Thaw(TierRecord& record, ScopedFreeze& freeze) {
  if (absl::Status s = freeze.Thaw(); !s.ok()) return s;
  record.froze = false;
  return Save(record);
}

absl::Status TierManager::ThawRecorded(TierRecord& record) {
  if (absl::Status s = ThawCgroup(CgroupDir(record)); !s.ok()) return s;
  record.froze = false;
  return Save(record);
}

absl::Status TierManager::Adopt(const std::string& id, const std::string& cgroup) {
  TierRecord record;
  record.container_id = id;
  record.cgroup = cgroup;
  absl::StatusOr<pid_t> pid = PidOf(record);
  if (!pid.ok()) return pid.status();
  struct stat st;
  if (stat(absl::StrCat("/proc/", *pid, "/ns/mnt").c_str(), &st) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("reading the mount namespace of pid ", *pid));
  }
  record.mnt_ns = st.st_ino;
  if (absl::Status s = Save(record); !s.ok()) return s;
  LogInfo("tier: adopted container %s (cgroup %s)", id, cgroup);
  records_[id] = std::move(record);
  live_[id].cgroup = cgroup;
  live_[id].recovered = true;
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

absl::Status TierManager::Recover(TierRecord& record) {
  Live& live = live_[record.container_id];
  absl::StatusOr<pid_t> pid = PidOf(record);
  if (!pid.ok()) return absl::OkStatus();  // gone: the next cycle finalizes it
  std::vector<std::string> folded;  // fast layers now in the slow ones: never to be mounted again
  if (record.op != TierOp::kNone) {
    const std::string path = record.op_path;
    absl::StatusOr<Observed> seen = Observe(*pid, record, path, nullptr);
    if (!seen.ok()) return seen.status();
    LogInfo("tier: container %s: finishing a %s of %s interrupted by a restart (found %s)",
            record.container_id, TierOpName(record.op), path,
            *seen == Observed::kFast ? "the fast overlay" : *seen == Observed::kSlow ? "the slow overlay"
                                                                                     : "no overlay");
    if (record.op == TierOp::kPromote) {
      if (*seen == Observed::kFast) record.paths[path] = Tier::kFast;
      if (*seen == Observed::kNone) {
        if (absl::Status s = MountSlow(*pid, record, path); !s.ok()) return s;
        record.paths[path] = Tier::kSlow;
      }
    } else {
      if (*seen == Observed::kNone) {
        if (absl::Status s = FoldFastIntoSlow(record, path, nullptr); !s.ok()) return s;
        if (absl::Status s = MountSlow(*pid, record, path); !s.ok()) return s;
      }
      if (*seen != Observed::kFast) {
        record.paths[path] = Tier::kSlow;
        folded.push_back(path);
      }
    }
    record.op = TierOp::kNone;
    record.op_path.clear();
    if (absl::Status s = Save(record); !s.ok()) return s;
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
    LogInfo("tier: container %s: thawing it (frozen by gputierd mid-step)", record.container_id);
    if (absl::Status s = ThawRecorded(record); !s.ok()) return s;
  }
  for (const std::string& path : folded) {
    if (absl::Status s = DiscardFastLayer(record, path); !s.ok()) return s;
  }
  return FreePartitionIfUnused(record);
}

void TierManager::RefreshBytes(const TierRecord& record, Live& live, bool force) {
  const absl::Time now = absl::Now();
  if (!force && now - live.bytes_at < kBytesEvery) return;
  live.bytes_at = now;
  live.slow_bytes = DirBytes(absl::StrCat(options_.config.slow_root, "/", record.container_id));
  live.fast_bytes = 0;
  if (absl::StatusOr<PartitionPaths> part = PlanPartition(options_.config.fast_root, record.container_id);
      part.ok() && record.partition) {
    live.fast_bytes = DirBytes(part->mount_point);
  }
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

void TierManager::Cycle() {
  std::vector<ContainerVerdictView> view;
  std::map<std::string, std::pair<std::string, TierOverride>> overrides;
  std::set<std::string> prompt;
  bool have_view = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    view = view_;
    overrides = overrides_;
    prompt.swap(prompt_);
    have_view = have_view_;
  }
  // An operator's request, repeated or not, is attempted now, whatever
  // backoff an earlier error set.
  for (const std::string& id : prompt) live_[id].retry_at = absl::InfinitePast();
  const TierConfig& config = options_.config;
  const std::vector<std::string> managed = ManagedPaths(config);

  // Containers that are gone: write their fast data back, free the partition.
  for (auto it = records_.begin(); it != records_.end();) {
    absl::StatusOr<pid_t> pid = PidOf(it->second);
    if (pid.ok() || absl::Now() < live_[it->first].retry_at) {
      ++it;
      continue;
    }
    if (absl::Status s = Finalize(it->second); !s.ok()) {
      NoteError(it->first, s, kErrorRetry);
      ++it;
      continue;
    }
    live_.erase(it->first);
    it = records_.erase(it);
  }

  // Recovery: every record once after start, and again any left frozen by
  // gputierd or mid-step (a failed thaw). One that fails is retried; until
  // it succeeds nothing else is done to the container, and a cgroup gputierd
  // froze stays frozen: it is only thawed once the mounts match the record.
  for (auto& [id, record] : records_) {
    Live& live = live_[id];
    if (live.recovered && !record.froze && record.op == TierOp::kNone) continue;
    if (absl::Now() < live.retry_at) continue;
    if (absl::Status s = Recover(record); !s.ok()) {
      NoteError(id,
                absl::Status(s.code(), absl::StrCat("recovery failed, retrying every ",
                                                    absl::FormatDuration(kErrorRetry),
                                                    record.froze ? " (the container stays frozen until it succeeds)"
                                                                 : "",
                                                    ": ", s.message())),
                kErrorRetry);
      continue;
    }
    live.recovered = true;
  }
  if (managed.empty()) return;

  // New containers, and what the classifier and operators say of each.
  std::map<std::string, const ContainerVerdictView*> by_id;
  for (const ContainerVerdictView& v : view) by_id[v.container_id] = &v;
  std::set<std::string> wanted;
  if (have_view) {
    for (const auto& [id, v] : by_id) wanted.insert(id);
  }
  for (const auto& [id, o] : overrides) wanted.insert(id);
  for (const std::string& id : wanted) {
    if (records_.count(id) || !ValidateContainerId(id).ok() || id[0] == '.') continue;
    if (absl::Now() < live_[id].retry_at) continue;
    auto o = overrides.find(id);
    const std::string cgroup = o != overrides.end() ? o->second.first : by_id[id]->cgroup_path;
    if (absl::Status s = Adopt(id, cgroup); !s.ok()) NoteError(id, s, kErrorRetry);
  }
  for (const auto& [id, o] : overrides) {
    auto r = records_.find(id);
    if (r == records_.end()) continue;  // kept until the container is adopted
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto pending = overrides_.find(id);
      if (pending != overrides_.end() && pending->second.second == o.second) overrides_.erase(pending);
    }
    if (r->second.override_tier == o.second) continue;
    r->second.override_tier = o.second;
    live_[id].pressure_demoted = false;
    live_[id].retry_at = absl::InfinitePast();
    if (absl::Status s = Save(r->second); !s.ok()) NoteError(id, s, kErrorRetry);
    LogInfo("tier: container %s: operator chose %s", id, TierOverrideName(o.second));
  }
  for (auto& [id, live] : live_) {
    auto v = by_id.find(id);
    if (v == by_id.end()) continue;
    if (live.verdict != v->second->verdict) live.pressure_demoted = false;
    live.verdict = v->second->verdict;
    live.last_active_ns = v->second->last_active_ns;
  }
  if (!have_view && overrides.empty()) return;  // no verdicts yet: move nothing

  // Fast tier pressure. Partitions set aside and being freed still count as
  // used in statvfs; they are subtracted here, so that no container is
  // demoted for space already on its way out. (Read before statvfs: a free
  // that completes in between is subtracted twice, which can only delay a
  // demotion by one cycle, never cause one.)
  auto pressure_usage = [&]() -> absl::StatusOr<SpaceUsage> {
    const uint64_t freeing = FreeingBytes();
    absl::StatusOr<SpaceUsage> usage = FilesystemUsage(config.fast_root);
    if (usage.ok()) usage->used_bytes -= std::min(usage->used_bytes, freeing);
    return usage;
  };
  absl::StatusOr<SpaceUsage> fs = pressure_usage();
  std::vector<FastHolder> holders;
  for (const auto& [id, r] : records_) {
    if (r.partition) holders.push_back({id, live_[id].last_active_ns, r.override_tier == TierOverride::kFast});
  }
  if (fs.ok() && !PickDemotions(fs->total_bytes, fs->used_bytes, config, holders).empty() && SpareReady()) {
    KeepSpare(false);  // the spare goes before any container is demoted
    fs = pressure_usage();
  }
  if (fs.ok()) {
    for (const std::string& id : PickDemotions(fs->total_bytes, fs->used_bytes, config, holders)) {
      if (!live_[id].pressure_demoted) {
        LogWarning("tier: the fast tier is above its high watermark (%d of %d MiB in use): demoting "
                   "container %s, the least recently active",
                   fs->used_bytes >> 20, fs->total_bytes >> 20, id);
      }
      live_[id].pressure_demoted = true;
    }
  }
  for (auto& [id, record] : records_) {
    Live& live = live_[id];
    if (!live.recovered || record.froze || record.op != TierOp::kNone) continue;  // recovery first
    if (absl::Now() < live.retry_at) continue;
    if (absl::Now() - live.overlays_checked_at >= kOverlaysEvery) {
      live.overlays_checked_at = absl::Now();
      if (absl::Status s = CheckOverlays(record, live); !s.ok()) {
        if (absl::IsUnavailable(s)) live.overlays_checked_at = absl::InfinitePast();  // again with the retry
        NoteError(id, s, absl::IsUnavailable(s) ? kBusyRetry : kErrorRetry);
        continue;
      }
    }
    std::map<std::string, Tier> desired = DesiredTiers(config, live.verdict, record.override_tier);
    if (live.pressure_demoted) {
      // Held on the slow tier until a partition fits below the low watermark.
      TierConfig below_low = config;
      below_low.high_watermark = config.low_watermark;
      if (fs.ok() && PromotionFits(fs->total_bytes, fs->used_bytes, below_low) && !record.partition) {
        live.pressure_demoted = false;
      } else {
        for (auto& [path, tier] : desired) tier = Tier::kSlow;
      }
    }
    bool may_promote = record.partition || SpareReady();
    if (!may_promote) {
      absl::StatusOr<SpaceUsage> now_fs = FilesystemUsage(config.fast_root);
      may_promote = now_fs.ok() && PromotionFits(now_fs->total_bytes, now_fs->used_bytes, config);
    }
    absl::Status s = Converge(record, live, desired, may_promote);
    if (!s.ok()) NoteError(id, s, absl::IsUnavailable(s) ? kBusyRetry : kErrorRetry);
    RefreshBytes(record, live, /*force=*/false);
  }
  // One empty partition kept ready (when it fits under the high watermark)
  // makes the next promotion a rename instead of fallocate + mkfs + mount.
  bool pressure = false;
  for (const auto& [id, live] : live_) pressure = pressure || live.pressure_demoted;
  KeepSpare(!pressure);
}

void TierManager::Publish() {
  const TierConfig& c = options_.config;
  nlohmann::json tiers = {{"fast_root", c.fast_root},
                          {"slow_root", c.slow_root},
                          {"built_in_default", c.embedded_roots},
                          {"partition_size", c.partition_size},
                          {"high_watermark", c.high_watermark},
                          {"low_watermark", c.low_watermark},
                          {"tiered_paths", c.tiered_paths},
                          {"gpu_data_paths", c.gpu_data_paths}};
  if (absl::StatusOr<SpaceUsage> fs = FilesystemUsage(c.fast_root); fs.ok()) {
    tiers["fast_used"] = fs->used_bytes;
    tiers["fast_total"] = fs->total_bytes;
  }
  tiers["fast_freeing"] = FreeingBytes();  // part of fast_used: partitions being freed
  nlohmann::json rows = nlohmann::json::array();
  for (const auto& [id, r] : records_) {
    const Live& live = live_[id];
    nlohmann::json paths = nlohmann::json::object();
    bool any_fast = false, any_slow = false;
    for (const auto& [path, tier] : r.paths) {
      paths[path] = std::string(TierName(tier));
      (tier == Tier::kFast ? any_fast : any_slow) = true;
    }
    nlohmann::json row = {{"container_id", id},
                          {"cgroup", r.cgroup},
                          {"tier", any_fast ? (any_slow ? "mixed" : "fast") : "slow"},
                          {"paths", paths},
                          {"override", std::string(TierOverrideName(r.override_tier))},
                          {"verdict", std::string(VerdictName(live.verdict))},
                          {"op", std::string(TierOpName(r.op))},
                          {"bytes_fast", live.fast_bytes},
                          {"bytes_slow", live.slow_bytes},
                          {"pressure_demoted", live.pressure_demoted},
                          {"last_error", live.last_error.empty() ? nlohmann::json(nullptr)
                                                                 : nlohmann::json(live.last_error)}};
    if (r.froze) row["frozen"] = true;  // by gputierd, mid-step or until a failed recovery succeeds
    if (const absl::Time now = absl::Now(); live.retry_at > now) {
      row["retry_in_ms"] = absl::ToInt64Milliseconds(live.retry_at - now);  // backing off after an error
    }
    if (live.last_promotion_ms >= 0) row["last_promotion_ms"] = live.last_promotion_ms;
    if (live.last_demotion_ms >= 0) row["last_demotion_ms"] = live.last_demotion_ms;
    rows.push_back(std::move(row));
  }
  std::lock_guard<std::mutex> lock(mu_);
  status_ = {{"tiers", tiers}, {"containers", rows}};
}

}  // namespace gputier
