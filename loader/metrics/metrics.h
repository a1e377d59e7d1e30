// Prometheus metrics: what gputierd's main loop publishes each tick (a
// MetricsSnapshot) and the pure function that turns a snapshot into
// prometheus-cpp metric families. docs/METRICS.md lists every series.
//
// Pure: no syscalls. The main loop fills a snapshot from what it already
// holds (the classifier's container view, tiering status, the counter map); the HTTP
// thread adds what costs syscalls (BPF program statistics, map fill) and
// serialises the families with prometheus::TextSerializer.
#ifndef GPUTIER_LOADER_METRICS_METRICS_H_
#define GPUTIER_LOADER_METRICS_METRICS_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <prometheus/metric_family.h>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "loader/observe/maps.h"

namespace gputier {

// What one container (or the "_other" aggregate) did and where it is.
struct ContainerSample {
  std::string container_id;  // as `gputierctl status` shows it
  std::string pod;           // empty until known
  std::string pod_namespace; // empty until known
  std::string container_name;  // Kubernetes container name or podman's; empty until known
  std::string verdict = "unknown";  // unknown | cpu | gpu | mixed
  double confidence = 0;            // 0..1
  std::string tier;                 // "" (not tiered) | fast | slow | mixed
  uint64_t bytes_fast = 0;
  uint64_t bytes_slow = 0;
  std::map<std::string, uint64_t> opens_by_class;  // class name -> opens ("none": no extension)
  uint64_t gpu_opens = 0;
  uint64_t gpu_ioctls = 0;
  uint64_t bytes_written = 0;
  uint64_t promotions = 0;
  uint64_t demotions = 0;
  uint64_t writeback_bytes = 0;
};

// A histogram kept by the main loop: counts per bucket (not cumulative),
// the last one for values above every bound.
struct HistogramSample {
  std::vector<double> bounds;
  std::vector<double> counts;  // bounds.size() + 1
  double sum = 0;

  explicit HistogramSample(std::vector<double> upper_bounds = {});
  void Observe(double value);
};

struct ProgramSample {
  std::string name;
  uint64_t run_time_ns = 0;
  uint64_t run_count = 0;
};

struct MapFillSample {
  std::string name;
  uint64_t entries = 0;
  uint64_t max_entries = 0;
};

struct MetricsSnapshot {
  std::string mode;         // lsm | tracepoint
  std::string enforcement;  // off | audit | enforce
  std::vector<ContainerSample> containers;
  std::map<std::string, uint64_t> drops;   // reason -> count (gt_drops)
  std::map<std::string, uint64_t> errors;  // kind -> count
  HistogramSample tick_seconds;
  HistogramSample promotion_seconds;
  HistogramSample snapshot_seconds;  // the main loop's cost of each snapshot
  bool have_fast_usage = false;
  uint64_t fast_used_bytes = 0;
  uint64_t fast_total_bytes = 0;
  // The slow root (tier status "slow_*", docs/TIERING.md): bytes under it,
  // in quarantine, the quota (0: none), and live layers alone over it.
  bool have_slow_usage = false;
  uint64_t slow_used_bytes = 0;
  uint64_t slow_quarantined_bytes = 0;
  uint64_t slow_quota_bytes = 0;
  bool slow_live_over_quota = false;
  double last_tick_unix_seconds = 0;
  // Filled by the HTTP thread at scrape time.
  std::vector<ProgramSample> programs;
  std::vector<MapFillSample> maps;
};

// Bucket bounds (seconds) of the two histograms.
std::vector<double> TickSecondsBuckets();
std::vector<double> PromotionSecondsBuckets();

// The per-container part of a snapshot: one sample per container id from
// the classifier's rows (cgroup_id, container_id, verdict, confidence, as in
// `gputierctl status` "cgroups" or VerdictRowsOf), the tiering status
// ({"tiers", "containers"}) and the counters. Host cgroups
// (no container id) are left out. Cgroups of one container are summed.
std::vector<ContainerSample> ContainerSamples(const nlohmann::json& verdict_rows, const nlohmann::json& tiering,
                                              const CgroupCounters& counters, const ClassNames& names);

// A label value Prometheus accepts: valid UTF-8 (invalid bytes become
// U+FFFD), at most 128 bytes.
std::string SafeLabelValue(absl::string_view text);

// Every gputier_* family of `snapshot`. At most `max_containers`
// containers get their own per-container series (GPU and MIXED ones first,
// then by container id); the rest are summed into container="_other".
std::vector<prometheus::MetricFamily> BuildMetricFamilies(const MetricsSnapshot& snapshot,
                                                          uint32_t max_containers);

// The text exposition format of `families` (prometheus::TextSerializer).
std::string SerializeMetrics(const std::vector<prometheus::MetricFamily>& families);

// `--metrics-address`: "off", or HOST:PORT with HOST an IPv4 address or a
// bracketed IPv6 address. Returns "" for off, else civetweb's
// listening_ports form. The error names the flag and the fix.
absl::StatusOr<std::string> ParseMetricsAddress(absl::string_view text);

}  // namespace gputier

#endif  // GPUTIER_LOADER_METRICS_METRICS_H_
