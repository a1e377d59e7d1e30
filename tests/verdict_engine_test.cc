// VerdictEngine: counters in, verdicts in force and table rows out. Pure: no
// kernel, no clock (time is passed in).
#include "policy/verdict_engine.h"

#include <vector>

#include "gtest/gtest.h"

namespace gputier {
namespace {

constexpr uint64_t kMs = 1000000;
constexpr uint64_t kStart = 1000 * kMs;

gt_cgroup_stats Stats(uint64_t opens_image, uint64_t opens_other, uint64_t gpu_opens, uint64_t gpu_ioctls,
                      uint64_t last_seen) {
  gt_cgroup_stats s = {};
  s.opens_by_class[GT_CLASS_IMAGE] = opens_image;
  s.opens_by_class[GT_CLASS_OTHER] = opens_other;
  s.opens_total = opens_image + opens_other;
  s.gpu_opens = gpu_opens;
  s.gpu_ioctls = gpu_ioctls;
  s.first_seen_ns = kStart;
  s.last_seen_ns = last_seen;
  if (gpu_opens + gpu_ioctls > 0) s.flags = GT_CG_GPU_SEEN;
  return s;
}

EngineOptions Options() {
  EngineOptions o;
  o.features.window = absl::Seconds(30);
  o.classifier.demote_after_cpu_windows = 3;
  return o;
}

TEST(VerdictEngine, GpuVerdictFollowsIoctlsThatArriveAfterAnEarlierCpuDecision) {
  VerdictEngine engine(Options());
  // First sight: files opened, the GPU device opened, no ioctl yet.
  EngineUpdate a = engine.Update(7, Stats(30, 10, 1, 0, kStart + 100 * kMs), kStart + 101 * kMs, 1);
  ASSERT_EQ(a.changed.size(), 1u);
  EXPECT_EQ(a.changed[0].second.verdict, GT_VERDICT_CPU);
  // 5 ms later: 200 ioctls, within the same tick of a coarse last_seen clock.
  EngineUpdate b = engine.Update(7, Stats(30, 10, 1, 200, kStart + 100 * kMs), kStart + 106 * kMs, 2);
  ASSERT_EQ(b.changed.size(), 1u);
  EXPECT_EQ(b.changed[0].second.verdict, GT_VERDICT_GPU);
}

TEST(VerdictEngine, IdleCpuCgroupsAreNotRedecided) {
  VerdictEngine engine(Options());
  std::vector<std::pair<uint64_t, gt_cgroup_stats>> counters = {{1, Stats(0, 50, 0, 0, kStart + kMs)}};
  EngineUpdate first = engine.Tick(counters, kStart + 2 * kMs, 1);
  ASSERT_EQ(first.changed.size(), 1u);
  EXPECT_EQ(first.records.size(), 1u);
  EngineUpdate second = engine.Tick(counters, kStart + 1000 * kMs, 2);
  EXPECT_TRUE(second.changed.empty());
  EXPECT_TRUE(second.records.empty());
}

TEST(VerdictEngine, DemotionWaitsForConsecutiveCpuWindows) {
  EngineOptions o = Options();
  o.features.window = absl::Seconds(1);
  VerdictEngine engine(o);
  uint64_t t = kStart + 100 * kMs;
  ASSERT_EQ(engine.Update(3, Stats(40, 0, 1, 300, t), t + kMs, 1).changed.at(0).second.verdict, GT_VERDICT_GPU);
  // Counters stand still; time passes beyond the window.
  int demoted_at = -1;
  for (int i = 1; i <= 10 && demoted_at < 0; ++i) {
    std::vector<std::pair<uint64_t, gt_cgroup_stats>> c = {{3, Stats(40, 0, 1, 300, t)}};
    EngineUpdate u = engine.Tick(c, t + (2000 + 100 * i) * kMs, i + 1);
    if (!u.changed.empty() && u.changed[0].second.verdict == GT_VERDICT_CPU) demoted_at = i;
  }
  EXPECT_EQ(demoted_at, 3);
}

TEST(VerdictEngine, RestoredVerdictHoldsAcrossARestart) {
  VerdictEngine engine(Options());
  gt_verdict pinned = {GT_VERDICT_GPU, 900, 0, GT_SOURCE_RULE, 12345};
  engine.Restore(9, pinned);
  // After the restart the counters show no recent GPU use: one CPU window is
  // not enough to demote.
  std::vector<std::pair<uint64_t, gt_cgroup_stats>> c = {{9, Stats(40, 0, 1, 300, kStart)}};
  EngineUpdate u = engine.Tick(c, kStart + 100000 * kMs, 1);
  EXPECT_TRUE(u.changed.empty());
  std::optional<CgroupVerdict> v = engine.Lookup(9, kStart + 100000 * kMs);
  ASSERT_TRUE(v.has_value());
  EXPECT_EQ(v->verdict, Verdict::kGpu);
  EXPECT_EQ(v->kernel.decided_at_ns, 12345u);
}

TEST(VerdictEngine, VanishedCgroupsAreReportedRemoved) {
  VerdictEngine engine(Options());
  std::vector<std::pair<uint64_t, gt_cgroup_stats>> both = {{1, Stats(0, 50, 0, 0, kStart)},
                                                            {2, Stats(0, 50, 0, 0, kStart)}};
  engine.Tick(both, kStart + kMs, 1);
  std::vector<std::pair<uint64_t, gt_cgroup_stats>> one = {{1, Stats(0, 50, 0, 0, kStart)}};
  EngineUpdate u = engine.Tick(one, kStart + 2 * kMs, 2);
  ASSERT_EQ(u.removed.size(), 1u);
  EXPECT_EQ(u.removed[0], 2u);
  EXPECT_FALSE(engine.Lookup(2, kStart).has_value());
}

}  // namespace
}  // namespace gputier
