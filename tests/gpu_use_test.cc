// GPU use that holds for steady GPU jobs: held GPU contexts (the proc scan's
// pure parts), DRM client usage stats (fdinfo), the GPU busy share, and the
// rule and features that use them. No root, no GPU.
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gputier/abi.h"
#include "gtest/gtest.h"
#include "loader/config/config.h"
#include "loader/gpu_use/drm_fdinfo.h"
#include "loader/gpu_use/gpu_context.h"
#include "loader/gpu_use/nvml.h"
#include "policy/classifier.h"
#include "policy/features.h"
#include "policy/rule.h"
#include "policy/trainer.h"

namespace gputier {
namespace {

constexpr uint64_t kSec = 1000000000ull;

// ---- The rule at the new thresholds ----------------------------------------

struct GpuUseCase {
  const char* name;
  double gpu_ioctl_rate;
  double busy_share;  // < 0: not measured
  double contexts_held;
  double last_used_windows;  // < 0: never used
  double context_recent;     // as FeatureWindow computes it
  Verdict expected;
};

// Defaults: gpu_ioctl_rate 1/s, gpu_busy_share 0.05, ext_ratio 0.3; the
// cgroup reads only tensors (ext_ratio 1), so GPU use means GPU.
const GpuUseCase kGpuUseCases[] = {
    {"HeldRecentlyUsedContextKeepsGpuWithIoctlRateZero", 0, -1, 23, 2, 1, Verdict::kGpu},
    {"HeldContextUnusedForMoreThanNWindowsIsCpu", 0, -1, 23, 11, 0, Verdict::kCpu},
    {"BusyShareAloneMakesGpu", 0, 0.41, 0, -1, 0, Verdict::kGpu},
    {"BusyShareExactlyAtThresholdIsGpu", 0, 0.05, 0, -1, 0, Verdict::kGpu},
    {"BusyShareJustBelowThresholdIsCpu", 0, std::nextafter(0.05, 0.0), 0, -1, 0, Verdict::kCpu},
    {"MeasuredIdleGpuWithoutContextIsCpu", 0, 0, 0, -1, 0, Verdict::kCpu},
    {"IoctlRateAloneStillMakesGpu", 5, -1, 0, -1, 0, Verdict::kGpu},
    {"NoGpuUseAtAllIsCpu", 0, -1, 0, -1, 0, Verdict::kCpu},
};

Features GpuUseFeatures(const GpuUseCase& c) {
  Features f;
  f.gpu_ioctl_rate = c.gpu_ioctl_rate;
  f.gpu_opened = 1;
  f.ext_ratio = 1;
  f.ext_ratio_defined = true;
  f.evidence = 5000;
  f.gpu_busy_share_defined = c.busy_share >= 0;
  f.gpu_busy_share = c.busy_share >= 0 ? c.busy_share : 0;
  f.gpu_busy_source = c.busy_share >= 0 ? BusySource::kNvml : BusySource::kNone;
  f.gpu_contexts_held = c.contexts_held;
  f.gpu_contexts_known = true;
  f.context_last_used_defined = c.last_used_windows >= 0;
  f.context_last_used_windows = c.last_used_windows >= 0 ? c.last_used_windows : 0;
  f.gpu_context_recent = c.context_recent;
  return f;
}

class GpuUseRuleTest : public testing::TestWithParam<GpuUseCase> {};

TEST_P(GpuUseRuleTest, GivesTheExpectedVerdict) {
  const GpuUseCase& c = GetParam();
  const RuleExplanation e = EvaluateRule(GpuUseFeatures(c), RuleThresholds());
  EXPECT_EQ(e.verdict, c.expected) << VerdictName(e.verdict) << ": " << e.reason;
  ASSERT_EQ(e.checks.size(), 6u);
  EXPECT_EQ(e.checks[4].feature, "gpu_busy_share");
  EXPECT_EQ(e.checks[4].defined, c.busy_share >= 0);
  EXPECT_EQ(e.checks[5].feature, "gpu_context_recent");
}

INSTANTIATE_TEST_SUITE_P(Table, GpuUseRuleTest, testing::ValuesIn(kGpuUseCases),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(GpuUseRule, ReasonsNameTheEvidenceAndItsSource) {
  const RuleThresholds t;
  EXPECT_EQ(EvaluateRule(GpuUseFeatures(kGpuUseCases[0]), t).reason,
            "23 GPU contexts are held and were last used 2 windows ago and ext_ratio 1 is at or "
            "above 0.3: gpu");
  EXPECT_EQ(EvaluateRule(GpuUseFeatures(kGpuUseCases[2]), t).reason,
            "gpu_busy_share 0.41 (nvml) is at or above 0.05 and ext_ratio 1 is at or above 0.3: gpu");
  EXPECT_EQ(EvaluateRule(GpuUseFeatures(kGpuUseCases[1]), t).reason,
            "gpu_ioctl_rate 0/s is below 1/s, its 23 held GPU contexts were last used 11 windows "
            "ago: cpu, whatever the files it opens");
  // A context alone decides at 750: in use, but not how much.
  EXPECT_EQ(EvaluateRule(GpuUseFeatures(kGpuUseCases[0]), t).confidence_permille, 750);
}

TEST(GpuUseRule, BusyShareThresholdIsValidated) {
  RuleThresholds t;
  t.gpu_busy_share = 0;
  EXPECT_TRUE(absl::StrContains(ValidateThresholds(t).message(), "policy.thresholds.gpu_busy_share"));
  t.gpu_busy_share = std::numeric_limits<double>::quiet_NaN();
  EXPECT_FALSE(ValidateThresholds(t).ok());
  t.gpu_busy_share = 0.05;
  EXPECT_TRUE(ValidateThresholds(t).ok());
}

// ---- Features: when a held context was last used ---------------------------

CounterSample Sample(uint64_t t_ns, uint64_t gpu_ioctls) {
  CounterSample s;
  s.mono_ns = t_ns;
  s.stats.first_seen_ns = 1;
  s.stats.gpu_opens = 3;
  s.stats.gpu_ioctls = gpu_ioctls;
  s.stats.gpu_first_ns = gpu_ioctls > 0 ? 2 * kSec : 0;
  s.stats.opens_total = 100;
  return s;
}

TEST(GpuUseFeatures, HeldContextIsRecentForNWindowsAfterTheLastIoctls) {
  FeatureOptions o;
  o.window = absl::Seconds(3);
  o.gpu_context_used_windows = 2;
  FeatureWindow w(o);
  GpuUsageSample held;
  held.contexts_held = 4;
  held.contexts_known = true;
  w.Add(Sample(2 * kSec, 400));  // the creation burst
  w.AddUsage(2 * kSec, held);
  Features f = w.Compute(2 * kSec, GpuClassSet());
  EXPECT_EQ(f.gpu_context_recent, 1.0);
  EXPECT_EQ(f.gpu_contexts_held, 4);
  // No ioctl since: 6 s later is 2 windows, still within.
  for (uint64_t t = 3; t <= 8; ++t) w.Add(Sample(t * kSec, 400));
  f = w.Compute(8 * kSec, GpuClassSet());
  EXPECT_DOUBLE_EQ(f.context_last_used_windows, 2.0);
  EXPECT_EQ(f.gpu_context_recent, 1.0);
  f = w.Compute(9 * kSec, GpuClassSet());
  EXPECT_EQ(f.gpu_context_recent, 0.0) << f.context_last_used_windows;
  // A few ioctls make it recent again.
  w.Add(Sample(10 * kSec, 406));
  f = w.Compute(10 * kSec, GpuClassSet());
  EXPECT_EQ(f.context_last_used_windows, 0.0);
  EXPECT_EQ(f.gpu_context_recent, 1.0);
  // The fds closed: nothing held, nothing recent.
  w.AddUsage(10 * kSec, GpuUsageSample{0, true});
  EXPECT_EQ(w.Compute(10 * kSec, GpuClassSet()).gpu_context_recent, 0.0);
}

TEST(GpuUseFeatures, BusyShareAboveZeroCountsAsUse) {
  FeatureOptions o;
  o.window = absl::Seconds(3);
  o.gpu_context_used_windows = 1;
  FeatureWindow w(o);
  w.Add(Sample(2 * kSec, 10));
  GpuUsageSample s;
  s.contexts_held = 2;
  s.contexts_known = true;
  s.busy_share = 0.3;
  s.busy_source = BusySource::kDrm;
  w.Add(Sample(20 * kSec, 10));
  w.AddUsage(20 * kSec, s);
  const Features f = w.Compute(20 * kSec, GpuClassSet());
  EXPECT_TRUE(f.gpu_busy_share_defined);
  EXPECT_DOUBLE_EQ(f.gpu_busy_share, 0.3);
  EXPECT_EQ(f.gpu_busy_source, BusySource::kDrm);
  EXPECT_EQ(f.gpu_context_recent, 1.0);
}

TEST(GpuUseFeatures, AFreshSampleDatesTheLastUseAtTheFirstGpuAccessNotNow) {
  FeatureOptions o;
  o.window = absl::Seconds(3);
  o.gpu_context_used_windows = 2;
  FeatureWindow w(o);
  w.Add(Sample(100 * kSec, 400));  // an agent restart long after the burst at 2 s
  w.AddUsage(100 * kSec, GpuUsageSample{5, true});
  const Features f = w.Compute(100 * kSec, GpuClassSet());
  EXPECT_NEAR(f.context_last_used_windows, 98.0 / 3.0, 1e-9);
  EXPECT_EQ(f.gpu_context_recent, 0.0);
}

TEST(GpuUseFeatures, ContextWindowsOptionIsValidated) {
  FeatureOptions o;
  o.gpu_context_used_windows = 0;
  EXPECT_TRUE(absl::StrContains(ValidateFeatureOptions(o).message(), "policy.gpu_context_used_windows"));
}

TEST(GpuUseModel, InputsIncludeBusyShareAndRecentContext) {
  Features f;
  f.gpu_busy_share = 0.4;
  f.gpu_context_recent = 1;
  const std::vector<double> x = ModelInputs(f);
  ASSERT_EQ(x.size(), 7u);
  EXPECT_EQ(ModelInputNames()[5], "gpu_busy_share");
  EXPECT_EQ(ModelInputNames()[6], "gpu_context_recent");
  EXPECT_DOUBLE_EQ(x[5], 0.4);
  EXPECT_DOUBLE_EQ(x[6], 1.0);
}

TEST(GpuUseModel, AModelOverTheOldFiveInputsIsRefused) {
  std::vector<LabelledRow> rows;
  for (int i = 0; i < 6; ++i) {
    rows.push_back({{1.0 * i, 1, 0.5, 1, 1}, Verdict::kGpu, 1.0});
    rows.push_back({{0.0, 0, 0.1 * i, 2, 1}, Verdict::kCpu, 1.0});
    rows.push_back({{2.0, 1, 0.05 * i, 1, 2}, Verdict::kMixed, 1.0});
  }
  absl::StatusOr<NaiveBayesModel> old = NaiveBayesModel::Fit(
      rows, {"log1p_gpu_ioctl_rate", "gpu_opened", "ext_ratio", "log1p_open_rate", "log1p_write_kib_rate"}, 1, 0);
  ASSERT_TRUE(old.ok()) << old.status();
  const absl::Status s = CheckModelInputs(*old);
  EXPECT_FALSE(s.ok());
  EXPECT_TRUE(absl::StrContains(s.message(), "gpu_context_recent")) << s;
}

// ---- DRM fdinfo --------------------------------------------------------------

TEST(DrmFdinfo, ParsesTheDocumentedKeys) {
  const DrmClientUsage u = ParseDrmFdinfo(
      "pos:\t0\nflags:\t02100002\nmnt_id:\t26\nino:\t1092\n"
      "drm-driver:\ti915\n"
      "drm-pdev:\t0000:00:02.0\n"
      "drm-client-id:\t7\n"
      "drm-engine-render:\t9288864723 ns\n"
      "drm-engine-copy:\t2035071108 ns\n"
      "drm-engine-video:\t0 ns\n"
      "drm-engine-capacity-video:\t2\n"
      "drm-cycles-render:\t123\n"
      "drm-total-cycles-render:\t456\n"
      "drm-total-system:\t4 MiB\n"
      "drm-total-local0:\t512 KiB\n"
      "drm-shared-system:\t0\n"
      "drm-resident-system:\t3 MiB\n"
      "drm-resident-local0:\t1024\n"
      "drm-purgeable-system:\t0\n"
      "drm-active-system:\t0\n"
      "i915-query-stat:\t3\n");
  EXPECT_TRUE(u.has_usage());
  EXPECT_EQ(u.driver, "i915");
  EXPECT_EQ(u.pdev, "0000:00:02.0");
  EXPECT_EQ(u.client_id, 7u);
  ASSERT_EQ(u.engines.size(), 3u);
  EXPECT_EQ(u.engines[0].name, "render");
  EXPECT_EQ(u.engines[0].busy_ns, 9288864723u);
  EXPECT_EQ(u.engines[1].name, "copy");
  EXPECT_EQ(u.engines[2].capacity, 2u);
  EXPECT_EQ(u.total_bytes, 4u * 1024 * 1024 + 512 * 1024);
  EXPECT_EQ(u.resident_bytes, 3u * 1024 * 1024 + 1024);
}

TEST(DrmFdinfo, OlderMemoryKeyCountsAsResident) {
  const DrmClientUsage u = ParseDrmFdinfo("drm-driver: amdgpu\ndrm-client-id: 3\ndrm-memory-vram: 2048 KiB\n");
  EXPECT_EQ(u.resident_bytes, 2048u * 1024);
}

struct GarbageCase {
  const char* name;
  const char* text;
};

const GarbageCase kGarbage[] = {
    {"Empty", ""},
    {"VgemHasNoDrmKeys", "pos:\t0\nflags:\t02100002\nmnt_id:\t26\nino:\t5\n"},
    {"NoClientId", "drm-driver:\txe\ndrm-engine-rcs:\t100 ns\n"},
    {"NegativeClientId", "drm-driver:\txe\ndrm-client-id:\t-1\n"},
    {"BinaryNoise", "drm-\xff\xfe:\x01\ndrm-driver\n:::\n\n\n"},
    {"ClientIdNotANumber", "drm-driver: x\ndrm-client-id: seven\n"},
};

class DrmFdinfoGarbageTest : public testing::TestWithParam<GarbageCase> {};

TEST_P(DrmFdinfoGarbageTest, HasNoUsage) {
  EXPECT_FALSE(ParseDrmFdinfo(GetParam().text).has_usage());
}

INSTANTIATE_TEST_SUITE_P(Table, DrmFdinfoGarbageTest, testing::ValuesIn(kGarbage),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(DrmFdinfo, BadValuesAreIgnoredNotTrusted) {
  const DrmClientUsage u = ParseDrmFdinfo(
      "drm-driver: i915\ndrm-client-id: 1\n"
      "drm-engine-render: 12 us\n"          // not ns
      "drm-engine-copy: 18446744073709551616 ns\n"  // overflows
      "drm-engine-video: 5\n"               // no unit
      "drm-total-system: 99999999999999999 MiB\n"  // overflows in bytes
      "drm-resident-system: 7 PiB\n");     // unknown unit
  EXPECT_TRUE(u.has_usage());
  EXPECT_TRUE(u.engines.empty());
  EXPECT_EQ(u.total_bytes, 0u);
  EXPECT_EQ(u.resident_bytes, 0u);
}

TEST(DrmFdinfo, EnginesAreBounded) {
  std::string text = "drm-driver: x\ndrm-client-id: 1\n";
  for (int i = 0; i < 100; ++i) text += "drm-engine-e" + std::to_string(i) + ": 1 ns\n";
  EXPECT_EQ(ParseDrmFdinfo(text).engines.size(), kMaxDrmEngines);
}

DrmClientUsage Client(uint64_t id, uint64_t render_ns, uint64_t copy_ns = 0) {
  DrmClientUsage c;
  c.driver = "i915";
  c.client_id = id;
  c.engines = {{"render", render_ns, 1}, {"copy", copy_ns, 1}};
  return c;
}

TEST(DrmBusy, ShareIsTheBusiestEngineSummedOverClientsEachOnce) {
  DrmBusyTracker t;
  EXPECT_FALSE(t.Update(1 * kSec, {Client(1, 0), Client(2, 0)}).has_value());  // no baseline
  // Over 1 s: client 1 +0.3 s render, client 2 +0.2 s render; client 1 seen
  // through two fds (dup) counts once.
  std::optional<double> share =
      t.Update(2 * kSec, {Client(1, 300000000), Client(1, 300000000), Client(2, 200000000, 100000000)});
  ASSERT_TRUE(share.has_value());
  EXPECT_NEAR(*share, 0.5, 1e-9);
  // Nothing more: 0, measured.
  share = t.Update(3 * kSec, {Client(1, 300000000), Client(2, 200000000, 100000000)});
  ASSERT_TRUE(share.has_value());
  EXPECT_EQ(*share, 0.0);
  // No DRM client with engine times: unknown.
  EXPECT_FALSE(t.Update(4 * kSec, {}).has_value());
}

TEST(DrmBusy, CapacityDividesTheShare) {
  DrmBusyTracker t;
  DrmClientUsage c = Client(1, 0);
  c.engines[0].capacity = 2;
  t.Update(1 * kSec, {c});
  c.engines[0].busy_ns = 1000000000;  // 1 s busy of 2 engines over 1 s
  EXPECT_NEAR(*t.Update(2 * kSec, {c}), 0.5, 1e-9);
}

// ---- The proc scan's pure parts -------------------------------------------------

TEST(GpuContextMatch, SelectorsMatchLikeTheBpfMap) {
  const GpuDeviceMatcher m({{195, GT_MINOR_ANY}, {226, 128}, {1, 7}});
  EXPECT_TRUE(m.Matches(195, 0));
  EXPECT_TRUE(m.Matches(195, 255));
  EXPECT_TRUE(m.Matches(226, 128));
  EXPECT_FALSE(m.Matches(226, 0));
  EXPECT_TRUE(m.Matches(1, 7));
  EXPECT_FALSE(m.Matches(1, 3));  // /dev/null
  EXPECT_TRUE(GpuDeviceMatcher().empty());
}

TEST(GpuContextTally, CountsFdsPerDeviceAndDrmClientsOnce) {
  std::vector<GpuFd> fds;
  for (int i = 0; i < 20; ++i) fds.push_back({100, 10 + i, 195, 0, "/dev/nvidia0", std::nullopt});
  fds.push_back({100, 40, 195, 255, "/dev/nvidiactl", std::nullopt});
  fds.push_back({100, 41, 511, 0, "/dev/nvidia-uvm", std::nullopt});
  fds.push_back({101, 42, 511, 0, "/dev/nvidia-uvm", std::nullopt});
  DrmClientUsage c = Client(9, 5);
  c.resident_bytes = 4096;
  fds.push_back({101, 43, 226, 128, "/dev/dri/renderD128", c});
  fds.push_back({102, 44, 226, 128, "/dev/dri/renderD128", c});  // inherited over fork
  const GpuContextTally t = TallyGpuFds(fds);
  EXPECT_EQ(t.contexts_held, 25u);
  EXPECT_EQ(t.processes, 3u);
  ASSERT_EQ(t.drm_clients.size(), 1u);
  EXPECT_EQ(t.drm_resident_bytes, 4096u);
  EXPECT_EQ(DescribeByDevice(t),
            "/dev/nvidia0 x20, /dev/dri/renderD128 x2, /dev/nvidia-uvm x2, /dev/nvidiactl x1");
  EXPECT_EQ(DescribeByDevice(t, 1), "/dev/nvidia0 x20, +3 more");
}

TEST(GpuContextTally, LabelsAreSafeForLogsAndJson) {
  EXPECT_EQ(FdLabel("/dev/nvidia0", 195, 0), "/dev/nvidia0");
  EXPECT_EQ(FdLabel("", 1, 7), "char 1:7");
  EXPECT_EQ(FdLabel("/tmp/\n\x1b[31mx", 1, 7), "/tmp/??[31mx");
  EXPECT_EQ(FdLabel(std::string(300, 'a'), 1, 7).size(), 64u);
}

TEST(GpuContextTally, CgroupV2PathComesFromTheZeroLine) {
  EXPECT_EQ(CgroupV2PathOf("12:cpu:/x\n0::/kubepods/pod1/abc\n"), "/kubepods/pod1/abc");
  EXPECT_EQ(CgroupV2PathOf("0::/\n"), "/");
  EXPECT_FALSE(CgroupV2PathOf("1:name=systemd:/x\n").has_value());
  EXPECT_FALSE(CgroupV2PathOf("0::relative\n").has_value());
}

// ---- NVML: absent library ------------------------------------------------------

TEST(Nvml, AbsentLibraryIsAFeatureAbsentWithAReason) {
  std::string why;
  std::unique_ptr<NvmlSource> nvml = NvmlSource::Open("libgputier-no-such-nvml.so.1", &why);
  EXPECT_EQ(nvml, nullptr);
  EXPECT_TRUE(absl::StrContains(why, "libgputier-no-such-nvml.so.1 is not on this node")) << why;
}

TEST(Nvml, ALibraryWithoutNvmlSymbolsIsRefused) {
  std::string why;
  std::unique_ptr<NvmlSource> nvml = NvmlSource::Open("libc.so.6", &why);
  EXPECT_EQ(nvml, nullptr);
  EXPECT_TRUE(absl::StrContains(why, "lacks nvmlInit")) << why;
}

// ---- Config keys ---------------------------------------------------------------

TEST(GpuUseConfig, NewKeysAreReadAndValidated) {
  absl::StatusOr<Config> c = ParseConfig(
      "policy:\n  gpu_context_used_windows: 4\n  thresholds: {gpu_busy_share: 0.2}\n", "t.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->policy.gpu_context_used_windows, 4u);
  EXPECT_DOUBLE_EQ(c->policy.gpu_busy_share, 0.2);
  EXPECT_EQ(DefaultConfig().policy.gpu_context_used_windows, 10u);
  EXPECT_DOUBLE_EQ(DefaultConfig().policy.gpu_busy_share, 0.05);

  absl::StatusOr<Config> zero = ParseConfig("policy:\n  thresholds: {gpu_busy_share: 0}\n", "t.yaml");
  ASSERT_FALSE(zero.ok());
  EXPECT_TRUE(absl::StrContains(zero.status().message(), "policy.thresholds.gpu_busy_share")) << zero.status();
  absl::StatusOr<Config> windows = ParseConfig("policy:\n  gpu_context_used_windows: 0\n", "t.yaml");
  ASSERT_FALSE(windows.ok());
  EXPECT_TRUE(absl::StrContains(windows.status().message(), "policy.gpu_context_used_windows"))
      << windows.status();
  absl::StatusOr<Config> text = ParseConfig("policy:\n  thresholds: {gpu_busy_share: lots}\n", "t.yaml");
  ASSERT_FALSE(text.ok());
  EXPECT_TRUE(absl::StrContains(text.status().message(), "not a number")) << text.status();
}

}  // namespace
}  // namespace gputier
