// A steady GPU job stand-in on the real kernel under the real gputierd: it
// opens the GPU test device, issues a burst of ioctls (context creation),
// then holds the device open for several windows with no ioctl at all while
// it reads tensor files and writes, as a CUDA job computing in steady state
// does (measured on an H200: 471 ioctls in its first 1.3 s, 6 in the next
// 59 s). The held, recently used GPU context keeps it GPU the whole time;
// after it closes the device it is demoted after the hysteresis, as before.
#include <fcntl.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "policy/features.h"
#include "policy/naive_bayes.h"
#include "tests/integration/agent_harness.h"

namespace gputier::testing {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

// The job, in a child moved into `cg`: raw syscalls only. Commands on
// `control`: 'c' closes the GPU device, 'q' exits.
class SteadyGpuJob {
 public:
  SteadyGpuJob(const TestCgroup& cg, const std::string& gpu_path, const std::vector<std::string>& tensors,
               const std::string& out_path) {
    int control[2];
    int go[2];
    if (pipe(control) != 0 || pipe(go) != 0) return;
    pid_ = fork();
    if (pid_ == 0) {
      close(control[1]);
      close(go[1]);
      char c;
      if (read(go[0], &c, 1) != 1) _exit(120);
      fcntl(control[0], F_SETFL, O_NONBLOCK);
      int gpu = open(gpu_path.c_str(), O_RDWR);
      if (gpu < 0) _exit(11);
      for (int i = 0; i < 300; ++i) ioctl(gpu, 0x4600 + (i % 16), 0);  // context creation
      int out = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      char buf[4096] = {};
      for (;;) {
        // One "step": read the tensors, write a little, no GPU ioctl.
        for (const std::string& t : tensors) {
          int fd = open(t.c_str(), O_RDONLY);
          if (fd >= 0) {
            while (read(fd, buf, sizeof(buf)) > 0) {
            }
            close(fd);
          }
        }
        if (out >= 0 && write(out, buf, 512) != 512) _exit(12);
        if (read(control[0], &c, 1) == 1) {
          if (c == 'q') _exit(0);
          if (c == 'c' && gpu >= 0) {
            close(gpu);
            gpu = -1;
          }
        }
        usleep(50 * 1000);
      }
    }
    close(control[0]);
    close(go[0]);
    control_ = control[1];
    const std::string procs = cg.path() + "/cgroup.procs";
    std::ofstream(procs) << pid_;
    moved_ = write(go[1], "g", 1) == 1;
    close(go[1]);
  }
  ~SteadyGpuJob() {
    Send('q');
    if (pid_ > 0) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == 0) {
        std::this_thread::sleep_for(milliseconds(200));
        if (waitpid(pid_, &status, WNOHANG) == 0) {
          kill(pid_, SIGKILL);
          waitpid(pid_, &status, 0);
        }
      }
    }
    if (control_ >= 0) close(control_);
  }
  bool started() const { return pid_ > 0 && moved_; }
  void Send(char c) {
    if (control_ >= 0) (void)!write(control_, &c, 1);
  }

 private:
  pid_t pid_ = -1;
  int control_ = -1;
  bool moved_ = false;
};

class SteadyGpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root: loads BPF programs and makes cgroups";
  }

  // A 3 s window and a 500 ms tick: the creation burst leaves the window
  // after 3 s, so without the held context the job would be CPU within ~5 s.
  std::string Config() {
    return absl::StrCat(gpu_.ConfigYaml(),
                        "policy:\n  tick: 500ms\n  window: 3s\n  demote_after_cpu_windows: 3\n"
                        "  gpu_context_used_windows: 10\n");
  }

  std::vector<std::string> Tensors() {
    std::vector<std::string> paths;
    for (const char* name : {"model-00001.safetensors", "model-00002.safetensors", "config.json"}) {
      paths.push_back(agent_.work_dir() + "/" + name);
      WriteFile(paths.back(), 8192);
    }
    return paths;
  }

  GpuTestDevice gpu_;
  AgentProcess agent_;
};

TEST_F(SteadyGpuTest, HeldGpuContextKeepsASteadyJobGpuAndClosingItDemotesAfterHysteresis) {
  ASSERT_TRUE(agent_.Start({RequestedMode(), Config()}).ok()) << agent_.LogTail();
  TestCgroup cg("steady-gpu");
  SteadyGpuJob job(cg, gpu_.path(), Tensors(), agent_.work_dir() + "/steady.out");
  ASSERT_TRUE(job.started());
  nlohmann::json row = agent_.WaitForVerdict(cg.id(), "gpu", milliseconds(5000));
  ASSERT_EQ(row.value("verdict", ""), "gpu") << row.dump(2) << agent_.LogTail();

  // Four windows (12 s) of steady computing with no GPU ioctl: GPU at every look.
  const auto until = Clock::now() + milliseconds(12000);
  nlohmann::json last;
  int looks = 0;
  while (Clock::now() < until) {
    absl::StatusOr<nlohmann::json> r = agent_.StatusOf(cg.id());
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_EQ(r->value("verdict", ""), "gpu") << "demoted while computing:\n" << r->dump(2);
    last = *r;
    ++looks;
    std::this_thread::sleep_for(milliseconds(250));
  }
  // Each look runs gputierctl: 4 a second here, about 1 a second in a TCG VM.
  EXPECT_GE(looks, 5);
  // It is the held context that holds: the ioctl rate is 0 by now.
  const nlohmann::json& f = last.at("features");
  EXPECT_EQ(f.at("gpu_ioctl_rate").get<double>(), 0.0) << last.dump(2);
  EXPECT_GE(f.at("gpu_contexts_held").get<double>(), 1.0) << last.dump(2);
  EXPECT_EQ(f.at("gpu_context_recent").get<double>(), 1.0) << last.dump(2);
  EXPECT_GE(f.at("context_last_used_windows").get<double>(), 3.0) << last.dump(2);

  // explain names the evidence and its source.
  absl::StatusOr<std::string> text = agent_.Ctl(absl::StrCat("explain ", cg.relative()));
  ASSERT_TRUE(text.ok()) << text.status();
  for (const std::string& expected :
       {std::string("gpu_contexts_held 1 (proc scan: ") + gpu_.path() + " x1", std::string("context_last_used "),
        std::string("windows ago"), std::string("gpu_context_recent"), std::string("GPU contexts are held")}) {
    EXPECT_NE(text->find(expected), std::string::npos) << expected << " missing in:\n" << *text;
  }
  absl::StatusOr<nlohmann::json> status = agent_.Status();
  ASSERT_TRUE(status.ok());

  // The job closes the device and keeps computing on the CPU: demoted after
  // the hysteresis (next scan, then 3 CPU ticks).
  const auto closed_at = Clock::now();
  job.Send('c');
  // (Under TCG in the VM cells every step is several times slower.)
  row = agent_.WaitForVerdict(cg.id(), "cpu", milliseconds(getenv("GPUTIER_VM") != nullptr ? 20000 : 6000));
  EXPECT_EQ(row.value("verdict", ""), "cpu") << row.dump(2);
  const auto demoted_after = std::chrono::duration_cast<milliseconds>(Clock::now() - closed_at).count();
  EXPECT_GE(demoted_after, 1000) << "demoted before the hysteresis";
  EXPECT_EQ(row.at("features").at("gpu_contexts_held").get<double>(), 0.0) << row.dump(2);
}

TEST_F(SteadyGpuTest, AModelOverTheOldInputsIsRefusedAndRetrained) {
  // A model file as an older gputier wrote it: five inputs.
  std::vector<LabelledRow> rows;
  for (int i = 0; i < 4; ++i) {
    rows.push_back({{1.0 + i, 1, 0.9, 1, 1}, Verdict::kGpu, 1.0});
    rows.push_back({{0.0, 0, 0.1 * i, 2, 1}, Verdict::kCpu, 1.0});
    rows.push_back({{2.0 + i, 1, 0.05 * i, 1, 2}, Verdict::kMixed, 1.0});
  }
  absl::StatusOr<NaiveBayesModel> old = NaiveBayesModel::Fit(
      rows, {"log1p_gpu_ioctl_rate", "gpu_opened", "ext_ratio", "log1p_open_rate", "log1p_write_kib_rate"}, 4, 0);
  ASSERT_TRUE(old.ok()) << old.status();
  ASSERT_TRUE(agent_.Start({RequestedMode(), Config()}).ok()) << agent_.LogTail();
  ASSERT_TRUE(agent_.Stop().ok());
  std::ofstream(agent_.work_dir() + "/state/model.json") << old->ToJson();
  ASSERT_TRUE(agent_.Start({RequestedMode(), Config()}).ok()) << agent_.LogTail();
  const std::string log = agent_.LogTail();
  EXPECT_NE(log.find("refused: model version 4 is over the inputs [log1p_gpu_ioctl_rate"), std::string::npos)
      << log;
  EXPECT_NE(log.find("retraining from the classification table"), std::string::npos) << log;
}

}  // namespace
}  // namespace gputier::testing
