// The labelled workload suite: ten workload shapes, each run by a process in
// its own fresh cgroup on the real kernel, each classified by the real
// gputierd; the test asserts every verdict through `gputierctl status`.
// The GPU device is a configured test device (GpuTestDevice) on hosts without
// a GPU.
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <tuple>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/integration/agent_harness.h"

namespace gputier::testing {
namespace {

using std::chrono::milliseconds;

// What a workload does, with raw syscalls only.
struct Shape {
  const char* name;
  std::vector<const char*> files;  // each opened `opens` times
  int opens = 1;
  int gpu_ioctls = 0;               // on the GPU test device
  int write_kib = 0;                // written to <name>.out ("out": other)
  const char* expected;             // verdict
};

const Shape kShapes[] = {
    {"gpu-train-images", {"a.png", "b.jpg", "c.JPEG", "labels.csv"}, 10, 200, 0, "gpu"},
    {"gpu-infer-safetensors", {"model.safetensors", "tokenizer.json"}, 8, 200, 0, "gpu"},
    {"gpu-video", {"clip.mp4", "clip2.mkv"}, 10, 200, 64, "gpu"},
    {"cpu-compile", {"main.c", "util.h", "main.o", "Makefile"}, 10, 0, 256, "cpu"},
    {"cpu-database", {"data.db", "data.db-wal", "data.db-shm"}, 10, 0, 1024, "cpu"},
    {"cpu-thumbnailer", {"photo.jpg", "thumb.png", "scan.tiff"}, 15, 0, 128, "cpu"},
    {"gpu-no-gpu-files", {"notes.txt", "run.log", "cfg.yaml"}, 10, 200, 0, "mixed"},
    {"idle", {"pid"}, 2, 0, 0, "unknown"},
    {"short-lived-gpu", {"ckpt.pt"}, 6, 50, 0, "gpu"},
};

class ClassifySuiteTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root: loads BPF programs and makes cgroups";
    absl::StatusOr<std::string> mode = agent_.Start({RequestedMode(), Config(absl::Seconds(30))});
    ASSERT_TRUE(mode.ok()) << mode.status();
  }

  // A fast tick; the thresholds are the defaults (docs/FEATURES.md). The
  // window decides how long a finished GPU burst keeps its GPU rate.
  std::string Config(absl::Duration window) {
    return absl::StrCat(gpu_.ConfigYaml(), "policy:\n  tick: 100ms\n  window: ",
                        absl::FormatDuration(window), "\n  demote_after_cpu_windows: 3\n");
  }

  std::string Data(const std::string& name) { return agent_.work_dir() + "/" + name; }

  int Run(const TestCgroup& cg, const Shape& s) {
    std::vector<std::string> paths;
    for (const char* f : s.files) {
      paths.push_back(Data(f));
      WriteFile(paths.back(), 8);
    }
    return RunRawWorkload(cg, {paths, s.opens, gpu_.path(), s.gpu_ioctls,
                               Data(absl::StrCat(s.name, ".out")), s.write_kib, 1024});
  }

  nlohmann::json WaitForVerdict(uint64_t cgroup_id, const std::string& want, milliseconds limit) {
    return agent_.WaitForVerdict(cgroup_id, want, limit);
  }

  GpuTestDevice gpu_;
  AgentProcess agent_;
};

TEST_F(ClassifySuiteTest, EveryLabelledWorkloadShapeGetsItsVerdict) {
  std::vector<std::unique_ptr<TestCgroup>> cgroups;
  for (const Shape& s : kShapes) {
    cgroups.push_back(std::make_unique<TestCgroup>(s.name));
    ASSERT_EQ(Run(*cgroups.back(), s), 0) << s.name;
  }
  for (size_t i = 0; i < cgroups.size(); ++i) {
    const Shape& s = kShapes[i];
    nlohmann::json row = WaitForVerdict(cgroups[i]->id(), s.expected, milliseconds(10000));
    ASSERT_FALSE(row.is_null()) << s.name << ": no status row\n" << agent_.LogTail();
    EXPECT_EQ(row.at("verdict"), s.expected) << s.name << ": " << row.dump(2);
    EXPECT_EQ(row.at("cgroup_path"), cgroups[i]->relative());
    EXPECT_TRUE(row.at("features").is_object());
    if (std::string(s.expected) != "unknown") {
      EXPECT_EQ(row.at("source"), "rule") << "no model is trained in this test";
      EXPECT_GT(row.at("confidence").get<int>(), 0);
    }
  }
  // CPU stays CPU: nothing in the suite's CPU shapes ever looked like GPU use.
  for (size_t i = 0; i < cgroups.size(); ++i) {
    if (std::string(kShapes[i].expected) != "cpu") continue;
    absl::StatusOr<nlohmann::json> row = agent_.StatusOf(cgroups[i]->id());
    ASSERT_TRUE(row.ok());
    EXPECT_EQ(row->at("verdict"), "cpu") << kShapes[i].name;
  }
}

TEST_F(ClassifySuiteTest, BurstyGpuUseHoldsGpuThenDemotesAfterHysteresis) {
  // A 2 s window, so that idleness shows within the test.
  ASSERT_TRUE(agent_.Stop().ok());
  ASSERT_TRUE(agent_.Start({RequestedMode(), Config(absl::Seconds(2))}).ok()) << agent_.LogTail();
  TestCgroup cg("bursty-gpu");
  const Shape burst = {"bursty-gpu", {"batch.npy"}, 10, 100, 0, "gpu"};
  ASSERT_EQ(Run(cg, burst), 0);
  nlohmann::json row = WaitForVerdict(cg.id(), "gpu", milliseconds(10000));
  ASSERT_EQ(row.value("verdict", ""), "gpu") << row.dump(2);
  // A pause shorter than the window, then another burst: still GPU.
  std::this_thread::sleep_for(milliseconds(1000));
  ASSERT_EQ(Run(cg, burst), 0);
  absl::StatusOr<nlohmann::json> again = agent_.StatusOf(cg.id());
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->at("verdict"), "gpu") << again->dump(2);
  // Idle past the 2 s window: the rate falls to 0, and after 3 CPU windows
  // the verdict is demoted to CPU.
  row = WaitForVerdict(cg.id(), "cpu", milliseconds(15000));
  EXPECT_EQ(row.value("verdict", ""), "cpu") << row.dump(2);
}

TEST_F(ClassifySuiteTest, GpuVerdictArrivesOnTheFirstIoctlNotAtTheNextTick) {
  // A tick far away: only the ring-buffer events can bring the verdict soon.
  ASSERT_TRUE(agent_.Stop().ok());
  const std::string config =
      absl::StrCat(gpu_.ConfigYaml(), "policy:\n  tick: 10m\n  window: 30s\n");
  ASSERT_TRUE(agent_.Start({RequestedMode(), config}).ok()) << agent_.LogTail();
  std::this_thread::sleep_for(milliseconds(200));  // past the start-up tick
  TestCgroup cg("event-gpu");
  ASSERT_EQ(Run(cg, kShapes[1]), 0);
  nlohmann::json row = WaitForVerdict(cg.id(), "gpu", milliseconds(3000));
  EXPECT_EQ(row.value("verdict", ""), "gpu") << row.dump(2) << agent_.LogTail();
}

TEST_F(ClassifySuiteTest, ExplainShowsTheReasoningAndLabelsTrainAModel) {
  TestCgroup gpu_cg("explain-gpu");
  ASSERT_EQ(Run(gpu_cg, kShapes[0]), 0);
  ASSERT_EQ(WaitForVerdict(gpu_cg.id(), "gpu", milliseconds(10000)).value("verdict", ""), "gpu");

  absl::StatusOr<std::string> text = agent_.Ctl(absl::StrCat("explain ", gpu_cg.relative()));
  ASSERT_TRUE(text.ok()) << text.status();
  for (const char* expected : {"gpu_ioctl_rate", "ext_ratio", "threshold", "rule: gpu", "verdict: gpu", "why:"}) {
    EXPECT_NE(text->find(expected), std::string::npos) << expected << " missing in:\n" << *text;
  }
  // Training needs rows of every class: label one cgroup per class.
  TestCgroup cpu_cg("explain-cpu"), mixed_cg("explain-mixed");
  ASSERT_EQ(Run(cpu_cg, kShapes[3]), 0);
  ASSERT_EQ(Run(mixed_cg, kShapes[6]), 0);
  ASSERT_EQ(WaitForVerdict(mixed_cg.id(), "mixed", milliseconds(10000)).value("verdict", ""), "mixed");
  ASSERT_EQ(WaitForVerdict(cpu_cg.id(), "cpu", milliseconds(10000)).value("verdict", ""), "cpu");
  for (auto [cg, label] : {std::pair{&gpu_cg, "gpu"}, {&cpu_cg, "cpu"}, {&mixed_cg, "mixed"}}) {
    absl::StatusOr<std::string> out = agent_.Ctl(absl::StrCat("label ", cg->id(), " ", label));
    ASSERT_TRUE(out.ok()) << out.status();
  }
  absl::StatusOr<std::string> trained = agent_.Ctl("train");
  ASSERT_TRUE(trained.ok()) << trained.status();
  EXPECT_NE(trained->find("model version 1"), std::string::npos) << *trained;
  absl::StatusOr<std::string> json = agent_.Ctl(absl::StrCat("explain --json ", gpu_cg.id()));
  ASSERT_TRUE(json.ok()) << json.status();
  nlohmann::json e = nlohmann::json::parse(*json);
  EXPECT_EQ(e["model"]["version"], 1);
  EXPECT_TRUE(e["model"]["log_likelihood"].contains("gpu")) << e.dump(2);
  // Too few rows per class for the model to decide: the rule still does.
  EXPECT_EQ(e["model"]["used"], false);
  EXPECT_NE(e["model"].value("not_used_because", ""), "") << e.dump(2);
}

// The retraining that labelled rows bring about runs off the main loop and
// its model is swapped in without anyone asking for it: ticks go on (a new
// cgroup gets its verdict) and the next tick after the fit uses the model.
TEST_F(ClassifySuiteTest, LabelledRowsRetrainTheModelInTheBackgroundAndItIsSwappedIn) {
  ASSERT_TRUE(agent_.Stop().ok());
  ASSERT_TRUE(agent_
                  .Start({RequestedMode(), absl::StrCat(Config(absl::Seconds(30)),
                                                        "  retrain_every_rows: 3\n  min_retrain_interval: 0s\n")})
                  .ok())
      << agent_.LogTail();
  TestCgroup gpu_cg("retrain-gpu"), cpu_cg("retrain-cpu"), mixed_cg("retrain-mixed");
  for (auto [cg, shape, want] : {std::tuple{&gpu_cg, 0, "gpu"}, {&cpu_cg, 3, "cpu"}, {&mixed_cg, 6, "mixed"}}) {
    ASSERT_EQ(Run(*cg, kShapes[shape]), 0);
    ASSERT_EQ(WaitForVerdict(cg->id(), want, milliseconds(10000)).value("verdict", ""), want) << agent_.LogTail();
    absl::StatusOr<std::string> out = agent_.Ctl(absl::StrCat("label ", cg->id(), " ", want));
    ASSERT_TRUE(out.ok()) << out.status();
  }
  // New decisions: the tick that records them starts the retraining.
  TestCgroup next("retrain-next");
  ASSERT_EQ(Run(next, kShapes[3]), 0);
  ASSERT_EQ(WaitForVerdict(next.id(), "cpu", milliseconds(10000)).value("verdict", ""), "cpu");
  ASSERT_TRUE(WaitFor([&] { return absl::StrContains(agent_.LogTail(), "model: retrained, version 1"); },
                      milliseconds(10000)))
      << agent_.LogTail();
  // Installed: explain shows the model, and status names it.
  absl::StatusOr<std::string> json = agent_.Ctl(absl::StrCat("explain --json ", gpu_cg.id()));
  ASSERT_TRUE(json.ok()) << json.status();
  EXPECT_EQ(nlohmann::json::parse(*json)["model"]["version"], 1) << *json;
  absl::StatusOr<std::string> status = agent_.Ctl("status");
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_TRUE(absl::StrContains(*status, "classifier: model v1")) << *status;
  // Not `gputierctl train`: no one asked.
  EXPECT_TRUE(std::filesystem::exists(agent_.work_dir() + "/state/model.json"));
}

TEST_F(ClassifySuiteTest, CorruptModelFileFallsBackToTheRuleWithAReason) {
  ASSERT_TRUE(agent_.Stop().ok());
  std::ofstream(agent_.work_dir() + "/state/model.json") << "{\"format\": \"gputier-naive-bayes\", trunc";
  ASSERT_TRUE(agent_.Start({RequestedMode(), Config(absl::Seconds(30))}).ok()) << agent_.LogTail();
  const std::string log = agent_.LogTail();
  EXPECT_NE(log.find("is corrupt"), std::string::npos) << log;
  EXPECT_NE(log.find("the rule decides until the model is retrained"), std::string::npos) << log;
  TestCgroup cg("after-corrupt");
  ASSERT_EQ(Run(cg, kShapes[0]), 0);
  nlohmann::json row = WaitForVerdict(cg.id(), "gpu", milliseconds(10000));
  EXPECT_EQ(row.value("verdict", ""), "gpu");
  EXPECT_EQ(row.value("source", ""), "rule");
}

TEST_F(ClassifySuiteTest, VerdictsSurviveAnAgentRestartWithoutFlapping) {
  TestCgroup cg("restart-gpu");
  ASSERT_EQ(Run(cg, kShapes[0]), 0);
  nlohmann::json before = WaitForVerdict(cg.id(), "gpu", milliseconds(10000));
  ASSERT_EQ(before.value("verdict", ""), "gpu") << before.dump(2) << agent_.LogTail();
  ASSERT_TRUE(agent_.Stop().ok());
  absl::StatusOr<std::string> mode = agent_.Start({RequestedMode(), Config(absl::Seconds(30))});
  ASSERT_TRUE(mode.ok()) << mode.status();
  // Right after the restart the verdict is the pinned one, decided at the
  // same instant (not re-decided).
  absl::StatusOr<nlohmann::json> after = agent_.StatusOf(cg.id());
  ASSERT_TRUE(after.ok());
  ASSERT_FALSE(after->is_null()) << agent_.LogTail();
  EXPECT_EQ(after->at("verdict"), "gpu") << after->dump(2);
  EXPECT_EQ(after->at("since"), before.at("since"));
  EXPECT_NE(agent_.LogTail().find("restored from gt_verdicts"), std::string::npos);
}

}  // namespace
}  // namespace gputier::testing
