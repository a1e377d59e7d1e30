#include "loader/tier/tier_plan.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace gputier {

absl::string_view TierName(Tier tier) { return tier == Tier::kFast ? "fast" : "slow"; }

absl::StatusOr<Tier> ParseTier(absl::string_view name) {
  const std::string n = absl::AsciiStrToLower(name);
  if (n == "fast") return Tier::kFast;
  if (n == "slow") return Tier::kSlow;
  return absl::InvalidArgumentError(absl::StrCat("'", name, "' is not a tier; write fast or slow"));
}

absl::string_view TierOverrideName(TierOverride o) {
  switch (o) {
    case TierOverride::kFast: return "fast";
    case TierOverride::kSlow: return "slow";
    case TierOverride::kAuto: break;
  }
  return "auto";
}

absl::StatusOr<TierOverride> ParseTierOverride(absl::string_view name) {
  const std::string n = absl::AsciiStrToLower(name);
  if (n == "fast") return TierOverride::kFast;
  if (n == "slow") return TierOverride::kSlow;
  if (n == "auto") return TierOverride::kAuto;
  return absl::InvalidArgumentError(absl::StrCat(
      "'", name, "' is not a tier choice; write fast, slow, or auto (follow the verdict again)"));
}

namespace {

bool Nested(const std::string& a, const std::string& b) {
  auto inside = [](const std::string& in, const std::string& out) {
    return in.size() > out.size() && in.compare(0, out.size(), out) == 0 && (out == "/" || in[out.size()] == '/');
  };
  return a == b || inside(a, b) || inside(b, a);
}

// `from` without the entries nested with any of `annotated`.
std::vector<std::string> Without(const std::vector<std::string>& from, const std::vector<std::string>& annotated) {
  std::vector<std::string> out;
  for (const std::string& p : from) {
    if (std::none_of(annotated.begin(), annotated.end(), [&](const std::string& a) { return Nested(p, a); })) {
      out.push_back(p);
    }
  }
  return out;
}

}  // namespace

ContainerPaths PathsFor(const TierConfig& config, const std::optional<std::vector<std::string>>& tiered,
                        const std::optional<std::vector<std::string>>& gpu_data) {
  ContainerPaths out;
  out.tiered_paths = tiered ? *tiered : config.tiered_paths;
  out.gpu_data_paths = gpu_data ? *gpu_data : config.gpu_data_paths;
  if (tiered && !gpu_data) out.gpu_data_paths = Without(out.gpu_data_paths, *tiered);
  if (gpu_data && !tiered) out.tiered_paths = Without(out.tiered_paths, *gpu_data);
  return out;
}

std::vector<std::string> ManagedPaths(const ContainerPaths& c) {
  std::vector<std::string> paths = c.tiered_paths;
  paths.insert(paths.end(), c.gpu_data_paths.begin(), c.gpu_data_paths.end());
  return paths;
}

std::vector<std::string> ManagedPaths(const TierConfig& config) {
  return ManagedPaths(PathsFor(config, std::nullopt, std::nullopt));
}

std::map<std::string, Tier> DesiredTiers(const ContainerPaths& paths, Verdict verdict,
                                         TierOverride override_tier) {
  std::map<std::string, Tier> out;
  auto all = [&](Tier t) {
    for (const std::string& p : ManagedPaths(paths)) out[p] = t;
  };
  switch (override_tier) {
    case TierOverride::kFast: all(Tier::kFast); return out;
    case TierOverride::kSlow: all(Tier::kSlow); return out;
    case TierOverride::kAuto: break;
  }
  switch (verdict) {
    case Verdict::kGpu:
      all(Tier::kFast);
      break;
    case Verdict::kMixed:
      for (const std::string& p : paths.tiered_paths) out[p] = Tier::kSlow;
      for (const std::string& p : paths.gpu_data_paths) out[p] = Tier::kFast;
      break;
    case Verdict::kCpu:
    case Verdict::kUnknown:
      all(Tier::kSlow);
      break;
  }
  return out;
}

std::map<std::string, Tier> DesiredTiers(const TierConfig& config, Verdict verdict,
                                         TierOverride override_tier) {
  return DesiredTiers(PathsFor(config, std::nullopt, std::nullopt), verdict, override_tier);
}

namespace {
uint64_t Mark(uint64_t total, double fraction) {
  return static_cast<uint64_t>(std::llround(static_cast<long double>(total) * fraction));
}
}  // namespace

bool PromotionFits(uint64_t total, uint64_t used, const TierConfig& config) {
  return total > 0 && used + config.partition_size <= Mark(total, config.high_watermark);
}

std::vector<std::string> PickDemotions(uint64_t total, uint64_t used, const TierConfig& config,
                                       std::vector<FastHolder> holders) {
  std::vector<std::string> out;
  if (total == 0 || used <= Mark(total, config.high_watermark)) return out;
  std::stable_sort(holders.begin(), holders.end(), [](const FastHolder& a, const FastHolder& b) {
    if (a.operator_pinned != b.operator_pinned) return !a.operator_pinned;
    if (a.last_active_ns != b.last_active_ns) return a.last_active_ns < b.last_active_ns;
    return a.container_id < b.container_id;
  });
  const uint64_t low = Mark(total, config.low_watermark);
  uint64_t projected = used;
  for (const FastHolder& h : holders) {
    if (projected <= low) break;
    out.push_back(h.container_id);
    projected = projected > config.partition_size ? projected - config.partition_size : 0;
  }
  return out;
}

absl::Duration BlockedStepRetry(absl::Duration waited, absl::Duration deadline) {
  if (waited < deadline) return kBusyRetry;
  return std::min(std::max(waited - deadline, kBusyRetry), kBlockedRetryMax);
}

}  // namespace gputier
