// What happens to a container's slow layer when it exits, with the real
// gputierd and real runc containers: the layer is named by the container's
// tier key (id + cgroup inode), so a later container that reuses the id
// never sees it; it is moved into the slow root's quarantine and removed
// after tiers.exited_retention, or sooner, oldest first, while the slow root
// is over tiers.slow_quota; live layers over the quota stop new adoptions.
// Needs root, runc and busybox-static; skips without them.
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "loader/cgroup/cgroup_resolver.h"
#include "tests/integration/agent_harness.h"
#include "tests/integration/host_mounts.h"
#include "tests/integration/runc_container.h"
#include "tests/integration/tier_dirs.h"

namespace gputier {
namespace {

using ::gputier::testing::AgentProcess;
using ::gputier::testing::CommandResult;
using ::gputier::testing::HostMountsUnder;
using ::gputier::testing::LoopsBackedUnder;
using ::gputier::testing::PathExists;
using ::gputier::testing::RuncContainer;
using ::gputier::testing::SlurpFile;
using ::gputier::testing::TempDir;
using ::gputier::testing::WaitFor;
using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

class ExitedLayersTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::string why = ::gputier::testing::RuncTestsCannotRunBecause(); !why.empty()) GTEST_SKIP() << why;
    if (!CgroupResolver::Create().ok()) GTEST_SKIP() << "no cgroup2";
    // One runc state root for every container of the test, so that the
    // agent knows containers started after it, and an id can be reused.
    runc_root_ = std::make_unique<TempDir>("gputier-runc-root");
    agent_ = std::make_unique<AgentProcess>();
    fast_root_ = agent_->tier_root("fast");
    slow_root_ = agent_->tier_root("slow");
  }

  void TearDown() override {
    std::vector<std::string> ids;
    for (const auto& c : containers_) ids.push_back(c->id());
    containers_.clear();
    if (agent_ != nullptr) {
      if (agent_->pid() > 0) {
        // Its own containers only: the agent tiers every container of the
        // node, those of other tests running beside this one too.
        EXPECT_TRUE(WaitFor(
            [&] {
              for (const std::string& id : ids) {
                if (!agent_->TieringRow(id).is_null()) return false;
              }
              return true;
            },
            seconds(30)))
            << Diag();
        (void)agent_->Stop();
      }
      const std::string work = agent_->work_dir();
      agent_.reset();  // removes the tier roots (quarantine included)
      EXPECT_TRUE(HostMountsUnder(work).empty());
      EXPECT_TRUE(WaitFor([&] { return LoopsBackedUnder(work).empty(); }, seconds(5)));
    }
    runc_root_.reset();
  }

  absl::StatusOr<RuncContainer*> StartContainer(const std::string& id = "") {
    RuncContainer::Options options;
    options.state_root = runc_root_->path();
    options.id = id;
    absl::StatusOr<std::unique_ptr<RuncContainer>> c = RuncContainer::Start(options);
    if (!c.ok()) return c.status();
    containers_.push_back(std::move(*c));
    return containers_.back().get();
  }

  // Deletes the container (runc kill + delete) and waits until the agent
  // has finalized it.
  void Remove(RuncContainer* c) {
    const std::string id = c->id();
    for (auto it = containers_.begin(); it != containers_.end(); ++it) {
      if (it->get() == c) {
        containers_.erase(it);
        break;
      }
    }
    ASSERT_TRUE(WaitFor([&] { return agent_->TieringRow(id).is_null(); }, seconds(30))) << Diag();
  }

  absl::Status StartAgent(const std::string& tiers_extra) {
    const std::string yaml = absl::StrCat("tiered_paths: [/data]\nrunc_roots: [", runc_root_->path(),
                                          "]\npolicy: {tick: 200ms}\ntiers: {fast: ", fast_root_,
                                          ", slow: ", slow_root_, ", partition_size: 64MiB", tiers_extra, "}\n");
    return agent_->Start({testing::RequestedMode(), yaml}).status();
  }

  // Pokes the container until the agent has put its /data on the slow
  // overlay; returns its status row (null when it never was).
  nlohmann::json Adopted(const RuncContainer& c, seconds within = seconds(30)) {
    Clock::time_point next_poke = Clock::now();
    nlohmann::json row;
    WaitFor(
        [&] {
          if (Clock::now() >= next_poke) {
            (void)c.Exec("cat /bin/busybox >/dev/null");
            next_poke = Clock::now() + seconds(2);
          }
          row = agent_->TieringRow(c.id());
          return row.is_object() && row["paths"].value("/data", "") == "slow" && row["op"] == "none";
        },
        within, milliseconds(100));
    return row.is_object() && row["paths"].value("/data", "") == "slow" ? row : nlohmann::json(nullptr);
  }

  void Write(const RuncContainer& c, const std::string& script) {
    absl::StatusOr<CommandResult> w = c.Exec(script);
    ASSERT_TRUE(w.ok() && w->exit_code == 0) << script << ": " << (w.ok() ? w->output : w.status().ToString());
  }

  nlohmann::json Tiers() const {
    absl::StatusOr<nlohmann::json> t = agent_->Tiering();
    return t.ok() ? (*t)["tiers"] : nlohmann::json(nullptr);
  }

  std::string Diag() const { return absl::StrCat("\n", agent_->TieringDiag()); }

  // The whole log (containers of other tests can push a line out of the tail).
  std::string Log() const { return SlurpFile(agent_->log_path()); }

  std::unique_ptr<TempDir> runc_root_;
  std::unique_ptr<AgentProcess> agent_;
  std::vector<std::unique_ptr<RuncContainer>> containers_;
  std::string fast_root_, slow_root_;
};

TEST_F(ExitedLayersTest, ExitedContainersSlowLayerIsQuarantinedThenRemovedAfterItsRetention) {
  absl::StatusOr<RuncContainer*> made = StartContainer();
  ASSERT_TRUE(made.ok()) << made.status();
  RuncContainer* c = *made;
  const std::string id = c->id();
  ASSERT_TRUE(StartAgent(", exited_retention: 4s").ok()) << Diag();
  nlohmann::json row = Adopted(*c);
  ASSERT_TRUE(row.is_object()) << Diag();
  // Named by id and cgroup inode, under both roots and in the record.
  const std::string key = row.value("key", "");
  EXPECT_TRUE(absl::StartsWith(key, id + "-")) << row.dump();
  Write(*c, "echo kept > /data/kept");
  ASSERT_EQ(SlurpFile(absl::StrCat(slow_root_, "/", key, "/data/upper/kept")), "kept\n") << Diag();
  EXPECT_TRUE(absl::StrContains(SlurpFile(absl::StrCat(agent_->work_dir(), "/state/tier/", id, ".json")),
                                absl::StrCat("\"key\": \"", key, "\"")));

  Remove(c);
  if (HasFatalFailure()) return;
  const Clock::time_point gone = Clock::now();
  // Out of the slow root's container layers, into quarantine, data intact.
  EXPECT_FALSE(PathExists(absl::StrCat(slow_root_, "/", key)));
  std::vector<std::string> exited = ExitedLayers(slow_root_, id);
  ASSERT_EQ(exited.size(), 1u) << Diag();
  EXPECT_TRUE(absl::StartsWith(exited[0], absl::StrCat(slow_root_, "/.exited/", key, "."))) << exited[0];
  EXPECT_EQ(SlurpFile(exited[0] + "/data/upper/kept"), "kept\n");
  EXPECT_TRUE(absl::StrContains(Log(), absl::StrCat("its slow layer is quarantined in ", exited[0])))
      << Diag();

  // Removed once tiers.exited_retention has passed, not before.
  ASSERT_TRUE(WaitFor([&] { return !PathExists(exited[0]); }, seconds(20), milliseconds(100))) << Diag();
  const double after_s = std::chrono::duration<double>(Clock::now() - gone).count();
  EXPECT_GE(after_s, 2.5) << "removed before its retention";
  EXPECT_TRUE(absl::StrContains(Log(), absl::StrCat("removed ", exited[0])) &&
              absl::StrContains(Log(), "tiers.exited_retention (4s) passed"))
      << Diag();
  EXPECT_TRUE(ExitedLayers(slow_root_, id).empty());
}

TEST_F(ExitedLayersTest, ContainerReusingAnExitedOnesIdNeverSeesItsFiles) {
  const std::string id = absl::StrCat("gputier-reuse-", getpid());
  absl::StatusOr<RuncContainer*> made = StartContainer(id);
  ASSERT_TRUE(made.ok()) << made.status();
  ASSERT_TRUE(StartAgent("").ok()) << Diag();
  nlohmann::json first = Adopted(**made);
  ASSERT_TRUE(first.is_object()) << Diag();
  Write(**made, "echo victim > /data/secret");
  Remove(*made);
  if (HasFatalFailure()) return;

  // A new container under the same id (a new cgroup).
  made = StartContainer(id);
  ASSERT_TRUE(made.ok()) << made.status();
  RuncContainer* later = *made;
  nlohmann::json second = Adopted(*later);
  ASSERT_TRUE(second.is_object()) << Diag();
  EXPECT_NE(second.value("key", ""), first.value("key", "")) << Diag();
  absl::StatusOr<CommandResult> look = later->Exec("ls -A /data; test ! -e /data/secret");
  ASSERT_TRUE(look.ok());
  EXPECT_EQ(look->exit_code, 0) << "the later container sees the earlier one's files: " << look->output;
  Write(*later, "echo mine > /data/mine");
  // The earlier one's data is still in quarantine, apart from the later one's.
  std::vector<std::string> exited = ExitedLayers(slow_root_, id);
  ASSERT_EQ(exited.size(), 1u) << Diag();
  EXPECT_EQ(SlurpFile(exited[0] + "/data/upper/secret"), "victim\n");
  EXPECT_FALSE(PathExists(exited[0] + "/data/upper/mine"));
  EXPECT_EQ(SlurpFile(absl::StrCat(slow_root_, "/", second.value("key", ""), "/data/upper/mine")), "mine\n");
}

TEST_F(ExitedLayersTest, OverQuotaQuarantinedLayersGoOldestFirstAndLiveOnesStopAdoptions) {
  absl::StatusOr<RuncContainer*> live = StartContainer();
  absl::StatusOr<RuncContainer*> older = StartContainer();
  absl::StatusOr<RuncContainer*> newer = StartContainer();
  ASSERT_TRUE(live.ok() && older.ok() && newer.ok());
  const std::string older_id = (*older)->id(), newer_id = (*newer)->id();
  ASSERT_TRUE(StartAgent(", exited_retention: 1h, slow_quota: 12MiB").ok()) << Diag();
  for (RuncContainer* c : {*live, *older, *newer}) ASSERT_TRUE(Adopted(*c).is_object()) << Diag();
  Write(**live, "dd if=/dev/zero of=/data/live bs=1M count=4 2>/dev/null && sync");
  Write(**older, "dd if=/dev/zero of=/data/older bs=1M count=5 2>/dev/null && sync");

  // 4 + 5 MiB (counted at the exit): under the quota, the older one stays.
  Remove(*older);
  if (HasFatalFailure()) return;
  std::this_thread::sleep_for(milliseconds(1500));  // a later exit second
  ASSERT_EQ(ExitedLayers(slow_root_, older_id).size(), 1u) << Diag();
  Write(**newer, "dd if=/dev/zero of=/data/newer bs=1M count=5 2>/dev/null && sync");
  // 4 + 5 + 5 MiB: over; the older quarantined layer goes, which is enough.
  Remove(*newer);
  if (HasFatalFailure()) return;
  EXPECT_TRUE(WaitFor([&] { return ExitedLayers(slow_root_, older_id).empty(); }, seconds(10))) << Diag();
  EXPECT_TRUE(absl::StrContains(Log(), "the slow root is over tiers.slow_quota (12 MiB)")) << Diag();
  std::this_thread::sleep_for(milliseconds(1000));  // several cycles
  ASSERT_EQ(ExitedLayers(slow_root_, newer_id).size(), 1u) << "the newer layer went too" << Diag();
  EXPECT_EQ(SlurpFile(LiveTierDir(slow_root_, (*live)->id()) + "/data/upper/live").size(), 4u << 20);
  nlohmann::json tiers = Tiers();
  EXPECT_EQ(tiers.value("slow_quota", 0u), 12u << 20) << tiers.dump();
  EXPECT_GE(tiers.value("slow_quarantined_layers", 0u), 1u) << tiers.dump();  // other tests' containers too
  EXPECT_FALSE(tiers.value("slow_live_over_quota", true)) << tiers.dump();

  // The live container alone past the quota (counted at the next exit):
  // the quarantine is emptied, live data stays, new containers wait.
  Write(**live, "dd if=/dev/zero of=/data/more bs=1M count=10 2>/dev/null && sync");
  absl::StatusOr<RuncContainer*> exiting = StartContainer();
  ASSERT_TRUE(exiting.ok());
  ASSERT_TRUE(Adopted(**exiting).is_object()) << Diag();
  Remove(*exiting);
  if (HasFatalFailure()) return;
  EXPECT_TRUE(WaitFor([&] { return Tiers().value("slow_live_over_quota", false); }, seconds(10))) << Diag();
  EXPECT_TRUE(WaitFor([&] { return ExitedLayers(slow_root_, newer_id).empty(); }, seconds(10))) << Diag();
  absl::StatusOr<RuncContainer*> waiting = StartContainer();
  ASSERT_TRUE(waiting.ok());
  EXPECT_TRUE(Adopted(**waiting, seconds(6)).is_null()) << "adopted while live layers exceed the quota" << Diag();
  tiers = Tiers();
  EXPECT_TRUE(tiers.value("slow_over_quota", false)) << tiers.dump();
  EXPECT_NE(tiers["adoptions_refused"].dump().find((*waiting)->id()), std::string::npos) << tiers.dump();
  EXPECT_TRUE(absl::StrContains(Log(),
                                absl::StrCat((*waiting)->id(), ": not adopted: live containers' slow layers alone "
                                                               "exceed tiers.slow_quota")))
      << Diag();
  EXPECT_EQ(SlurpFile(LiveTierDir(slow_root_, (*live)->id()) + "/data/upper/more").size(), 10u << 20);
}

// A record written by a gputierd before tier keys (layout version 1: no
// "key", its directories named by the container id alone) is served with
// those directories, never with a key it does not have; at exit its layer
// goes to quarantine like any other.
TEST_F(ExitedLayersTest, VersionOneRecordIsServedWithTheDirectoriesNamedByItsId) {
  absl::StatusOr<RuncContainer*> made = StartContainer();
  ASSERT_TRUE(made.ok()) << made.status();
  RuncContainer* c = *made;
  const std::string id = c->id();
  struct stat ns;
  ASSERT_EQ(stat(absl::StrCat("/proc/", c->pid(), "/ns/mnt").c_str(), &ns), 0);
  // As a gputierd of layout 1 left it: adopted, its slow layer holding a file.
  const std::string state = absl::StrCat(agent_->work_dir(), "/state/tier");
  ASSERT_TRUE(std::filesystem::create_directories(state));
  const nlohmann::json v1 = {{"version", 1},      {"container_id", id}, {"cgroup", c->cgroup()},
                             {"mnt_ns", ns.st_ino}, {"override", "auto"}, {"paths", nlohmann::json::object()},
                             {"op", "none"},       {"op_path", ""},      {"froze", false},
                             {"partition", false}};
  std::ofstream(absl::StrCat(state, "/", id, ".json")) << v1.dump();
  const std::string old_upper = absl::StrCat(slow_root_, "/", id, "/data/upper");
  ASSERT_TRUE(std::filesystem::create_directories(old_upper));
  std::ofstream(old_upper + "/old.txt") << "written under layout 1\n";

  ASSERT_TRUE(StartAgent("").ok()) << Diag();
  nlohmann::json row = Adopted(*c);
  ASSERT_TRUE(row.is_object()) << Diag();
  EXPECT_EQ(row.value("key", ""), id) << row.dump();
  absl::StatusOr<CommandResult> old = c->Exec("cat /data/old.txt");
  ASSERT_TRUE(old.ok());
  EXPECT_EQ(old->output, "written under layout 1\n") << Diag();
  Write(*c, "echo new > /data/new.txt");
  EXPECT_EQ(SlurpFile(old_upper + "/new.txt"), "new\n") << Diag();
  // Saved again as layout 2, with the same key.
  const std::string saved = SlurpFile(absl::StrCat(state, "/", id, ".json"));
  EXPECT_TRUE(absl::StrContains(saved, "\"version\": 2") && absl::StrContains(saved, absl::StrCat("\"key\": \"", id, "\"")))
      << saved;

  Remove(c);
  if (HasFatalFailure()) return;
  EXPECT_FALSE(PathExists(absl::StrCat(slow_root_, "/", id)));
  std::vector<std::string> exited = ExitedLayers(slow_root_, id);
  ASSERT_EQ(exited.size(), 1u) << Diag();
  EXPECT_TRUE(absl::StartsWith(exited[0], absl::StrCat(slow_root_, "/.exited/", id, "."))) << exited[0];
  EXPECT_EQ(SlurpFile(exited[0] + "/data/upper/new.txt"), "new\n");
}

}  // namespace
}  // namespace gputier
