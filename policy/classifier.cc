#include "policy/classifier.h"

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace gputier {
namespace {

// Empty when the model may decide; else why not.
std::string WhyModelCannotDecide(const NaiveBayesModel* model, const ClassifierOptions& options) {
  if (model == nullptr) return "no model is trained yet";
  if (absl::Status s = CheckModelInputs(*model); !s.ok()) return std::string(s.message());
  for (Verdict v : kDecidedVerdicts) {
    if (model->rows(v) < options.min_rows_per_class) {
      return absl::StrCat("model version ", model->version(), " has ", model->rows(v),
                          " rows labelled ", VerdictName(v), ", fewer than min_rows_per_class ",
                          options.min_rows_per_class);
    }
  }
  return "";
}

}  // namespace

bool ShowsGpuUse(const Features& f) {
  return f.gpu_opened > 0 || f.gpu_ioctl_rate > 0 || f.gpu_contexts_held > 0 || f.gpu_context_recent > 0 ||
         (f.gpu_busy_share_defined && f.gpu_busy_share > 0);
}

absl::Status CheckModelInputs(const NaiveBayesModel& model) {
  const auto& names = ModelInputNames();
  bool same = model.feature_count() == kModelInputCount;
  for (size_t j = 0; same && j < kModelInputCount; ++j) {
    same = model.feature_names()[j] == names[j];
  }
  if (same) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "model version ", model.version(), " is over the inputs [",
      absl::StrJoin(model.feature_names(), ", "), "]; this agent computes [",
      absl::StrJoin(names, ", "), "]"));
}

absl::Status ValidateClassifierOptions(const ClassifierOptions& options) {
  if (absl::Status s = ValidateThresholds(options.thresholds); !s.ok()) return s;
  if (options.demote_after_cpu_windows < 1) {
    return absl::InvalidArgumentError(
        "policy.demote_after_cpu_windows: 0 is below 1; give the number of consecutive CPU "
        "windows before a GPU or MIXED cgroup is demoted, e.g. 3");
  }
  if (options.demote_after_cpu_windows > UINT16_MAX) {
    return absl::InvalidArgumentError(absl::StrCat(
        "policy.demote_after_cpu_windows: ", options.demote_after_cpu_windows,
        " is above 65535; give the number of consecutive CPU windows before a demotion, e.g. 3"));
  }
  return absl::OkStatus();
}

absl::string_view DecisionSourceName(DecisionSource source) {
  return source == DecisionSource::kModel ? "model" : "rule";
}

Decision Classify(const Features& features, const NaiveBayesModel* model,
                  const ClassifierOptions& options) {
  Decision d;
  d.rule = EvaluateRule(features, options.thresholds);
  d.rule_verdict = d.rule.verdict;
  d.verdict = d.rule.verdict;
  d.confidence_permille = d.rule.confidence_permille;

  if (d.rule_verdict == Verdict::kUnknown) {
    d.model_not_used = "too little evidence to decide";
    return d;
  }
  d.model_not_used = WhyModelCannotDecide(model, options);
  if (!d.model_not_used.empty()) return d;

  const std::vector<double> x = ModelInputs(features);
  absl::StatusOr<NaiveBayesModel::Prediction> p = model->Predict(x);
  if (!p.ok()) {
    d.model_not_used = std::string(p.status().message());
    return d;
  }
  if (p->verdict != Verdict::kCpu && !ShowsGpuUse(features)) {
    // The rule's veto: a model trained on tenant-shaped rows may say GPU for
    // a cgroup that never used the GPU; it stays CPU.
    d.model_verdict = p->verdict;
    d.model_log_likelihood = p->log_likelihood;
    d.model_vetoed = true;
    d.model_not_used = absl::StrCat("vetoed by the rule: model version ", model->version(), " said ",
                                    VerdictName(p->verdict), ", but the cgroup shows no GPU use");
    return d;
  }
  d.verdict = p->verdict;
  d.source = DecisionSource::kModel;
  d.confidence_permille = p->confidence_permille;
  d.model_version = model->version();
  d.model_verdict = p->verdict;
  d.model_log_likelihood = p->log_likelihood;
  return d;
}

}  // namespace gputier
