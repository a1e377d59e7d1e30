// The metric families built from a snapshot (loader/metrics/metrics.h): pure, no root.
#include "loader/metrics/metrics.h"

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace gputier {
namespace {

using Labels = std::map<std::string, std::string>;

const prometheus::MetricFamily* Family(const std::vector<prometheus::MetricFamily>& families,
                                       const std::string& name) {
  for (const prometheus::MetricFamily& f : families) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

// The metric of `name` whose labels include every one of `want`, or null.
const prometheus::ClientMetric* Find(const std::vector<prometheus::MetricFamily>& families,
                                     const std::string& name, const Labels& want) {
  const prometheus::MetricFamily* f = Family(families, name);
  if (f == nullptr) return nullptr;
  for (const prometheus::ClientMetric& m : f->metric) {
    size_t matched = 0;
    for (const auto& l : m.label) {
      auto it = want.find(l.name);
      if (it != want.end() && it->second == l.value) ++matched;
    }
    if (matched == want.size()) return &m;
  }
  return nullptr;
}

double GaugeOf(const std::vector<prometheus::MetricFamily>& families, const std::string& name,
               const Labels& want) {
  const prometheus::ClientMetric* m = Find(families, name, want);
  return m == nullptr ? -1 : m->gauge.value;
}

double CounterOf(const std::vector<prometheus::MetricFamily>& families, const std::string& name,
                 const Labels& want) {
  const prometheus::ClientMetric* m = Find(families, name, want);
  return m == nullptr ? -1 : m->counter.value;
}

ContainerSample Container(const std::string& id, const std::string& verdict, uint64_t ioctls = 0) {
  ContainerSample c;
  c.container_id = id;
  c.verdict = verdict;
  c.confidence = 0.9;
  c.gpu_ioctls = ioctls;
  c.opens_by_class = {{"tensor", 5}, {"other", 1}};
  return c;
}

// Independent of SafeLabelValue: a strict UTF-8 check.
bool ValidUtf8(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = s[i];
    size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    }
    if (n == 2 && c < 0xC2) return false;  // overlong
    i += n;
  }
  return true;
}

TEST(MetricFamilies, VerdictIsOneHot) {
  for (const char* verdict : {"unknown", "cpu", "gpu", "mixed"}) {
    MetricsSnapshot s;
    s.containers = {Container("c1", verdict)};
    std::vector<prometheus::MetricFamily> f = BuildMetricFamilies(s, 1000);
    double sum = 0;
    for (const char* v : {"unknown", "cpu", "gpu", "mixed"}) {
      const double value = GaugeOf(f, "gputier_container_verdict", {{"container", "c1"}, {"verdict", v}});
      ASSERT_GE(value, 0) << verdict << " has no series for " << v;
      EXPECT_EQ(value, std::string(v) == verdict ? 1 : 0) << verdict << " vs " << v;
      sum += value;
    }
    EXPECT_EQ(sum, 1) << verdict;
  }
}

TEST(MetricFamilies, TierIsOneHotAndOnlyForTieredContainers) {
  MetricsSnapshot s;
  s.containers = {Container("tiered", "gpu"), Container("plain", "cpu")};
  s.containers[0].tier = "fast";
  s.containers[0].bytes_fast = 4096;
  s.containers[0].promotions = 2;
  std::vector<prometheus::MetricFamily> f = BuildMetricFamilies(s, 1000);
  EXPECT_EQ(GaugeOf(f, "gputier_container_tier", {{"container", "tiered"}, {"tier", "fast"}}), 1);
  EXPECT_EQ(GaugeOf(f, "gputier_container_tier", {{"container", "tiered"}, {"tier", "slow"}}), 0);
  EXPECT_EQ(GaugeOf(f, "gputier_container_tier", {{"container", "tiered"}, {"tier", "mixed"}}), 0);
  EXPECT_EQ(GaugeOf(f, "gputier_container_tier_bytes", {{"container", "tiered"}, {"tier", "fast"}}), 4096);
  EXPECT_EQ(CounterOf(f, "gputier_container_promotions_total", {{"container", "tiered"}}), 2);
  EXPECT_EQ(Find(f, "gputier_container_tier", {{"container", "plain"}}), nullptr);
}

struct BoundCase {
  const char* description;
  int gpu_containers;
  int cpu_containers;
  uint32_t max_containers;
  int want_own;
  int want_other;
};

TEST(MetricFamilies, ContainersPastTheBoundAreSummedIntoOther) {
  const BoundCase kCases[] = {
      {"under the bound", 1, 1, 3, 2, 0},
      {"exactly at the bound", 2, 1, 3, 3, 0},
      {"one past the bound", 2, 2, 3, 3, 1},
      {"far past the bound", 3, 10, 2, 2, 11},
      {"a bound of one", 0, 5, 1, 1, 4},
  };
  for (const BoundCase& c : kCases) {
    MetricsSnapshot s;
    for (int i = 0; i < c.cpu_containers; ++i) s.containers.push_back(Container(absl::StrCat("a-cpu", i), "cpu", 1));
    for (int i = 0; i < c.gpu_containers; ++i) s.containers.push_back(Container(absl::StrCat("z-gpu", i), "gpu", 100));
    std::vector<prometheus::MetricFamily> f = BuildMetricFamilies(s, c.max_containers);
    EXPECT_EQ(GaugeOf(f, "gputier_containers", {{"series", "own"}}), c.want_own) << c.description;
    EXPECT_EQ(GaugeOf(f, "gputier_containers", {{"series", "other"}}), c.want_other) << c.description;
    // One gpu_ioctls series per own container, plus _other when needed.
    EXPECT_EQ(Family(f, "gputier_container_gpu_ioctls_total")->metric.size(),
              static_cast<size_t>(c.want_own + (c.want_other > 0 ? 1 : 0)))
        << c.description;
    // GPU containers keep their own series first, whatever their ids.
    for (int i = 0; i < std::min<int>(c.gpu_containers, c.max_containers); ++i) {
      EXPECT_EQ(CounterOf(f, "gputier_container_gpu_ioctls_total", {{"container", absl::StrCat("z-gpu", i)}}), 100)
          << c.description;
    }
    // Nothing is lost: the counters over every series add up.
    double ioctls = 0, tensor_opens = 0;
    for (const auto& m : Family(f, "gputier_container_gpu_ioctls_total")->metric) ioctls += m.counter.value;
    for (const auto& m : Family(f, "gputier_container_opens_total")->metric) {
      for (const auto& l : m.label) {
        if (l.name == "class" && l.value == "tensor") tensor_opens += m.counter.value;
      }
    }
    EXPECT_EQ(ioctls, 100 * c.gpu_containers + c.cpu_containers) << c.description;
    EXPECT_EQ(tensor_opens, 5 * (c.gpu_containers + c.cpu_containers)) << c.description;
    if (c.want_other > 0) {
      // _other's verdict series count its containers by verdict.
      double counted = 0;
      for (const char* v : {"unknown", "cpu", "gpu", "mixed"}) {
        counted += GaugeOf(f, "gputier_container_verdict", {{"container", "_other"}, {"verdict", v}});
      }
      EXPECT_EQ(counted, c.want_other) << c.description;
    } else {
      EXPECT_EQ(Find(f, "gputier_container_verdict", {{"container", "_other"}}), nullptr) << c.description;
    }
  }
}

TEST(MetricFamilies, NoLabelCarriesAPath) {
  // Rows as the classifier and the tier manager give them: with cgroup paths.
  nlohmann::json rows = nlohmann::json::array();
  rows.push_back({{"cgroup_id", 7}, {"cgroup_path", "/kubepods/besteffort/pod1/abc"}, {"container_id", "abc"},
                  {"verdict", "gpu"}, {"confidence", 800}});
  rows.push_back({{"cgroup_id", 8}, {"cgroup_path", "/system.slice/ssh.service"}, {"container_id", nullptr},
                  {"verdict", "cpu"}, {"confidence", 1000}});
  nlohmann::json tiering = {{"tiers", {{"fast_root", "/mnt/nvme/gputier"}}},
                            {"containers",
                             {{{"container_id", "abc"}, {"cgroup", "/kubepods/besteffort/pod1/abc"},
                               {"tier", "fast"}, {"paths", {{"/data", "fast"}}}, {"bytes_fast", 10},
                               {"promotions", 1}}}}};
  gt_cgroup_stats stats = {};
  stats.gpu_ioctls = 3;
  stats.opens_by_class[GT_CLASS_TENSOR] = 4;
  stats.opens_noext = 2;
  CgroupCounters counters = {{7, stats}, {8, stats}};
  ClassNames names;
  names[GT_CLASS_TENSOR] = "tensor";
  names[GT_CLASS_OTHER] = "other";
  MetricsSnapshot s;
  s.mode = "tracepoint";
  s.enforcement = "off";
  s.containers = ContainerSamples(rows, tiering, counters, names);
  ASSERT_EQ(s.containers.size(), 1u);  // the host cgroup is not a container
  EXPECT_EQ(s.containers[0].tier, "fast");
  EXPECT_EQ(s.containers[0].promotions, 1u);
  s.programs = {{"/sys/fs/bpf/x", 1, 1}};  // even a hostile name
  std::vector<prometheus::MetricFamily> f = BuildMetricFamilies(s, 1000);
  EXPECT_EQ(CounterOf(f, "gputier_container_gpu_ioctls_total", {{"container", "abc"}}), 3);
  EXPECT_EQ(CounterOf(f, "gputier_container_opens_total", {{"container", "abc"}, {"class", "tensor"}}), 4);
  EXPECT_EQ(CounterOf(f, "gputier_container_opens_total", {{"container", "abc"}, {"class", "none"}}), 2);
  EXPECT_EQ(GaugeOf(f, "gputier_container_verdict_confidence", {{"container", "abc"}}), 0.8);
  for (const prometheus::MetricFamily& family : f) {
    for (const prometheus::ClientMetric& m : family.metric) {
      std::set<std::string> names_seen;
      for (const auto& l : m.label) {
        names_seen.insert(l.name);
        if (l.name == "program") continue;  // a program name, checked by the kernel's rules
        EXPECT_FALSE(absl::StrContains(l.value, '/')) << family.name << " " << l.name << "=" << l.value;
      }
      if (absl::StartsWith(family.name, "gputier_container_")) {
        EXPECT_TRUE(names_seen.count("container") && names_seen.count("pod") && names_seen.count("namespace"))
            << family.name;
        for (const std::string& n : names_seen) {
          EXPECT_TRUE(n == "container" || n == "container_name" || n == "pod" || n == "namespace" ||
                      n == "verdict" || n == "tier" || n == "class")
              << family.name << " has label " << n;
        }
      }
    }
  }
}

TEST(MetricFamilies, AContainersNameFillsItsPodNamespaceAndContainerNameLabels) {
  nlohmann::json rows = nlohmann::json::array();
  rows.push_back({{"cgroup_id", 7}, {"container_id", "abc0123456789"}, {"name", "team-a/trainer-0/worker"},
                  {"verdict", "gpu"}, {"confidence", 800}});
  rows.push_back({{"cgroup_id", 8}, {"container_id", "def0123456789"}, {"name", "ingest"},
                  {"verdict", "cpu"}, {"confidence", 900}});
  rows.push_back({{"cgroup_id", 9}, {"container_id", "0123456789abcdef"}, {"name", "0123456789ab"},
                  {"verdict", "cpu"}, {"confidence", 900}});
  MetricsSnapshot s;
  s.containers = ContainerSamples(rows, nlohmann::json::object(), {}, ClassNames{});
  std::vector<prometheus::MetricFamily> f = BuildMetricFamilies(s, 1000);
  EXPECT_EQ(GaugeOf(f, "gputier_container_verdict_confidence",
                    {{"container", "abc0123456789"}, {"namespace", "team-a"}, {"pod", "trainer-0"},
                     {"container_name", "worker"}}),
            0.8);
  EXPECT_EQ(GaugeOf(f, "gputier_container_verdict_confidence",
                    {{"container", "def0123456789"}, {"namespace", ""}, {"pod", ""}, {"container_name", "ingest"}}),
            0.9);
  // Only the short id: no name.
  EXPECT_EQ(GaugeOf(f, "gputier_container_verdict_confidence",
                    {{"container", "0123456789abcdef"}, {"container_name", ""}}),
            0.9);
}

TEST(MetricFamilies, InvalidUtf8InAContainerIdIsReplacedNotPassedOn) {
  MetricsSnapshot s;
  const std::string hostile = std::string("bad\xff\xfe", 5) + "id\"\n\\" + std::string("\xc3\x28", 2) +
                              std::string("\xe2\x82", 2);  // a truncated 3-byte sequence
  s.containers = {Container(hostile, "gpu"), Container(std::string(300, 'x'), "cpu")};
  std::vector<prometheus::MetricFamily> f = BuildMetricFamilies(s, 1000);
  const std::string text = SerializeMetrics(f);
  EXPECT_TRUE(ValidUtf8(text));
  EXPECT_TRUE(absl::StrContains(text, "bad\xEF\xBF\xBD\xEF\xBF\xBDid\\\"\\n\\\\\xEF\xBF\xBD(\xEF\xBF\xBD"))
      << text.substr(0, 2000);
  EXPECT_FALSE(absl::StrContains(text, std::string(129, 'x')));  // label values are capped
  EXPECT_TRUE(absl::StrContains(text, std::string(128, 'x')));
  for (const auto& family : f) {
    for (const auto& m : family.metric) {
      for (const auto& l : m.label) EXPECT_TRUE(ValidUtf8(l.value)) << family.name;
    }
  }
  EXPECT_EQ(SafeLabelValue("abc\xe2\x82\xac"), "abc\xe2\x82\xac");  // a valid euro sign stays
  EXPECT_EQ(SafeLabelValue("\xed\xa0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // a surrogate does not
}

TEST(MetricFamilies, AgentSeries) {
  MetricsSnapshot s;
  s.mode = "tracepoint";
  s.enforcement = "audit";
  s.tick_seconds = HistogramSample(TickSecondsBuckets());
  s.tick_seconds.Observe(0.0007);
  s.tick_seconds.Observe(0.003);
  s.tick_seconds.Observe(100);
  s.promotion_seconds = HistogramSample(PromotionSecondsBuckets());
  s.drops = {{"cgroup_map_full", 2}, {"ringbuf_full", 0}};
  s.errors = {{"tick", 1}, {"control_request", 3}};
  s.have_fast_usage = true;
  s.fast_used_bytes = 10;
  s.fast_total_bytes = 100;
  s.programs = {{"tp_sys_exit", 2500000000, 7}};
  s.maps = {{"gt_cg_stats", 4, 16}};
  std::vector<prometheus::MetricFamily> f = BuildMetricFamilies(s, 1000);
  EXPECT_EQ(GaugeOf(f, "gputier_agent_info", {{"mode", "tracepoint"}, {"enforcement", "audit"}}), 1);
  EXPECT_EQ(CounterOf(f, "gputier_bpf_drops_total", {{"reason", "cgroup_map_full"}}), 2);
  EXPECT_EQ(CounterOf(f, "gputier_errors_total", {{"kind", "control_request"}}), 3);
  EXPECT_EQ(GaugeOf(f, "gputier_fast_tier_bytes", {{"kind", "total"}}), 100);
  EXPECT_EQ(Find(f, "gputier_slow_tier_bytes", {{"kind", "used"}}), nullptr);  // not known: not shown
  EXPECT_EQ(CounterOf(f, "gputier_bpf_program_run_seconds_total", {{"program", "tp_sys_exit"}}), 2.5);
  EXPECT_EQ(CounterOf(f, "gputier_bpf_program_runs_total", {{"program", "tp_sys_exit"}}), 7);
  EXPECT_EQ(GaugeOf(f, "gputier_bpf_map_fill_ratio", {{"map", "gt_cg_stats"}}), 0.25);
  const prometheus::ClientMetric* tick = Find(f, "gputier_classification_tick_seconds", {});
  ASSERT_NE(tick, nullptr);
  EXPECT_EQ(tick->histogram.sample_count, 3u);
  EXPECT_DOUBLE_EQ(tick->histogram.sample_sum, 100.0037);
  ASSERT_EQ(tick->histogram.bucket.size(), TickSecondsBuckets().size() + 1);
  EXPECT_EQ(tick->histogram.bucket[0].cumulative_count, 0u);  // le 0.0005
  EXPECT_EQ(tick->histogram.bucket[1].cumulative_count, 1u);  // le 0.001
  EXPECT_EQ(tick->histogram.bucket[3].cumulative_count, 2u);  // le 0.005
  EXPECT_EQ(tick->histogram.bucket.back().cumulative_count, 3u);  // +Inf
  const std::string text = SerializeMetrics(f);
  EXPECT_TRUE(absl::StrContains(text, "# TYPE gputier_classification_tick_seconds histogram")) << text;
  EXPECT_TRUE(absl::StrContains(text, "gputier_agent_info{enforcement=\"audit\",mode=\"tracepoint\"} 1")) << text;
}

TEST(MetricsAddress, ParsesAddressesAndNamesTheFlagInErrors) {
  struct Case {
    const char* text;
    const char* want;  // nullptr: an error
  };
  const Case kCases[] = {
      {"off", ""},
      {"127.0.0.1:9464", "127.0.0.1:9464"},
      {"0.0.0.0:1", "0.0.0.0:1"},
      {"[::1]:9464", "[::1]:9464"},
      {"127.0.0.1:65535", "127.0.0.1:65535"},
      {"127.0.0.1:0", nullptr},
      {"127.0.0.1:65536", nullptr},
      {"127.0.0.1:", nullptr},
      {"127.0.0.1:94x4", nullptr},
      {"9464", nullptr},
      {"localhost:9464", nullptr},
      {"::1:9464", nullptr},
      {"[::1:9464", nullptr},
      {"300.0.0.1:9464", nullptr},
      {":9464", nullptr},
      {"", nullptr},
      {"OFF", nullptr},
  };
  for (const Case& c : kCases) {
    absl::StatusOr<std::string> got = ParseMetricsAddress(c.text);
    if (c.want != nullptr) {
      ASSERT_TRUE(got.ok()) << c.text << ": " << got.status();
      EXPECT_EQ(*got, c.want) << c.text;
      continue;
    }
    ASSERT_FALSE(got.ok()) << c.text;
    const std::string message(got.status().message());
    EXPECT_TRUE(absl::StartsWith(message, absl::StrCat("--metrics-address=", c.text, ": "))) << message;
    EXPECT_TRUE(absl::StrContains(message, "; write HOST:PORT")) << message;
  }
}

TEST(MetricFamilies, SlowTierBytesAndAdoptionHold) {
  MetricsSnapshot s;
  s.have_slow_usage = true;
  s.slow_used_bytes = 300;
  s.slow_quarantined_bytes = 120;
  s.slow_quota_bytes = 250;
  s.slow_live_over_quota = false;
  std::vector<prometheus::MetricFamily> f = BuildMetricFamilies(s, 1000);
  EXPECT_EQ(GaugeOf(f, "gputier_slow_tier_bytes", {{"kind", "used"}}), 300);
  EXPECT_EQ(GaugeOf(f, "gputier_slow_tier_bytes", {{"kind", "quarantined"}}), 120);
  EXPECT_EQ(GaugeOf(f, "gputier_slow_tier_bytes", {{"kind", "quota"}}), 250);
  EXPECT_EQ(GaugeOf(f, "gputier_slow_tier_adoption_held", {}), 0);
  s.slow_live_over_quota = true;
  EXPECT_EQ(GaugeOf(BuildMetricFamilies(s, 1000), "gputier_slow_tier_adoption_held", {}), 1);
}

}  // namespace
}  // namespace gputier
