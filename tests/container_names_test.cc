// The classifier's names: config.json is read once per container, not once
// per tick; a container not confirmed yet is asked about again after a
// back-off; the cache stays bounded.
#include "loader/runtime/container_names.h"

#include <map>
#include <string>

#include "gtest/gtest.h"

namespace gputier {
namespace {

class ContainerNameCacheTest : public ::testing::Test {
 protected:
  // Stands for the runtime: confirms the ids in `known_`, counting the asks.
  ContainerNameCache::Lookup Runtime() {
    return [this](const std::string&, const std::string& id, const std::string&) -> absl::StatusOr<std::string> {
      ++asks_[id];
      auto it = known_.find(id);
      if (it == known_.end()) return absl::NotFoundError("no runtime knows it");
      return it->second;
    };
  }
  std::map<std::string, std::string> known_;
  std::map<std::string, int> asks_;
  absl::Time now_ = absl::FromUnixSeconds(1700000000);
};

TEST_F(ContainerNameCacheTest, AConfirmedContainerIsLookedUpOnceWhateverTheTicks) {
  known_["c1"] = "team-a/trainer-0/worker";
  ContainerNameCache cache(Runtime());
  for (int tick = 0; tick < 100; ++tick) {
    EXPECT_EQ(cache.NameOf("containerd", "c1", "/kubepods/pod1/c1", now_ + absl::Seconds(tick)),
              "team-a/trainer-0/worker");
  }
  EXPECT_EQ(asks_["c1"], 1);
}

TEST_F(ContainerNameCacheTest, AContainerNotConfirmedYetIsAskedAgainAfterABackoff) {
  ContainerNameCache cache(Runtime());
  EXPECT_EQ(cache.NameOf("podman", "c2", "/libpod_parent/libpod-c2", now_), "");
  EXPECT_EQ(cache.NameOf("podman", "c2", "/libpod_parent/libpod-c2", now_ + absl::Milliseconds(500)), "");
  EXPECT_EQ(asks_["c2"], 1);
  known_["c2"] = "ingest";
  EXPECT_EQ(cache.NameOf("podman", "c2", "/libpod_parent/libpod-c2", now_ + absl::Seconds(1)), "ingest");
  EXPECT_EQ(asks_["c2"], 2);
}

TEST_F(ContainerNameCacheTest, ACgroupReusedByAnotherContainerIsLookedUpAgain) {
  known_["old"] = "first";
  known_["new"] = "second";
  ContainerNameCache cache(Runtime());
  EXPECT_EQ(cache.NameOf("runc", "old", "/box", now_), "first");
  EXPECT_EQ(cache.NameOf("runc", "new", "/box", now_), "second");
}

TEST_F(ContainerNameCacheTest, TheCacheKeepsAtMostItsBound) {
  ContainerNameCache cache(Runtime(), 8);
  for (int i = 0; i < 100; ++i) {
    const std::string id = "c" + std::to_string(i);
    known_[id] = id;
    EXPECT_EQ(cache.NameOf("runc", id, "/" + id, now_), id);
    EXPECT_LE(cache.size(), 8u);
  }
  // The oldest was forgotten: asked again.
  EXPECT_EQ(cache.NameOf("runc", "c0", "/c0", now_), "c0");
  EXPECT_EQ(asks_["c0"], 2);
  EXPECT_EQ(asks_["c99"], 1);
}

}  // namespace
}  // namespace gputier
