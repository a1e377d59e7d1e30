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
#include <unistd.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "loader/cgroup/cgroup_path.h"
#include "tests/integration/agent_harness.h"
#include "tests/integration/containerd_container.h"
#include "tests/integration/host_mounts.h"
#include "tests/integration/podman_container.h"
#include "tests/integration/runtime_container.h"

namespace gputier {
namespace {

using ::gputier::testing::ContainerdContainer;
using ::gputier::testing::ContainerdDaemon;
using ::gputier::testing::HostMountsUnder;
using ::gputier::testing::PodmanContainer;
using ::gputier::testing::PodmanStore;
using ::gputier::testing::RuntimeContainer;
using ::gputier::testing::RuntimeContainerOptions;
using ::gputier::testing::TempDir;
using std::chrono::seconds;

// One runtime under test: its store or daemon, and containers started in it.
class Runtime {
 public:
  // Skips (empty status message) or fails the caller when the runtime
  // cannot run here.
  static absl::StatusOr<std::unique_ptr<Runtime>> Create(const std::string& name) {
    std::unique_ptr<Runtime> r(new Runtime());
    r->name_ = name;
    absl::StatusOr<std::unique_ptr<PodmanStore>> store = PodmanStore::Create({});
    if (!store.ok()) return store.status();
    r->podman_ = std::move(*store);
    if (name == "containerd") {
      r->archive_dir_ = std::make_unique<TempDir>("gputier-oci");
      const std::string archive = r->archive_dir_->path() + "/image.tar";
      if (absl::Status s = r->podman_->SaveOciArchive(archive); !s.ok()) return s;
      absl::StatusOr<std::unique_ptr<ContainerdDaemon>> d = ContainerdDaemon::Start(archive);
      if (!d.ok()) return d.status();
      r->containerd_ = std::move(*d);
    }
    return r;
  }

  absl::StatusOr<std::unique_ptr<RuntimeContainer>> Start(const RuntimeContainerOptions& options) const {
    if (containerd_ != nullptr) {
      ContainerdContainer::Options o;
      o.container = options;
      absl::StatusOr<std::unique_ptr<ContainerdContainer>> c = ContainerdContainer::Start(*containerd_, o);
      if (!c.ok()) return c.status();
      return std::unique_ptr<RuntimeContainer>(std::move(*c));
    }
    absl::StatusOr<std::unique_ptr<PodmanContainer>> c = PodmanContainer::Start(*podman_, options);
    if (!c.ok()) return c.status();
    return std::unique_ptr<RuntimeContainer>(std::move(*c));
  }

  std::vector<std::string> StateRoots() const {
    return containerd_ != nullptr ? containerd_->StateRoots() : podman_->StateRoots();
  }
  const std::string& name() const { return name_; }

 private:
  Runtime() = default;
  std::string name_;
  std::unique_ptr<PodmanStore> podman_;
  std::unique_ptr<TempDir> archive_dir_;
  std::unique_ptr<ContainerdDaemon> containerd_;
};

std::string CannotRunBecause(const std::string& runtime) {
  std::string why = ::gputier::testing::PodmanTestsCannotRunBecause();
  if (why.empty() && runtime == "containerd") why = ::gputier::testing::ContainerdTestsCannotRunBecause();
  return why;
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

INSTANTIATE_TEST_SUITE_P(Runtimes, RuntimeContainerTest, ::testing::Values("podman", "containerd"),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

}  // namespace
}  // namespace gputier
