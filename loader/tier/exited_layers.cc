#include "loader/tier/exited_layers.h"

#include <algorithm>
#include <tuple>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "loader/config/container_path.h"

namespace gputier {

std::string ExitedName(absl::string_view key, int64_t unix_seconds) {
  return absl::StrCat(key, ".", unix_seconds);
}

std::optional<ExitedLayer> ParseExitedName(absl::string_view name) {
  const size_t dot = name.rfind('.');
  if (dot == absl::string_view::npos || dot == 0) return std::nullopt;
  const absl::string_view key = name.substr(0, dot);
  const absl::string_view seconds = name.substr(dot + 1);
  if (seconds.empty() || seconds.size() > 18 || key[0] == '.' || !ValidateTierKey(key).ok()) return std::nullopt;
  for (char c : seconds) {
    if (c < '0' || c > '9') return std::nullopt;
  }
  ExitedLayer layer;
  if (!absl::SimpleAtoi(seconds, &layer.exited_at_s)) return std::nullopt;
  layer.name = std::string(name);
  layer.key = std::string(key);
  return layer;
}

ExitedRemovals PickExitedRemovals(std::vector<ExitedLayer> layers, int64_t now_s, absl::Duration retention,
                                  uint64_t quota, uint64_t used_bytes) {
  std::sort(layers.begin(), layers.end(), [](const ExitedLayer& a, const ExitedLayer& b) {
    return std::tie(a.exited_at_s, a.name) < std::tie(b.exited_at_s, b.name);
  });
  ExitedRemovals out;
  uint64_t quarantined = 0;
  for (const ExitedLayer& l : layers) quarantined += l.bytes;
  const uint64_t live = used_bytes - std::min(used_bytes, quarantined);
  out.live_over_quota = quota > 0 && live > quota;
  const int64_t keep_s = absl::ToInt64Seconds(retention);
  uint64_t left = used_bytes;
  std::vector<bool> taken(layers.size(), false);
  for (size_t i = 0; i < layers.size(); ++i) {
    // A clock set back (exit "in the future") keeps the layer its retention.
    if (now_s < layers[i].exited_at_s || now_s - layers[i].exited_at_s < keep_s) continue;
    taken[i] = true;
    out.names.push_back(layers[i].name);
    out.reasons.push_back("retention");
    left -= std::min(left, layers[i].bytes);
  }
  for (size_t i = 0; i < layers.size() && quota > 0 && left > quota; ++i) {
    if (taken[i]) continue;
    out.names.push_back(layers[i].name);
    out.reasons.push_back("quota");
    left -= std::min(left, layers[i].bytes);
  }
  return out;
}

}  // namespace gputier
