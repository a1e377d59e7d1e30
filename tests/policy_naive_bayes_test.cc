// Gaussian Naive Bayes (claim 5) against values computed by hand, and its JSON
// form.
//
// Notation: N(x; m, v) = exp(-(x - m)^2 / 2v) / sqrt(2 pi v), so
//   log N = -0.5 (log 2pi + log v) - (x - m)^2 / 2v,  log 2pi = 1.8378770664.
// Every variance includes the floor 0.001 + 0.01 * (variance over all rows).
#include "policy/naive_bayes.h"

#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "policy/verdict.h"

namespace gputier {
namespace {

constexpr Verdict kCpu = Verdict::kCpu;
constexpr Verdict kGpu = Verdict::kGpu;
constexpr Verdict kMixed = Verdict::kMixed;
constexpr double kTol = 1e-9;

// 1-D: two rows per class, each class's rows 2 apart.
//   cpu {0, 2}: mean 1, mixed {3, 5}: mean 4, gpu {6, 8}: mean 7
//   within-class variance ((-1)^2 + 1^2) / 2 = 1 for every class
//   all rows: mean 24 / 6 = 4, variance (16+4+1+1+4+16) / 6 = 7
//   floor 0.001 + 0.01 * 7 = 0.071  ->  variance 1.071 for every class
//   priors 2/6 = 1/3 each
std::vector<LabelledRow> OneDimensionalRows() {
  return {{{0}, kCpu}, {{2}, kCpu}, {{3}, kMixed}, {{5}, kMixed}, {{6}, kGpu}, {{8}, kGpu}};
}

NaiveBayesModel FitOrDie(const std::vector<LabelledRow>& rows, std::vector<std::string> names) {
  absl::StatusOr<NaiveBayesModel> m = NaiveBayesModel::Fit(rows, std::move(names), 1, 42);
  EXPECT_TRUE(m.ok()) << m.status();
  return *std::move(m);
}

TEST(NaiveBayesFit, OneDimensionalParametersMatchHandComputedValues) {
  const NaiveBayesModel m = FitOrDie(OneDimensionalRows(), {"x"});
  const double kMeans[] = {1, 7, 4};  // cpu, gpu, mixed
  for (size_t k = 0; k < kDecidedVerdictCount; ++k) {
    const NaiveBayesModel::ClassModel* c = m.class_model(kDecidedVerdicts[k]);
    ASSERT_NE(c, nullptr);
    EXPECT_EQ(c->rows, 2u);
    EXPECT_NEAR(c->weight, 2, kTol);
    EXPECT_NEAR(c->prior, 1.0 / 3, kTol);
    EXPECT_NEAR(c->mean[0], kMeans[k], kTol);
    EXPECT_NEAR(c->variance[0], 1.071, kTol);
  }
  EXPECT_EQ(m.class_model(Verdict::kUnknown), nullptr);
  EXPECT_EQ(m.rows(Verdict::kUnknown), 0u);
  EXPECT_EQ(m.version(), 1);
  EXPECT_EQ(m.trained_at_unix_ns(), 42);
}

TEST(NaiveBayesPredict, OneDimensionalLogLikelihoodsMatchHandComputedValues) {
  const NaiveBayesModel m = FitOrDie(OneDimensionalRows(), {"x"});
  // x = 1 (the cpu mean):
  //   common term log(1/3) - 0.5 (log 2pi + log 1.071)
  //             = -1.0986122887 - 0.5 (1.8378770664 + 0.0685927914) = -2.0518472176
  //   cpu   : common - 0                    = -2.0518472176
  //   gpu   : common - (1-7)^2 / 2.142      = -2.0518472176 - 16.8067226891 = -18.8585699067
  //   mixed : common - (1-4)^2 / 2.142      = -2.0518472176 -  4.2016806723 =  -6.2535278899
  //   posterior cpu = 1 / (1 + e^-16.8067 + e^-4.2017) = 0.98525036 -> 985 permille
  absl::StatusOr<NaiveBayesModel::Prediction> p = m.Predict({1.0});
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->verdict, kCpu);
  EXPECT_NEAR(p->log_likelihood[0], -2.0518472176, 1e-9);
  EXPECT_NEAR(p->log_likelihood[1], -18.8585699067, 1e-9);
  EXPECT_NEAR(p->log_likelihood[2], -6.2535278899, 1e-9);
  EXPECT_EQ(p->confidence_permille, 985);
}

TEST(NaiveBayesPredict, HalfwayBetweenTwoClassesIsAnEvenSplit) {
  const NaiveBayesModel m = FitOrDie(OneDimensionalRows(), {"x"});
  // x = 5.5 is 1.5 from both the mixed mean 4 and the gpu mean 7; cpu is 4.5
  // away: e^-(4.5^2 - 1.5^2)/2.142 = e^-8.40 = 0.000225. Ties go to the class
  // listed first (gpu before mixed); posterior 1 / (2 + 0.000225) -> 500.
  absl::StatusOr<NaiveBayesModel::Prediction> p = m.Predict({5.5});
  ASSERT_TRUE(p.ok());
  EXPECT_NEAR(p->log_likelihood[1], p->log_likelihood[2], 1e-12);
  EXPECT_EQ(p->verdict, kGpu);
  EXPECT_EQ(p->confidence_permille, 500);
}

// 2-D: feature a separates cpu from the rest, feature b (constant within every
// class) separates gpu from mixed.
//   cpu (0,0) (2,0); gpu (6,1) (8,1); mixed (6,0) (8,0)
//   a: class means 1, 7, 7; within-class variance 1; all rows: mean 5,
//      variance (25+9+1+9+1+9)/6 = 9; floor 0.091 -> variance 1.091
//   b: class means 0, 1, 0; within-class variance 0; all rows: mean 1/3,
//      variance (4 (1/3)^2 + 2 (2/3)^2)/6 = 2/9; floor 0.001 + 0.01*2/9
//      = 0.0032222 -> variance 0.0032222 (the floor alone)
std::vector<LabelledRow> TwoDimensionalRows() {
  return {{{0, 0}, kCpu},  {{2, 0}, kCpu},   {{6, 1}, kGpu},
          {{8, 1}, kGpu},  {{6, 0}, kMixed}, {{8, 0}, kMixed}};
}

TEST(NaiveBayesFit, AFeatureConstantWithinAClassGetsTheVarianceFloor) {
  const NaiveBayesModel m = FitOrDie(TwoDimensionalRows(), {"a", "b"});
  for (Verdict v : kDecidedVerdicts) {
    EXPECT_NEAR(m.class_model(v)->variance[0], 1.091, kTol);
    EXPECT_NEAR(m.class_model(v)->variance[1], 0.001 + 0.01 * 2.0 / 9, kTol);
  }
  EXPECT_NEAR(m.class_model(kGpu)->mean[1], 1, kTol);
  EXPECT_NEAR(m.class_model(kMixed)->mean[1], 0, kTol);
}

struct TwoDCase {
  double a, b;
  Verdict expected;
  double ll_cpu, ll_gpu, ll_mixed;  // by hand, see below
  int permille;
};

// Per class: log(1/3) + log N(a; m_a, 1.091) + log N(b; m_b, 0.0032222), with
//   log(1/3)                = -1.0986122887
//   log N(a; m, 1.091)      = -0.5 (1.8378770664 + 0.0870947069) - (a-m)^2 / 2.182
//                           = -0.9624858866 - (a-m)^2 / 2.182
//   log N(b; m, 0.0032222)  = -0.5 (1.8378770664 - 5.7376840263) - (b-m)^2 / 0.0064444
//                           =  1.9499034800 - (b-m)^2 / 0.0064444
// At the class's own means: -1.0986122887 - 0.9624858866 + 1.9499034800 = -0.1111946953.
// One unit off in b costs 1 / 0.0064444 = 155.1724137931; six units off in a
// cost 36 / 2.182 = 16.4986251146. So for (7, 1):
//   gpu   = -0.1111946953
//   mixed = -0.1111946953 - 155.1724137931                  = -155.2836084884
//   cpu   = -0.1111946953 - 16.4986251146 - 155.1724137931  = -171.7822336030
// and the winner's posterior rounds to 1000 permille.
const TwoDCase kTwoDCases[] = {
    {7, 1, kGpu, -171.7822336030, -0.1111946953, -155.2836084884, 1000},
    {7, 0, kMixed, -16.6098198099, -155.2836084884, -0.1111946953, 1000},
    {1, 0, kCpu, -0.1111946953, -171.7822336030, -16.6098198099, 1000},
};

TEST(NaiveBayesPredict, TwoDimensionalLogLikelihoodsMatchHandComputedValues) {
  const NaiveBayesModel m = FitOrDie(TwoDimensionalRows(), {"a", "b"});
  for (const TwoDCase& c : kTwoDCases) {
    SCOPED_TRACE(absl::StrCat("x = (", c.a, ", ", c.b, ")"));
    absl::StatusOr<NaiveBayesModel::Prediction> p = m.Predict({c.a, c.b});
    ASSERT_TRUE(p.ok()) << p.status();
    EXPECT_EQ(p->verdict, c.expected);
    EXPECT_NEAR(p->log_likelihood[0], c.ll_cpu, 1e-8);
    EXPECT_NEAR(p->log_likelihood[1], c.ll_gpu, 1e-8);
    EXPECT_NEAR(p->log_likelihood[2], c.ll_mixed, 1e-8);
    EXPECT_EQ(p->confidence_permille, c.permille);
  }
}

TEST(NaiveBayesFit, AHeavyRowShiftsItsClassMeanAndPrior) {
  // cpu {0, 2} weight 1 and an operator's row {4} weight 10:
  //   W_cpu = 12, mean (0 + 2 + 40) / 12 = 3.5
  //   variance (3.5^2 + 1.5^2 + 10 * 0.5^2) / 12 = (12.25 + 2.25 + 2.5) / 12 = 17/12
  //   all rows (with mixed {3,5}, gpu {6,8}): W = 16, mean 64/16 = 4,
  //   variance (16 + 4 + 10*0 + 1 + 1 + 4 + 16) / 16 = 2.625; floor 0.02725
  //   prior cpu 12/16 = 0.75, gpu and mixed 2/16 = 0.125
  std::vector<LabelledRow> rows = OneDimensionalRows();
  rows.push_back({{4}, kCpu, 10.0});
  const NaiveBayesModel m = FitOrDie(rows, {"x"});
  const NaiveBayesModel::ClassModel* cpu = m.class_model(kCpu);
  EXPECT_EQ(cpu->rows, 3u);
  EXPECT_NEAR(cpu->weight, 12, kTol);
  EXPECT_NEAR(cpu->mean[0], 3.5, kTol);
  EXPECT_NEAR(cpu->variance[0], 17.0 / 12 + 0.001 + 0.02625, kTol);
  EXPECT_NEAR(cpu->prior, 0.75, kTol);
  EXPECT_NEAR(m.class_model(kGpu)->prior, 0.125, kTol);
  EXPECT_NEAR(m.class_model(kGpu)->variance[0], 1 + 0.02725, kTol);
}

struct FitErrorCase {
  const char* name;
  std::vector<LabelledRow> rows;
  const char* expected_error;
};

const FitErrorCase kFitErrors[] = {
    {"NoRows", {}, "no training rows; a model needs rows of cpu, gpu and mixed"},
    {"AClassWithoutRows",
     {{{0}, kCpu}, {{6}, kGpu}},
     "no rows labelled mixed; a model needs rows of cpu, gpu and mixed"},
    {"WrongLength",
     {{{0}, kCpu}, {{6, 1}, kGpu}, {{3}, kMixed}},
     "rows[1].x has 2 values; the model has 1 features"},
    {"NaNInput",
     {{{0}, kCpu}, {{std::nan("")}, kGpu}, {{3}, kMixed}},
     "rows[1].x[0] is nan; model inputs must be finite numbers"},
    {"ZeroWeight",
     {{{0}, kCpu, 0.0}, {{6}, kGpu}, {{3}, kMixed}},
     "rows[0].weight is 0; a row's weight is a positive finite number"},
    {"UnknownLabel",
     {{{0}, kCpu}, {{6}, kGpu}, {{3}, Verdict::kUnknown}},
     "rows[2].label is 'unknown'; rows are labelled cpu, gpu or mixed"},
};

class NaiveBayesFitErrorTest : public testing::TestWithParam<FitErrorCase> {};

TEST_P(NaiveBayesFitErrorTest, IsRejectedWithTheRowNamed) {
  absl::StatusOr<NaiveBayesModel> m = NaiveBayesModel::Fit(GetParam().rows, {"x"}, 1, 0);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(m.status().message(), GetParam().expected_error);
}

INSTANTIATE_TEST_SUITE_P(BadRows, NaiveBayesFitErrorTest, testing::ValuesIn(kFitErrors),
                         [](const testing::TestParamInfo<FitErrorCase>& info) {
                           return std::string(info.param.name);
                         });

TEST(NaiveBayesPredict, RejectsAnInputOfTheWrongLengthOrNotFinite) {
  const NaiveBayesModel m = FitOrDie(OneDimensionalRows(), {"x"});
  EXPECT_EQ(m.Predict({1.0, 2.0}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(m.Predict({std::nan("")}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(m.Predict({HUGE_VAL}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(NaiveBayesJson, RoundTripGivesAnIdenticalModel) {
  std::vector<LabelledRow> rows = TwoDimensionalRows();
  rows.push_back({{1.0 / 3, 0.1}, kCpu, 10.0});  // values without a short decimal form
  absl::StatusOr<NaiveBayesModel> fitted =
      NaiveBayesModel::Fit(rows, {"a", "b"}, 7, 1700000000123456789);
  ASSERT_TRUE(fitted.ok());
  absl::StatusOr<NaiveBayesModel> read = NaiveBayesModel::FromJson(fitted->ToJson());
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->version(), 7);
  EXPECT_EQ(read->trained_at_unix_ns(), 1700000000123456789);
  EXPECT_EQ(read->feature_names(), fitted->feature_names());
  for (Verdict v : kDecidedVerdicts) {
    const NaiveBayesModel::ClassModel* a = fitted->class_model(v);
    const NaiveBayesModel::ClassModel* b = read->class_model(v);
    EXPECT_EQ(a->rows, b->rows);
    EXPECT_EQ(a->weight, b->weight);
    EXPECT_EQ(a->prior, b->prior);
    EXPECT_EQ(a->mean, b->mean);
    EXPECT_EQ(a->variance, b->variance);
  }
  for (double a : {-1.0, 0.5, 3.3, 7.0}) {
    const auto p = fitted->Predict({a, 0.5});
    const auto q = read->Predict({a, 0.5});
    EXPECT_EQ(p->log_likelihood, q->log_likelihood);
    EXPECT_EQ(p->confidence_permille, q->confidence_permille);
  }
  EXPECT_EQ(read->ToJson(), fitted->ToJson());
}

// A valid model document to corrupt field by field.
nlohmann::json ValidDocument() {
  const NaiveBayesModel m = FitOrDie(OneDimensionalRows(), {"x"});
  return nlohmann::json::parse(m.ToJson());
}

struct CorruptCase {
  const char* name;
  std::string json;
  const char* expected_error;  // the whole message
};

std::vector<CorruptCase> CorruptCases() {
  std::vector<CorruptCase> cases;
  const std::string valid = ValidDocument().dump();
  cases.push_back({"Truncated", valid.substr(0, valid.size() / 2), nullptr});
  cases.push_back({"Empty", "", nullptr});
  {
    std::string s = ValidDocument().dump();
    const size_t at = s.find("\"mean\":[") + 8;
    s.replace(at, s.find(']', at) - at, "NaN");  // not JSON at all
    cases.push_back({"NaNLiteral", s, nullptr});
  }
  {
    nlohmann::json j = ValidDocument();
    j["classes"][0]["mean"][0] = nullptr;  // how a NaN double is written
    cases.push_back({"NullMean", j.dump(), "model JSON: classes[0].mean[0]: null is not a number"});
  }
  {
    nlohmann::json j = ValidDocument();
    j["classes"][1]["variance"].push_back(1.0);
    cases.push_back({"WrongCount", j.dump(),
                     "model JSON: classes[1].variance: has 2 values; features lists 1"});
  }
  {
    nlohmann::json j = ValidDocument();
    j["features"].push_back("y");
    cases.push_back(
        {"ExtraFeature", j.dump(), "model JSON: classes[0].mean: has 1 values; features lists 2"});
  }
  {
    nlohmann::json j = ValidDocument();
    j["classes"][2]["variance"][0] = -0.5;
    cases.push_back({"NegativeVariance", j.dump(),
                     "model JSON: classes[2].variance[0]: -0.5 is not above 0; a variance is "
                     "positive"});
  }
  {
    nlohmann::json j = ValidDocument();
    j["classes"][1]["label"] = "tpu";
    cases.push_back({"UnknownClass", j.dump(),
                     "model JSON: classes[1].label: \"tpu\" is not a class; classes are cpu, gpu "
                     "and mixed"});
  }
  {
    nlohmann::json j = ValidDocument();
    j["classes"][1]["label"] = "unknown";
    cases.push_back({"UnknownIsNotAClass", j.dump(),
                     "model JSON: classes[1].label: \"unknown\" is not a class; classes are cpu, "
                     "gpu and mixed"});
  }
  {
    nlohmann::json j = ValidDocument();
    j["classes"][1]["label"] = "cpu";
    cases.push_back({"DuplicateClass", j.dump(),
                     "model JSON: classes[1].label: \"cpu\" appears twice; each class appears "
                     "once"});
  }
  {
    nlohmann::json j = ValidDocument();
    j["classes"].erase(2);
    cases.push_back({"MissingClass", j.dump(),
                     "model JSON: classes: has no class mixed; a model has cpu, gpu and mixed"});
  }
  {
    nlohmann::json j = ValidDocument();
    j["classes"][0]["prior"] = 0.9;
    cases.push_back({"PriorsNotSummingToOne", j.dump(), nullptr});
  }
  {
    nlohmann::json j = ValidDocument();
    j["version"] = 0;
    cases.push_back({"VersionZero", j.dump(), "model JSON: version: 0 is below 1"});
  }
  {
    nlohmann::json j = ValidDocument();
    j["classes"][0]["rows"] = 2.5;
    cases.push_back({"FractionalRows", j.dump(),
                     "model JSON: classes[0].rows: 2.5 is not a whole number"});
  }
  {
    nlohmann::json j = ValidDocument();
    j.erase("trained_at_unix_ns");
    cases.push_back({"MissingField", j.dump(), "model JSON: trained_at_unix_ns: is missing"});
  }
  {
    nlohmann::json j = ValidDocument();
    j["format"] = "something-else";
    cases.push_back({"OtherFormat", j.dump(),
                     "model JSON: format: \"something-else\" is not \"gputier-naive-bayes\""});
  }
  cases.push_back({"NotAnObject", "[1, 2]", "model JSON: (top level): is not an object"});
  return cases;
}

class NaiveBayesCorruptJsonTest : public testing::TestWithParam<CorruptCase> {};

TEST_P(NaiveBayesCorruptJsonTest, IsAnErrorNamingTheField) {
  const CorruptCase& c = GetParam();
  absl::StatusOr<NaiveBayesModel> m = NaiveBayesModel::FromJson(c.json);
  ASSERT_FALSE(m.ok()) << c.json;
  EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
  if (c.expected_error != nullptr) {
    EXPECT_EQ(m.status().message(), c.expected_error);
  } else {
    EXPECT_EQ(m.status().message().rfind("model JSON: ", 0), 0u) << m.status();
  }
}

INSTANTIATE_TEST_SUITE_P(Corrupt, NaiveBayesCorruptJsonTest, testing::ValuesIn(CorruptCases()),
                         [](const testing::TestParamInfo<CorruptCase>& info) {
                           return std::string(info.param.name);
                         });

TEST(NaiveBayesJson, TruncatedDocumentSaysHowToRecover) {
  const std::string valid = ValidDocument().dump();
  absl::StatusOr<NaiveBayesModel> m =
      NaiveBayesModel::FromJson(valid.substr(0, valid.size() - 1));
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("truncated or corrupt"), absl::string_view::npos);
}

// Found by fuzz/model_fuzzer.cc: nlohmann::json throws out_of_range (not
// parse_error) for a number beyond a double, which escaped FromJson and
// terminated gputierd at start.
TEST(NaiveBayesJson, ModelRejectsNumberBeyondADoubleWithClearError) {
  nlohmann::json doc = ValidDocument();
  std::string text = doc.dump();
  const std::string weight = "\"weight\":";
  const size_t at = text.find(weight);
  ASSERT_NE(at, std::string::npos);
  text.insert(at + weight.size(), "1e999,\"unused\":");
  absl::StatusOr<NaiveBayesModel> m = NaiveBayesModel::FromJson(text);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(m.status().message().find("number overflow"), absl::string_view::npos)
      << m.status().message();
  EXPECT_NE(m.status().message().find("delete the model file"), absl::string_view::npos);
}

}  // namespace
}  // namespace gputier
