#include "policy/trainer.h"

#include <cmath>
#include <limits>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "policy/features.h"

namespace gputier {

absl::StatusOr<NaiveBayesModel> Train(absl::Span<const TrainingRow> rows, int previous_version,
                                      int64_t trained_at_unix_ns, double operator_weight) {
  if (!std::isfinite(operator_weight) || operator_weight <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("operator weight ", operator_weight,
                     " is not a positive finite number; operator rows weigh e.g. 10"));
  }
  if (previous_version < 0 || previous_version == std::numeric_limits<int>::max()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "previous model version ", previous_version, " is out of range; 0 means no model yet"));
  }
  std::vector<LabelledRow> weighted;
  weighted.reserve(rows.size());
  for (const TrainingRow& r : rows) {
    weighted.push_back(
        {r.x, r.label, r.source == RowSource::kOperator ? operator_weight : 1.0});
  }
  std::vector<std::string> names;
  for (absl::string_view name : ModelInputNames()) names.emplace_back(name);
  return NaiveBayesModel::Fit(weighted, std::move(names), previous_version + 1,
                              trained_at_unix_ns);
}

}  // namespace gputier
