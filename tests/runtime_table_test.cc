// The runtime table and the OCI runtimes' state files (pure; no root).
#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "loader/config/config.h"
#include "loader/config/config_tiers.h"
#include "loader/runtime/runtime_table.h"

namespace gputier {
namespace {

std::vector<std::string> Names(const std::vector<const RuntimeLayout*>& runtimes) {
  std::vector<std::string> out;
  for (const RuntimeLayout* r : runtimes) out.push_back(r->name);
  return out;
}

TEST(RuntimeTable, EveryRuntimeTheConfigNamesHasOneEntryAndNoOther) {
  std::vector<std::string> table;
  for (const RuntimeLayout& r : RuntimeTable()) table.push_back(r.name);
  std::vector<std::string> config = KnownRuntimeNames();
  std::sort(table.begin(), table.end());
  std::sort(config.begin(), config.end());
  EXPECT_EQ(table, config);
  for (const RuntimeLayout& r : RuntimeTable()) {
    EXPECT_FALSE(r.default_roots.empty()) << r.name;
    EXPECT_FALSE(r.cgroup_runtimes.empty()) << r.name;
  }
}

// Every runtime string IdentifyContainer gives maps to the runtimes that make such cgroups.
TEST(RuntimeTable, CgroupRuntimesMapToTheRuntimesThatMakeThem) {
  struct Case {
    const char* cgroup_runtime;
    std::vector<std::string> runtimes;
  };
  const Case cases[] = {
      {"runc", {"runc"}},
      {"podman", {"podman"}},
      {"containerd", {"containerd"}},
      {"cri-o", {"cri-o"}},
      {"cri", {"containerd", "cri-o"}},  // a kubepods cgroupfs bare id
      {"docker", {"docker"}},
      {"", {"runc", "podman", "containerd", "cri-o", "docker"}},
  };
  for (const Case& c : cases) EXPECT_EQ(Names(RuntimesForCgroup(c.cgroup_runtime)), c.runtimes) << c.cgroup_runtime;
}

TEST(RuntimeTable, DefaultRootsAreEachRuntimesOwn) {
  struct Case {
    const char* runtime;
    std::vector<std::string> roots;
    bool namespaced;
  };
  const Case cases[] = {
      {"runc", {"/run/runc"}, false},
      {"podman", {"/run/runc", "/run/crun"}, false},
      {"containerd", {"/run/containerd/runc"}, true},
      {"cri-o", {"/run/runc", "/run/crun"}, false},
      {"docker", {"/run/docker/runtime-runc"}, true},
  };
  const TierConfig defaults = DefaultConfig().tiers;
  for (const Case& c : cases) {
    const RuntimeLayout* r = FindRuntime(c.runtime);
    ASSERT_NE(r, nullptr) << c.runtime;
    EXPECT_EQ(RootsOf(defaults, *r), c.roots) << c.runtime;
    EXPECT_EQ(r->namespaced, c.namespaced) << c.runtime;
  }
}

TEST(RuntimeTable, RuntimeRootsReplaceOnlyTheRuntimesTheyName) {
  absl::StatusOr<Config> c = ParseConfig("runtime_roots:\n  containerd: [/tmp/ctd/runc]\n", "t.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(RootsOf(c->tiers, *FindRuntime("containerd")), std::vector<std::string>{"/tmp/ctd/runc"});
  EXPECT_EQ(RootsOf(c->tiers, *FindRuntime("runc")), std::vector<std::string>{"/run/runc"});
}

TEST(RuncState, IdPidAndBundleAreRead) {
  absl::StatusOr<RuntimeState> s = ParseRuncState(R"({"id":"c1","init_process_pid":4242,
      "config":{"labels":["gputier.io/tier=fast","bundle=/var/lib/containers/storage/overlay-containers/c1/userdata"]}})");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->id, "c1");
  EXPECT_EQ(s->init_pid, 4242);
  EXPECT_EQ(s->bundle, "/var/lib/containers/storage/overlay-containers/c1/userdata");
}

TEST(CrunStatus, PidAndBundleAreRead) {
  absl::StatusOr<RuntimeState> s = ParseCrunStatus(R"({"pid":77,"bundle":"/run/b","rootfs":"/run/b/rootfs"})");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->id, "");
  EXPECT_EQ(s->init_pid, 77);
  EXPECT_EQ(s->bundle, "/run/b");
}

TEST(RuntimeStateFiles, MalformedStateIsAnErrorNeverACrash) {
  const char* bad_runc[] = {
      "", "[]", "{", "{\"id\":5}", R"({"id":"c","init_process_pid":"1"})",
      R"({"id":"c","init_process_pid":0,"config":{"labels":["bundle=/b"]}})",
      R"({"id":"c","init_process_pid":99999999999,"config":{"labels":["bundle=/b"]}})",
      R"({"id":"c","init_process_pid":5})",                                    // no bundle
      R"({"id":"c","init_process_pid":5,"config":{"labels":["bundle=rel"]}})",  // relative bundle
      R"({"id":"c","init_process_pid":5,"config":{"labels":[1,{}]}})",
      "\xff\xfe",
  };
  for (const char* text : bad_runc) EXPECT_FALSE(ParseRuncState(text).ok()) << text;
  for (const char* text : {"", "{}", R"({"pid":-1,"bundle":"/b"})", R"({"pid":3,"bundle":7})"}) {
    EXPECT_FALSE(ParseCrunStatus(text).ok()) << text;
  }
  EXPECT_FALSE(ParseRuncState(std::string(kMaxRuntimeFileBytes + 1, ' ')).ok());
}

}  // namespace
}  // namespace gputier
