// What gputier leaves on a node after a clean stop and after an uninstall:
// the real gputierd tiering a real runc container, stopped with SIGTERM (or
// killed), then `gputierctl unpin` / `gputierctl uninstall`. Needs root, runc
// and busybox-static; skips without them.
//
// Every test runs its own gputierd (AgentProcess: private pins, run, state and
// tier directories under its work dir) and its own containers; the
// destructors remove what a failing test left.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
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
#include "loader/cgroup/cgroup_resolver.h"
#include "loader/tier/fs/tier_partition.h"
#include "tests/integration/agent_harness.h"
#include "tests/integration/host_mounts.h"
#include "tests/integration/runc_container.h"
#include "tests/integration/tier_dirs.h"

namespace gputier {
namespace {

using ::gputier::testing::AgentProcess;
using ::gputier::testing::BinaryDir;
using ::gputier::testing::CommandResult;
using ::gputier::testing::HostMountsUnder;
using ::gputier::testing::LoopsBackedUnder;
using ::gputier::testing::LosetupLinesUnder;
using ::gputier::testing::PathExists;
using ::gputier::testing::RuncContainer;
using ::gputier::testing::RunCommand;
using ::gputier::testing::WaitFor;
using ::gputier::testing::SlurpFile;
using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

constexpr char kSpare[] = ".gputier-spare";


std::string Lines(const std::vector<std::string>& v) { return v.empty() ? "(none)" : absl::StrJoin(v, "\n  "); }

bool Mounted(const std::string& mount_point) {
  for (const std::string& m : HostMountsUnder(mount_point)) {
    if (m == mount_point) return true;
  }
  return false;
}

class LifecycleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::string why = ::gputier::testing::RuncTestsCannotRunBecause(); !why.empty()) GTEST_SKIP() << why;
    absl::StatusOr<CommandResult> losetup = RunCommand({"losetup", "--version"});
    if (!losetup.ok() || losetup->exit_code != 0) GTEST_SKIP() << "needs losetup (util-linux) in PATH";
    if (!CgroupResolver::Create().ok()) GTEST_SKIP() << "no cgroup2";
    agent_ = std::make_unique<AgentProcess>();
    tiers_ = agent_->tier_root("");
    tiers_.pop_back();  // <work dir>/tiers
    fast_root_ = agent_->tier_root("fast");
    slow_root_ = agent_->tier_root("slow");
  }

  void TearDown() override {
    containers_.clear();
    if (agent_ == nullptr) return;
    (void)agent_->Stop();
    const std::string work = agent_->work_dir();
    agent_.reset();  // unmounts what a failure left under the work dir, unpins, removes it
    EXPECT_TRUE(HostMountsUnder(work).empty()) << Lines(HostMountsUnder(work));
    EXPECT_TRUE(WaitFor([&] { return LoopsBackedUnder(work).empty(); }, seconds(5)))
        << Lines(LoopsBackedUnder(work));
  }

  absl::StatusOr<RuncContainer*> StartContainer() {
    absl::StatusOr<std::unique_ptr<RuncContainer>> c = RuncContainer::Start({});
    if (!c.ok()) return c.status();
    containers_.push_back(std::move(*c));
    return containers_.back().get();
  }

  absl::Status StartAgent() {
    std::vector<std::string> roots;
    for (const auto& c : containers_) roots.push_back(c->state_root());
    const std::string yaml =
        absl::StrCat("tiered_paths: [/data]\nrunc_roots: [", absl::StrJoin(roots, ", "),
                     "]\npolicy: {tick: 200ms}\ntiers: {fast: ", fast_root_, ", slow: ", slow_root_,
                     ", partition_size: 64MiB}\n");
    return agent_->Start({testing::RequestedMode(), yaml}).status();
  }

  nlohmann::json Row(const std::string& id) const {
    absl::StatusOr<nlohmann::json> t = agent_->Tiering();
    if (!t.ok()) return nullptr;
    for (const nlohmann::json& r : (*t)["containers"]) {
      if (r["container_id"] == id) return r;
    }
    return nullptr;
  }

  // Pokes the container until the agent has adopted it, then moves /data to
  // the fast tier and waits for the spare partition to be made again.
  void PromoteToFast(const RuncContainer& c) {
    Clock::time_point next_poke = Clock::now();
    ASSERT_TRUE(WaitFor(
        [&] {
          if (Clock::now() >= next_poke) {
            (void)c.Exec("cat /bin/busybox >/dev/null");
            next_poke = Clock::now() + seconds(2);
          }
          nlohmann::json r = Row(c.id());
          return r.is_object() && r["paths"].value("/data", "") == "slow" && r["op"] == "none";
        },
        seconds(30), milliseconds(100)))
        << Diag();
    absl::StatusOr<std::string> tier = agent_->Ctl(absl::StrCat("tier ", c.id(), " fast --wait=30s"));
    ASSERT_TRUE(tier.ok()) << tier.status() << Diag();
    ASSERT_TRUE(Mounted(absl::StrCat(LiveTierDir(fast_root_, c.id()), "/mnt"))) << Diag();
    ASSERT_TRUE(WaitFor([&] { return Mounted(absl::StrCat(fast_root_, "/", kSpare, "/mnt")); }, seconds(30)))
        << "no spare partition was made\n" << Diag();
  }

  // `gputierctl uninstall` with this agent's pins, state and config.
  CommandResult Uninstall() const {
    absl::StatusOr<CommandResult> r = RunCommand(
        {BinaryDir() + "/gputierctl", "uninstall", "--pin-dir=" + agent_->pin_dir(),
         "--state-dir=" + agent_->work_dir() + "/state", "--config=" + agent_->work_dir() + "/config.yaml"});
    if (!r.ok()) return {-1, std::string(r.status().message())};
    return *r;
  }

  std::string Diag() const {
    absl::StatusOr<nlohmann::json> t =
        agent_->pid() > 0 ? agent_->Tiering() : absl::StatusOr<nlohmann::json>(absl::UnavailableError("stopped"));
    return absl::StrCat("\ntiering: ", t.ok() ? t->dump() : std::string(t.status().message()),
                        "\n--- gputierd log (tail) ---\n", agent_->LogTail());
  }

  // Nothing of the test's tiers is mounted or on a loop device.
  void ExpectNoMountOrLoopDevice(const std::string& when) const {
    EXPECT_TRUE(HostMountsUnder(tiers_).empty())
        << when << ": /proc/self/mountinfo still lists under " << tiers_ << ":\n  " << Lines(HostMountsUnder(tiers_));
    EXPECT_TRUE(LosetupLinesUnder(tiers_).empty())
        << when << ": losetup -a still lists:\n  " << Lines(LosetupLinesUnder(tiers_));
    EXPECT_TRUE(LoopsBackedUnder(tiers_).empty()) << when << ": " << Lines(LoopsBackedUnder(tiers_));
  }

  std::unique_ptr<AgentProcess> agent_;
  std::vector<std::unique_ptr<RuncContainer>> containers_;
  std::string tiers_, fast_root_, slow_root_;
};

TEST_F(LifecycleTest, CleanStopLeavesNoMountOrLoopDevice) {
  absl::StatusOr<RuncContainer*> made = StartContainer();
  ASSERT_TRUE(made.ok()) << made.status();
  RuncContainer& c = **made;
  ASSERT_TRUE(StartAgent().ok()) << Diag();
  PromoteToFast(c);
  if (HasFatalFailure()) return;
  absl::StatusOr<CommandResult> w = c.Exec("echo kept > /data/kept");
  ASSERT_TRUE(w.ok() && w->exit_code == 0);

  // The container goes: its data is written back and its partition freed.
  ASSERT_TRUE(c.Kill().ok());
  ASSERT_TRUE(WaitFor([&] { return Row(c.id()).is_null(); }, seconds(30))) << Diag();
  ASSERT_TRUE(agent_->Stop().ok()) << Diag();
  ExpectNoMountOrLoopDevice("after a clean stop");
  EXPECT_TRUE(absl::StrContains(SlurpFile(agent_->log_path()), "released the spare fast partition")) << Diag();
  EXPECT_FALSE(PathExists(absl::StrCat(fast_root_, "/", kSpare))) << "the spare's directory is left";
  EXPECT_FALSE(PathExists(agent_->work_dir() + "/run/gputierd.sock")) << "the control socket is left";
  // What a restart needs stays: the pins and the state directory (and the
  // container's data on the slow tier).
  EXPECT_TRUE(PathExists(agent_->pin_dir() + "/gt_meta"));
  EXPECT_TRUE(PathExists(agent_->work_dir() + "/state/classifications.db"));
  EXPECT_EQ(SlurpFile(absl::StrCat(SlowLayerOf(slow_root_, c.id()), "/data/upper/kept")), "kept\n");

  // A restart reuses the pins, makes a spare again, and a second stop
  // releases it again.
  ASSERT_TRUE(StartAgent().ok()) << Diag();
  EXPECT_TRUE(absl::StrContains(agent_->LogTail(), "reusing maps of a previous run")) << Diag();
  EXPECT_TRUE(WaitFor([&] { return Mounted(absl::StrCat(fast_root_, "/", kSpare, "/mnt")); }, seconds(30)))
      << Diag();
  ASSERT_TRUE(agent_->Stop().ok()) << Diag();
  ExpectNoMountOrLoopDevice("after the second clean stop");

  CommandResult u = Uninstall();
  EXPECT_EQ(u.exit_code, 0) << u.output;
  EXPECT_TRUE(absl::StrContains(u.output, absl::StrCat("removed the pin ", agent_->pin_dir(), "/gt_meta\n")))
      << u.output;
  EXPECT_TRUE(absl::StrContains(u.output, absl::StrCat("removed the pin directory ", agent_->pin_dir(), "\n")))
      << u.output;
  EXPECT_FALSE(absl::StrContains(u.output, "released")) << "a clean stop left a partition:\n" << u.output;
  EXPECT_FALSE(PathExists(agent_->pin_dir()));
  ExpectNoMountOrLoopDevice("after uninstall");
}

TEST_F(LifecycleTest, UninstallRemovesPinsPartitionsAndLoopDevices) {
  absl::StatusOr<RuncContainer*> made = StartContainer();
  ASSERT_TRUE(made.ok()) << made.status();
  RuncContainer& c = **made;
  ASSERT_TRUE(StartAgent().ok()) << Diag();
  PromoteToFast(c);
  if (HasFatalFailure()) return;
  absl::StatusOr<CommandResult> w = c.Exec("echo written-on-fast > /data/onfast");
  ASSERT_TRUE(w.ok() && w->exit_code == 0);
  ASSERT_EQ(SlurpFile(absl::StrCat(LiveTierDir(fast_root_, c.id()), "/mnt/data/upper/onfast")), "written-on-fast\n");

  // Refused while a gputierd runs on the pins: one line, nothing touched.
  CommandResult u = Uninstall();
  EXPECT_NE(u.exit_code, 0);
  EXPECT_EQ(u.output, absl::StrCat("gputierctl uninstall: a gputierd is running on ", agent_->pin_dir(),
                                   "; stop it first (SIGTERM), then run uninstall again\n"));
  EXPECT_TRUE(PathExists(agent_->pin_dir() + "/gt_meta"));

  // A crash leaves the spare and the container's partition mounted.
  agent_->Kill();
  const std::string spare_mnt = absl::StrCat(fast_root_, "/", kSpare, "/mnt");
  const std::string part_dir = LiveTierDir(fast_root_, c.id());  // <fast>/<id>-<cgroup inode>
  ASSERT_NE(part_dir, absl::StrCat(fast_root_, "/", c.id())) << "the partition is not named by a tier key";
  const std::string part_mnt = absl::StrCat(part_dir, "/mnt");
  ASSERT_TRUE(Mounted(spare_mnt));
  ASSERT_TRUE(Mounted(part_mnt));
  ASSERT_EQ(LosetupLinesUnder(tiers_).size(), 2u) << Lines(LosetupLinesUnder(tiers_));

  // Refused while the container runs on its partition: nothing touched.
  u = Uninstall();
  EXPECT_NE(u.exit_code, 0);
  EXPECT_TRUE(absl::StrContains(u.output, absl::StrCat("container ", c.id(), " still runs"))) << u.output;
  EXPECT_EQ(std::count(u.output.begin(), u.output.end(), '\n'), 1) << u.output;
  EXPECT_TRUE(Mounted(spare_mnt));
  EXPECT_TRUE(Mounted(part_mnt));
  EXPECT_TRUE(PathExists(agent_->pin_dir() + "/gt_meta"));

  ASSERT_TRUE(c.Kill().ok());
  // The container's mount namespace (its overlay on the partition) goes
  // with its last process, asynchronously: a busy partition is retried.
  WaitFor(
      [&] {
        u = Uninstall();
        return u.exit_code == 0 || !absl::StrContains(u.output, "is busy");
      },
      seconds(10), milliseconds(200));
  ASSERT_EQ(u.exit_code, 0) << u.output;
  printf("%s", u.output.c_str());
  std::vector<std::string> lines = absl::StrSplit(u.output, '\n', absl::SkipEmpty());
  auto has_line = [&](const std::string& start, const std::string& also) {
    for (const std::string& l : lines) {
      if (absl::StartsWith(l, start) && absl::StrContains(l, also)) return true;
    }
    return false;
  };
  EXPECT_TRUE(has_line(absl::StrCat("released the spare partition ", fast_root_, "/", kSpare, ": unmounted ",
                                    spare_mnt, ", freed /dev/loop"),
                       "partition.img"))
      << u.output;
  EXPECT_TRUE(has_line(absl::StrCat("wrote back "), absl::StrCat("of container ", c.id(), "'s /data"))) << u.output;
  EXPECT_TRUE(has_line(absl::StrCat("released the partition of container ", c.id(), " ", part_dir,
                                    ": unmounted ", part_mnt, ", freed /dev/loop"),
                       "partition.img"))
      << u.output;
  EXPECT_TRUE(has_line("removed the tier record ", c.id())) << u.output;
  EXPECT_TRUE(has_line(absl::StrCat("removed the pin ", agent_->pin_dir(), "/"), "gt_cg_stats")) << u.output;
  EXPECT_TRUE(has_line(absl::StrCat("removed the pin directory ", agent_->pin_dir()), "")) << u.output;

  EXPECT_FALSE(PathExists(agent_->pin_dir()));
  ExpectNoMountOrLoopDevice("after uninstall");
  EXPECT_FALSE(PathExists(part_dir));
  EXPECT_FALSE(PathExists(absl::StrCat(fast_root_, "/", kSpare)));
  EXPECT_FALSE(PathExists(absl::StrCat(agent_->work_dir(), "/state/tier/", c.id(), ".json")));
  // What the container wrote on the fast tier is on the slow tier now.
  EXPECT_EQ(SlurpFile(absl::StrCat(SlowLayerOf(slow_root_, c.id()), "/data/upper/onfast")), "written-on-fast\n");

  // Once more: nothing left to remove.
  u = Uninstall();
  EXPECT_EQ(u.exit_code, 0) << u.output;
  EXPECT_TRUE(absl::StartsWith(u.output, "nothing of gputier's to remove")) << u.output;
}

TEST_F(LifecycleTest, UnpinRemovesThePinsAndTheEmptyPinDirectory) {
  ASSERT_TRUE(agent_->Start({testing::RequestedMode(), ""}).ok()) << Diag();
  ASSERT_TRUE(agent_->Stop().ok()) << Diag();
  ASSERT_TRUE(PathExists(agent_->pin_dir() + "/gt_meta"));
  absl::StatusOr<CommandResult> r =
      RunCommand({BinaryDir() + "/gputierctl", "unpin", "--pin-dir=" + agent_->pin_dir()});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 0) << r->output;
  EXPECT_EQ(r->output, absl::StrCat("removed gputier pins from ", agent_->pin_dir(), "\nremoved the pin directory ",
                                    agent_->pin_dir(), "\n"));
  EXPECT_FALSE(PathExists(agent_->pin_dir()));
}

// A partition a gputierd of record layout 1 left (named by the container id
// alone, its record without a key) is found through that record, written
// back into the id-named slow layer and released.
TEST_F(LifecycleTest, UninstallWritesBackAndReleasesAVersionOneRecordsIdNamedPartition) {
  const std::string id = absl::StrCat("gputier-v1-", getpid());
  ASSERT_TRUE(std::filesystem::create_directories(fast_root_));
  ASSERT_TRUE(std::filesystem::create_directories(slow_root_));
  absl::StatusOr<PartitionPaths> part = PlanPartition(fast_root_, id);
  ASSERT_TRUE(part.ok()) << part.status();
  ASSERT_TRUE(CreatePartition(*part, 16 << 20).ok());
  ASSERT_TRUE(std::filesystem::create_directories(part->mount_point + "/data/upper"));
  std::ofstream(part->mount_point + "/data/upper/onfast") << "written-on-fast\n";
  const std::string state = agent_->work_dir() + "/state/tier";
  ASSERT_TRUE(std::filesystem::create_directories(state));
  const nlohmann::json v1 = {{"version", 1},
                             {"container_id", id},
                             {"cgroup", absl::StrCat("/", id, "-gone")},  // the container is gone
                             {"mnt_ns", 4026532000u},
                             {"override", "auto"},
                             {"paths", {{"/data", "fast"}}},
                             {"op", "none"},
                             {"op_path", ""},
                             {"froze", false},
                             {"partition", true}};
  std::ofstream(absl::StrCat(state, "/", id, ".json")) << v1.dump();
  std::ofstream(agent_->work_dir() + "/config.yaml")
      << "tiered_paths: [/data]\ntiers: {fast: " << fast_root_ << ", slow: " << slow_root_ << "}\n";

  CommandResult u = Uninstall();
  ASSERT_EQ(u.exit_code, 0) << u.output;
  EXPECT_TRUE(absl::StrContains(u.output, absl::StrCat("of container ", id, "'s /data from the fast tier to ",
                                                       slow_root_, "/", id, "/data/upper")))
      << u.output;
  EXPECT_TRUE(absl::StrContains(u.output, absl::StrCat("released the partition of container ", id, " ",
                                                       part->dir, ": unmounted")))
      << u.output;
  EXPECT_EQ(SlurpFile(absl::StrCat(slow_root_, "/", id, "/data/upper/onfast")), "written-on-fast\n");
  EXPECT_FALSE(PathExists(part->dir));
  EXPECT_FALSE(PathExists(absl::StrCat(state, "/", id, ".json")));
  ExpectNoMountOrLoopDevice("after uninstall");
}

}  // namespace
}  // namespace gputier
