// TierManager's cycle: every 250 ms, or when the classifier or an operator
// has news, the worker finalizes containers that are gone, removes the slow
// layers of exited ones that are due (exited.cc), recovers those not
// recovered yet, adopts new ones (and forgets those never adopted that are
// gone), takes in operator choices and
// verdicts, decides whom the fast tier's pressure demotes, and converges
// each container on its desired tiers (Converge: one promotion or demotion
// per directory that is not where it should be).
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "loader/base/log.h"
#include "loader/cgroup/cgroup_path.h"
#include "loader/config/config_tiers.h"
#include "loader/config/container_path.h"
#include "loader/runtime/oci_config.h"
#include "loader/runtime/runtime_confirm.h"
#include "loader/tier/fs/tier_partition.h"
#include "loader/tier/tier_manager.h"
#include "loader/tier/tier_manager_internal.h"

namespace gputier {
namespace {

using tier_internal::kErrorRetry;

// How often each container's directories are checked for their overlays.
constexpr absl::Duration kOverlaysEvery = absl::Seconds(1);

}  // namespace

void TierManager::Cycle() {
  const CycleInput in = TakeInput();
  // An operator's request, repeated or not, is attempted now, whatever
  // backoff an earlier error set.
  for (const std::string& id : in.prompt) live_[id].retry_at = absl::InfinitePast();
  AdoptAnnounced();  // first: a runtime waits on its hook
  FinalizeGone();
  CollectExited();
  RecoverPending();
  if (ManagedPaths(options_.config).empty()) return;
  ViewById by_id;
  for (const ContainerVerdictView& v : in.view) by_id[v.container_id] = &v;
  AdoptNew(in, by_id);
  DropUnadopted(in, by_id);
  ApplyOverrides(in);
  NoteVerdicts(by_id);
  if (!in.have_view && in.overrides.empty()) return;  // no verdicts yet: move nothing
  ConvergeAll(MarkPressureDemotions());
  // One empty partition kept ready (when it fits under the high watermark)
  // makes the next promotion a rename instead of fallocate + mkfs + mount.
  KeepSpare(!AnyPressureDemoted());
}

TierManager::CycleInput TierManager::TakeInput() {
  CycleInput in;
  std::lock_guard<std::mutex> lock(mu_);
  in.view = view_;
  in.overrides = overrides_;
  in.prompt.swap(prompt_);
  in.have_view = have_view_;
  return in;
}

// Containers that are gone: write their fast data back, free the partition.
void TierManager::FinalizeGone() {
  for (auto it = records_.begin(); it != records_.end();) {
    absl::StatusOr<pid_t> pid = PidOf(it->second);
    // Still starting (adopted by its createRuntime hook) is not gone.
    if (pid.ok() || absl::IsUnavailable(pid.status()) || absl::Now() < live_[it->first].retry_at) {
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
}

// Recovery: every record once after start, and again any left frozen by
// gputierd or mid-step (a failed thaw). One that fails is retried; until
// it succeeds nothing else is done to the container, and a cgroup gputierd
// froze stays frozen: it is only thawed once the mounts match the record.
void TierManager::RecoverPending() {
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
}

// New containers: every one the classifier counts (once it has said
// anything) and every one an operator named.
void TierManager::AdoptNew(const CycleInput& in, const ViewById& by_id) {
  std::set<std::string> wanted;
  if (in.have_view) {
    for (const auto& [id, v] : by_id) wanted.insert(id);
  }
  for (const auto& [id, o] : in.overrides) wanted.insert(id);
  for (const std::string& id : wanted) {
    if (records_.count(id) || !ValidateContainerId(id).ok() || id[0] == '.') continue;
    if (absl::Now() < live_[id].retry_at) continue;
    auto o = in.overrides.find(id);
    const std::string cgroup = o != in.overrides.end() ? o->second.first : by_id.at(id)->cgroup_path;
    if (absl::Status s = Adopt(id, cgroup); !s.ok()) {
      // Still starting: look again soon, the container is about to run.
      NoteError(id, s, absl::IsUnavailable(s) ? kBusyRetry : kErrorRetry);
    }
  }
}

absl::Status TierManager::Adopt(const std::string& id, const std::string& cgroup) {
  if (absl::Status s = SlowQuotaAllowsAdoption(id); !s.ok()) return s;
  TierRecord record;
  record.container_id = id;
  record.cgroup = cgroup;
  absl::StatusOr<pid_t> pid = PidOf(record);
  if (!pid.ok()) return pid.status();
  // A cgroup's name is anyone's choice: the runtime must know the container
  // and run its init in this cgroup before anything is mounted. Not known
  // yet is looked at again soon (a runtime writes its state as it starts).
  const std::optional<ContainerIdentity> named = IdentifyContainer(cgroup);
  absl::StatusOr<ConfirmedContainer> confirmed =
      ConfirmWithRuntime(options_.config, named ? named->runtime : "", id, cgroup);
  if (!confirmed.ok()) {
    const absl::Status& s = confirmed.status();
    return absl::IsNotFound(s) ? absl::UnavailableError(s.message()) : s;
  }
  struct stat st;
  if (stat(absl::StrCat("/proc/", *pid, "/ns/mnt").c_str(), &st) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("reading the mount namespace of pid ", *pid));
  }
  record.mnt_ns = st.st_ino;
  // Its directories are named by the id and its cgroup's inode: a later
  // container that reuses the id has another cgroup, so never these layers.
  if (stat(CgroupDir(record).c_str(), &st) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("reading the inode of cgroup ", CgroupDir(record)));
  }
  record.key = TierKeyFor(id, st.st_ino);
  // Who it is and what its annotations override, from its OCI config.json.
  // Its own tiered directories are kept in its record, so a restarted
  // gputierd tiers it the same; a bad annotation is said once, after the
  // record is saved (an adoption retried after an error says it again).
  std::string name = DisplayName({}, id);
  std::vector<std::string> warnings;
  if (absl::StatusOr<OciWorkload> workload = ReadWorkload(*confirmed); workload.ok()) {
    name = DisplayName(workload->identity, id);
    warnings = workload->warnings;
    if (workload->overrides.tier) {
      if (absl::StatusOr<TierOverride> tier = ParseTierOverride(*workload->overrides.tier); tier.ok()) {
        record.override_tier = *tier;
      }
    }
    record.tiered_paths = workload->overrides.tiered_paths;
    record.gpu_data_paths = workload->overrides.gpu_data_paths;
  } else {
    LogWarning("tier: container %s: its OCI config is not read (%s); it is named by its short id, the config applies",
               name, workload.status().message());
  }
  if (absl::Status s = Save(record); !s.ok()) return s;
  for (const std::string& warning : warnings) LogWarning("tier: %s", warning);
  std::string annotated;
  if (record.override_tier != TierOverride::kAuto) {
    absl::StrAppend(&annotated, ", annotation ", kTierAnnotation, "=", TierOverrideName(record.override_tier));
  }
  if (record.tiered_paths) {
    absl::StrAppend(&annotated, ", annotation ", kTieredPathsAnnotation, "=", absl::StrJoin(*record.tiered_paths, ","));
  }
  if (record.gpu_data_paths) {
    absl::StrAppend(&annotated, ", annotation ", kGpuDataPathsAnnotation, "=",
                    absl::StrJoin(*record.gpu_data_paths, ","));
  }
  LogInfo("tier: adopted container %s (id %s, cgroup %s, confirmed by %s in %s%s)", name, id, cgroup,
          confirmed->runtime, confirmed->state_dir, annotated);
  live_[id].name = name;
  records_[id] = std::move(record);
  live_[id].cgroup = cgroup;
  live_[id].recovered = true;
  return absl::OkStatus();
}

// An operator's choice goes into the container's record once it is
// adopted (until then it stays pending).
void TierManager::ApplyOverrides(const CycleInput& in) {
  for (const auto& [id, o] : in.overrides) {
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
    LogInfo("tier: container %s: operator chose %s", Shown(id), TierOverrideName(o.second));
  }
}

// A new verdict ends a pressure demotion: the container competes again.
void TierManager::NoteVerdicts(const ViewById& by_id) {
  for (auto& [id, live] : live_) {
    auto v = by_id.find(id);
    if (v == by_id.end()) continue;
    if (live.verdict != v->second->verdict) live.pressure_demoted = false;
    live.verdict = v->second->verdict;
    live.last_active_ns = v->second->last_active_ns;
    // A record recovered after a restart learns its name from the classifier.
    if (live.name.empty()) live.name = v->second->container_name;
  }
}

// Partitions set aside and being freed still count as used in statvfs;
// they are subtracted here, so that no container is demoted for space
// already on its way out. (Read before statvfs: a free that completes in
// between is subtracted twice, which can only delay a demotion by one
// cycle, never cause one.)
absl::StatusOr<SpaceUsage> TierManager::FastUsageLessFreeing() {
  const uint64_t freeing = FreeingBytes();
  absl::StatusOr<SpaceUsage> usage = FilesystemUsage(options_.config.fast_root);
  if (usage.ok()) usage->used_bytes -= std::min(usage->used_bytes, freeing);
  return usage;
}

// Fast tier pressure: above the high watermark the spare goes first, then
// the least recently active holders of a partition are marked for
// demotion. Returns the fast tier's usage the marks were made on.
absl::StatusOr<SpaceUsage> TierManager::MarkPressureDemotions() {
  const TierConfig& config = options_.config;
  absl::StatusOr<SpaceUsage> fs = FastUsageLessFreeing();
  std::vector<FastHolder> holders;
  for (const auto& [id, r] : records_) {
    if (r.partition) holders.push_back({id, live_[id].last_active_ns, r.override_tier == TierOverride::kFast});
  }
  if (fs.ok() && !PickDemotions(fs->total_bytes, fs->used_bytes, config, holders).empty() && SpareReady()) {
    KeepSpare(false);  // the spare goes before any container is demoted
    fs = FastUsageLessFreeing();
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
  return fs;
}

// Each recovered container with no step in flight, unless it is backing
// off after an error: its overlays checked (every second), then converged.
void TierManager::ConvergeAll(const absl::StatusOr<SpaceUsage>& fs) {
  for (auto& [id, record] : records_) {
    Live& live = live_[id];
    if (!live.recovered || record.froze || record.op != TierOp::kNone) continue;  // recovery first
    if (absl::Now() < live.retry_at) continue;
    if (absl::Now() - live.overlays_checked_at >= kOverlaysEvery) {
      live.overlays_checked_at = absl::Now();
      if (absl::Status s = CheckOverlays(record, live); !s.ok()) {
        if (absl::IsUnavailable(s)) {
          live.overlays_checked_at = absl::InfinitePast();  // again with the retry
          NoteWaiting(id, live, s);
        } else {
          NoteError(id, s, kErrorRetry);
        }
        continue;
      }
    }
    const std::map<std::string, Tier> desired = DesiredNow(record, live, fs);
    absl::Status s = Converge(record, live, desired, MayPromote(record));
    if (absl::IsUnavailable(s)) {
      NoteWaiting(id, live, s);
    } else if (!s.ok()) {
      NoteError(id, s, kErrorRetry);
    } else {
      live.waiting_since = absl::InfinitePast();
    }
    RefreshBytes(record, live, /*force=*/false);
  }
}

std::map<std::string, Tier> TierManager::DesiredNow(const TierRecord& record, Live& live,
                                                    const absl::StatusOr<SpaceUsage>& fs) {
  const TierConfig& config = options_.config;
  std::map<std::string, Tier> desired =
      DesiredTiers(PathsFor(config, record.tiered_paths, record.gpu_data_paths), live.verdict, record.override_tier);
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
  return desired;
}

// A container with a partition, or one the spare can go to, may always be
// promoted; any other only when a new partition fits under the high
// watermark.
bool TierManager::MayPromote(const TierRecord& record) {
  if (record.partition || SpareReady()) return true;
  absl::StatusOr<SpaceUsage> now_fs = FilesystemUsage(options_.config.fast_root);
  return now_fs.ok() && PromotionFits(now_fs->total_bytes, now_fs->used_bytes, options_.config);
}

bool TierManager::AnyPressureDemoted() const {
  for (const auto& [id, live] : live_) {
    if (live.pressure_demoted) return true;
  }
  return false;
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
      LogInfo("tier: container %s %s is on the slow tier", Shown(record.container_id), path);
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

// A step that waits on the container (it holds files open on the fast
// overlay): retried every 50 ms until tiers.demote_wait has passed, then at
// intervals that double (BlockedStepRetry), the container left where it is
// and its data where it is being written. Never forced: a file held open
// on the fast tier would otherwise keep writing into a layer being freed.
void TierManager::NoteWaiting(const std::string& id, Live& live, const absl::Status& s) {
  const absl::Time now = absl::Now();
  if (live.waiting_since == absl::InfinitePast()) live.waiting_since = now;
  const absl::Duration waited = now - live.waiting_since;
  const absl::Duration deadline = options_.config.demote_wait;
  if (waited < deadline) {
    NoteError(id, s, kBusyRetry);
    return;
  }
  NoteError(id,
            absl::Status(s.code(), absl::StrCat(s.message(), "; waited past tiers.demote_wait (",
                                                absl::FormatDuration(deadline),
                                                "): left as it is, tried again at doubling intervals (at most "
                                                "every ",
                                                absl::FormatDuration(kBlockedRetryMax), ")")),
            BlockedStepRetry(waited, deadline));
}

}  // namespace gputier
