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
  kAgent,     // a verdict the agent reached itself
  kOperator,  // a label an operator set (gputierctl label): ground truth
};

// One row of the Fig. 3 table: the model inputs of a cgroup (ModelInputs) and
// its verdict.
struct TrainingRow {
  std::vector<double> x;
  Verdict label = Verdict::kUnknown;
  RowSource source = RowSource::kAgent;
};

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
