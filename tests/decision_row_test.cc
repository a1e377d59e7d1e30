#include "loader/classify/decision_row.h"

#include <gtest/gtest.h>

namespace gputier {
namespace {

RowSubject Subject() { return {1700000000000000000, 42, "/kubepods/pod1/ctr", "ctr"}; }

Features SomeFeatures() {
  Features f;
  f.gpu_ioctl_rate = 12.5;
  f.gpu_opened = 1;
  f.ext_ratio = 0.25;
  f.ext_ratio_defined = true;
  f.open_rate = 3.5;
  f.write_rate = 4096;
  f.evidence = 77;
  f.gpu_busy_share = 0.75;
  f.gpu_busy_share_defined = true;
  f.gpu_context_recent = 1;
  return f;
}

void ExpectSameFeatures(const Features& a, const Features& b) {
  EXPECT_EQ(a.gpu_ioctl_rate, b.gpu_ioctl_rate);
  EXPECT_EQ(a.gpu_opened, b.gpu_opened);
  EXPECT_EQ(a.ext_ratio, b.ext_ratio);
  EXPECT_EQ(a.ext_ratio_defined, b.ext_ratio_defined);
  EXPECT_EQ(a.open_rate, b.open_rate);
  EXPECT_EQ(a.write_rate, b.write_rate);
  EXPECT_EQ(a.evidence, b.evidence);
  EXPECT_EQ(a.gpu_busy_share, b.gpu_busy_share);
  EXPECT_EQ(a.gpu_busy_share_defined, b.gpu_busy_share_defined);
  EXPECT_EQ(a.gpu_context_recent, b.gpu_context_recent);
}

TEST(DecisionRowTest, DecisionRowCarriesTheSubjectTheDecisionAndFeaturesThatReadBackTheSame) {
  Decision d;
  d.verdict = Verdict::kGpu;
  d.rule_verdict = Verdict::kMixed;
  d.source = DecisionSource::kModel;
  d.model_version = 3;
  d.confidence_permille = 910;
  const ClassificationRow row = DecisionRow(Subject(), SomeFeatures(), d);
  EXPECT_EQ(row.time_unix_ns, Subject().time_unix_ns);
  EXPECT_EQ(row.cgroup_id, 42u);
  EXPECT_EQ(row.cgroup_path, "/kubepods/pod1/ctr");
  EXPECT_EQ(row.container_id, "ctr");
  EXPECT_EQ(row.verdict, "gpu");
  EXPECT_EQ(row.rule_verdict, "mixed");
  EXPECT_EQ(row.source, "model");
  EXPECT_EQ(row.model_version, 3);
  EXPECT_EQ(row.confidence_permille, 910);
  EXPECT_TRUE(ValidateRow(row).ok()) << ValidateRow(row);
  ExpectSameFeatures(FeaturesOfRow(row), SomeFeatures());
}

TEST(DecisionRowTest, LabelRowIsAnOperatorRowAtFullConfidenceWithoutRuleOrModel) {
  const ClassificationRow row = LabelRow(Subject(), SomeFeatures(), Verdict::kCpu);
  EXPECT_EQ(row.verdict, "cpu");
  EXPECT_EQ(row.source, "operator");
  EXPECT_EQ(row.confidence_permille, 1000);
  EXPECT_EQ(row.rule_verdict, "");
  EXPECT_EQ(row.model_version, 0);
  EXPECT_TRUE(ValidateRow(row).ok()) << ValidateRow(row);
  ExpectSameFeatures(FeaturesOfRow(row), SomeFeatures());
}

}  // namespace
}  // namespace gputier
