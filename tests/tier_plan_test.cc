// Which tier each directory goes to, and who leaves the fast tier when it
// fills (loader/tier/tier_plan.h).
#include "loader/tier/tier_plan.h"

#include "gtest/gtest.h"

namespace gputier {
namespace {

TierConfig TwoKinds() {
  TierConfig c;
  c.tiered_paths = {"/data", "/scratch"};
  c.gpu_data_paths = {"/ckpt"};
  return c;
}

TEST(DesiredTiers, GpuPutsEveryManagedPathOnFast) {
  auto d = DesiredTiers(TwoKinds(), Verdict::kGpu, TierOverride::kAuto);
  EXPECT_EQ(d, (std::map<std::string, Tier>{{"/data", Tier::kFast}, {"/scratch", Tier::kFast},
                                            {"/ckpt", Tier::kFast}}));
}

TEST(DesiredTiers, MixedPutsOnlyGpuDataPathsOnFast) {
  auto d = DesiredTiers(TwoKinds(), Verdict::kMixed, TierOverride::kAuto);
  EXPECT_EQ(d, (std::map<std::string, Tier>{{"/data", Tier::kSlow}, {"/scratch", Tier::kSlow},
                                            {"/ckpt", Tier::kFast}}));
}

TEST(DesiredTiers, CpuAndUnknownStaySlow) {
  for (Verdict v : {Verdict::kCpu, Verdict::kUnknown}) {
    for (const auto& [path, tier] : DesiredTiers(TwoKinds(), v, TierOverride::kAuto)) {
      EXPECT_EQ(tier, Tier::kSlow) << path;
    }
  }
}

TEST(DesiredTiers, AnOverrideBeatsTheVerdict) {
  for (const auto& [path, tier] : DesiredTiers(TwoKinds(), Verdict::kCpu, TierOverride::kFast)) {
    EXPECT_EQ(tier, Tier::kFast) << path;
  }
  for (const auto& [path, tier] : DesiredTiers(TwoKinds(), Verdict::kGpu, TierOverride::kSlow)) {
    EXPECT_EQ(tier, Tier::kSlow) << path;
  }
}

using Paths = std::vector<std::string>;

TEST(PathsFor, WithoutAnnotationsTheConfigApplies) {
  const ContainerPaths p = PathsFor(TwoKinds(), std::nullopt, std::nullopt);
  EXPECT_EQ(p.tiered_paths, (Paths{"/data", "/scratch"}));
  EXPECT_EQ(p.gpu_data_paths, Paths{"/ckpt"});
  EXPECT_EQ(ManagedPaths(TwoKinds()), (Paths{"/data", "/scratch", "/ckpt"}));
}

TEST(PathsFor, EachAnnotatedListReplacesTheConfigsOfItsKind) {
  struct Case {
    const char* what;
    std::optional<Paths> tiered;
    std::optional<Paths> gpu_data;
    Paths want_tiered;
    Paths want_gpu_data;
  };
  const Case cases[] = {
      {"tiered-paths only", Paths{"/x"}, std::nullopt, {"/x"}, {"/ckpt"}},
      {"gpu-data-paths only", std::nullopt, Paths{"/models"}, {"/data", "/scratch"}, {"/models"}},
      {"both", Paths{"/x", "/y"}, Paths{"/z"}, {"/x", "/y"}, {"/z"}},
      {"a config directory the annotation names as the other kind is dropped", Paths{"/ckpt"}, std::nullopt,
       {"/ckpt"}, {}},
      {"one inside an annotated directory is dropped", Paths{"/"}, std::nullopt, {"/"}, {}},
      {"one holding an annotated directory is dropped", std::nullopt, Paths{"/data/weights"},
       {"/scratch"}, {"/data/weights"}},
      {"a sibling with a common prefix stays", std::nullopt, Paths{"/dat"}, {"/data", "/scratch"}, {"/dat"}},
  };
  for (const Case& c : cases) {
    const ContainerPaths p = PathsFor(TwoKinds(), c.tiered, c.gpu_data);
    EXPECT_EQ(p.tiered_paths, c.want_tiered) << c.what;
    EXPECT_EQ(p.gpu_data_paths, c.want_gpu_data) << c.what;
  }
}

TEST(DesiredTiers, AnnotatedPathsAreTheOnlyOnesMoved) {
  const ContainerPaths p = PathsFor(TwoKinds(), Paths{"/x"}, std::nullopt);
  EXPECT_EQ(DesiredTiers(p, Verdict::kMixed, TierOverride::kAuto),
            (std::map<std::string, Tier>{{"/x", Tier::kSlow}, {"/ckpt", Tier::kFast}}));
  EXPECT_EQ(DesiredTiers(p, Verdict::kCpu, TierOverride::kFast),
            (std::map<std::string, Tier>{{"/x", Tier::kFast}, {"/ckpt", Tier::kFast}}));
}

TEST(TierChoiceNames, RoundTripAndRefuseOthers) {
  for (TierOverride o : {TierOverride::kAuto, TierOverride::kFast, TierOverride::kSlow}) {
    EXPECT_EQ(*ParseTierOverride(TierOverrideName(o)), o);
  }
  EXPECT_FALSE(ParseTierOverride("nvme").ok());
  EXPECT_EQ(*ParseTier("FAST"), Tier::kFast);
  EXPECT_FALSE(ParseTier("auto").ok());
}

TierConfig Capacity() {
  TierConfig c;
  c.partition_size = 10;
  c.high_watermark = 0.9;
  c.low_watermark = 0.5;
  return c;
}

TEST(PromotionFits, OnlyBelowTheHighWatermark) {
  EXPECT_TRUE(PromotionFits(100, 80, Capacity()));   // 90 after
  EXPECT_FALSE(PromotionFits(100, 81, Capacity()));  // 91 after
  EXPECT_FALSE(PromotionFits(0, 0, Capacity()));
}

TEST(PickDemotions, NothingAtOrBelowTheHighWatermark) {
  EXPECT_TRUE(PickDemotions(100, 90, Capacity(), {{"a", 1, false}}).empty());
}

TEST(PickDemotions, LeastRecentlyActiveFirstUntilTheLowWatermark) {
  std::vector<FastHolder> h = {{"busy", 900, false}, {"idle", 100, false}, {"mid", 500, false},
                               {"newest", 1000, false}};
  // 95 -> 85 -> 75 -> 65 -> 55: all four still above 50.
  EXPECT_EQ(PickDemotions(100, 95, Capacity(), h),
            (std::vector<std::string>{"idle", "mid", "busy", "newest"}));
  // 92 -> 82 -> 72 -> 62 -> 52; with low 0.75: idle, mid, busy (72 <= 75).
  TierConfig c = Capacity();
  c.low_watermark = 0.75;
  EXPECT_EQ(PickDemotions(100, 92, c, h), (std::vector<std::string>{"idle", "mid"}));
}

TEST(PickDemotions, OperatorPinnedContainersGoLast) {
  std::vector<FastHolder> h = {{"pinned-idle", 1, true}, {"busy", 900, false}};
  TierConfig c = Capacity();
  c.low_watermark = 0.85;
  EXPECT_EQ(PickDemotions(100, 95, c, h), std::vector<std::string>{"busy"});
}

TEST(BlockedStepRetry, EveryFiftyMillisecondsUntilTheDeadlineThenDoublingUpToAMinute) {
  const absl::Duration deadline = absl::Seconds(60);
  struct Case {
    absl::Duration waited, retry;
  } cases[] = {
      {absl::ZeroDuration(), absl::Milliseconds(50)},
      {absl::Seconds(59), absl::Milliseconds(50)},
      {absl::Seconds(60), absl::Milliseconds(50)},
      {absl::Seconds(60) + absl::Milliseconds(100), absl::Milliseconds(100)},
      {absl::Seconds(60) + absl::Milliseconds(200), absl::Milliseconds(200)},
      {absl::Seconds(70), absl::Seconds(10)},
      {absl::Seconds(60 + 59), absl::Seconds(59)},
      {absl::Hours(5), absl::Minutes(1)},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(BlockedStepRetry(c.waited, deadline), c.retry) << absl::FormatDuration(c.waited);
  }
  // Each retry past the deadline at least doubles the time waited past it.
  absl::Duration waited = deadline;
  int tries = 0;
  while (waited < deadline + absl::Minutes(10)) {
    waited += BlockedStepRetry(waited, deadline);
    ++tries;
  }
  EXPECT_LT(tries, 30) << "retried too often past the deadline";
}

}  // namespace
}  // namespace gputier
