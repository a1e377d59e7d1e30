// Hysteresis: promotion is immediate, demotion waits for a run of CPU windows,
// a decided cgroup never goes back to UNKNOWN, and state survives a restart.
#include "policy/hysteresis.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "policy/verdict.h"

namespace gputier {
namespace {

constexpr Verdict U = Verdict::kUnknown;
constexpr Verdict C = Verdict::kCpu;
constexpr Verdict G = Verdict::kGpu;
constexpr Verdict M = Verdict::kMixed;

struct SequenceCase {
  const char* name;
  uint32_t demote_after;
  std::vector<Verdict> proposed;
  std::vector<Verdict> expected;  // the verdict in force after each proposal
};

const SequenceCase kSequences[] = {
    {"UnknownTakesTheFirstVerdictAtOnce", 3, {C}, {C}},
    {"UnknownStaysUntilSomethingIsDecided", 3, {U, U, G}, {U, U, G}},
    {"PromotionFromCpuIsImmediate", 3, {C, G}, {C, G}},
    {"PromotionFromCpuToMixedIsImmediate", 3, {C, M}, {C, M}},
    {"GpuAndMixedSwitchImmediately", 3, {G, M, G, M}, {G, M, G, M}},
    {"DemotionWaitsForThreeConsecutiveCpuWindows", 3, {G, C, C, C}, {G, G, G, C}},
    {"MixedIsDemotedLikeGpu", 3, {M, C, C, C}, {M, M, M, C}},
    {"AGpuWindowInBetweenResetsTheCount", 3, {G, C, C, G, C, C, C}, {G, G, G, G, G, G, C}},
    {"AMixedWindowInBetweenResetsTheCountToo", 3, {G, C, C, M, C, C, C},
     {G, G, G, M, M, M, C}},
    {"DemotionAfterOneWindowWhenConfigured", 1, {G, C}, {G, C}},
    {"ZeroWindowsIsTakenAsOne", 0, {G, C}, {G, C}},
    {"NeverBackToUnknownFromGpu", 3, {G, U, U}, {G, G, G}},
    {"NeverBackToUnknownFromCpu", 3, {C, U}, {C, C}},
    {"UnknownDoesNotBreakARunOfCpuWindows", 3, {G, C, U, C, C}, {G, G, G, G, C}},
    {"CpuStaysCpu", 3, {C, C, C, C}, {C, C, C, C}},
    {"AfterDemotionPromotionIsImmediateAgain", 2, {G, C, C, G}, {G, G, C, G}},
};

class HysteresisSequenceTest : public testing::TestWithParam<SequenceCase> {};

TEST_P(HysteresisSequenceTest, GivesTheExpectedVerdicts) {
  const SequenceCase& c = GetParam();
  ASSERT_EQ(c.proposed.size(), c.expected.size());
  Hysteresis h(c.demote_after);
  for (size_t i = 0; i < c.proposed.size(); ++i) {
    EXPECT_EQ(h.Apply(c.proposed[i]), c.expected[i])
        << "window " << i << ": proposed " << VerdictName(c.proposed[i]);
    EXPECT_EQ(h.current(), c.expected[i]);
  }
}

INSTANTIATE_TEST_SUITE_P(Sequences, HysteresisSequenceTest, testing::ValuesIn(kSequences),
                         [](const testing::TestParamInfo<SequenceCase>& info) {
                           return std::string(info.param.name);
                         });

TEST(Hysteresis, StartsUnknownWithDefaultOfThreeWindows) {
  Hysteresis h;
  EXPECT_EQ(h.current(), U);
  h.Apply(G);
  h.Apply(C);
  h.Apply(C);
  EXPECT_EQ(h.current(), G);
  EXPECT_EQ(h.cpu_streak(), 2u);
  EXPECT_EQ(h.Apply(C), C);
  EXPECT_EQ(h.cpu_streak(), 0u);
}

TEST(Hysteresis, RestoreResumesTheVerdictAfterARestart) {
  Hysteresis h(3);
  h.Restore(G);
  EXPECT_EQ(h.current(), G);
  // A restored GPU verdict is demoted like any other, not at once.
  EXPECT_EQ(h.Apply(C), G);
  EXPECT_EQ(h.Apply(C), G);
  EXPECT_EQ(h.Apply(C), C);
}

TEST(Hysteresis, RestoreClearsAPendingDemotion) {
  Hysteresis h(3);
  h.Apply(G);
  h.Apply(C);
  h.Apply(C);
  h.Restore(G);
  EXPECT_EQ(h.cpu_streak(), 0u);
  EXPECT_EQ(h.Apply(C), G);
  EXPECT_EQ(h.Apply(C), G);
  EXPECT_EQ(h.Apply(C), C);
}

TEST(Hysteresis, RestoredUnknownTakesTheNextVerdict) {
  Hysteresis h(3);
  h.Apply(G);
  h.Restore(U);
  EXPECT_EQ(h.Apply(C), C);
}

TEST(Hysteresis, StateIsTiny) { EXPECT_LE(sizeof(Hysteresis), 8u); }

}  // namespace
}  // namespace gputier
