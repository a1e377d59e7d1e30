// Retraining the Naive Bayes model off gputierd's main loop.
//
// Reading the classification table and fitting the model take as long as the
// table is large; on the main loop that would hold up every tick, event and
// control request behind it. The verdict service hands the work to a
// Retrainer instead: at most one fit runs at a time, on its own thread, over
// its own connection to the table file (ClassificationTable is one per
// thread); the main loop asks TakeFinished() on each tick and installs the
// model when it is there. A fit that fails is returned like one that
// succeeds, and the caller logs it and keeps the model it has. The
// destructor waits for a fit in flight.
#ifndef GPUTIER_LOADER_CLASSIFY_RETRAINER_H_
#define GPUTIER_LOADER_CLASSIFY_RETRAINER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "loader/classify/classification_table.h"
#include "policy/naive_bayes.h"

namespace gputier {

// The labelled rows of the table and the highest row id when they were read.
struct TrainingSet {
  std::vector<ClassificationRow> rows;
  int64_t through_row = 0;
};

// A connection to the table file kept from one fit to the next: opening one
// checks the schema in a write transaction, which need not be repeated every
// fit. Opened by the first fit that gets it; used by one fit at a time, each
// on its own thread (a SQLite connection may move between threads; it is
// never used by two at once, which is what ClassificationTable rules out).
struct FitConnection {
  std::optional<ClassificationTable> table;
};

// What a fit needs. The rows come from `table_path` (opened on the thread
// that fits, or `connection` once it is open) unless `rows` holds them
// already (a table in memory cannot be opened twice).
struct FitInputs {
  std::string table_path;
  TableOptions table_options;
  std::shared_ptr<FitConnection> connection;  // may be null: opened for this fit only
  std::optional<TrainingSet> rows;
  int previous_version = 0;  // the model the fit replaces (0: none)
  uint32_t max_training_rows_per_cgroup = 50;
  double operator_weight = 10.0;
};

struct FitResult {
  absl::StatusOr<NaiveBayesModel> model = absl::UnknownError("not fitted");
  int64_t through_row = 0;   // rows up to this id were read (0 when none were)
  int previous_version = 0;  // FitInputs::previous_version
};

// The labelled rows and the highest id of `table`.
absl::StatusOr<TrainingSet> ReadTrainingSet(ClassificationTable& table);

// Reads the rows (see FitInputs) and fits: the training guard, then Train().
FitResult Fit(const FitInputs& inputs);

class Retrainer {
 public:
  using Job = std::function<FitResult()>;

  Retrainer() = default;
  Retrainer(const Retrainer&) = delete;
  Retrainer& operator=(const Retrainer&) = delete;
  ~Retrainer();

  // Runs `job` on a new thread and returns at once; false (nothing started)
  // while a job is running or its result has not been taken.
  bool Start(Job job);
  // Whether a job is running or its result waits to be taken.
  bool busy() const;
  // The finished job's result, once; nullopt while it runs or when none was
  // started. Never blocks on the job.
  std::optional<FitResult> TakeFinished();

 private:
  mutable std::mutex mu_;
  std::thread thread_;
  bool running_ = false;
  std::optional<FitResult> result_;
};

}  // namespace gputier

#endif  // GPUTIER_LOADER_CLASSIFY_RETRAINER_H_
