#include "loader/tier/move_times.h"

namespace gputier {
namespace {

uint64_t CountOf(const nlohmann::json& row, const char* key) {
  auto it = row.find(key);
  return it != row.end() && it->is_number_unsigned() ? it->get<uint64_t>() : 0;
}

}  // namespace

void MoveTimes::Note(const nlohmann::json& tiering, absl::Time now) {
  auto rows = tiering.find("containers");
  if (!tiering.is_object() || rows == tiering.end() || !rows->is_array()) return;
  absl::flat_hash_map<std::string, Seen> next;
  const int64_t now_ms = absl::ToUnixMillis(now);
  for (const nlohmann::json& row : *rows) {
    auto id = row.find("container_id");
    if (id == row.end() || !id->is_string()) continue;
    Seen s;
    if (auto it = seen_.find(id->get<std::string>()); it != seen_.end()) s = it->second;
    const uint64_t promotions = CountOf(row, "promotions"), demotions = CountOf(row, "demotions");
    if (promotions > s.promotions) s.promoted_ms = now_ms;
    if (demotions > s.demotions) s.demoted_ms = now_ms;
    s.promotions = promotions;
    s.demotions = demotions;
    next[id->get<std::string>()] = s;
  }
  seen_ = std::move(next);
}

void MoveTimes::Annotate(nlohmann::json* tiering) const {
  auto rows = tiering->find("containers");
  if (!tiering->is_object() || rows == tiering->end() || !rows->is_array()) return;
  for (nlohmann::json& row : *rows) {
    auto id = row.find("container_id");
    if (id == row.end() || !id->is_string()) continue;
    auto it = seen_.find(id->get<std::string>());
    if (it == seen_.end()) continue;
    if (it->second.promoted_ms >= 0) row["last_promotion_unix_ms"] = it->second.promoted_ms;
    if (it->second.demoted_ms >= 0) row["last_demotion_unix_ms"] = it->second.demoted_ms;
  }
}

}  // namespace gputier
