#include "policy/trainer.h"

#include <cmath>
#include <limits>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "policy/features.h"

namespace gputier {

std::vector<TrainingRow> GuardTrainingRows(std::vector<TrainingRow> rows, const TrainingGuard& guard) {
  // Newest first, so the cap keeps each cgroup's newest rows.
  absl::flat_hash_map<uint64_t, uint32_t> kept_of;
  std::vector<bool> keep(rows.size(), false);
  for (size_t i = rows.size(); i-- > 0;) {
    const TrainingRow& r = rows[i];
    if (r.source == RowSource::kOperator) {
      keep[i] = true;
    } else if (r.source == RowSource::kAgent) {
      uint32_t& kept = kept_of[r.cgroup_id];
      if (kept < guard.max_rows_per_cgroup) {
        ++kept;
        keep[i] = true;
      }
    }
  }
  std::vector<TrainingRow> out;
  out.reserve(rows.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    if (keep[i]) out.push_back(std::move(rows[i]));
  }
  return out;
}

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
