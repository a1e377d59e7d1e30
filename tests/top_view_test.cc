// gputierctl top's pure part: rows from status answers, rates, the table.
#include "loader/top/top_view.h"

#include <gtest/gtest.h>

#include "absl/strings/str_split.h"

namespace gputier {
namespace {

nlohmann::json Cgroup(const std::string& id, const std::string& verdict, uint64_t ioctls, uint64_t last_seen_ns,
                      double window_rate = 0) {
  return {{"cgroup_id", 7},
          {"container_id", id},
          {"runtime", "podman"},
          {"verdict", verdict},
          {"confidence", 950},
          {"features", {{"gpu_ioctl_rate", window_rate}, {"ext_ratio", 0.75}}},
          {"counters", {{"gpu_ioctls", ioctls}, {"last_seen_ns", last_seen_ns}}}};
}

nlohmann::json Status(nlohmann::json cgroups, nlohmann::json tiered = nlohmann::json::array(),
                      int64_t now_ms = 1'000'000) {
  return {{"ok", true},
          {"cgroups", std::move(cgroups)},
          {"agent", {{"pid", 42}, {"mode", "tracepoint"}, {"enforcement", "off"}, {"uptime_s", 65},
                     {"now_unix_ms", now_ms}}},
          {"tiering",
           {{"tiers", {{"fast_root", "/f"}, {"slow_root", "/s"}, {"built_in_default", true},
                       {"fast_used", 1 << 20}, {"fast_total", 1 << 30}}},
            {"containers", std::move(tiered)}}}};
}

TEST(TopViewTest, IoctlRateComesFromCountersBetweenTwoAnswers) {
  const nlohmann::json before = Status({Cgroup("aaaa", "gpu", 100, 1'000'000'000, 999)});
  const nlohmann::json now = Status({Cgroup("aaaa", "gpu", 300, 3'000'000'000, 999)});
  TopView view = BuildTopView(now, &before);
  ASSERT_EQ(view.rows.size(), 1u);
  ASSERT_TRUE(view.rows[0].gpu_ioctl_rate.has_value());
  EXPECT_DOUBLE_EQ(*view.rows[0].gpu_ioctl_rate, 100.0);  // 200 ioctls over 2 s of events
}

TEST(TopViewTest, IoctlRateIsZeroWhenCountersDidNotMove) {
  const nlohmann::json before = Status({Cgroup("aaaa", "cpu", 5, 1'000, 3)});
  TopView view = BuildTopView(Status({Cgroup("aaaa", "cpu", 5, 1'000, 3)}), &before);
  EXPECT_EQ(view.rows[0].gpu_ioctl_rate, 0.0);
}

TEST(TopViewTest, FirstAnswerAndRestartedCountersUseTheWindowRate) {
  TopView first = BuildTopView(Status({Cgroup("aaaa", "gpu", 300, 3'000, 12.5)}), nullptr);
  EXPECT_EQ(first.rows[0].gpu_ioctl_rate, 12.5);
  const nlohmann::json before = Status({Cgroup("aaaa", "gpu", 500, 3'000, 12.5)});
  TopView restarted = BuildTopView(Status({Cgroup("aaaa", "gpu", 10, 4'000, 7.0)}), &before);
  EXPECT_EQ(restarted.rows[0].gpu_ioctl_rate, 7.0);
}

TEST(TopViewTest, JoinsVerdictRowsWithTierRowsAndTheLatestMove) {
  nlohmann::json tiered = nlohmann::json::array(
      {{{"container_id", "aaaa"}, {"tier", "fast"}, {"op", "none"}, {"bytes_fast", 2048}, {"bytes_slow", 0},
        {"last_promotion_unix_ms", 997'000}, {"last_demotion_unix_ms", 990'000}, {"last_error", nullptr}}});
  TopView view = BuildTopView(Status({Cgroup("aaaa", "gpu", 1, 1)}, tiered), nullptr);
  ASSERT_EQ(view.rows.size(), 1u);
  const TopRow& r = view.rows[0];
  EXPECT_EQ(r.name, "podman:aaaa");
  EXPECT_EQ(r.tier, "fast");
  EXPECT_EQ(r.bytes_fast, 2048u);
  EXPECT_EQ(r.last_move, "fast");
  EXPECT_EQ(r.last_move_ago_ms, 3000);
  EXPECT_EQ(r.gpu_file_share, 0.75);
  EXPECT_EQ(view.mode, "tracepoint");
  EXPECT_EQ(view.fast_total, uint64_t{1} << 30);
}

TEST(TopViewTest, CgroupsWithoutContainersAreLeftOutAndGpuRowsComeFirst) {
  nlohmann::json host = Cgroup("", "cpu", 0, 0);
  host["container_id"] = nullptr;
  TopView view = BuildTopView(Status({Cgroup("bbbb", "cpu", 0, 0), host, Cgroup("cccc", "gpu", 0, 0)}), nullptr);
  ASSERT_EQ(view.rows.size(), 2u);
  EXPECT_EQ(view.rows[0].container_id, "cccc");
  EXPECT_EQ(view.rows[1].container_id, "bbbb");
  EXPECT_EQ(view.rows[1].tier, "-");  // not tiered
}

TEST(TopViewTest, AnswersOfAnotherShapeGiveEmptyFieldsNotExceptions) {
  for (const nlohmann::json& odd :
       {nlohmann::json(nullptr), nlohmann::json::array(), nlohmann::json({{"cgroups", 5}}),
        nlohmann::json({{"cgroups", {{{"container_id", 3}}, {{"container_id", "x"}, {"features", "y"}}}},
                        {"tiering", {{"containers", {{{"container_id", "x"}, {"bytes_fast", -4}}}}}}})}) {
    TopView view = BuildTopView(odd, &odd);
    EXPECT_FALSE(FormatTopView(view, 80).empty());
  }
}

TEST(TopViewTest, TableNamesEveryColumnAndCutsLinesToTheWidth) {
  TopView view = BuildTopView(Status({Cgroup("aaaa", "gpu", 1, 1, 3)}), nullptr);
  const std::string wide = FormatTopView(view, 0);
  for (const char* word : {"mode tracepoint", "enforcement off", "1.0 MiB of 1.0 GiB used", "CONTAINER", "VERDICT",
                           "CONF", "TIER", "FAST", "SLOW", "IOCTL/s", "GPU_FILES", "LAST_MOVE", "podman:aaaa", "95%",
                           "75%"}) {
    EXPECT_NE(wide.find(word), std::string::npos) << word << " in\n" << wide;
  }
  for (absl::string_view line : absl::StrSplit(FormatTopView(view, 30), '\n')) EXPECT_LE(line.size(), 30u);
}

TEST(TopViewTest, ShortDurationsReadLikeTop) {
  const std::pair<int64_t, const char*> cases[] = {
      {0, "0s"}, {59'999, "59s"}, {65'000, "1m05s"}, {7'260'000, "2h01m"}, {90'000'000, "1d01h"}, {-5, "0s"}};
  for (const auto& [ms, want] : cases) EXPECT_EQ(ShortDuration(ms), want) << ms;
}

}  // namespace
}  // namespace gputier
