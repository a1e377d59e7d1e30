// The threshold rule (claims 2-4): every verdict, the exact boundaries, and
// the explanation gputierctl explain prints.
#include "policy/rule.h"

#include <cmath>
#include <string>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "policy/features.h"
#include "policy/verdict.h"

namespace gputier {
namespace {

constexpr double kUndefined = -1;  // ext ratio: no file with an extension

Features MakeFeatures(double gpu_ioctl_rate, double ext_ratio, uint64_t evidence,
                      bool gpu_opened) {
  Features f;
  f.gpu_ioctl_rate = gpu_ioctl_rate;
  f.gpu_opened = gpu_opened ? 1.0 : 0.0;
  f.ext_ratio_defined = ext_ratio != kUndefined;
  f.ext_ratio = f.ext_ratio_defined ? ext_ratio : 0.0;
  f.evidence = evidence;
  return f;
}

struct RuleCase {
  const char* name;
  double gpu_ioctl_rate;
  double ext_ratio;
  uint64_t evidence;
  bool gpu_opened;
  Verdict expected;
};

// Default thresholds: gpu_ioctl_rate 1.0/s, ext_ratio 0.3, min_evidence 10.
const RuleCase kRuleCases[] = {
    {"RateAndRatioExactlyAtThresholdsIsGpu", 1.0, 0.3, 100, true, Verdict::kGpu},
    {"RateAtThresholdRatioJustBelowIsMixed", 1.0, std::nextafter(0.3, 0.0), 100, true,
     Verdict::kMixed},
    {"RateJustBelowThresholdIsCpuEvenWithOnlyGpuTypeFiles", std::nextafter(1.0, 0.0), 1.0, 100,
     true, Verdict::kCpu},
    {"ThumbnailerOpeningOnlyImagesWithoutGpuIsCpu", 0.0, 1.0, 5000, false, Verdict::kCpu},
    {"GpuJobWithoutGpuTypeFilesIsMixed", 50.0, 0.0, 5000, true, Verdict::kMixed},
    {"GpuJobOpeningNoFileWithAnExtensionIsMixed", 50.0, kUndefined, 5000, true, Verdict::kMixed},
    {"GpuJobReadingMostlyTensorsIsGpu", 200.0, 0.9, 5000, true, Verdict::kGpu},
    {"LittleEvidenceAndNoGpuIsUnknown", 0.0, 1.0, 9, false, Verdict::kUnknown},
    {"NoEvidenceAtAllIsUnknown", 0.0, kUndefined, 0, false, Verdict::kUnknown},
    {"EvidenceExactlyAtMinimumDecides", 0.0, 1.0, 10, false, Verdict::kCpu},
    {"LittleEvidenceButAGpuBurstDecides", 200.0, kUndefined, 3, true, Verdict::kMixed},
    {"LittleEvidenceButAGpuOpenDecidesCpuWithoutIoctls", 0.0, kUndefined, 1, true,
     Verdict::kCpu},
};

class RuleVerdictTest : public testing::TestWithParam<RuleCase> {};

TEST_P(RuleVerdictTest, GivesTheExpectedVerdict) {
  const RuleCase& c = GetParam();
  const Features f = MakeFeatures(c.gpu_ioctl_rate, c.ext_ratio, c.evidence, c.gpu_opened);
  const RuleExplanation e = EvaluateRule(f, RuleThresholds());
  EXPECT_EQ(e.verdict, c.expected) << VerdictName(e.verdict) << ": " << e.reason;
  EXPECT_EQ(RuleVerdict(f, RuleThresholds()), c.expected);
}

INSTANTIATE_TEST_SUITE_P(Boundaries, RuleVerdictTest, testing::ValuesIn(kRuleCases),
                         [](const testing::TestParamInfo<RuleCase>& info) {
                           return std::string(info.param.name);
                         });

TEST(Rule, ConfiguredThresholdsMoveTheBoundaries) {
  RuleThresholds t;
  t.gpu_ioctl_rate = 10;
  t.ext_ratio = 0.8;
  t.min_evidence = 100;
  EXPECT_EQ(RuleVerdict(MakeFeatures(9.99, 0.9, 1000, true), t), Verdict::kCpu);
  EXPECT_EQ(RuleVerdict(MakeFeatures(10, 0.8, 1000, true), t), Verdict::kGpu);
  EXPECT_EQ(RuleVerdict(MakeFeatures(10, 0.79, 1000, true), t), Verdict::kMixed);
  EXPECT_EQ(RuleVerdict(MakeFeatures(0, 0.9, 99, false), t), Verdict::kUnknown);
}

TEST(Rule, ExtRatioThresholdZeroMakesEveryGpuUserWithFilesGpu) {
  RuleThresholds t;
  t.ext_ratio = 0;
  EXPECT_EQ(RuleVerdict(MakeFeatures(5, 0.0, 100, true), t), Verdict::kGpu);
  // An undefined ratio is still below any threshold.
  EXPECT_EQ(RuleVerdict(MakeFeatures(5, kUndefined, 100, true), t), Verdict::kMixed);
}

TEST(RuleExplanation, ListsEveryCheckInOrderAndMarksTheDecisiveOnes) {
  const RuleExplanation e = EvaluateRule(MakeFeatures(12, 0.45, 500, true), RuleThresholds());
  ASSERT_EQ(e.checks.size(), 6u);
  EXPECT_EQ(e.checks[0].feature, "evidence");
  EXPECT_EQ(e.checks[0].value, 500);
  EXPECT_EQ(e.checks[0].threshold, 10);
  EXPECT_TRUE(e.checks[0].at_or_above);
  EXPECT_FALSE(e.checks[0].decisive);
  EXPECT_EQ(e.checks[1].feature, "gpu_opened");
  EXPECT_EQ(e.checks[2].feature, "gpu_ioctl_rate");
  EXPECT_TRUE(e.checks[2].at_or_above);
  EXPECT_TRUE(e.checks[2].decisive);
  EXPECT_EQ(e.checks[3].feature, "ext_ratio");
  EXPECT_DOUBLE_EQ(e.checks[3].value, 0.45);
  EXPECT_DOUBLE_EQ(e.checks[3].threshold, 0.3);
  EXPECT_TRUE(e.checks[3].at_or_above);
  EXPECT_TRUE(e.checks[3].decisive);
  EXPECT_EQ(e.reason, "gpu_ioctl_rate 12/s is at or above 1/s and ext_ratio 0.45 is at or "
                      "above 0.3: gpu");
}

TEST(RuleExplanation, ReasonsNameTheDecidingComparison) {
  const RuleThresholds t;
  EXPECT_EQ(EvaluateRule(MakeFeatures(0.25, 1.0, 40, false), t).reason,
            "gpu_ioctl_rate 0.25/s is below 1/s: cpu, whatever the files it opens");
  EXPECT_EQ(EvaluateRule(MakeFeatures(3, 0.1, 40, true), t).reason,
            "gpu_ioctl_rate 3/s is at or above 1/s but ext_ratio 0.1 is below 0.3: mixed");
  EXPECT_EQ(EvaluateRule(MakeFeatures(3, kUndefined, 40, true), t).reason,
            "gpu_ioctl_rate 3/s is at or above 1/s but no file with an extension was opened: "
            "mixed");
  const RuleExplanation unknown = EvaluateRule(MakeFeatures(0, kUndefined, 4, false), t);
  EXPECT_EQ(unknown.reason,
            "evidence 4 is below min_evidence 10 and the cgroup never used a GPU: unknown");
  EXPECT_TRUE(unknown.checks[0].decisive);
  EXPECT_TRUE(unknown.checks[1].decisive);
  EXPECT_FALSE(unknown.checks[3].defined);
}

struct ConfidenceCase {
  const char* name;
  double gpu_ioctl_rate;
  double ext_ratio;
  int expected_permille;
};

// 500 + 500 * margin; margin = the smallest relative distance of a deciding
// feature from its threshold, capped at 1 (see docs/FEATURES.md).
const ConfidenceCase kConfidenceCases[] = {
    {"ExactlyAtBothThresholdsIsACoinFlip", 1.0, 0.3, 500},
    {"CpuWithNoIoctlsIsCertain", 0.0, 0.5, 1000},
    {"CpuHalfwayBelowTheRateThreshold", 0.5, 0.5, 750},   // (1 - 0.5) / 1
    {"GpuAtTwiceTheRateAndAllGpuFiles", 2.0, 1.0, 1000},  // rate 1, ratio (1-0.3)/0.7
    {"GpuLimitedByTheRatioMargin", 5.0, 0.65, 750},       // ratio (0.65-0.3)/0.7 = 0.5
    {"MixedLimitedByTheRateMargin", 1.5, 0.0, 750},       // rate 0.5, ratio (0.3-0)/0.3
    {"MixedWithoutExtensionFilesUsesTheRateMargin", 1.25, kUndefined, 625},
};

class RuleConfidenceTest : public testing::TestWithParam<ConfidenceCase> {};

TEST_P(RuleConfidenceTest, GrowsWithTheMarginFromTheThresholds) {
  const ConfidenceCase& c = GetParam();
  const RuleExplanation e =
      EvaluateRule(MakeFeatures(c.gpu_ioctl_rate, c.ext_ratio, 100, true), RuleThresholds());
  EXPECT_EQ(e.confidence_permille, c.expected_permille) << e.reason;
}

INSTANTIATE_TEST_SUITE_P(Margins, RuleConfidenceTest, testing::ValuesIn(kConfidenceCases),
                         [](const testing::TestParamInfo<ConfidenceCase>& info) {
                           return std::string(info.param.name);
                         });

TEST(RuleConfidence, UnknownHasNone) {
  EXPECT_EQ(EvaluateRule(MakeFeatures(0, kUndefined, 0, false), RuleThresholds())
                .confidence_permille,
            0);
}

TEST(VerdictName, RoundTripsThroughParseVerdict) {
  for (Verdict v : {Verdict::kUnknown, Verdict::kCpu, Verdict::kGpu, Verdict::kMixed}) {
    absl::StatusOr<Verdict> parsed = ParseVerdict(VerdictName(v));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, v);
  }
  EXPECT_EQ(VerdictName(Verdict::kMixed), "mixed");
  EXPECT_EQ(*ParseVerdict("GPU"), Verdict::kGpu);
}

TEST(VerdictName, ParseRejectsOtherNamesWithTheAcceptedOnes) {
  absl::StatusOr<Verdict> parsed = ParseVerdict("tpu");
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.status().message(),
            "'tpu' is not a verdict; expected one of unknown, cpu, gpu, mixed");
}

}  // namespace
}  // namespace gputier
