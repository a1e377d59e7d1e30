// Fitting and prediction; the JSON form is in naive_bayes_json.cc.
#include "policy/naive_bayes.h"

#include <cmath>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace gputier {
namespace {

constexpr double kLog2Pi = 1.8378770664093454836;  // log(2 * pi)

double LogNormal(double x, double mean, double variance) {
  const double d = x - mean;
  return -0.5 * (kLog2Pi + std::log(variance)) - d * d / (2.0 * variance);
}

absl::Status CheckFinite(absl::Span<const double> x, absl::string_view what) {
  for (size_t j = 0; j < x.size(); ++j) {
    if (!std::isfinite(x[j])) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, "[", j, "] is ", x[j], "; model inputs must be finite numbers"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<NaiveBayesModel> NaiveBayesModel::Fit(absl::Span<const LabelledRow> rows,
                                                     std::vector<std::string> feature_names,
                                                     int version, int64_t trained_at_unix_ns) {
  if (rows.empty()) {
    return absl::InvalidArgumentError("no training rows; a model needs rows of cpu, gpu and mixed");
  }
  if (feature_names.empty()) {
    return absl::InvalidArgumentError("no feature names; a model needs at least one feature");
  }
  if (version < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("version ", version, " is below 1; model versions start at 1"));
  }
  const size_t d = feature_names.size();
  NaiveBayesModel m;
  m.version_ = version;
  m.trained_at_unix_ns_ = trained_at_unix_ns;
  m.feature_names_ = std::move(feature_names);
  for (ClassModel& c : m.classes_) {
    c.mean.assign(d, 0.0);
    c.variance.assign(d, 0.0);
  }

  // Pass 1: validation, weights and means (per class and overall).
  std::vector<double> overall_mean(d, 0.0);
  double total_weight = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    const LabelledRow& r = rows[i];
    const std::string where = absl::StrCat("rows[", i, "]");
    if (r.x.size() != d) {
      return absl::InvalidArgumentError(absl::StrCat(where, ".x has ", r.x.size(),
                                                     " values; the model has ", d, " features"));
    }
    if (absl::Status s = CheckFinite(r.x, absl::StrCat(where, ".x")); !s.ok()) return s;
    if (!std::isfinite(r.weight) || r.weight <= 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ".weight is ", r.weight, "; a row's weight is a positive finite number"));
    }
    const int k = DecidedVerdictIndex(r.label);
    if (k < 0) {
      return absl::InvalidArgumentError(absl::StrCat(where, ".label is '", VerdictName(r.label),
                                                     "'; rows are labelled cpu, gpu or mixed"));
    }
    ClassModel& c = m.classes_[k];
    ++c.rows;
    c.weight += r.weight;
    total_weight += r.weight;
    for (size_t j = 0; j < d; ++j) {
      c.mean[j] += r.weight * r.x[j];
      overall_mean[j] += r.weight * r.x[j];
    }
  }
  for (size_t k = 0; k < kDecidedVerdictCount; ++k) {
    ClassModel& c = m.classes_[k];
    if (c.rows == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("no rows labelled ", VerdictName(kDecidedVerdicts[k]),
                       "; a model needs rows of cpu, gpu and mixed"));
    }
    for (double& mean : c.mean) mean /= c.weight;
    c.prior = c.weight / total_weight;
  }
  for (double& mean : overall_mean) mean /= total_weight;

  // Pass 2: variances.
  std::vector<double> overall_variance(d, 0.0);
  for (const LabelledRow& r : rows) {
    ClassModel& c = m.classes_[DecidedVerdictIndex(r.label)];
    for (size_t j = 0; j < d; ++j) {
      const double dc = r.x[j] - c.mean[j];
      const double dall = r.x[j] - overall_mean[j];
      c.variance[j] += r.weight * dc * dc;
      overall_variance[j] += r.weight * dall * dall;
    }
  }
  for (ClassModel& c : m.classes_) {
    for (size_t j = 0; j < d; ++j) {
      const double floor = kMinVariance + kVarianceFraction * overall_variance[j] / total_weight;
      c.variance[j] = c.variance[j] / c.weight + floor;
    }
  }
  return m;
}

absl::StatusOr<NaiveBayesModel::Prediction> NaiveBayesModel::Predict(
    absl::Span<const double> x) const {
  if (x.size() != feature_count()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the input has ", x.size(), " values; model version ", version_, " has ",
        feature_count(), " features"));
  }
  if (absl::Status s = CheckFinite(x, "input"); !s.ok()) return s;

  Prediction p;
  size_t best = 0;
  for (size_t k = 0; k < kDecidedVerdictCount; ++k) {
    const ClassModel& c = classes_[k];
    double ll = std::log(c.prior);
    for (size_t j = 0; j < x.size(); ++j) ll += LogNormal(x[j], c.mean[j], c.variance[j]);
    p.log_likelihood[k] = ll;
    if (ll > p.log_likelihood[best]) best = k;
  }
  // Posterior of the winner: 1 / sum_k exp(ll_k - ll_best).
  double sum = 0;
  for (double ll : p.log_likelihood) sum += std::exp(ll - p.log_likelihood[best]);
  p.verdict = kDecidedVerdicts[best];
  p.confidence_permille = static_cast<int>(std::lround(1000.0 / sum));
  return p;
}

const NaiveBayesModel::ClassModel* NaiveBayesModel::class_model(Verdict verdict) const {
  const int k = DecidedVerdictIndex(verdict);
  return k < 0 ? nullptr : &classes_[k];
}

uint64_t NaiveBayesModel::rows(Verdict verdict) const {
  const int k = DecidedVerdictIndex(verdict);
  return k < 0 ? 0 : classes_[k].rows;
}

}  // namespace gputier
