// FeatureWindow: rates from counter deltas over a sliding window, the
// lifetime facts, the extension ratio's fallback, and the model inputs.
#include "policy/features.h"

#include <cmath>
#include <cstdint>
#include <string>

#include "gputier/abi.h"
#include "gtest/gtest.h"

namespace gputier {
namespace {

constexpr uint64_t kSec = 1000000000ull;
constexpr uint64_t kMs = 1000000ull;
// The cgroup's first_seen_ns; sample times are given relative to it.
constexpr uint64_t kFirstSeen = 5000 * kSec;

// Lifetime counters of a sample, set by name: Counts().gpu_ioctls(5).image(2).
class Counts {
 public:
  Counts& opens_total(uint64_t v) { opens_total_ = v; return *this; }
  Counts& gpu_ioctls(uint64_t v) { gpu_ioctls_ = v; return *this; }
  Counts& gpu_opens(uint64_t v) { gpu_opens_ = v; return *this; }
  Counts& bytes_written(uint64_t v) { bytes_written_ = v; return *this; }
  Counts& other(uint64_t v) { other_ = v; return *this; }
  Counts& image(uint64_t v) { image_ = v; return *this; }
  Counts& tensor(uint64_t v) { tensor_ = v; return *this; }

  uint64_t opens_total_ = 0;
  uint64_t gpu_ioctls_ = 0;
  uint64_t gpu_opens_ = 0;
  uint64_t bytes_written_ = 0;
  uint64_t other_ = 0;  // opens of class "other"
  uint64_t image_ = 0;  // opens of class image
  uint64_t tensor_ = 0;  // opens of class tensor
};

// A sample taken `after_ns` after kFirstSeen. opens_total counts the class
// opens too, unless given larger (files without an extension).
CounterSample At(uint64_t after_ns, const Counts& c, uint64_t first_seen = kFirstSeen) {
  CounterSample s;
  s.mono_ns = kFirstSeen + after_ns;
  s.stats.opens_by_class[GT_CLASS_OTHER] = c.other_;
  s.stats.opens_by_class[GT_CLASS_IMAGE] = c.image_;
  s.stats.opens_by_class[GT_CLASS_TENSOR] = c.tensor_;
  const uint64_t with_ext = c.other_ + c.image_ + c.tensor_;
  s.stats.opens_total = c.opens_total_ > with_ext ? c.opens_total_ : with_ext;
  s.stats.opens_noext = s.stats.opens_total - with_ext;
  s.stats.gpu_ioctls = c.gpu_ioctls_;
  s.stats.gpu_opens = c.gpu_opens_;
  s.stats.bytes_written = c.bytes_written_;
  s.stats.first_seen_ns = first_seen;
  s.stats.last_seen_ns = s.mono_ns;
  if (c.gpu_opens_ > 0 || c.gpu_ioctls_ > 0) {
    s.stats.flags = GT_CG_GPU_SEEN;
    s.stats.gpu_first_ns = kFirstSeen;
  }
  return s;
}

uint64_t Now(uint64_t after_ns) { return kFirstSeen + after_ns; }

TEST(FeatureWindow, RatesAreDeltasOverTheWindow) {
  FeatureWindow w;  // 30 s
  w.Add(At(100 * kSec, Counts().opens_total(100).gpu_ioctls(1000).bytes_written(0)));
  w.Add(At(110 * kSec, Counts().opens_total(200).gpu_ioctls(1200).bytes_written(10 << 20)));
  w.Add(At(120 * kSec, Counts().opens_total(300).gpu_ioctls(1400).bytes_written(20 << 20)));
  w.Add(At(130 * kSec, Counts().opens_total(400).gpu_ioctls(1600).bytes_written(30 << 20)));
  const Features f = w.Compute(Now(130 * kSec), GpuClassSet());
  // Baseline: the sample at 100 s, exactly at the window's start.
  EXPECT_DOUBLE_EQ(f.window_seconds, 30);
  EXPECT_DOUBLE_EQ(f.gpu_ioctl_rate, 600.0 / 30);
  EXPECT_DOUBLE_EQ(f.open_rate, 300.0 / 30);
  EXPECT_DOUBLE_EQ(f.write_rate, (30 << 20) / 30.0);  // 1 MiB/s
  EXPECT_EQ(f.samples, 4u);
}

TEST(FeatureWindow, ABurstOlderThanTheWindowDropsOut) {
  FeatureWindow w;
  w.Add(At(100 * kSec, Counts().gpu_ioctls(0)));
  w.Add(At(110 * kSec, Counts().gpu_ioctls(10000)));  // a burst between 100 s and 110 s
  // Inside the window the burst counts: baseline 100 s, 10000 ioctls in 30 s.
  EXPECT_GT(w.Compute(Now(130 * kSec), GpuClassSet()).gpu_ioctl_rate, 300);
  w.Add(At(140 * kSec, Counts().gpu_ioctls(10000)));
  w.Add(At(150 * kSec, Counts().gpu_ioctls(10000)));
  w.Add(At(160 * kSec, Counts().gpu_ioctls(10000)));
  // 30 s after it ended it no longer does: baseline 110 s, rate 0.
  const Features f = w.Compute(Now(160 * kSec), GpuClassSet());
  EXPECT_DOUBLE_EQ(f.gpu_ioctl_rate, 0);
  EXPECT_DOUBLE_EQ(f.window_seconds, 50);  // from the baseline at 110 s to 160 s
  EXPECT_EQ(f.gpu_opened, 1.0);            // lifetime: it did use the GPU
}

TEST(FeatureWindow, SamplesNoLongerNeededAreDropped) {
  FeatureWindow w;
  for (uint64_t t = 0; t <= 300; t += 10) w.Add(At(t * kSec, Counts().gpu_ioctls(t)));
  // 30 s window, 10 s apart: the baseline at 270 s plus 280, 290, 300.
  EXPECT_EQ(w.size(), 4);
  EXPECT_DOUBLE_EQ(w.Compute(Now(300 * kSec), GpuClassSet()).gpu_ioctl_rate, 1.0);
}

TEST(FeatureWindow, FrequentSamplesStayWithinTheSlotsAndStillSpanTheWindow) {
  static_assert(sizeof(FeatureWindow) <= 1024, "held per cgroup");
  FeatureWindow w;
  // 50 ioctls/s, sampled every 100 ms for 10 minutes.
  for (uint64_t t = 0; t <= 600 * kSec; t += 100 * kMs) {
    w.Add(At(t, Counts().gpu_ioctls(50 * t / kSec)));
    ASSERT_LE(w.size(), FeatureWindow::kSlots);
  }
  const Features f = w.Compute(Now(600 * kSec), GpuClassSet());
  // The baseline is the newest stored sample at or before 570 s; samples are
  // kept window / 6 = 5 s apart, so the window is 30 s to 35 s.
  EXPECT_GE(f.window_seconds, 30);
  EXPECT_LE(f.window_seconds, 35);
  EXPECT_NEAR(f.gpu_ioctl_rate, 50, 0.01);
}

TEST(FeatureWindow, ABurstRightAfterFirstSeenIsARatePerSecond) {
  FeatureWindow w;
  // CUDA init: 200 ioctls 100 ms after the cgroup appeared; one sample.
  w.Add(At(100 * kMs, Counts().opens_total(3).gpu_ioctls(200).gpu_opens(4)));
  const Features f = w.Compute(Now(100 * kMs), GpuClassSet());
  // Baseline: the cgroup's origin (all counters 0 at first_seen); the 0.1 s
  // since then is clamped to the 1 s minimum.
  EXPECT_DOUBLE_EQ(f.window_seconds, 1);
  EXPECT_DOUBLE_EQ(f.gpu_ioctl_rate, 200);
  EXPECT_EQ(f.gpu_opened, 1.0);
}

TEST(FeatureWindow, AYoungCgroupsRatesAreOverItsAge) {
  FeatureWindow w;
  w.Add(At(10 * kSec, Counts().opens_total(50).gpu_ioctls(100)));
  const Features f = w.Compute(Now(10 * kSec), GpuClassSet());
  EXPECT_DOUBLE_EQ(f.window_seconds, 10);
  EXPECT_DOUBLE_EQ(f.gpu_ioctl_rate, 10);
  EXPECT_DOUBLE_EQ(f.open_rate, 5);
}

TEST(FeatureWindow, ASingleSampleOfAnOldCgroupAveragesOverItsLifetime) {
  // The agent (re)started long after the cgroup: the origin at first_seen is
  // the only baseline; the rate is the lifetime average, not lifetime / 30 s.
  FeatureWindow w;
  w.Add(At(1000 * kSec, Counts().gpu_ioctls(1000)));
  const Features f = w.Compute(Now(1000 * kSec), GpuClassSet());
  EXPECT_DOUBLE_EQ(f.window_seconds, 1000);
  EXPECT_DOUBLE_EQ(f.gpu_ioctl_rate, 1);
}

TEST(FeatureWindow, ASingleSampleWithoutFirstSeenHasNoRate) {
  FeatureWindow w;
  w.Add(At(50 * kSec, Counts().opens_total(70).gpu_ioctls(500), /*first_seen=*/0));
  const Features f = w.Compute(Now(50 * kSec), GpuClassSet());
  EXPECT_DOUBLE_EQ(f.window_seconds, 1);
  EXPECT_DOUBLE_EQ(f.gpu_ioctl_rate, 0);
  EXPECT_DOUBLE_EQ(f.open_rate, 0);
  EXPECT_EQ(f.evidence, 570u);  // lifetime facts are still known
  EXPECT_EQ(f.gpu_opened, 1.0);
}

TEST(FeatureWindow, RatesDecayWhenNoNewSampleArrives) {
  FeatureWindow w;
  w.Add(At(100 * kSec, Counts().gpu_ioctls(0), 0));
  w.Add(At(110 * kSec, Counts().gpu_ioctls(100), 0));
  EXPECT_DOUBLE_EQ(w.Compute(Now(110 * kSec), GpuClassSet()).gpu_ioctl_rate, 10);
  EXPECT_DOUBLE_EQ(w.Compute(Now(150 * kSec), GpuClassSet()).gpu_ioctl_rate, 2);
}

TEST(FeatureWindow, NowBeforeTheNewestSampleIsTakenAsItsTime) {
  FeatureWindow w;
  w.Add(At(10 * kSec, Counts().gpu_ioctls(100)));
  EXPECT_DOUBLE_EQ(w.Compute(Now(5 * kSec), GpuClassSet()).gpu_ioctl_rate, 10);
}

TEST(FeatureWindow, ExtRatioUsesTheWindowWhenItHasEnoughOpens) {
  FeatureWindow w;
  w.Add(At(100 * kSec, Counts().other(100)));
  w.Add(At(130 * kSec, Counts().other(110).image(10)));
  const Features f = w.Compute(Now(130 * kSec), GpuClassSet());
  EXPECT_EQ(f.ext_ratio_source, RatioSource::kWindow);
  EXPECT_TRUE(f.ext_ratio_defined);
  EXPECT_EQ(f.ext_opens, 20u);
  EXPECT_EQ(f.gpu_class_opens, 10u);
  EXPECT_DOUBLE_EQ(f.ext_ratio, 0.5);  // lifetime would say 10 / 120
}

TEST(FeatureWindow, ExtRatioFallsBackToLifetimeWhenTheWindowIsQuiet) {
  FeatureWindow w;
  w.Add(At(100 * kSec, Counts().other(10).tensor(30)));
  w.Add(At(130 * kSec, Counts().other(12).tensor(32)));  // 4 opens < 5 in the window
  const Features f = w.Compute(Now(130 * kSec), GpuClassSet());
  EXPECT_EQ(f.ext_ratio_source, RatioSource::kLifetime);
  EXPECT_EQ(f.ext_opens, 44u);
  EXPECT_DOUBLE_EQ(f.ext_ratio, 32.0 / 44);
  EXPECT_EQ(RatioSourceName(f.ext_ratio_source), "lifetime");
}

TEST(FeatureWindow, ExtRatioThresholdOfWindowOpensIsConfigurable) {
  FeatureOptions o;
  o.min_ext_opens_in_window = 4;
  FeatureWindow w(o);
  w.Add(At(100 * kSec, Counts().other(10).tensor(30)));
  w.Add(At(130 * kSec, Counts().other(12).tensor(32)));
  const Features f = w.Compute(Now(130 * kSec), GpuClassSet());
  EXPECT_EQ(f.ext_ratio_source, RatioSource::kWindow);
  EXPECT_DOUBLE_EQ(f.ext_ratio, 0.5);
}

TEST(FeatureWindow, ExtRatioIsUndefinedWithoutFilesWithAnExtension) {
  FeatureWindow w;
  w.Add(At(10 * kSec, Counts().opens_total(100)));  // all without extension
  const Features f = w.Compute(Now(10 * kSec), GpuClassSet());
  EXPECT_FALSE(f.ext_ratio_defined);
  EXPECT_EQ(f.ext_ratio_source, RatioSource::kNone);
  EXPECT_DOUBLE_EQ(f.ext_ratio, 0);
}

TEST(FeatureWindow, OtherClassOpensCountInTheDenominator) {
  FeatureWindow w;
  w.Add(At(10 * kSec, Counts().opens_total(1000).other(30).image(10)));
  const Features f = w.Compute(Now(10 * kSec), GpuClassSet());
  EXPECT_DOUBLE_EQ(f.ext_ratio, 0.25);  // 960 opens without extension do not count
}

TEST(FeatureWindow, ConfiguredGpuClassesDecideWhatCountsAsGpuType) {
  FeatureWindow w;
  w.Add(At(10 * kSec, Counts().image(30).tensor(10)));
  absl::StatusOr<GpuClassSet> tensors_only = GpuClassSet::FromIds({GT_CLASS_TENSOR});
  ASSERT_TRUE(tensors_only.ok());
  EXPECT_DOUBLE_EQ(w.Compute(Now(10 * kSec), *tensors_only).ext_ratio, 0.25);
  EXPECT_DOUBLE_EQ(w.Compute(Now(10 * kSec), GpuClassSet()).ext_ratio, 1.0);
}

TEST(FeatureWindow, EvidenceIsLifetimeOpensPlusGpuOpensAndIoctls) {
  FeatureWindow w;
  w.Add(At(100 * kSec, Counts().opens_total(7).gpu_ioctls(2).gpu_opens(1)));
  w.Add(At(200 * kSec, Counts().opens_total(7).gpu_ioctls(2).gpu_opens(1)));
  const Features f = w.Compute(Now(200 * kSec), GpuClassSet());
  EXPECT_EQ(f.evidence, 10u);
  EXPECT_EQ(f.gpu_opened, 1.0);
  EXPECT_DOUBLE_EQ(f.gpu_ioctl_rate, 0);
}

TEST(FeatureWindow, GpuOpenedIsZeroForACgroupThatNeverTouchedAGpu) {
  FeatureWindow w;
  w.Add(At(10 * kSec, Counts().opens_total(500).image(500)));
  EXPECT_EQ(w.Compute(Now(10 * kSec), GpuClassSet()).gpu_opened, 0.0);
}

TEST(FeatureWindow, CountersGoingBackwardsRestartTheWindow) {
  FeatureWindow w;
  w.Add(At(100 * kSec, Counts().gpu_ioctls(1000), 0));
  w.Add(At(110 * kSec, Counts().gpu_ioctls(5), 0));  // map entry recreated
  EXPECT_EQ(w.size(), 1);
  EXPECT_DOUBLE_EQ(w.Compute(Now(110 * kSec), GpuClassSet()).gpu_ioctl_rate, 0);
  w.Add(At(120 * kSec, Counts().gpu_ioctls(105), 0));
  EXPECT_DOUBLE_EQ(w.Compute(Now(120 * kSec), GpuClassSet()).gpu_ioctl_rate, 10);
}

TEST(FeatureWindow, ANewFirstSeenRestartsTheWindow) {
  FeatureWindow w;
  w.Add(At(100 * kSec, Counts().gpu_ioctls(10)));
  w.Add(At(110 * kSec, Counts().gpu_ioctls(20), kFirstSeen + 105 * kSec));
  EXPECT_EQ(w.size(), 1);
  // Origin at 105 s: 20 ioctls in 5 s.
  EXPECT_DOUBLE_EQ(w.Compute(Now(110 * kSec), GpuClassSet()).gpu_ioctl_rate, 4);
}

TEST(FeatureWindow, AnOutOfOrderSampleIsIgnored) {
  FeatureWindow w;
  w.Add(At(120 * kSec, Counts().gpu_ioctls(120)));
  w.Add(At(110 * kSec, Counts().gpu_ioctls(110)));
  EXPECT_EQ(w.size(), 1);
  EXPECT_DOUBLE_EQ(w.Compute(Now(120 * kSec), GpuClassSet()).gpu_ioctl_rate, 1);
}

TEST(FeatureWindow, NoSamplesGiveZeroFeatures) {
  const Features f = FeatureWindow().Compute(Now(0), GpuClassSet());
  EXPECT_EQ(f.samples, 0u);
  EXPECT_EQ(f.evidence, 0u);
  EXPECT_DOUBLE_EQ(f.gpu_ioctl_rate, 0);
  EXPECT_FALSE(f.ext_ratio_defined);
}

TEST(FeatureWindow, AShorterWindowForgetsSooner) {
  FeatureOptions o;
  o.window = absl::Seconds(5);
  FeatureWindow w(o);
  w.Add(At(100 * kSec, Counts().gpu_ioctls(0)));
  w.Add(At(101 * kSec, Counts().gpu_ioctls(500)));
  w.Add(At(110 * kSec, Counts().gpu_ioctls(500)));
  EXPECT_DOUBLE_EQ(w.Compute(Now(110 * kSec), GpuClassSet()).gpu_ioctl_rate, 0);
}

TEST(ModelInputs, ApplyTheDocumentedTransform) {
  Features f;
  f.gpu_ioctl_rate = std::exp(1.0) - 1;            // log1p -> 1
  f.gpu_opened = 1;
  f.ext_ratio = 0.25;
  f.open_rate = std::exp(3.0) - 1;                 // log1p -> 3
  f.write_rate = 1024 * (std::exp(2.0) - 1);       // log1p(KiB/s) -> 2
  const std::vector<double> x = ModelInputs(f);
  ASSERT_EQ(x.size(), kModelInputCount);
  EXPECT_NEAR(x[0], 1, 1e-12);
  EXPECT_EQ(x[1], 1);
  EXPECT_EQ(x[2], 0.25);
  EXPECT_NEAR(x[3], 3, 1e-12);
  EXPECT_NEAR(x[4], 2, 1e-12);
  EXPECT_EQ(ModelInputNames()[0], "log1p_gpu_ioctl_rate");
  EXPECT_EQ(ModelInputNames()[4], "log1p_write_kib_rate");
}

}  // namespace
}  // namespace gputier
