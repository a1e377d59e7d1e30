// Classify: the rule decides until a model has enough rows of every class;
// then the model decides and the rule's answer is recorded beside it. Train:
// versions, operator weights, and the errors that keep the rule in charge.
#include "policy/classifier.h"

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gputier/abi.h"
#include "gtest/gtest.h"
#include "policy/features.h"
#include "policy/naive_bayes.h"
#include "policy/trainer.h"
#include "policy/verdict.h"

namespace gputier {
namespace {

Features MakeFeatures(double gpu_ioctl_rate, double ext_ratio, uint64_t evidence,
                      bool gpu_opened, double open_rate = 10, double write_rate = 4096) {
  Features f;
  f.gpu_ioctl_rate = gpu_ioctl_rate;
  f.gpu_opened = gpu_opened ? 1.0 : 0.0;
  f.ext_ratio = ext_ratio;
  f.ext_ratio_defined = true;
  f.evidence = evidence;
  f.open_rate = open_rate;
  f.write_rate = write_rate;
  return f;
}

// Operators' labels that the rule does not follow: a training job in steady
// state issues few GPU ioctls (0.5/s, below the rule's 1/s) yet is GPU.
//   cpu:   no GPU, any files
//   gpu:   0.4..0.6 ioctls/s, GPU opened, mostly tensors
//   mixed: many ioctls, GPU opened, few GPU-type files
std::vector<TrainingRow> Rows(int cpu, int gpu, int mixed) {
  std::vector<TrainingRow> rows;
  for (int i = 0; i < cpu; ++i) {
    rows.push_back({ModelInputs(MakeFeatures(0, 0.1 * (i % 10), 500, false, 5 + i, 1000 * i)),
                    Verdict::kCpu, RowSource::kOperator});
  }
  for (int i = 0; i < gpu; ++i) {
    rows.push_back({ModelInputs(MakeFeatures(0.4 + 0.01 * (i % 20), 0.85 + 0.005 * (i % 20),
                                             5000, true, 20 + i, 1e6)),
                    Verdict::kGpu, RowSource::kOperator});
  }
  for (int i = 0; i < mixed; ++i) {
    rows.push_back({ModelInputs(MakeFeatures(20 + i, 0.02 * (i % 5), 5000, true, 50, 1e5)),
                    Verdict::kMixed, RowSource::kAgent});
  }
  return rows;
}

NaiveBayesModel TrainOrDie(const std::vector<TrainingRow>& rows) {
  absl::StatusOr<NaiveBayesModel> m = Train(rows, 0, 1700000000000000000);
  EXPECT_TRUE(m.ok()) << m.status();
  return *std::move(m);
}

// Rule: 0.5 < 1 ioctls/s -> cpu. The labelled rows above say gpu.
const Features kSteadyTraining = MakeFeatures(0.5, 0.9, 8000, true, 25, 1e6);

TEST(Classify, WithoutAModelTheRuleDecides) {
  const Decision d = Classify(kSteadyTraining, nullptr, ClassifierOptions());
  EXPECT_EQ(d.verdict, Verdict::kCpu);
  EXPECT_EQ(d.source, DecisionSource::kRule);
  EXPECT_EQ(d.rule_verdict, Verdict::kCpu);
  EXPECT_EQ(d.model_version, 0);
  EXPECT_FALSE(d.model_verdict.has_value());
  EXPECT_EQ(d.confidence_permille, d.rule.confidence_permille);
  EXPECT_EQ(d.confidence_permille, 750);  // halfway below the rate threshold
  EXPECT_EQ(d.model_not_used, "no model is trained yet");
  EXPECT_EQ(DecisionSourceName(d.source), "rule");
}

struct RowsCase {
  const char* name;
  int cpu, gpu, mixed;
  bool model_decides;
  const char* reason_part;
};

const RowsCase kRowsCases[] = {
    {"TooFewMixedRows", 20, 20, 19, false, "19 rows labelled mixed, fewer than min_rows_per_class 20"},
    {"TooFewCpuRows", 3, 40, 40, false, "3 rows labelled cpu"},
    {"TooFewGpuRows", 40, 19, 40, false, "19 rows labelled gpu"},
    {"ExactlyTheMinimumOfEveryClass", 20, 20, 20, true, ""},
    {"MoreThanTheMinimum", 60, 25, 30, true, ""},
};

class ClassifyRowsTest : public testing::TestWithParam<RowsCase> {};

TEST_P(ClassifyRowsTest, TheModelDecidesOnlyWithEnoughRowsOfEveryClass) {
  const RowsCase& c = GetParam();
  const NaiveBayesModel model = TrainOrDie(Rows(c.cpu, c.gpu, c.mixed));
  const Decision d = Classify(kSteadyTraining, &model, ClassifierOptions());
  EXPECT_EQ(d.rule_verdict, Verdict::kCpu);
  if (c.model_decides) {
    EXPECT_EQ(d.source, DecisionSource::kModel);
    EXPECT_EQ(d.verdict, Verdict::kGpu);
    EXPECT_EQ(d.model_verdict, Verdict::kGpu);
    EXPECT_EQ(d.model_version, 1);
    EXPECT_TRUE(d.model_not_used.empty()) << d.model_not_used;
  } else {
    EXPECT_EQ(d.source, DecisionSource::kRule);
    EXPECT_EQ(d.verdict, Verdict::kCpu);
    EXPECT_EQ(d.model_version, 0);
    EXPECT_TRUE(absl::StrContains(d.model_not_used, c.reason_part)) << d.model_not_used;
  }
}

INSTANTIATE_TEST_SUITE_P(MinRows, ClassifyRowsTest, testing::ValuesIn(kRowsCases),
                         [](const testing::TestParamInfo<RowsCase>& info) {
                           return std::string(info.param.name);
                         });

TEST(Classify, TheModelsDecisionRecordsItsScoresAndTheRulesAnswer) {
  const NaiveBayesModel model = TrainOrDie(Rows(20, 20, 20));
  const Decision d = Classify(kSteadyTraining, &model, ClassifierOptions());
  ASSERT_EQ(d.source, DecisionSource::kModel);
  const auto p = model.Predict(ModelInputs(kSteadyTraining));
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(d.model_log_likelihood, p->log_likelihood);
  EXPECT_EQ(d.confidence_permille, p->confidence_permille);
  EXPECT_GT(d.model_log_likelihood[1], d.model_log_likelihood[0]);  // gpu over cpu
  // The rule's verdict and explanation stand beside the model's.
  EXPECT_EQ(d.rule.verdict, Verdict::kCpu);
  EXPECT_EQ(d.rule.checks.size(), 6u);
  EXPECT_EQ(DecisionSourceName(d.source), "model");
}

// Rows shaped by a tenant: cgroups that never touched a GPU, labelled GPU
// (a model that once learned from them). The rule's veto keeps such a
// cgroup CPU; one that does use the GPU is still decided by the model.
TEST(Classify, AModelsGpuForACgroupWithoutGpuUseIsVetoedByTheRule) {
  std::vector<TrainingRow> rows = Rows(20, 20, 20);
  for (int i = 0; i < 200; ++i) {
    rows.push_back({ModelInputs(MakeFeatures(0, 0.9, 500, false, 30, 1e6)), Verdict::kGpu, RowSource::kOperator});
  }
  const NaiveBayesModel model = TrainOrDie(rows);
  const Features no_gpu = MakeFeatures(0, 0.9, 500, false, 30, 1e6);
  ASSERT_FALSE(ShowsGpuUse(no_gpu));
  const auto said = model.Predict(ModelInputs(no_gpu));
  ASSERT_TRUE(said.ok());
  ASSERT_EQ(said->verdict, Verdict::kGpu) << "the poisoned model must say gpu for the test to mean anything";
  const Decision d = Classify(no_gpu, &model, ClassifierOptions());
  EXPECT_EQ(d.verdict, Verdict::kCpu);
  EXPECT_EQ(d.source, DecisionSource::kRule);
  EXPECT_TRUE(d.model_vetoed);
  EXPECT_EQ(d.model_verdict, Verdict::kGpu);
  EXPECT_TRUE(absl::StrContains(d.model_not_used, "vetoed by the rule")) << d.model_not_used;
  // kSteadyTraining opened the GPU: the model still decides it.
  const Decision steady = Classify(kSteadyTraining, &model, ClassifierOptions());
  EXPECT_FALSE(steady.model_vetoed);
  EXPECT_EQ(steady.source, DecisionSource::kModel);
}

TEST(Train, ModelRowsAreNeverTrainedOnAndAgentRowsAreCappedPerCgroup) {
  std::vector<TrainingRow> rows;
  for (int i = 0; i < 100; ++i) rows.push_back({{double(i)}, Verdict::kGpu, RowSource::kAgent, 7});   // one flooding cgroup
  for (int i = 0; i < 3; ++i) rows.push_back({{double(i)}, Verdict::kCpu, RowSource::kAgent, 8});
  for (int i = 0; i < 60; ++i) rows.push_back({{double(i)}, Verdict::kGpu, RowSource::kModel, 9});
  for (int i = 0; i < 80; ++i) rows.push_back({{double(i)}, Verdict::kCpu, RowSource::kOperator, 7});
  const std::vector<TrainingRow> kept = GuardTrainingRows(rows, {10});
  int flood = 0, other = 0, model = 0, oper = 0;
  double newest_flood = -1;
  for (const TrainingRow& r : kept) {
    if (r.source == RowSource::kModel) ++model;
    if (r.source == RowSource::kOperator) ++oper;
    if (r.source == RowSource::kAgent && r.cgroup_id == 7) {
      ++flood;
      EXPECT_GE(r.x[0], 90) << "the cap keeps the cgroup's newest rows";
      EXPECT_GT(r.x[0], newest_flood) << "order is kept";
      newest_flood = r.x[0];
    }
    if (r.source == RowSource::kAgent && r.cgroup_id == 8) ++other;
  }
  EXPECT_EQ(flood, 10);
  EXPECT_EQ(other, 3);
  EXPECT_EQ(model, 0);
  EXPECT_EQ(oper, 80) << "operator rows are never capped";
}

TEST(Classify, MinRowsPerClassIsConfigurable) {
  const NaiveBayesModel model = TrainOrDie(Rows(5, 5, 5));
  ClassifierOptions o;
  EXPECT_EQ(Classify(kSteadyTraining, &model, o).source, DecisionSource::kRule);
  o.min_rows_per_class = 5;
  EXPECT_EQ(Classify(kSteadyTraining, &model, o).source, DecisionSource::kModel);
}

TEST(Classify, UnknownStaysUnknownEvenWithAModel) {
  const NaiveBayesModel model = TrainOrDie(Rows(30, 30, 30));
  const Features little = MakeFeatures(0, 1.0, 3, false);
  const Decision d = Classify(little, &model, ClassifierOptions());
  EXPECT_EQ(d.verdict, Verdict::kUnknown);
  EXPECT_EQ(d.rule_verdict, Verdict::kUnknown);
  EXPECT_EQ(d.source, DecisionSource::kRule);
  EXPECT_FALSE(d.model_verdict.has_value());
  EXPECT_EQ(d.confidence_permille, 0);
  EXPECT_EQ(d.model_not_used, "too little evidence to decide");
}

TEST(Classify, AModelOverOtherFeaturesIsNotUsed) {
  std::vector<LabelledRow> rows;
  for (int i = 0; i < 30; ++i) {
    rows.push_back({{1.0 * i}, Verdict::kCpu});
    rows.push_back({{1.0 * i}, Verdict::kGpu});
    rows.push_back({{1.0 * i}, Verdict::kMixed});
  }
  absl::StatusOr<NaiveBayesModel> model = NaiveBayesModel::Fit(rows, {"x"}, 3, 0);
  ASSERT_TRUE(model.ok());
  const Decision d = Classify(kSteadyTraining, &*model, ClassifierOptions());
  EXPECT_EQ(d.source, DecisionSource::kRule);
  EXPECT_EQ(d.model_not_used,
            "model version 3 is over the inputs [x]; this agent computes [log1p_gpu_ioctl_rate, "
            "gpu_opened, ext_ratio, log1p_open_rate, log1p_write_kib_rate, gpu_busy_share, "
            "gpu_context_recent]");
}

TEST(Classify, RuleThresholdsComeFromTheOptions) {
  ClassifierOptions o;
  o.thresholds.gpu_ioctl_rate = 0.5;
  const Decision d = Classify(kSteadyTraining, nullptr, o);
  EXPECT_EQ(d.verdict, Verdict::kGpu);
  EXPECT_EQ(d.confidence_permille, 500);  // exactly at the rate threshold
}

// From counters to verdict: what the agent does every window.
Decision ClassifyCounters(const gt_cgroup_stats& stats, uint64_t age_s) {
  const uint64_t first_seen = 1000000000000ull;
  gt_cgroup_stats s = stats;
  s.first_seen_ns = first_seen;
  FeatureWindow w;
  w.Add({first_seen + age_s * 1000000000ull, s});
  return Classify(w.Compute(first_seen + age_s * 1000000000ull, GpuClassSet()), nullptr,
                  ClassifierOptions());
}

TEST(Classify, ThumbnailerReadingImagesOnTheCpuIsCpu) {
  gt_cgroup_stats s = {};
  s.opens_by_class[GT_CLASS_IMAGE] = 3000;
  s.opens_by_class[GT_CLASS_OTHER] = 100;
  s.opens_total = 3100;
  s.bytes_written = 1 << 30;
  EXPECT_EQ(ClassifyCounters(s, 60).verdict, Verdict::kCpu);
}

TEST(Classify, GpuJobWithoutGpuTypeFilesIsMixed) {
  gt_cgroup_stats s = {};
  s.opens_by_class[GT_CLASS_OTHER] = 400;  // .py, .json, .so
  s.opens_noext = 100;
  s.opens_total = 500;
  s.gpu_opens = 12;
  s.gpu_ioctls = 3000;
  s.flags = GT_CG_GPU_SEEN;
  EXPECT_EQ(ClassifyCounters(s, 60).verdict, Verdict::kMixed);
}

TEST(Classify, CudaInitSecondsAfterStartIsAlreadyGpu) {
  gt_cgroup_stats s = {};
  s.opens_by_class[GT_CLASS_TENSOR] = 8;  // model.safetensors shards
  s.opens_by_class[GT_CLASS_OTHER] = 4;
  s.opens_total = 12;
  s.gpu_opens = 6;
  s.gpu_ioctls = 200;
  s.flags = GT_CG_GPU_SEEN;
  const Decision d = ClassifyCounters(s, 2);
  EXPECT_EQ(d.verdict, Verdict::kGpu) << d.rule.reason;
}

TEST(Train, VersionIsThePreviousPlusOneAndTheTimeIsKept) {
  absl::StatusOr<NaiveBayesModel> m = Train(Rows(2, 2, 2), 6, 123);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->version(), 7);
  EXPECT_EQ(m->trained_at_unix_ns(), 123);
  ASSERT_EQ(m->feature_count(), kModelInputCount);
  for (size_t j = 0; j < kModelInputCount; ++j) {
    EXPECT_EQ(m->feature_names()[j], ModelInputNames()[j]);
  }
  EXPECT_EQ(m->rows(Verdict::kCpu), 2u);
}

TEST(Train, OperatorRowsOutweighAgentRows) {
  // Feature 0 (log1p of the ioctl rate) of gpu rows: two agent rows at 0 and
  // one operator row at 3, weight 10: mean (0 + 0 + 10 * 3) / 12 = 2.5.
  const std::vector<double> zero(kModelInputCount, 0.0);
  std::vector<double> three = zero;
  three[0] = 3;
  std::vector<TrainingRow> rows = {
      {zero, Verdict::kCpu},           {zero, Verdict::kMixed},
      {zero, Verdict::kGpu},           {zero, Verdict::kGpu},
      {three, Verdict::kGpu, RowSource::kOperator},
  };
  absl::StatusOr<NaiveBayesModel> m = Train(rows, 0, 0, 10.0);
  ASSERT_TRUE(m.ok()) << m.status();
  const NaiveBayesModel::ClassModel* gpu = m->class_model(Verdict::kGpu);
  EXPECT_DOUBLE_EQ(gpu->mean[0], 2.5);
  EXPECT_DOUBLE_EQ(gpu->weight, 12);
  EXPECT_EQ(gpu->rows, 3u);
  EXPECT_DOUBLE_EQ(gpu->prior, 12.0 / 14);
  // Counted as an agent row it would only pull the mean to 1.
  absl::StatusOr<NaiveBayesModel> even = Train(rows, 0, 0, 1.0);
  ASSERT_TRUE(even.ok());
  EXPECT_DOUBLE_EQ(even->class_model(Verdict::kGpu)->mean[0], 1.0);
}

struct TrainErrorCase {
  const char* name;
  std::vector<TrainingRow> rows;
  int previous_version;
  double operator_weight;
  const char* expected_error;
};

std::vector<TrainErrorCase> TrainErrors() {
  const std::vector<double> x(kModelInputCount, 0.0);
  return {
      {"NoRows", {}, 0, 10, "no training rows; a model needs rows of cpu, gpu and mixed"},
      {"NoGpuRows",
       {{x, Verdict::kCpu}, {x, Verdict::kMixed}},
       0,
       10,
       "no rows labelled gpu; a model needs rows of cpu, gpu and mixed"},
      {"RowOfTheWrongLength",
       {{x, Verdict::kCpu}, {{1, 2}, Verdict::kGpu}, {x, Verdict::kMixed}},
       0,
       10,
       "rows[1].x has 2 values; the model has 7 features"},
      {"NegativeOperatorWeight",
       {{x, Verdict::kCpu}, {x, Verdict::kGpu}, {x, Verdict::kMixed}},
       0,
       -1,
       "operator weight -1 is not a positive finite number; operator rows weigh e.g. 10"},
      {"NegativePreviousVersion",
       {{x, Verdict::kCpu}, {x, Verdict::kGpu}, {x, Verdict::kMixed}},
       -1,
       10,
       "previous model version -1 is out of range; 0 means no model yet"},
  };
}

class TrainErrorTest : public testing::TestWithParam<TrainErrorCase> {};

TEST_P(TrainErrorTest, KeepsTheRuleWithAReason) {
  const TrainErrorCase& c = GetParam();
  absl::StatusOr<NaiveBayesModel> m = Train(c.rows, c.previous_version, 0, c.operator_weight);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(m.status().message(), c.expected_error);
}

INSTANTIATE_TEST_SUITE_P(BadInput, TrainErrorTest, testing::ValuesIn(TrainErrors()),
                         [](const testing::TestParamInfo<TrainErrorCase>& info) {
                           return std::string(info.param.name);
                         });

}  // namespace
}  // namespace gputier
