// Which slow layers of exited containers are removed: past their retention,
// then the oldest while the slow root is over its quota; live containers'
// layers never (they can only stop new adoptions).
#include "loader/tier/exited_layers.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace gputier {
namespace {

ExitedLayer Layer(const std::string& key, int64_t at, uint64_t bytes) {
  ExitedLayer l;
  l.key = key;
  l.exited_at_s = at;
  l.name = ExitedName(key, at);
  l.bytes = bytes;
  return l;
}

TEST(ExitedLayers, NameRoundTripsAndForeignNamesAreLeftAlone) {
  std::optional<ExitedLayer> l = ParseExitedName(ExitedName("abc.1-4711", 1733400000));
  ASSERT_TRUE(l.has_value());
  EXPECT_EQ(l->key, "abc.1-4711");
  EXPECT_EQ(l->exited_at_s, 1733400000);
  EXPECT_EQ(l->name, "abc.1-4711.1733400000");
  for (const char* foreign : {"", ".", "abc", "abc.", ".1733400000", "abc.17x3", "..1", "abc/x.1",
                              ".hidden.1", "abc.1234567890123456789"}) {
    EXPECT_FALSE(ParseExitedName(foreign).has_value()) << foreign;
  }
}

struct PickCase {
  const char* description;
  std::vector<ExitedLayer> layers;
  int64_t now_s;
  absl::Duration retention;
  uint64_t quota;
  uint64_t used;
  std::vector<std::string> names;
  std::vector<std::string> reasons;
  bool live_over_quota;
};

TEST(ExitedLayers, PicksWhatGoesTableDriven) {
  const std::vector<PickCase> cases = {
      {"nothing quarantined", {}, 1000, absl::Hours(1), 0, 500, {}, {}, false},
      {"retention not passed, no quota", {Layer("a-1", 900, 10)}, 1000, absl::Seconds(101), 0, 500, {}, {}, false},
      {"retention passed exactly", {Layer("a-1", 900, 10)}, 1000, absl::Seconds(100), 0, 500, {"a-1.900"},
       {"retention"}, false},
      {"retention 0 removes at once", {Layer("a-1", 1000, 10)}, 1000, absl::ZeroDuration(), 0, 500,
       {"a-1.1000"}, {"retention"}, false},
      {"expired ones oldest first",
       {Layer("b-2", 950, 10), Layer("a-1", 900, 10), Layer("c-3", 990, 10)}, 1000, absl::Seconds(40), 0, 500,
       {"a-1.900", "b-2.950"}, {"retention", "retention"}, false},
      {"over quota: oldest quarantined first, only as many as needed",
       {Layer("new-3", 990, 100), Layer("old-1", 900, 100), Layer("mid-2", 950, 100)}, 1000, absl::Hours(1),
       450, 600, {"old-1.900", "mid-2.950"}, {"quota", "quota"}, false},
      {"expired removal already brings it under the quota",
       {Layer("old-1", 100, 300), Layer("new-2", 990, 100)}, 1000, absl::Seconds(500), 400, 600, {"old-1.100"},
       {"retention"}, false},
      {"live layers alone over quota: every quarantined one goes, and adoption stops",
       {Layer("a-1", 990, 50), Layer("b-2", 995, 50)}, 1000, absl::Hours(1), 300, 500, {"a-1.990", "b-2.995"},
       {"quota", "quota"}, true},
      {"at the quota is not over it", {Layer("a-1", 990, 100)}, 1000, absl::Hours(1), 500, 500, {}, {}, false},
      {"a clock set back keeps the layer", {Layer("a-1", 2000, 10)}, 1000, absl::Seconds(1), 0, 500, {}, {},
       false},
  };
  for (const PickCase& c : cases) {
    ExitedRemovals r = PickExitedRemovals(c.layers, c.now_s, c.retention, c.quota, c.used);
    EXPECT_EQ(r.names, c.names) << c.description;
    EXPECT_EQ(r.reasons, c.reasons) << c.description;
    EXPECT_EQ(r.live_over_quota, c.live_over_quota) << c.description;
  }
}

}  // namespace
}  // namespace gputier
