// The decision per cgroup: the threshold rule always runs; a trained Naive
// Bayes model decides instead once it has seen enough rows of every class.
//
//   rule UNKNOWN (too little evidence)           -> UNKNOWN, even with a model
//   no model, or a class with < min_rows rows    -> the rule's verdict
//   otherwise                                    -> the model's verdict, the
//                                                   rule's recorded beside it
//   ... unless the cgroup shows no GPU use at   -> the rule's verdict (CPU):
//       all and the model says GPU or MIXED         the rule's veto. No use of
//                                                   the GPU is never GPU,
//                                                   whatever rows the model
//                                                   was trained on
//
// Hysteresis (policy/hysteresis.h) is applied by the caller to the verdicts
// over time. Pure.
#ifndef GPUTIER_POLICY_CLASSIFIER_H_
#define GPUTIER_POLICY_CLASSIFIER_H_

#include <array>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "policy/features.h"
#include "policy/naive_bayes.h"
#include "policy/rule.h"
#include "policy/verdict.h"

namespace gputier {

struct ClassifierOptions {
  RuleThresholds thresholds;
  // Rows of each class (cpu, gpu and mixed) a model must have been trained on
  // before it decides instead of the rule.
  uint32_t min_rows_per_class = 20;
  // Consecutive CPU windows before a GPU or MIXED cgroup is demoted (see
  // Hysteresis). 1..65535.
  uint32_t demote_after_cpu_windows = 3;
};

// ValidateThresholds, plus demote_after_cpu_windows in 1..65535; errors name
// the key (policy.*).
absl::Status ValidateClassifierOptions(const ClassifierOptions& options);

enum class DecisionSource { kRule, kModel };
absl::string_view DecisionSourceName(DecisionSource source);  // "rule", "model"

struct Decision {
  Verdict verdict = Verdict::kUnknown;
  DecisionSource source = DecisionSource::kRule;
  // The rule's confidence (RuleExplanation) or the model's posterior, permille.
  int confidence_permille = 0;
  // The model's version when it decided; 0 when the rule decided.
  int model_version = 0;

  // The rule's answer, always.
  Verdict rule_verdict = Verdict::kUnknown;
  RuleExplanation rule;

  // The model's answer, when it decided.
  std::optional<Verdict> model_verdict;
  // Log-likelihood per class (cpu, gpu, mixed), when the model decided.
  std::array<double, kDecidedVerdictCount> model_log_likelihood = {};

  // Why the model did not decide ("no model is trained yet", "the model has
  // 12 rows labelled gpu, fewer than min_rows_per_class 20", ...); empty when
  // it did.
  std::string model_not_used;
  // The model said GPU or MIXED for a cgroup that shows no GPU use
  // (ShowsGpuUse); the rule's verdict stands (model_verdict keeps what the model said).
  bool model_vetoed = false;
};

// FailedPrecondition naming both lists when the model was trained over
// other inputs than ModelInputNames() (an older agent's model file).
absl::Status CheckModelInputs(const NaiveBayesModel& model);

// Any sign of GPU use: a GPU device opened or ioctl'ed, a GPU context held
// or recently used, a busy share above 0.
bool ShowsGpuUse(const Features& features);

// model may be nullptr (no model yet).
Decision Classify(const Features& features, const NaiveBayesModel* model,
                  const ClassifierOptions& options);

}  // namespace gputier

#endif  // GPUTIER_POLICY_CLASSIFIER_H_
