#include "loader/classify/retrainer.h"

#include <utility>

#include "loader/base/clock.h"
#include "loader/classify/decision_row.h"
#include "policy/trainer.h"

namespace gputier {
namespace {

std::vector<TrainingRow> TrainingRowsOf(const std::vector<ClassificationRow>& rows) {
  std::vector<TrainingRow> training;
  training.reserve(rows.size());
  for (const ClassificationRow& r : rows) {
    absl::StatusOr<Verdict> label = ParseVerdict(r.verdict);
    if (!label.ok() || *label == Verdict::kUnknown) continue;
    const RowSource source = r.source == "operator" ? RowSource::kOperator
                             : r.source == "model"  ? RowSource::kModel
                                                    : RowSource::kAgent;
    training.push_back({ModelInputs(FeaturesOfRow(r)), *label, source, r.cgroup_id});
  }
  return training;
}

}  // namespace

absl::StatusOr<TrainingSet> ReadTrainingSet(ClassificationTable& table) {
  absl::StatusOr<int64_t> max_id = table.MaxId();
  if (!max_id.ok()) return max_id.status();
  absl::StatusOr<std::vector<ClassificationRow>> rows = table.LabelledRows();
  if (!rows.ok()) return rows.status();
  return TrainingSet{std::move(*rows), *max_id};
}

FitResult Fit(const FitInputs& inputs) {
  FitResult result;
  result.previous_version = inputs.previous_version;
  absl::StatusOr<TrainingSet> set = absl::UnknownError("no rows");
  if (inputs.rows.has_value()) {
    set = *inputs.rows;
  } else {
    std::optional<ClassificationTable> once;
    std::optional<ClassificationTable>& slot = inputs.connection != nullptr ? inputs.connection->table : once;
    if (!slot.has_value()) {
      absl::StatusOr<ClassificationTable> table = ClassificationTable::Open(inputs.table_path, inputs.table_options);
      if (!table.ok()) {
        result.model = table.status();
        return result;
      }
      slot.emplace(std::move(*table));
    }
    set = ReadTrainingSet(*slot);
  }
  if (!set.ok()) {
    result.model = set.status();
    return result;
  }
  result.through_row = set->through_row;
  std::vector<TrainingRow> training =
      GuardTrainingRows(TrainingRowsOf(set->rows), {inputs.max_training_rows_per_cgroup});
  result.model = Train(training, inputs.previous_version, UnixNs(), inputs.operator_weight);
  return result;
}

Retrainer::~Retrainer() {
  if (thread_.joinable()) thread_.join();
}

bool Retrainer::Start(Job job) {
  std::lock_guard<std::mutex> lock(mu_);
  if (running_ || result_.has_value()) return false;
  // The previous job's thread has finished (its result was taken).
  if (thread_.joinable()) thread_.join();
  running_ = true;
  thread_ = std::thread([this, job = std::move(job)]() {
    FitResult result = job();
    std::lock_guard<std::mutex> lock(mu_);
    result_ = std::move(result);
    running_ = false;
  });
  return true;
}

bool Retrainer::busy() const {
  std::lock_guard<std::mutex> lock(mu_);
  return running_ || result_.has_value();
}

std::optional<FitResult> Retrainer::TakeFinished() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!result_.has_value()) return std::nullopt;
  std::optional<FitResult> out = std::move(result_);
  result_.reset();
  return out;
}

}  // namespace gputier
