// Retraining (the patent's claim 5): the verdicts the agent records, and the
// labels an operator gives, become the rows of the next Naive Bayes model.
#ifndef GPUTIER_POLICY_TRAINER_H_
#define GPUTIER_POLICY_TRAINER_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "policy/naive_bayes.h"
#include "policy/verdict.h"

namespace gputier {

enum class RowSource {
  kAgent,     // a verdict the rule reached
  kOperator,  // a label an operator set (gputierctl label): ground truth
  kModel,     // a verdict the model reached: never trained on (the model
              // would learn its own outputs and drift from the rule)
};

// One row of the Fig. 3 table: the model inputs of a cgroup (ModelInputs) and
// its verdict.
struct TrainingRow {
  std::vector<double> x;
  Verdict label = Verdict::kUnknown;
  RowSource source = RowSource::kAgent;
  uint64_t cgroup_id = 0;  // whose row; for the per-cgroup cap
};

// What keeps the training rows from being shaped by tenants: any cgroup adds
// rows, and many (or one busy) cgroups could otherwise outvote the rest.
struct TrainingGuard {
  // Agent rows kept per cgroup (its newest); operator rows are never capped.
  uint32_t max_rows_per_cgroup = 50;
};

// The rows Train() may use, from `rows` oldest first: operator rows all;
// agent rows at most guard.max_rows_per_cgroup per cgroup (the newest);
// model rows none. Order kept. Pure.
std::vector<TrainingRow> GuardTrainingRows(std::vector<TrainingRow> rows, const TrainingGuard& guard);

// How much more an operator's row counts than an agent's, by default.
inline constexpr double kDefaultOperatorWeight = 10.0;

// Fits a model over ModelInputNames() with agent rows weighing 1 and operator
// rows operator_weight, version previous_version + 1. InvalidArgument (the
// caller keeps the rule and logs the reason) when there are no rows, a class
// (cpu, gpu, mixed) has no rows, a row has another length than the model
// inputs, a label is unknown, operator_weight is not a positive finite
// number, or previous_version is negative.
absl::StatusOr<NaiveBayesModel> Train(absl::Span<const TrainingRow> rows, int previous_version,
                                      int64_t trained_at_unix_ns,
                                      double operator_weight = kDefaultOperatorWeight);

}  // namespace gputier

#endif  // GPUTIER_POLICY_TRAINER_H_
