// Containers by name, end to end: the real gputierd, podman containers run
// with --name and containerd containers with the kubelet's annotations
// (io.kubernetes.cri.*). gputierd reads each confirmed container's name from
// its runtime, shows it in status, explain, label and audit --json, and takes it
// wherever gputierctl takes a CONTAINER; a name two containers share is
// refused with both listed.
#include <algorithm>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "loader/classify/classification_table.h"
#include "tests/integration/agent_harness.h"
#include "tests/integration/containerd_container.h"
#include "tests/integration/podman_container.h"
#include "tests/integration/runtime_container.h"

namespace gputier {
namespace {

using ::gputier::testing::AgentProcess;
using ::gputier::testing::ContainerdContainer;
using ::gputier::testing::ContainerdDaemon;
using ::gputier::testing::PodmanContainer;
using ::gputier::testing::PodmanStore;
using ::gputier::testing::RuntimeContainer;
using ::gputier::testing::RuntimeContainerOptions;
using ::gputier::testing::TempDir;
using ::gputier::testing::WaitFor;
using std::chrono::milliseconds;
using std::chrono::seconds;

// Opens files about a hundred times a second: counters, so the classifier
// lists it, and evidence enough for a verdict.
// (Its own file: a containerd container's /etc has no hostname or passwd.)
constexpr char kBusy[] = "echo x > /busy; while true; do cat /busy /busy /busy > /dev/null; sleep 0.02; done";

class ContainerNamesTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    std::string why = ::gputier::testing::PodmanTestsCannotRunBecause();
    if (why.empty() && GetParam() == "containerd") why = ::gputier::testing::ContainerdTestsCannotRunBecause();
    if (!why.empty()) GTEST_SKIP() << why;
    // Two podman stores: podman keeps a name unique within one, and the
    // test needs a name two containers share.
    for (int i = 0; i < 2; ++i) {
      absl::StatusOr<std::unique_ptr<PodmanStore>> store = PodmanStore::Create({});
      ASSERT_TRUE(store.ok()) << store.status();
      stores_.push_back(std::move(*store));
    }
    if (GetParam() == "containerd") {
      archive_dir_ = std::make_unique<TempDir>("gputier-oci");
      const std::string archive = archive_dir_->path() + "/image.tar";
      ASSERT_TRUE(stores_[0]->SaveOciArchive(archive).ok());
      absl::StatusOr<std::unique_ptr<ContainerdDaemon>> d = ContainerdDaemon::Start(archive);
      ASSERT_TRUE(d.ok()) << d.status();
      containerd_ = std::move(*d);
    }
  }

  void TearDown() override {
    containers_.clear();
    if (agent_ != nullptr) {
      EXPECT_TRUE(agent_->Stop().ok());
    }
    agent_.reset();
    containerd_.reset();
    archive_dir_.reset();
    stores_.clear();
  }

  // A container named `name` (podman) or, under containerd, annotated as
  // the kubelet would for namespace/pod/container `name`; `store` picks the
  // podman store.
  absl::StatusOr<RuntimeContainer*> Start(const std::string& name, int store) {
    RuntimeContainerOptions options;
    options.script = kBusy;
    std::unique_ptr<RuntimeContainer> c;
    if (containerd_ != nullptr) {
      std::vector<std::string> parts = absl::StrSplit(name, '/');
      options.annotations = {{"io.kubernetes.cri.sandbox-namespace", parts[0]},
                             {"io.kubernetes.cri.sandbox-name", parts[1]},
                             {"io.kubernetes.cri.container-name", parts[2]},
                             {"io.kubernetes.cri.container-type", "container"}};
      ContainerdContainer::Options o;
      o.container = options;
      absl::StatusOr<std::unique_ptr<ContainerdContainer>> started = ContainerdContainer::Start(*containerd_, o);
      if (!started.ok()) return started.status();
      c = std::move(*started);
    } else {
      options.extra_args = {"--name", name};
      absl::StatusOr<std::unique_ptr<PodmanContainer>> started = PodmanContainer::Start(*stores_[store], options);
      if (!started.ok()) return started.status();
      c = std::move(*started);
    }
    containers_.push_back(std::move(c));
    return containers_.back().get();
  }

  absl::Status StartAgent() {
    std::vector<std::string> roots;
    std::string runtime = "podman";
    if (containerd_ != nullptr) {
      runtime = "containerd";
      roots = {containerd_->runc_root()};
    } else {
      for (const auto& s : stores_) {
        for (const std::string& r : s->StateRoots()) {
          if (std::find(roots.begin(), roots.end(), r) == roots.end()) roots.push_back(r);
        }
      }
    }
    agent_ = std::make_unique<AgentProcess>();
    const std::string yaml = absl::StrCat("runtime_roots: {", runtime, ": [", absl::StrJoin(roots, ", "),
                                          "]}\npolicy: {tick: 200ms, window: 2s}\n");
    return agent_->Start({::gputier::testing::RequestedMode(), yaml}).status();
  }

  // The status row of container `id` once it carries a name, or null.
  nlohmann::json NamedRow(const std::string& id) const {
    nlohmann::json found;
    WaitFor(
        [&] {
          absl::StatusOr<nlohmann::json> rows = agent_->Status();
          if (!rows.ok()) return false;
          for (const nlohmann::json& r : *rows) {
            if (r["container_id"] == id && r["name"].is_string() && r["name"] != id.substr(0, 12)) {
              found = r;
              return true;
            }
          }
          return false;
        },
        seconds(30), milliseconds(100));
    return found;
  }

  std::vector<std::unique_ptr<PodmanStore>> stores_;
  std::unique_ptr<TempDir> archive_dir_;
  std::unique_ptr<ContainerdDaemon> containerd_;
  std::vector<std::unique_ptr<RuntimeContainer>> containers_;
  std::unique_ptr<AgentProcess> agent_;
};

TEST_P(ContainerNamesTest, StatusExplainAndAuditNameTheContainerAndCtlTakesTheName) {
  const bool k8s = GetParam() == "containerd";
  const std::string solo = k8s ? "team-a/trainer-0/worker" : "names-solo";
  const std::string twin = k8s ? "team-a/twin-0/worker" : "names-twin";
  absl::StatusOr<RuntimeContainer*> a = Start(solo, 0);
  ASSERT_TRUE(a.ok()) << a.status();
  absl::StatusOr<RuntimeContainer*> t1 = Start(twin, 0);
  ASSERT_TRUE(t1.ok()) << t1.status();
  absl::StatusOr<RuntimeContainer*> t2 = Start(twin, 1);
  ASSERT_TRUE(t2.ok()) << t2.status();
  ASSERT_TRUE(StartAgent().ok()) << (agent_ ? agent_->LogTail() : "");

  nlohmann::json row = NamedRow((*a)->id());
  ASSERT_TRUE(row.is_object()) << "no named status row for " << (*a)->id() << "\n"
                                << agent_->Status().value_or(nlohmann::json()).dump(1) << "\n"
                                << "cgroup " << (*a)->cgroup() << " pid " << (*a)->pid() << " exited "
                                << (*a)->Exited().value_or(true) << "\n"
                                << agent_->LogTail();
  EXPECT_EQ(row["name"], solo) << row.dump(2);
  ASSERT_TRUE(NamedRow((*t1)->id()).is_object()) << agent_->LogTail();
  ASSERT_TRUE(NamedRow((*t2)->id()).is_object()) << agent_->LogTail();

  // status (the table), explain by name (JSON and text).
  absl::StatusOr<std::string> status = agent_->Ctl("status");
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_TRUE(absl::StrContains(*status, solo)) << *status;
  absl::StatusOr<std::string> json = agent_->Ctl(absl::StrCat("explain --json ", solo));
  ASSERT_TRUE(json.ok()) << json.status();
  nlohmann::json e = nlohmann::json::parse(*json, nullptr, false);
  ASSERT_TRUE(e.is_object()) << *json;
  EXPECT_EQ(e["container_id"], (*a)->id());
  EXPECT_EQ(e["name"], solo);
  EXPECT_EQ(e["cgroup_id"], row["cgroup_id"]);
  absl::StatusOr<std::string> text = agent_->Ctl(absl::StrCat("explain ", solo));
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_TRUE(absl::StrContains(*text, absl::StrCat("(container ", solo, ", id ", (*a)->id(), ")"))) << *text;
  // The short id still works.
  absl::StatusOr<std::string> by_short = agent_->Ctl(absl::StrCat("explain --json ", (*a)->id().substr(0, 12)));
  ASSERT_TRUE(by_short.ok()) << by_short.status();
  EXPECT_EQ(nlohmann::json::parse(*by_short, nullptr, false)["name"], solo);

  // A name two containers share: refused, both listed.
  absl::StatusOr<std::string> ambiguous = agent_->Ctl(absl::StrCat("explain ", twin, " 2>&1"));
  ASSERT_FALSE(ambiguous.ok()) << *ambiguous;
  const std::string message(ambiguous.status().message());
  EXPECT_TRUE(absl::StrContains(message, "matches 2 containers")) << message;
  EXPECT_TRUE(absl::StrContains(message, (*t1)->id().substr(0, 12))) << message;
  EXPECT_TRUE(absl::StrContains(message, (*t2)->id().substr(0, 12))) << message;
  // A name of no container: said so.
  absl::StatusOr<std::string> unknown = agent_->Ctl("explain no-such/pod/anywhere 2>&1");
  ASSERT_FALSE(unknown.ok());
  EXPECT_TRUE(absl::StrContains(unknown.status().message(), "no container or cgroup")) << unknown.status();

  // audit --json (it reads the pins, and asks gputierd for the names).
  absl::StatusOr<std::string> audit = agent_->Ctl(absl::StrCat("audit --json --pin-dir ", agent_->pin_dir()));
  ASSERT_TRUE(audit.ok()) << audit.status();
  nlohmann::json rows = nlohmann::json::parse(*audit, nullptr, false);
  ASSERT_TRUE(rows.is_array()) << *audit;
  bool named = false;
  for (const nlohmann::json& r : rows) {
    if (r["container_id"] == (*a)->id()) named = r["name"] == solo;
  }
  EXPECT_TRUE(named) << *audit;

  // The verdict's log line names it.
  EXPECT_TRUE(WaitFor([&] { return absl::StrContains(agent_->LogTail(), absl::StrCat(", ", solo, ") is now")); },
                      seconds(20), milliseconds(200)))
      << agent_->LogTail();
  // The classification table's rows carry it.
  absl::StatusOr<ClassificationTable> table =
      ClassificationTable::Open(agent_->work_dir() + "/state/" + kClassificationTableFile);
  ASSERT_TRUE(table.ok()) << table.status();
  std::string recorded;
  EXPECT_TRUE(WaitFor(
      [&] {
        absl::StatusOr<std::optional<ClassificationRow>> latest = table->LatestFor(row["cgroup_id"].get<uint64_t>());
        if (latest.ok() && latest->has_value()) recorded = (*latest)->container_name;
        return recorded == solo;
      },
      seconds(10), milliseconds(200)))
      << "latest row's container_name: '" << recorded << "'";

  // label takes the name and says which container it labelled.
  absl::StatusOr<std::string> labelled = agent_->Ctl(absl::StrCat("label ", solo, " cpu"));
  ASSERT_TRUE(labelled.ok()) << labelled.status();
  EXPECT_TRUE(absl::StrContains(*labelled, absl::StrCat("(container ", solo, ", id ", (*a)->id(), ") as cpu")))
      << *labelled;
}

INSTANTIATE_TEST_SUITE_P(Runtimes, ContainerNamesTest, ::testing::Values("podman", "containerd"),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

}  // namespace
}  // namespace gputier
