// Real container runtimes end to end: podman (rootful, a private store) and
// containerd (a private daemon, ctr, kubelet-shaped cgroups in the k8s.io
// namespace) start busybox containers; the real gputierd finds them by their
// cgroups, classifies them and tiers their /data. Needs root, runc,
// busybox-static and the runtime (Debian packages podman, containerd); each
// runtime's tests skip, saying why, without it.
//
// Every test runs its own gputierd (AgentProcess) and its own containers,
// and leaves nothing behind: the drivers delete containers, images, stores
// and daemons; TearDown waits until the agent has dropped its records, stops
// it and checks that no mount or loop device of its tiers is left.
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "gtest/gtest.h"
#include "loader/cgroup/cgroup_path.h"
#include "tests/integration/agent_harness.h"
#include "tests/integration/containerd_container.h"
#include "tests/integration/host_mounts.h"
#include "tests/integration/podman_container.h"
#include "tests/integration/runtime_container.h"
#include "tests/integration/tier_dirs.h"
#include "tests/integration/runtime_under_test.h"

namespace gputier {
namespace {

using ::gputier::testing::AgentProcess;
using ::gputier::testing::CommandResult;
using ::gputier::testing::ContainerdContainer;
using ::gputier::testing::ContainerdDaemon;
using ::gputier::testing::HostMountsUnder;
using ::gputier::testing::LoopsBackedUnder;
using ::gputier::testing::PathExists;
using ::gputier::testing::SlurpFile;
using ::gputier::testing::WaitFor;
using ::gputier::testing::PodmanContainer;
using ::gputier::testing::PodmanStore;
using ::gputier::testing::RuntimeContainer;
using ::gputier::testing::RuntimeContainerOptions;
using ::gputier::testing::TempDir;
using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

using Runtime = ::gputier::testing::RuntimeUnderTest;

std::string CannotRunBecause(const std::string& runtime) {
  return ::gputier::testing::RuntimeTestsCannotRunBecause(runtime);
}

class RuntimeContainerTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (std::string why = CannotRunBecause(GetParam()); !why.empty()) GTEST_SKIP() << why;
    absl::StatusOr<std::unique_ptr<Runtime>> r = Runtime::Create(GetParam());
    ASSERT_TRUE(r.ok()) << r.status();
    runtime_ = std::move(*r);
  }

  std::unique_ptr<Runtime> runtime_;
};

// What gputierd reads of a container started by the runtime: a cgroup that
// IdentifyContainer names with the runtime's id (podman: libpod-<id>;
// containerd under a pod: /kubepods/burstable/pod<uid>/<id>), an init that
// has left the host's mount namespace, and nothing left once removed.
TEST_P(RuntimeContainerTest, ContainerCgroupNamesItsIdAndRemoveLeavesNothing) {
  absl::StatusOr<std::unique_ptr<RuntimeContainer>> made = runtime_->Start({});
  ASSERT_TRUE(made.ok()) << made.status();
  RuntimeContainer& c = **made;
  EXPECT_EQ(c.id().size(), 64u) << c.id();
  std::optional<ContainerIdentity> who = IdentifyContainer(c.cgroup());
  ASSERT_TRUE(who.has_value()) << c.cgroup() << " is not recognised as a container's cgroup";
  EXPECT_EQ(who->container_id, c.id()) << c.cgroup();
  if (GetParam() == "containerd") {
    EXPECT_TRUE(absl::StartsWith(c.cgroup(), "/kubepods/burstable/pod")) << c.cgroup();
    EXPECT_FALSE(who->pod_uid.empty()) << c.cgroup();
    EXPECT_EQ(who->qos, "burstable");
  } else {
    EXPECT_TRUE(absl::StrContains(c.cgroup(), "libpod-" + c.id())) << c.cgroup();
    EXPECT_EQ(who->runtime, "podman");
  }
  struct stat mine, theirs;
  ASSERT_EQ(stat("/proc/self/ns/mnt", &mine), 0);
  ASSERT_EQ(stat(absl::StrCat("/proc/", c.pid(), "/ns/mnt").c_str(), &theirs), 0);
  EXPECT_NE(mine.st_ino, theirs.st_ino) << "the init shares the test's mount namespace";
  absl::StatusOr<::gputier::testing::CommandResult> hello = c.Exec("echo hello > /data/x && cat /data/x");
  ASSERT_TRUE(hello.ok()) << hello.status();
  EXPECT_EQ(hello->output, "hello\n");
  bool found_state = false;
  for (const std::string& root : runtime_->StateRoots()) {
    found_state = found_state || ::gputier::testing::PathExists(absl::StrCat(root, "/", c.id(), "/state.json"));
  }
  EXPECT_TRUE(found_state) << "no runc state.json for " << c.id() << " under "
                           << absl::StrJoin(runtime_->StateRoots(), ", ");

  const std::string cgroup = c.cgroup();
  ASSERT_TRUE(c.Remove().ok());
  EXPECT_TRUE(::gputier::testing::ExistingCgroupDirs({cgroup}).empty()) << cgroup << " outlived rm -f";
}

// What a writer container's init runs: once /data/go appears (the test
// creates it when the agent has adopted the container, so that every file
// goes through gputier's overlays) it writes /data/w0, w1, ... (each
// `seq i i+300`) until /data/stop appears, then the count to /data/count,
// and waits for /data/exit to exit 0; SIGTERM ends it at once. Until
// /data/go it opens a file ten times a second, so the agent sees it. A GPU
// writer also issues an ioctl on the GPU test device and reads a tensor
// file (/data/model.pt) before each file; a CPU writer reads a log.
std::string WriterScript(const std::string& gpu_device) {
  const std::string read = gpu_device.empty()
                               ? "cat /data/input.log >/dev/null; "
                               : absl::StrCat("stty -F ", gpu_device, " >/dev/null 2>&1; cat /data/model.pt >/dev/null; ");
  return absl::StrCat(
      "trap 'exit 0' TERM; while [ ! -e /data/go ]; do : </bin/busybox; usleep 100000; done; ",
      "echo weights > /data/model.pt; echo line > /data/input.log; i=0; ",
      "while [ ! -e /data/stop ]; do ", read, "seq $i $((i+300)) > /data/w$i; i=$((i+1)); usleep 20000; done; ",
      "echo $i > /data/count; while [ ! -e /data/exit ]; do usleep 20000; done; exit 0");
}

// The content of /data/w<i>.
std::string Expected(int i) {
  std::string s;
  for (int n = i; n <= i + 300; ++n) absl::StrAppend(&s, n, "\n");
  return s;
}

// Files named w<N> directly in `dir`.
int CountW(const std::string& dir) {
  int n = 0;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return 0;
  while (struct dirent* e = readdir(d)) n += e->d_name[0] == 'w' ? 1 : 0;
  closedir(d);
  return n;
}

// How a container ends in RuntimeTieringTest.
enum class End { kStop, kKill, kRemove, kExit };

std::string EndName(End end) {
  switch (end) {
    case End::kStop: return "stop";
    case End::kKill: return "kill";
    case End::kRemove: return "rm -f";
    case End::kExit: return "exit";
  }
  return "?";
}

class RuntimeTieringTest : public RuntimeContainerTest {
 protected:
  void SetUp() override {
    RuntimeContainerTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    agent_ = std::make_unique<AgentProcess>();
    fast_root_ = agent_->tier_root("fast");
    slow_root_ = agent_->tier_root("slow");
  }

  void TearDown() override {
    containers_.clear();  // rm -f: the agent finalizes what is left
    if (agent_ != nullptr && agent_->pid() > 0) {
      EXPECT_TRUE(WaitFor(
          [&] {
            absl::StatusOr<nlohmann::json> t = agent_->Tiering();
            return t.ok() && (*t)["containers"].empty();
          },
          seconds(30)))
          << "the agent still has records of removed containers\n" << Diag();
      EXPECT_TRUE(agent_->Stop().ok()) << Diag();
    }
    if (agent_ != nullptr) {
      const std::string work = agent_->work_dir();
      agent_.reset();
      EXPECT_TRUE(HostMountsUnder(work).empty()) << absl::StrJoin(HostMountsUnder(work), ", ");
      EXPECT_TRUE(WaitFor([&] { return LoopsBackedUnder(work).empty(); }, seconds(5)))
          << absl::StrJoin(LoopsBackedUnder(work), ", ");
    }
    runtime_.reset();
  }

  absl::Status StartAgent() {
    const std::string yaml = absl::StrCat(
        gpu_.ConfigYaml(), "tiered_paths: [/data]\n", runtime_->RuntimeRootsYaml(),
        "policy: {tick: 200ms, window: 2s}\ntiers: {fast: ", fast_root_, ", slow: ", slow_root_,
        ", partition_size: 64MiB}\n");
    return agent_->Start({::gputier::testing::RequestedMode(), yaml}).status();
  }

  nlohmann::json Row(const std::string& id) const { return agent_->TieringRow(id); }
  std::string Diag() const { return agent_ != nullptr ? agent_->TieringDiag() : ""; }

  // Whether the agent has adopted every container with /data on the slow
  // overlay (the writers open a file ten times a second until /data/go, so
  // the agent sees them without a poke from outside).
  bool AllAdopted() const {
    return WaitFor(
        [&] {
          for (const auto& c : containers_) {
            nlohmann::json r = Row(c->id());
            if (!r.is_object() || r["paths"].value("/data", "") != "slow" || r["op"] != "none") return false;
          }
          return true;
        },
        seconds(30), milliseconds(100));
  }

  // Named by the container's tier key (tests/integration/tier_dirs.h).
  std::string FastDir(const std::string& id) const { return LiveTierDir(fast_root_, id); }
  std::string FastUpper(const std::string& id) const { return FastDir(id) + "/mnt/data/upper"; }
  // The live slow layer, or after the container's exit the quarantined one.
  std::string SlowUpper(const std::string& id) const { return SlowLayerOf(slow_root_, id) + "/data/upper"; }

  // Creates /data/stop in every container and returns the number of files
  // each writer wrote (read from the tier it is on; -1 on timeout).
  std::vector<int> StopWriters() {
    std::vector<int> counts(containers_.size(), -1);
    for (const auto& c : containers_) {
      absl::StatusOr<CommandResult> stop = c->Exec("touch /data/stop");
      if (!stop.ok() || stop->exit_code != 0) return counts;
    }
    WaitFor(
        [&] {
          bool all = true;
          for (size_t i = 0; i < containers_.size(); ++i) {
            const std::string& id = containers_[i]->id();
            std::string text = SlurpFile(FastUpper(id) + "/count");
            if (text.empty()) text = SlurpFile(SlowUpper(id) + "/count");
            absl::string_view line = text;
            if (!absl::ConsumeSuffix(&line, "\n") || !absl::SimpleAtoi(line, &counts[i])) all = false;
          }
          return all;
        },
        seconds(10), milliseconds(100));
    return counts;
  }

  // Ends `c` the way `end` says and waits until the agent has dropped it;
  // then its files are on the slow tier, exactly as written, and nothing of
  // its fast partition is left.
  void EndAndCheckWriteBack(RuntimeContainer& c, End end, int count) {
    SCOPED_TRACE(absl::StrCat(c.runtime(), " container ", c.id().substr(0, 12), " ended by ", EndName(end)));
    absl::Status ended;
    switch (end) {
      case End::kStop: ended = c.Stop(seconds(10)); break;
      case End::kKill: ended = c.Kill(); break;
      case End::kRemove: ended = c.Remove(); break;
      case End::kExit: {
        absl::StatusOr<CommandResult> exit = c.Exec("touch /data/exit");
        ended = exit.ok() ? absl::OkStatus() : exit.status();
        if (ended.ok() && !c.WaitExited(seconds(10))) ended = absl::DeadlineExceededError("did not exit");
        break;
      }
    }
    ASSERT_TRUE(ended.ok()) << ended;
    const Clock::time_point t0 = Clock::now();
    ASSERT_TRUE(WaitFor([&] { return Row(c.id()).is_null(); }, seconds(30)))
        << "the agent kept the record of the ended container\n" << Diag();
    printf("%s %s: dropped %.2f s after %s\n", c.runtime().c_str(), c.id().substr(0, 12).c_str(),
           std::chrono::duration<double>(Clock::now() - t0).count(), EndName(end).c_str());
    std::vector<std::string> bad;
    for (int i = 0; i < count; ++i) {
      if (SlurpFile(absl::StrCat(SlowUpper(c.id()), "/w", i)) != Expected(i)) bad.push_back(absl::StrCat("w", i));
    }
    EXPECT_TRUE(bad.empty()) << bad.size() << " of " << count << " files missing or wrong in " << SlowUpper(c.id())
                             << ": " << absl::StrJoin(bad.begin(), bad.begin() + std::min<size_t>(bad.size(), 20), " ");
    EXPECT_EQ(CountW(SlowUpper(c.id())), count);
    EXPECT_EQ(SlurpFile(SlowUpper(c.id()) + "/count"), absl::StrCat(count, "\n"));
    EXPECT_FALSE(PathExists(FastDir(c.id()))) << "the partition directory is left";
    EXPECT_TRUE(HostMountsUnder(FastDir(c.id())).empty()) << absl::StrJoin(HostMountsUnder(FastDir(c.id())), ", ");
    EXPECT_TRUE(WaitFor([&] { return LoopsBackedUnder(FastDir(c.id())).empty(); }, seconds(5)))
        << absl::StrJoin(LoopsBackedUnder(FastDir(c.id())), ", ");
  }

  ::gputier::testing::GpuTestDevice gpu_;
  std::string fast_root_;
  std::string slow_root_;
  std::unique_ptr<AgentProcess> agent_;
  std::vector<std::unique_ptr<RuntimeContainer>> containers_;
};

// Four GPU-like containers (the GPU test device passed in with --device,
// ioctls on it, tensor files read) and a CPU-like one beside them, all
// writing: the agent classifies the four GPU and moves their /data to the
// fast tier while they write, the CPU one stays slow. Then each GPU
// container ends another way (the runtime's stop, kill, rm -f, and its init
// exiting on its own) and the CPU one by rm -f: every file each wrote is on
// the slow tier, no partition, mount or loop device is left, and the agent
// and `gputierctl status` no longer list them.
TEST_P(RuntimeTieringTest, GpuContainersGoFastCpuStaysSlowAndEveryEndWritesBack) {
  const Clock::time_point t_start = Clock::now();
  const std::vector<End> ends = {End::kStop, End::kKill, End::kRemove, End::kExit};
  for (size_t i = 0; i <= ends.size(); ++i) {
    RuntimeContainerOptions o;
    const bool gpu = i < ends.size();
    o.script = WriterScript(gpu ? gpu_.path() : "");
    if (gpu) o.devices = {gpu_.path()};
    absl::StatusOr<std::unique_ptr<RuntimeContainer>> c = runtime_->Start(o);
    ASSERT_TRUE(c.ok()) << c.status();
    containers_.push_back(std::move(*c));
  }
  RuntimeContainer& cpu = *containers_.back();
  printf("%s: 5 containers started after %.1f s\n", GetParam().c_str(),
         std::chrono::duration<double>(Clock::now() - t_start).count());
  ASSERT_TRUE(StartAgent().ok()) << Diag();
  ASSERT_TRUE(AllAdopted()) << "not every container was adopted\n" << Diag();
  for (const auto& c : containers_) {
    absl::StatusOr<CommandResult> go = c->Exec("touch /data/go");
    ASSERT_TRUE(go.ok() && go->exit_code == 0);
  }
  printf("%s: 5 containers adopted and writing after %.1f s\n", GetParam().c_str(),
         std::chrono::duration<double>(Clock::now() - t_start).count());

  // Classified and moved while writing.
  for (size_t i = 0; i < ends.size(); ++i) {
    const RuntimeContainer& c = *containers_[i];
    ASSERT_TRUE(WaitFor(
        [&] {
          nlohmann::json r = Row(c.id());
          return r.is_object() && r["verdict"] == "gpu" && r["paths"].value("/data", "") == "fast" && r["op"] == "none";
        },
        seconds(60), milliseconds(200)))
        << "GPU container " << c.id() << " not on the fast tier\n" << Diag();
  }
  ASSERT_TRUE(WaitFor([&] { return Row(cpu.id()).value("verdict", "") == "cpu"; }, seconds(30))) << Diag();
  printf("%s: 4 GPU containers fast after %.1f s\n", GetParam().c_str(),
         std::chrono::duration<double>(Clock::now() - t_start).count());
  for (size_t i = 0; i < ends.size(); ++i) {
    const RuntimeContainer& c = *containers_[i];
    EXPECT_TRUE(WaitFor([&] { return CountW(FastUpper(c.id())) >= 3; }, seconds(10)))
        << "no new file of " << c.id() << " reached the fast upper\n" << Diag();
  }
  nlohmann::json cpu_row = Row(cpu.id());
  EXPECT_EQ(cpu_row["paths"].value("/data", ""), "slow") << cpu_row.dump();
  EXPECT_EQ(cpu_row["tier"], "slow") << cpu_row.dump();
  EXPECT_FALSE(PathExists(FastDir(cpu.id())));
  EXPECT_GE(CountW(SlowUpper(cpu.id())), 3) << "the CPU container's files are not on the slow tier";

  const std::vector<int> counts = StopWriters();
  for (size_t i = 0; i < counts.size(); ++i) {
    ASSERT_GT(counts[i], 0) << containers_[i]->id() << " never reported its count\n" << Diag();
  }
  for (size_t i = 0; i < ends.size(); ++i) EndAndCheckWriteBack(*containers_[i], ends[i], counts[i]);
  EndAndCheckWriteBack(cpu, End::kRemove, counts.back());

  // Gone from `gputierctl status` once their cgroups are (a container that
  // exited is removed here: its runtime may keep an empty cgroup until then).
  for (const auto& c : containers_) (void)c->Remove();
  std::vector<std::string> ids;
  for (const auto& c : containers_) ids.push_back(c->id());
  EXPECT_TRUE(WaitFor(
      [&] {
        absl::StatusOr<nlohmann::json> status = agent_->Status();
        if (!status.ok()) return false;
        for (const nlohmann::json& row : *status) {
          if (row["container_id"].is_string() &&
              std::find(ids.begin(), ids.end(), row["container_id"].get<std::string>()) != ids.end()) {
            return false;
          }
        }
        return true;
      },
      seconds(30)))
      << "gputierctl status still lists an ended container\n" << agent_->Status()->dump();
  printf("%s: whole test %.1f s\n", GetParam().c_str(), std::chrono::duration<double>(Clock::now() - t_start).count());
}

INSTANTIATE_TEST_SUITE_P(Runtimes, RuntimeTieringTest, ::testing::Values("podman", "containerd"),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

INSTANTIATE_TEST_SUITE_P(Runtimes, RuntimeContainerTest, ::testing::Values("podman", "containerd"),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

}  // namespace
}  // namespace gputier
