// Gaussian Naive Bayes over the model inputs (policy/features.h): the
// "previously learned classification model" of the patent's claim 5, retrained
// from the verdicts it records.
//
// Each class c in {cpu, gpu, mixed} has a prior P(c) and, per feature j, a
// normal distribution N(mean[c][j], variance[c][j]); a row x scores
//   log P(c) + sum_j log N(x_j; mean[c][j], variance[c][j])
// and the highest score wins. Fitting (weighted maximum likelihood):
//   W_c         = sum of the weights of the rows labelled c
//   P(c)        = W_c / sum over classes of W_c
//   mean[c][j]  = sum_i w_i x_ij / W_c                      (rows labelled c)
//   var[c][j]   = sum_i w_i (x_ij - mean[c][j])^2 / W_c + floor_j
//   floor_j     = kMinVariance + kVarianceFraction * (weighted variance of
//                 feature j over all rows)
// The floor keeps a feature that is constant within a class (gpu_opened is 0
// for every CPU row) from giving an infinitely sharp, overconfident density.
//
// Pure; persistence to a file is the caller's (ToJson / FromJson).
#ifndef GPUTIER_POLICY_NAIVE_BAYES_H_
#define GPUTIER_POLICY_NAIVE_BAYES_H_

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "policy/verdict.h"

namespace gputier {

// One labelled row: the model inputs, the verdict (cpu, gpu or mixed) and how
// much the row counts (> 0; the caller makes operator rows outweigh agent rows).
struct LabelledRow {
  std::vector<double> x;
  Verdict label = Verdict::kUnknown;
  double weight = 1.0;
};

class NaiveBayesModel {
 public:
  static constexpr double kMinVariance = 1e-3;
  static constexpr double kVarianceFraction = 1e-2;

  // The parameters of one class.
  struct ClassModel {
    uint64_t rows = 0;   // rows labelled with this class (unweighted count)
    double weight = 0;   // W_c
    double prior = 0;    // P(c)
    std::vector<double> mean;
    std::vector<double> variance;  // floor included
  };

  struct Prediction {
    Verdict verdict = Verdict::kUnknown;  // the argmax (ties: cpu, then gpu, then mixed)
    // Per class, in kDecidedVerdicts order (cpu, gpu, mixed).
    std::array<double, kDecidedVerdictCount> log_likelihood = {};
    // Posterior probability of the winner (softmax of log_likelihood) in
    // permille, 0..1000.
    int confidence_permille = 0;
  };

  // Fits the model. InvalidArgument when: there are no rows; a row's x has
  // another length than feature_names or holds NaN/inf; a weight is not a
  // positive finite number; a label is unknown; a class has no rows.
  static absl::StatusOr<NaiveBayesModel> Fit(absl::Span<const LabelledRow> rows,
                                             std::vector<std::string> feature_names,
                                             int version, int64_t trained_at_unix_ns);

  // InvalidArgument when x has another length than the model's features or
  // holds NaN/inf.
  absl::StatusOr<Prediction> Predict(absl::Span<const double> x) const;

  int version() const { return version_; }
  int64_t trained_at_unix_ns() const { return trained_at_unix_ns_; }
  const std::vector<std::string>& feature_names() const { return feature_names_; }
  size_t feature_count() const { return feature_names_.size(); }
  // The class's parameters; nullptr for kUnknown.
  const ClassModel* class_model(Verdict verdict) const;
  // Rows the class was trained on; 0 for kUnknown.
  uint64_t rows(Verdict verdict) const;

  // A JSON document (format "gputier-naive-bayes", format_version 1) that
  // FromJson reads back to an identical model.
  std::string ToJson() const;
  // Parses and validates; errors name the field (e.g. "classes[1].variance[2]:
  // -0.5 is not above 0; a variance is positive").
  static absl::StatusOr<NaiveBayesModel> FromJson(absl::string_view json);

 private:
  NaiveBayesModel() = default;

  int version_ = 0;
  int64_t trained_at_unix_ns_ = 0;
  std::vector<std::string> feature_names_;
  std::array<ClassModel, kDecidedVerdictCount> classes_;  // kDecidedVerdicts order
};

}  // namespace gputier

#endif  // GPUTIER_POLICY_NAIVE_BAYES_H_
