// Validation of the policy settings: every error a user can cause is one
// sentence naming the key and the fix.
#include <cmath>
#include <limits>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "gputier/abi.h"
#include "gtest/gtest.h"
#include "policy/classifier.h"
#include "policy/features.h"
#include "policy/rule.h"

namespace gputier {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

struct ThresholdCase {
  const char* name;
  double gpu_ioctl_rate;
  double ext_ratio;
  const char* expected_error;  // nullptr: valid
};

const ThresholdCase kThresholdCases[] = {
    {"DefaultsAreValid", 1.0, 0.3, nullptr},
    {"RatioZeroIsValid", 1.0, 0.0, nullptr},
    {"RatioOneIsValid", 1.0, 1.0, nullptr},
    {"TinyPositiveRateIsValid", 1e-6, 0.3, nullptr},
    {"RatioAboveOne", 1.0, 1.5,
     "policy.thresholds.ext_ratio: 1.5 is above 1; the ratio of GPU-type extensions lies in "
     "[0, 1]"},
    {"NegativeRatio", 1.0, -0.1,
     "policy.thresholds.ext_ratio: -0.1 is below 0; the ratio of GPU-type extensions lies in "
     "[0, 1]"},
    {"NaNRatio", 1.0, kNaN,
     "policy.thresholds.ext_ratio: nan is not a number; the ratio of GPU-type extensions lies "
     "in [0, 1]"},
    {"NegativeRate", -1.0, 0.3,
     "policy.thresholds.gpu_ioctl_rate: -1 is negative; give GPU ioctls per second above 0, "
     "e.g. 1.0"},
    {"NaNRate", kNaN, 0.3,
     "policy.thresholds.gpu_ioctl_rate: nan is not a number; give GPU ioctls per second above "
     "0, e.g. 1.0"},
    {"InfiniteRate", kInf, 0.3,
     "policy.thresholds.gpu_ioctl_rate: inf is not finite; give GPU ioctls per second above 0, "
     "e.g. 1.0"},
    {"ZeroRate", 0.0, 0.3,
     "policy.thresholds.gpu_ioctl_rate: 0 would count every cgroup, even one that never "
     "touched a GPU, as a GPU user; give GPU ioctls per second above 0, e.g. 1.0"},
};

class ThresholdValidationTest : public testing::TestWithParam<ThresholdCase> {};

TEST_P(ThresholdValidationTest, AcceptsOrNamesTheKey) {
  const ThresholdCase& c = GetParam();
  RuleThresholds t;
  t.gpu_ioctl_rate = c.gpu_ioctl_rate;
  t.ext_ratio = c.ext_ratio;
  const absl::Status s = ValidateThresholds(t);
  if (c.expected_error == nullptr) {
    EXPECT_TRUE(s.ok()) << s;
  } else {
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(s.message(), c.expected_error);
  }
}

INSTANTIATE_TEST_SUITE_P(Thresholds, ThresholdValidationTest, testing::ValuesIn(kThresholdCases),
                         [](const testing::TestParamInfo<ThresholdCase>& info) {
                           return std::string(info.param.name);
                         });

TEST(ClassifierOptionsValidation, ChecksTheThresholdsToo) {
  ClassifierOptions o;
  o.thresholds.ext_ratio = 2;
  EXPECT_EQ(ValidateClassifierOptions(o).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(ValidateClassifierOptions(ClassifierOptions()).ok());
}

TEST(ClassifierOptionsValidation, ZeroDemotionWindowsIsRejected) {
  ClassifierOptions o;
  o.demote_after_cpu_windows = 0;
  const absl::Status s = ValidateClassifierOptions(o);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(),
            "policy.demote_after_cpu_windows: 0 is below 1; give the number of consecutive CPU "
            "windows before a GPU or MIXED cgroup is demoted, e.g. 3");
  o.demote_after_cpu_windows = 70000;
  EXPECT_EQ(ValidateClassifierOptions(o).code(), absl::StatusCode::kInvalidArgument);
}

TEST(FeatureOptionsValidation, WindowBelowOneSecondIsRejected) {
  FeatureOptions o;
  o.window = absl::Milliseconds(500);
  const absl::Status s = ValidateFeatureOptions(o);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(),
            "policy.window: 500ms is below 1s; rates are per second, so the window must "
            "be at least 1s");
}

TEST(FeatureOptionsValidation, InfiniteWindowIsRejectedAndDefaultsAccepted) {
  FeatureOptions o;
  EXPECT_TRUE(ValidateFeatureOptions(o).ok());
  o.window = absl::Seconds(1);
  EXPECT_TRUE(ValidateFeatureOptions(o).ok());
  o.window = absl::InfiniteDuration();
  EXPECT_EQ(ValidateFeatureOptions(o).code(), absl::StatusCode::kInvalidArgument);
}

TEST(GpuClassSet, DefaultHoldsTheFourBuiltInGpuTypeClasses) {
  const GpuClassSet set;
  EXPECT_FALSE(set.Contains(GT_CLASS_OTHER));
  EXPECT_TRUE(set.Contains(GT_CLASS_IMAGE));
  EXPECT_TRUE(set.Contains(GT_CLASS_VIDEO));
  EXPECT_TRUE(set.Contains(GT_CLASS_TENSOR));
  EXPECT_TRUE(set.Contains(GT_CLASS_GRAPHICS));
  EXPECT_FALSE(set.Contains(GT_CLASS_FIRST_CUSTOM));
  EXPECT_FALSE(set.Contains(GT_CLASS_MAX));
}

TEST(GpuClassSet, ConfiguredIdsIncludeCustomClasses) {
  absl::StatusOr<GpuClassSet> set = GpuClassSet::FromIds({GT_CLASS_TENSOR, 6});
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->mask(), (1u << GT_CLASS_TENSOR) | (1u << 6));
  EXPECT_TRUE(GpuClassSet::FromIds({}).ok());
}

TEST(GpuClassSet, OtherAndOutOfRangeIdsAreRejected) {
  absl::StatusOr<GpuClassSet> other = GpuClassSet::FromIds({GT_CLASS_OTHER});
  ASSERT_FALSE(other.ok());
  EXPECT_NE(other.status().message().find("class 0"), absl::string_view::npos);
  absl::StatusOr<GpuClassSet> big = GpuClassSet::FromIds({9});
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.status().message(),
            "policy.gpu_classes: class id 9 is out of range; class ids are 1..7");
}

}  // namespace
}  // namespace gputier
