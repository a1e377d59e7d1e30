// TierManager, the core: construction (tier roots, loaded records, what
// each tier sits on), the threads' entry points, the worker's loop, and what
// every step uses (the container's process, saving its record, noting an
// error). Each cycle is in cycle.cc; the moves each have a file: promote.cc,
// demote.cc (both open and close with step.cc), finalize.cc (the container
// is gone), recover.cc; the overlays they mount are in overlays.cc, the fast
// partitions in partitions.cc and the status in status.cc.
#include "loader/tier/tier_manager.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>
#include <optional>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "loader/base/fd.h"
#include "loader/base/log.h"
#include "loader/cgroup/cgroup_freezer.h"
#include "loader/config/config_tiers.h"
#include "loader/config/container_path.h"
#include "loader/tier/fs/tier_partition.h"
#include "loader/tier/tier_device.h"
#include "loader/tier/tier_manager_internal.h"

namespace gputier {
namespace {

constexpr absl::Duration kCycle = absl::Milliseconds(250);

// Creates a tier root. A configured root gets only its last directory made:
// a missing parent is most often a mount point whose device failed to mount
// (or a typo), and making it would silently put the tier on the root
// filesystem. The built-in default roots are gputierd's own and made whole.
absl::Status MakeTierRoot(const std::string& root, absl::string_view key, bool make_parents) {
  const size_t last = root.rfind('/');
  const std::string parent = last == 0 ? "/" : root.substr(0, last);
  struct stat st;
  if (!make_parents && stat(root.c_str(), &st) != 0 && stat(parent.c_str(), &st) != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "tiers.", key, " ", root, ": its parent ", parent,
        " does not exist; gputierd makes only the last directory of a configured tier root, never a "
        "missing mount point (a tier whose device failed to mount would land on the root filesystem): "
        "mount the tier's device, create ",
        parent, ", or fix the path"));
  }
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

// Says what each tier sits on, probes their write speed when containers will
// be tiered, and warns about a pair that defeats the point (tier_device.h).
nlohmann::json DescribeTiers(const TierConfig& t) {
  constexpr uint64_t kProbeBytes = 4 << 20;
  const bool probe = !ManagedPaths(t).empty();
  nlohmann::json out = nlohmann::json::object();
  std::optional<TierDevice> devices[2];
  std::optional<WriteProbe> probes[2];
  const std::string* roots[2] = {&t.fast_root, &t.slow_root};
  const char* names[2] = {"fast", "slow"};
  for (int i = 0; i < 2; ++i) {
    absl::StatusOr<TierDevice> d = DescribeTierDevice(*roots[i]);
    if (!d.ok()) {
      LogWarning("tier %s: cannot tell what %s is on: %s", names[i], *roots[i], d.status().message());
      continue;
    }
    devices[i] = *d;
    nlohmann::json j = {{"description", FormatTierDevice(*d)}, {"fs_type", d->fs_type},
                        {"block_device", d->block.empty() ? nlohmann::json(nullptr) : nlohmann::json(d->block)},
                        {"transport", d->transport.empty() ? nlohmann::json(nullptr) : nlohmann::json(d->transport)},
                        {"rotational", d->rotational ? nlohmann::json(*d->rotational) : nlohmann::json(nullptr)}};
    std::string speed;
    if (probe) {
      absl::StatusOr<WriteProbe> p = ProbeWriteSpeed(*roots[i], kProbeBytes);
      if (p.ok()) {
        probes[i] = *p;
        j["probe_mib_per_s"] = p->mib_per_s;
        speed = absl::StrFormat("; start probe: %d MiB written at %.0f MiB/s (%s, fsync)", kProbeBytes >> 20,
                                p->mib_per_s, p->direct ? "O_DIRECT" : "buffered");
      } else {
        LogWarning("tier %s: write probe failed: %s", names[i], p.status().message());
      }
    }
    LogInfo("tier %s: %s is %s%s", names[i], *roots[i], FormatTierDevice(*d), speed);
    out[names[i]] = std::move(j);
  }
  if (devices[0] && devices[1] && !t.embedded_roots) {
    for (const std::string& w : TierPairWarnings(*devices[0], *devices[1], probes[0], probes[1])) {
      LogWarning("tiers: %s", w);
    }
  }
  return out;
}

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

}  // namespace

namespace tier_internal {

HostView HostViewNow() {
  HostView host;
  for (const char* who : {"/proc/1", "/proc/self"}) {
    struct stat st;
    if (stat(absl::StrCat(who, "/ns/mnt").c_str(), &st) == 0) {
      host.mnt_ns.push_back(st.st_ino);
      if (absl::string_view(who) == "/proc/self") host.own_mnt_ns_seen = true;
    }
    if (stat(absl::StrCat(who, "/root").c_str(), &st) == 0) host.roots.emplace_back(st.st_dev, st.st_ino);
  }
  return host;
}

bool InHostMountNs(uint64_t mnt_ns_ino, const HostView& host) {
  for (uint64_t ns : host.mnt_ns) {
    if (mnt_ns_ino == ns) return true;
  }
  return false;
}

std::optional<bool> SameRootAsHost(pid_t pid, const HostView& host) {
  struct stat root;
  if (stat(absl::StrCat("/proc/", pid, "/root").c_str(), &root) != 0) return std::nullopt;
  for (const auto& [dev, ino] : host.roots) {
    if (root.st_dev == dev && root.st_ino == ino) return true;
  }
  return false;
}

bool SharesHostView(pid_t pid, const struct stat& mnt_ns, const HostView& host) {
  return InHostMountNs(mnt_ns.st_ino, host) || SameRootAsHost(pid, host).value_or(true);
}

}  // namespace tier_internal

TierManager::TierManager(Options options)
    : options_(std::move(options)), store_(absl::StrCat(options_.state_dir, "/tier")) {}

TierManager::~TierManager() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  // A restart needs no spare (the next gputierd makes one when it needs
  // it), so a clean stop leaves none mounted. Containers still tiered keep
  // their partitions: their records say where their data is.
  ReleaseSpareAtStop();
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
    if (absl::Status s = MakeTierRoot(*root, root == &c.fast_root ? "fast" : "slow", c.embedded_roots); !s.ok()) {
      return s;
    }
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
  manager->tier_devices_ = DescribeTiers(t);
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
  // tiered_cgroups: containers elsewhere are not this agent's to tier.
  containers.erase(std::remove_if(containers.begin(), containers.end(),
                                  [&](const ContainerVerdictView& c) {
                                    return !InTieredCgroups(options_.config, c.cgroup_path);
                                  }),
                   containers.end());
  {
    std::lock_guard<std::mutex> lock(mu_);
    view_ = std::move(containers);
    have_view_ = true;
    poked_ = true;
  }
  wake_.notify_all();
}

absl::Status TierManager::SetOverride(const ContainerVerdictView& container, TierOverride choice) {
  if (!InTieredCgroups(options_.config, container.cgroup_path)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "container ", container.container_id, " (cgroup ", container.cgroup_path,
        ") is outside tiered_cgroups; this gputierd does not tier it"));
  }
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
    try {
      Cycle();
      Publish();
    } catch (const std::exception& e) {
      // A library threw (nlohmann, std::) on something a container made:
      // this cycle ends, the next one starts from the records again.
      LogError("tier: a cycle failed: %s; retrying on the next cycle", e.what());
    }
  }
}

std::string TierManager::CgroupDir(const TierRecord& record) const {
  return absl::StrCat(options_.cgroup_root, record.cgroup);
}

absl::Status TierManager::Save(const TierRecord& record) { return store_.Save(record); }

// "namespace/pod/container (id)" where the name is known, else the id: how
// the log names a container (names hold only [A-Za-z0-9._/-]).
std::string TierManager::Shown(const std::string& id) const {
  auto it = live_.find(id);
  if (it == live_.end() || it->second.name.empty() || it->second.name == id.substr(0, 12)) return id;
  return absl::StrCat(it->second.name, " (", id, ")");
}

void TierManager::NoteError(const std::string& id, const absl::Status& status, absl::Duration retry) {
  Live& live = live_[id];
  const std::string text(status.message());
  if (text != live.last_error) {
    LogWarning("tier: container %s: %s", Shown(id), text);
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
  // Only a process that has left the host's mount namespace and root
  // counts: a runtime's process in the cgroup before pivot_root (runc init,
  // podman's conmon) or a cgroup made in the host namespace is never taken
  // for the container. That holds after adoption too: a container adopted
  // by its OCI createRuntime hook (adopt_at_create.cc) has its namespace
  // recorded before its process switches to its own root, and until then
  // it is "still starting", never resolved against the host's root.
  const tier_internal::HostView host = tier_internal::HostViewNow();
  pid_t oldest = 0;
  uint64_t oldest_start = 0;
  bool in_host = false;
  for (pid_t pid : *procs) {
    struct stat st;
    if (stat(absl::StrCat("/proc/", pid, "/ns/mnt").c_str(), &st) != 0) continue;
    if (record.mnt_ns != 0 && st.st_ino != record.mnt_ns) continue;
    if (tier_internal::SharesHostView(pid, st, host)) {
      in_host = true;
      continue;
    }
    const uint64_t start = ProcessStartTime(pid);
    if (start == 0) continue;  // gone already
    if (oldest == 0 || start < oldest_start) {
      oldest = pid;
      oldest_start = start;
    }
  }
  if (oldest != 0) return oldest;
  if (in_host) {
    return absl::UnavailableError(absl::StrCat(
        "container ", record.container_id,
        " is still starting (its processes share the host's mount namespace or root directory)"));
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "no process of container ", record.container_id, " is in its recorded mount namespace any more"));
}

}  // namespace gputier
