// The retrainer fits the model off the caller's thread: the caller is never
// held up by a fit, at most one runs, and its model comes back to be
// installed.
#include "loader/classify/retrainer.h"

#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <future>
#include <mutex>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace gputier {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

ClassificationRow LabelledRow(uint64_t cgroup_id, const std::string& verdict, double gpu_ioctl_rate) {
  ClassificationRow row;
  row.time_unix_ns = 1700000000000000000;
  row.cgroup_id = cgroup_id;
  row.gpu_ioctl_rate = gpu_ioctl_rate;
  row.gpu_opened = gpu_ioctl_rate > 0 ? 1 : 0;
  row.ext_ratio = verdict == "cpu" ? 0.0 : 0.5;
  row.open_rate = 10 + static_cast<double>(cgroup_id % 7);
  row.write_rate = 1000 * static_cast<double>(cgroup_id % 5);
  row.evidence = 100;
  row.verdict = verdict;
  row.rule_verdict = verdict;
  row.source = "rule";
  row.confidence_permille = 900;
  return row;
}

// A gate the test opens: the job waits on it, as a fit over a large table
// would take its time.
class Gate {
 public:
  void Open() {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = true;
    cv_.notify_all();
  }
  void Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return open_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

class RetrainerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/gputier_retrainer_test_XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    dir_ = pattern;
    inputs_.table_path = dir_ + "/classifications.db";
    absl::StatusOr<ClassificationTable> table = ClassificationTable::Open(inputs_.table_path);
    ASSERT_TRUE(table.ok()) << table.status();
    std::vector<ClassificationRow> rows;
    for (uint64_t cg = 1; cg <= 30; ++cg) {
      rows.push_back(LabelledRow(cg, "gpu", 50.0 + static_cast<double>(cg)));
      rows.push_back(LabelledRow(100 + cg, "cpu", 0));
      rows.push_back(LabelledRow(200 + cg, "mixed", 2.0 + static_cast<double>(cg % 3)));
    }
    absl::StatusOr<BatchResult> written = table->RecordBatch(rows);
    ASSERT_TRUE(written.ok()) << written.status();
    ASSERT_EQ(written->recorded, 90);
  }
  void TearDown() override {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  // Polls as a main loop would, every 5 ms, for up to `limit`.
  static std::optional<FitResult> PollUntilFinished(Retrainer& retrainer, milliseconds limit) {
    const auto deadline = steady_clock::now() + limit;
    while (steady_clock::now() < deadline) {
      if (std::optional<FitResult> done = retrainer.TakeFinished()) return done;
      std::this_thread::sleep_for(milliseconds(5));
    }
    return std::nullopt;
  }

  std::string dir_;
  FitInputs inputs_;
};

TEST_F(RetrainerTest, FitReadsTheTableFileOnItsOwnConnectionAndTrainsTheNextVersion) {
  inputs_.previous_version = 3;
  FitResult fit = Fit(inputs_);
  ASSERT_TRUE(fit.model.ok()) << fit.model.status();
  EXPECT_EQ(fit.model->version(), 4);
  EXPECT_EQ(fit.through_row, 90);
  EXPECT_EQ(fit.previous_version, 3);
}

TEST_F(RetrainerTest, AKeptConnectionIsOpenedOnceAndReadsRowsWrittenSince) {
  inputs_.connection = std::make_shared<FitConnection>();
  FitResult first = Fit(inputs_);
  ASSERT_TRUE(first.model.ok()) << first.model.status();
  ASSERT_TRUE(inputs_.connection->table.has_value());
  EXPECT_EQ(first.through_row, 90);
  {
    absl::StatusOr<ClassificationTable> writer = ClassificationTable::Open(inputs_.table_path);
    ASSERT_TRUE(writer.ok()) << writer.status();
    ASSERT_TRUE(writer->Record(LabelledRow(999, "cpu", 0)).ok());
  }
  inputs_.previous_version = first.model->version();
  FitResult second = Fit(inputs_);
  ASSERT_TRUE(second.model.ok()) << second.model.status();
  EXPECT_EQ(second.through_row, 91);
  EXPECT_EQ(second.model->version(), 2);
}

TEST_F(RetrainerTest, ASlowFitNeverBlocksTheCallerAndItsModelComesBackOnce) {
  Retrainer retrainer;
  Gate gate;
  const FitInputs inputs = inputs_;
  const auto before = steady_clock::now();
  ASSERT_TRUE(retrainer.Start([&gate, inputs]() {
    gate.Wait();  // the slow part of the fit
    return Fit(inputs);
  }));
  // The caller's loop goes on while the fit waits: Start and every poll
  // return at once, with nothing to install yet, and no second fit starts.
  for (int tick = 0; tick < 20; ++tick) {
    EXPECT_FALSE(retrainer.TakeFinished().has_value());
    EXPECT_TRUE(retrainer.busy());
    EXPECT_FALSE(retrainer.Start([]() { return FitResult{}; }));
    std::this_thread::sleep_for(milliseconds(5));
  }
  EXPECT_LT(steady_clock::now() - before, milliseconds(2000));

  gate.Open();
  std::optional<FitResult> done = PollUntilFinished(retrainer, milliseconds(10000));
  ASSERT_TRUE(done.has_value());
  ASSERT_TRUE(done->model.ok()) << done->model.status();
  EXPECT_EQ(done->model->version(), 1);
  EXPECT_EQ(done->through_row, 90);
  EXPECT_FALSE(retrainer.TakeFinished().has_value());  // once
  EXPECT_FALSE(retrainer.busy());
  // Taken: the next fit may start.
  EXPECT_TRUE(retrainer.Start([inputs]() { return Fit(inputs); }));
}

TEST_F(RetrainerTest, AFailedFitComesBackAsItsErrorForTheCallerToKeepTheOldModel) {
  Retrainer retrainer;
  FitInputs missing = inputs_;
  missing.table_path = dir_ + "/no-such-dir/classifications.db";
  ASSERT_TRUE(retrainer.Start([missing]() { return Fit(missing); }));
  std::optional<FitResult> done = PollUntilFinished(retrainer, milliseconds(10000));
  ASSERT_TRUE(done.has_value());
  EXPECT_FALSE(done->model.ok());
  EXPECT_EQ(done->through_row, 0);
}

TEST_F(RetrainerTest, DestroyingTheRetrainerWaitsForTheFitInFlight) {
  std::atomic<bool> finished{false};
  Gate gate;
  std::thread opener;
  {
    Retrainer retrainer;
    ASSERT_TRUE(retrainer.Start([&]() {
      gate.Wait();
      finished = true;
      return FitResult{};
    }));
    opener = std::thread([&gate]() {
      std::this_thread::sleep_for(milliseconds(50));
      gate.Open();
    });
  }
  EXPECT_TRUE(finished.load());
  opener.join();
}

}  // namespace
}  // namespace gputier
