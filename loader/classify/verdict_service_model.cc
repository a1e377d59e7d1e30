// The verdict service's model: retrained when enough new labelled rows are
// in, off the main loop (Retrainer), installed by the main loop; and fitted
// at once for `gputierctl train`.
#include <algorithm>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "loader/base/log.h"
#include "loader/classify/model_store.h"
#include "loader/classify/retrainer.h"
#include "loader/classify/verdict_service.h"

namespace gputier {

// Retrain every retrain_every_rows new labelled rows, at most every
// min_retrain_interval: a flood of rows costs one retraining a minute. The
// table is read and the model fitted on the retrainer's thread; the main
// loop goes on with the model it has until InstallRetrained() finds the new
// one.
void VerdictService::RetrainWhenDue() {
  if (retrainer_.busy()) return;
  absl::StatusOr<int64_t> fresh = table_.CountLabelledSince(trained_through_row_);
  if (!fresh.ok() || *fresh < options_.policy.retrain_every_rows) return;
  if (absl::Now() - last_retrain_at_ < options_.policy.min_retrain_interval) return;
  last_retrain_at_ = absl::Now();
  FitInputs inputs = FitInputsNow();
  inputs.connection = fit_connection_;
  if (table_.in_memory()) {
    // A table in memory has no file for the retrainer to open: its rows are
    // read here (a degraded table is small: it starts empty).
    absl::StatusOr<TrainingSet> set = ReadTrainingSet(table_);
    if (!set.ok()) {
      LogInfo("model: not retrained: reading the classification table: %s", set.status().message());
      return;
    }
    inputs.rows = std::move(*set);
  }
  retrainer_.Start([inputs = std::move(inputs)]() { return Fit(inputs); });
}

FitInputs VerdictService::FitInputsNow() const {
  FitInputs inputs;
  inputs.table_path = table_.path();
  inputs.table_options.max_rows = options_.policy.table_max_rows;
  inputs.previous_version = engine_.model() == nullptr ? 0 : engine_.model()->version();
  inputs.max_training_rows_per_cgroup = options_.policy.max_training_rows_per_cgroup;
  inputs.operator_weight = options_.policy.operator_weight;
  return inputs;
}

void VerdictService::InstallRetrained() {
  std::optional<FitResult> done = retrainer_.TakeFinished();
  if (!done.has_value()) return;
  trained_through_row_ = std::max(trained_through_row_, done->through_row);
  absl::StatusOr<int> version = Install(*done);
  if (version.ok()) {
    LogInfo("model: retrained, version %d", *version);
    retrain_failed_logged_ = false;
  } else if (!retrain_failed_logged_) {
    LogInfo("model: not retrained yet: %s", version.status().message());
    retrain_failed_logged_ = true;
  }
}

absl::StatusOr<int> VerdictService::Install(FitResult& fit) {
  if (!fit.model.ok()) return fit.model.status();
  const int current = engine_.model() == nullptr ? 0 : engine_.model()->version();
  if (current != fit.previous_version) {
    return absl::AbortedError(absl::StrCat("the model fitted over version ", fit.previous_version,
                                           " is dropped: version ", current, " was trained meanwhile"));
  }
  const std::string path = absl::StrCat(options_.state_dir, "/", kModelFile);
  if (absl::Status s = SaveModel(path, *fit.model); !s.ok()) return s;
  const int version = fit.model->version();
  engine_.SetModel(std::make_shared<const NaiveBayesModel>(std::move(*fit.model)));
  return version;
}

// `gputierctl train` and a model refused at start: fitted here, at once (an
// operator waits for the answer). A retraining in flight then finds its
// model outdated and drops it.
absl::StatusOr<int> VerdictService::TrainNow() {
  absl::StatusOr<TrainingSet> set = ReadTrainingSet(table_);
  if (!set.ok()) return set.status();
  FitInputs inputs = FitInputsNow();
  inputs.rows = std::move(*set);
  FitResult fit = Fit(inputs);
  trained_through_row_ = std::max(trained_through_row_, fit.through_row);
  return Install(fit);
}

}  // namespace gputier
