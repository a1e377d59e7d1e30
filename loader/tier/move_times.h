// When each container last moved between the tiers, for status readers
// (gputierctl top's LAST_MOVE). The tier manager's status rows count
// promotions and demotions since gputierd started; this notes the wall-clock
// time at which a count was first seen to grow and adds it to the rows as
// last_promotion_unix_ms / last_demotion_unix_ms. Accurate to the interval
// between two notes (a classification tick). Pure: times are passed in.
#ifndef GPUTIER_LOADER_TIER_MOVE_TIMES_H_
#define GPUTIER_LOADER_TIER_MOVE_TIMES_H_

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"

namespace gputier {

class MoveTimes {
 public:
  // `tiering`: the tier manager's status ({"tiers", "containers"}). A
  // container no longer listed is forgotten.
  void Note(const nlohmann::json& tiering, absl::Time now);

  // Adds the noted times to each listed container's row.
  void Annotate(nlohmann::json* tiering) const;

 private:
  struct Seen {
    uint64_t promotions = 0, demotions = 0;
    int64_t promoted_ms = -1, demoted_ms = -1;  // Unix ms; -1: none since start
  };
  absl::flat_hash_map<std::string, Seen> seen_;
};

}  // namespace gputier

#endif  // GPUTIER_LOADER_TIER_MOVE_TIMES_H_
