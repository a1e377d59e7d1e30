// TierManager's status: the bytes each container holds on each tier, and
// the status it publishes after every cycle for `gputierctl status` and the
// metrics (Publish).
#include <cstdint>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "loader/tier/fs/tier_partition.h"
#include "loader/tier/fs/tree_walk.h"
#include "loader/tier/tier_manager.h"

namespace gputier {
namespace {

constexpr absl::Duration kBytesEvery = absl::Seconds(30);

// Allocated bytes of the files below `dir` (0 when it does not exist),
// walked with a bounded number of fds at any depth (tree_walk.h); never
// follows symlinks or enters another mount. A walk that fails counts 0.
uint64_t DirBytes(const std::string& dir) {
  absl::StatusOr<uint64_t> bytes = TreeAllocatedBytes(dir);
  return bytes.ok() ? *bytes : 0;
}

}  // namespace

void TierManager::RefreshBytes(const TierRecord& record, Live& live, bool force) {
  const absl::Time now = absl::Now();
  if (!force && now - live.bytes_at < kBytesEvery) return;
  live.bytes_at = now;
  live.slow_bytes = DirBytes(absl::StrCat(options_.config.slow_root, "/", record.key));
  live.fast_bytes = 0;
  if (absl::StatusOr<PartitionPaths> part = PlanPartition(options_.config.fast_root, record.key);
      part.ok() && record.partition) {
    live.fast_bytes = DirBytes(part->mount_point);
  }
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
  tiers["devices"] = tier_devices_;
  tiers["fast_freeing"] = FreeingBytes();  // part of fast_used: partitions being freed
  // The slow root (exited.cc): bytes under it (quarantine included, counted
  // every 30 s), the quota, and what the quota holds back.
  tiers["slow_used"] = slow_used_;
  tiers["slow_quarantined"] = slow_quarantined_;
  tiers["slow_quarantined_layers"] = exited_bytes_.size();
  tiers["slow_quota"] = c.slow_quota;
  tiers["slow_over_quota"] = c.slow_quota > 0 && slow_used_ > c.slow_quota;
  tiers["slow_live_over_quota"] = slow_live_over_quota_;
  tiers["adoptions_refused"] = adoption_refused_;
  tiers["exited_retention_s"] = absl::ToInt64Seconds(c.exited_retention);
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
                          {"name", live.name.empty() ? id.substr(0, 12) : live.name},
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
    row["key"] = r.key;  // names its directories under both tier roots
    if (r.froze) row["frozen"] = true;  // by gputierd, mid-step or until a failed recovery succeeds
    if (const absl::Time now = absl::Now(); live.retry_at > now) {
      row["retry_in_ms"] = absl::ToInt64Milliseconds(live.retry_at - now);  // backing off after an error
    }
    if (live.last_promotion_ms >= 0) row["last_promotion_ms"] = live.last_promotion_ms;
    if (live.last_demotion_ms >= 0) row["last_demotion_ms"] = live.last_demotion_ms;
    row["promotions"] = live.promotions;  // since this gputierd started
    row["demotions"] = live.demotions;
    row["writeback_bytes"] = live.writeback_bytes;
    rows.push_back(std::move(row));
  }
  std::lock_guard<std::mutex> lock(mu_);
  status_ = {{"tiers", tiers}, {"containers", rows}};
}

}  // namespace gputier
