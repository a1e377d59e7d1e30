// Per-workload overrides end to end: OCI annotations set with the runtime's
// own flag (podman --annotation, ctr run --annotation; ctr's --label sets a
// containerd label, which never reaches config.json) change how the real
// gputierd tiers that one container, and a bad value is said once and
// ignored. Needs root, runc, busybox-static and the runtime; skips, saying
// why, without them.
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "tests/integration/agent_harness.h"
#include "tests/integration/host_mounts.h"
#include "tests/integration/runtime_under_test.h"

namespace gputier {
namespace {

using ::gputier::testing::AgentProcess;
using ::gputier::testing::CommandResult;
using ::gputier::testing::FindFileUnder;
using ::gputier::testing::HostMountsUnder;
using ::gputier::testing::LoopsBackedUnder;
using ::gputier::testing::RuntimeContainer;
using ::gputier::testing::RuntimeContainerOptions;
using ::gputier::testing::RuntimeUnderTest;
using ::gputier::testing::SlurpFile;
using ::gputier::testing::WaitFor;
using std::chrono::milliseconds;
using std::chrono::seconds;

// Opens a file ten times a second (so the classifier counts it); a GPU one
// also issues an ioctl on the GPU test device and reads a tensor file.
std::string BusyScript(const std::string& gpu_device) {
  const std::string gpu =
      gpu_device.empty() ? "" : absl::StrCat("stty -F ", gpu_device, " >/dev/null 2>&1; cat /model.pt >/dev/null; ");
  return absl::StrCat("trap 'exit 0' TERM; echo weights > /model.pt; while :; do ", gpu,
                      ": </bin/busybox; usleep 100000; done");
}

class RuntimeAnnotationTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (std::string why = ::gputier::testing::RuntimeTestsCannotRunBecause(GetParam()); !why.empty()) {
      GTEST_SKIP() << why;
    }
    ::gputier::testing::PodmanStore::Options store;
    store.directories = {"/data", "/x"};
    absl::StatusOr<std::unique_ptr<RuntimeUnderTest>> r = RuntimeUnderTest::Create(GetParam(), store);
    ASSERT_TRUE(r.ok()) << r.status();
    runtime_ = std::move(*r);
    agent_ = std::make_unique<AgentProcess>();
  }

  void TearDown() override {
    containers_.clear();
    if (agent_ != nullptr && agent_->pid() > 0) {
      EXPECT_TRUE(WaitFor(
          [&] {
            absl::StatusOr<nlohmann::json> t = agent_->Tiering();
            return t.ok() && (*t)["containers"].empty();
          },
          seconds(30)))
          << Diag();
      EXPECT_TRUE(agent_->Stop().ok()) << Diag();
    }
    if (agent_ != nullptr) {
      const std::string work = agent_->work_dir();
      agent_.reset();
      EXPECT_TRUE(HostMountsUnder(work).empty()) << absl::StrJoin(HostMountsUnder(work), ", ");
      EXPECT_TRUE(WaitFor([&] { return LoopsBackedUnder(work).empty(); }, seconds(5)));
    }
    runtime_.reset();
  }

  absl::Status StartAgent() {
    const std::string yaml =
        absl::StrCat(gpu_.ConfigYaml(), "tiered_paths: [/data]\n", runtime_->RuntimeRootsYaml(),
                     "policy: {tick: 200ms, window: 2s}\ntiers: {fast: ", agent_->tier_root("fast"),
                     ", slow: ", agent_->tier_root("slow"), ", partition_size: 64MiB}\n");
    return agent_->Start({::gputier::testing::RequestedMode(), yaml}).status();
  }

  // The container started, or null (the failure reported).
  RuntimeContainer* Start(const std::map<std::string, std::string>& annotations, bool gpu = false) {
    RuntimeContainerOptions o;
    o.script = BusyScript(gpu ? gpu_.path() : "");
    if (gpu) o.devices = {gpu_.path()};
    o.annotations = annotations;
    absl::StatusOr<std::unique_ptr<RuntimeContainer>> c = runtime_->Start(o);
    EXPECT_TRUE(c.ok()) << c.status();
    if (!c.ok()) return nullptr;
    containers_.push_back(std::move(*c));
    return containers_.back().get();
  }

  // The row once the agent has adopted it with its directories mounted.
  nlohmann::json Adopted(const RuntimeContainer& c, const std::string& path) {
    nlohmann::json row;
    WaitFor(
        [&] {
          row = agent_->TieringRow(c.id());
          return row.is_object() && row["paths"].contains(path) && row["op"] == "none";
        },
        seconds(30), milliseconds(100));
    return row;
  }

  std::string Diag() const { return agent_ != nullptr ? agent_->TieringDiag() : ""; }

  ::gputier::testing::GpuTestDevice gpu_;
  std::unique_ptr<RuntimeUnderTest> runtime_;
  std::unique_ptr<AgentProcess> agent_;
  std::vector<std::unique_ptr<RuntimeContainer>> containers_;
};

// gputier.io/tiered-paths=/x: that container's /x is tiered (its files land
// in the slow layer) and the config's /data is not; a gputierd restarted
// after a crash tiers it the same, from its record. Its neighbour without
// the annotation keeps the config's /data.
TEST_P(RuntimeAnnotationTest, TieredPathsAnnotationReplacesTheConfigsForThatContainer) {
  RuntimeContainer* annotated_made = Start({{"gputier.io/tiered-paths", "/x"}});
  ASSERT_NE(annotated_made, nullptr);
  RuntimeContainer& annotated = *annotated_made;
  RuntimeContainer* plain_made = Start({});
  ASSERT_NE(plain_made, nullptr);
  RuntimeContainer& plain = *plain_made;
  ASSERT_TRUE(StartAgent().ok()) << Diag();
  nlohmann::json row = Adopted(annotated, "/x");
  ASSERT_EQ(row["paths"], (nlohmann::json{{"/x", "slow"}})) << row.dump() << "\n" << Diag();
  EXPECT_EQ(Adopted(plain, "/data")["paths"], (nlohmann::json{{"/data", "slow"}})) << Diag();

  absl::StatusOr<CommandResult> w = annotated.Exec("echo in-x > /x/marker-x && echo in-data > /data/marker-data");
  ASSERT_TRUE(w.ok() && w->exit_code == 0);
  const std::string slow = agent_->tier_root("slow");
  EXPECT_EQ(SlurpFile(FindFileUnder(slow, "/x/upper/marker-x")), "in-x\n") << "/x is not on the slow overlay";
  EXPECT_EQ(FindFileUnder(slow, "marker-data"), "") << "/data was tiered although the annotation names only /x";

  agent_->Kill();
  ASSERT_TRUE(StartAgent().ok()) << Diag();
  row = Adopted(annotated, "/x");
  EXPECT_EQ(row["paths"], (nlohmann::json{{"/x", "slow"}})) << row.dump() << "\n" << Diag();
  w = annotated.Exec("echo again > /x/marker-2 && cat /x/marker-x");
  ASSERT_TRUE(w.ok() && w->exit_code == 0);
  EXPECT_EQ(w->output, "in-x\n");
  EXPECT_EQ(SlurpFile(FindFileUnder(slow, "/x/upper/marker-2")), "again\n") << Diag();
}

// gputier.io/tier=fast moves a CPU container's directories to the fast
// tier, and =slow keeps a GPU container's on the slow one.
TEST_P(RuntimeAnnotationTest, TierAnnotationBeatsTheVerdictEitherWay) {
  RuntimeContainer* cpu_made = Start({{"gputier.io/tier", "fast"}});
  ASSERT_NE(cpu_made, nullptr);
  RuntimeContainer& cpu = *cpu_made;
  RuntimeContainer* gpu_made = Start({{"gputier.io/tier", "slow"}}, /*gpu=*/true);
  ASSERT_NE(gpu_made, nullptr);
  RuntimeContainer& gpu = *gpu_made;
  ASSERT_TRUE(StartAgent().ok()) << Diag();
  EXPECT_TRUE(WaitFor(
      [&] {
        nlohmann::json r = agent_->TieringRow(cpu.id());
        return r.is_object() && r["verdict"] == "cpu" && r["paths"].value("/data", "") == "fast";
      },
      seconds(60), milliseconds(200)))
      << "the CPU container annotated fast is not on the fast tier\n" << Diag();
  EXPECT_TRUE(WaitFor([&] { return agent_->TieringRow(gpu.id()).value("verdict", "") == "gpu"; }, seconds(60),
                      milliseconds(200)))
      << Diag();
  // Held there: a few ticks after its GPU verdict it is still slow.
  std::this_thread::sleep_for(seconds(2));
  nlohmann::json r = agent_->TieringRow(gpu.id());
  EXPECT_EQ(r["paths"].value("/data", ""), "slow") << r.dump();
  EXPECT_EQ(r["override"], "slow") << r.dump();
}

// A malformed value is one warning line naming the container, the key and
// the fix; the config applies and the agent keeps going.
TEST_P(RuntimeAnnotationTest, MalformedAnnotationIsLoggedOnceAndTheConfigApplies) {
  RuntimeContainer* c_made = Start({{"gputier.io/tiered-paths", "relative/dir"}});
  ASSERT_NE(c_made, nullptr);
  RuntimeContainer& c = *c_made;
  ASSERT_TRUE(StartAgent().ok()) << Diag();
  EXPECT_EQ(Adopted(c, "/data")["paths"], (nlohmann::json{{"/data", "slow"}})) << Diag();
  std::this_thread::sleep_for(seconds(2));
  std::vector<std::string> lines;
  for (absl::string_view line : absl::StrSplit(SlurpFile(agent_->log_path()), '\n')) {
    if (absl::StrContains(line, "gputier.io/tiered-paths")) lines.emplace_back(line);
  }
  ASSERT_EQ(lines.size(), 1u) << absl::StrJoin(lines, "\n");
  EXPECT_TRUE(absl::StrContains(lines[0], c.id().substr(0, 12))) << lines[0];
  EXPECT_TRUE(absl::StrContains(lines[0], "write gputier.io/tiered-paths=/dir1,/dir2")) << lines[0];
  EXPECT_TRUE(absl::StrContains(lines[0], "the config applies")) << lines[0];
  EXPECT_GT(agent_->pid(), 0);
  EXPECT_TRUE(agent_->Tiering().ok());
}

INSTANTIATE_TEST_SUITE_P(Runtimes, RuntimeAnnotationTest, ::testing::Values("podman", "containerd"),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

}  // namespace
}  // namespace gputier
