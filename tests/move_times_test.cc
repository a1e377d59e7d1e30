// MoveTimes: the time a container's promotion or demotion count was first
// seen to grow, added to the tier status rows.
#include "loader/tier/move_times.h"

#include <gtest/gtest.h>

namespace gputier {
namespace {

nlohmann::json Tiering(uint64_t promotions, uint64_t demotions) {
  return {{"tiers", nlohmann::json::object()},
          {"containers", {{{"container_id", "c1"}, {"promotions", promotions}, {"demotions", demotions}}}}};
}

TEST(MoveTimesTest, APromotionIsDatedWhenItsCountFirstGrows) {
  MoveTimes moves;
  const absl::Time t0 = absl::FromUnixMillis(1'000'000);
  moves.Note(Tiering(0, 0), t0);
  moves.Note(Tiering(1, 0), t0 + absl::Seconds(1));
  moves.Note(Tiering(1, 0), t0 + absl::Seconds(5));  // no new move: the date stays
  nlohmann::json t = Tiering(1, 0);
  moves.Annotate(&t);
  EXPECT_EQ(t["containers"][0]["last_promotion_unix_ms"], 1'001'000);
  EXPECT_FALSE(t["containers"][0].contains("last_demotion_unix_ms"));
  moves.Note(Tiering(1, 1), t0 + absl::Seconds(7));
  moves.Annotate(&t);
  EXPECT_EQ(t["containers"][0]["last_demotion_unix_ms"], 1'007'000);
}

TEST(MoveTimesTest, NoMoveSinceStartAddsNothingAndAGoneContainerIsForgotten) {
  MoveTimes moves;
  moves.Note(Tiering(0, 0), absl::FromUnixMillis(5));
  nlohmann::json t = Tiering(0, 0);
  moves.Annotate(&t);
  EXPECT_FALSE(t["containers"][0].contains("last_promotion_unix_ms"));
  moves.Note(Tiering(2, 0), absl::FromUnixMillis(10));
  moves.Note({{"containers", nlohmann::json::array()}}, absl::FromUnixMillis(20));
  moves.Note(Tiering(2, 0), absl::FromUnixMillis(30));  // back with the same count: seen anew
  moves.Annotate(&t);
  EXPECT_EQ(t["containers"][0]["last_promotion_unix_ms"], 30);
}

TEST(MoveTimesTest, RowsOfAnotherShapeAreSkipped) {
  MoveTimes moves;
  for (const nlohmann::json& odd : {nlohmann::json(nullptr), nlohmann::json({{"containers", 3}}),
                                    nlohmann::json({{"containers", {{{"container_id", 4}}, 5}}})}) {
    moves.Note(odd, absl::FromUnixMillis(1));
    nlohmann::json copy = odd;
    moves.Annotate(&copy);
    EXPECT_EQ(copy, odd);
  }
}

}  // namespace
}  // namespace gputier
