#include "loader/metrics/metrics.h"

#include <arpa/inet.h>

#include <algorithm>
#include <sstream>
#include <utility>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace gputier {
namespace {

constexpr char kOther[] = "_other";
constexpr size_t kMaxLabelBytes = 128;
const char* const kVerdicts[] = {"unknown", "cpu", "gpu", "mixed"};
const char* const kTiers[] = {"fast", "slow", "mixed"};

uint64_t U64(const nlohmann::json& row, const char* key) {
  auto it = row.find(key);
  return it != row.end() && it->is_number() ? it->get<uint64_t>() : 0;
}

std::string Str(const nlohmann::json& row, const char* key) {
  auto it = row.find(key);
  return it != row.end() && it->is_string() ? it->get<std::string>() : "";
}

// Length of the valid UTF-8 sequence at text[i], or 0.
size_t Utf8Length(absl::string_view text, size_t i) {
  const unsigned char c = text[i];
  size_t n;
  uint32_t min;
  if (c < 0x80) return 1;
  if ((c & 0xE0) == 0xC0) { n = 2; min = 0x80; }
  else if ((c & 0xF0) == 0xE0) { n = 3; min = 0x800; }
  else if ((c & 0xF8) == 0xF0) { n = 4; min = 0x10000; }
  else return 0;
  if (i + n > text.size()) return 0;
  uint32_t cp = c & (0x7F >> n);
  for (size_t k = 1; k < n; ++k) {
    const unsigned char d = text[i + k];
    if ((d & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (d & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return n;
}

using Labels = std::map<std::string, std::string>;

Labels ContainerLabels(const ContainerSample& c) {
  return {{"container", SafeLabelValue(c.container_id)},
          {"container_name", SafeLabelValue(c.container_name)},
          {"pod", SafeLabelValue(c.pod)},
          {"namespace", SafeLabelValue(c.pod_namespace)}};
}

Labels With(Labels labels, const char* name, const std::string& value) {
  labels[name] = value;
  return labels;
}

// Adds `from` into the "_other" aggregate `into`.
void AddInto(ContainerSample& into, const ContainerSample& from) {
  for (const auto& [cls, n] : from.opens_by_class) into.opens_by_class[cls] += n;
  into.bytes_fast += from.bytes_fast;
  into.bytes_slow += from.bytes_slow;
  into.gpu_opens += from.gpu_opens;
  into.gpu_ioctls += from.gpu_ioctls;
  into.bytes_written += from.bytes_written;
  into.promotions += from.promotions;
  into.demotions += from.demotions;
  into.writeback_bytes += from.writeback_bytes;
}

bool Prominent(const ContainerSample& c) { return c.verdict == "gpu" || c.verdict == "mixed"; }

}  // namespace

HistogramSample::HistogramSample(std::vector<double> upper_bounds)
    : bounds(std::move(upper_bounds)), counts(bounds.size() + 1, 0) {}

void HistogramSample::Observe(double value) {
  const size_t i = std::lower_bound(bounds.begin(), bounds.end(), value) - bounds.begin();
  counts[i] += 1;
  sum += value;
}

std::vector<double> TickSecondsBuckets() {
  return {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5};
}

std::vector<double> PromotionSecondsBuckets() {
  return {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
}

std::string SafeLabelValue(absl::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size();) {
    const size_t n = Utf8Length(text, i);
    const absl::string_view piece = n == 0 ? "\xEF\xBF\xBD" : text.substr(i, n);
    if (out.size() + piece.size() > kMaxLabelBytes) break;
    out.append(piece.data(), piece.size());
    i += n == 0 ? 1 : n;
  }
  return out;
}

namespace {

// The classifier's "name" (namespace/pod/container, podman's name, or the
// short id where none is known) into the pod, namespace and container_name
// labels: one value per container, so no series beyond the container's own.
void SetNames(const std::string& name, ContainerSample* c) {
  if (name.empty() || name == c->container_id.substr(0, 12)) return;
  std::vector<std::string> parts = absl::StrSplit(name, '/');
  if (parts.size() == 3) {
    c->pod_namespace = parts[0];
    c->pod = parts[1];
    c->container_name = parts[2];
  } else if (parts.size() == 1) {
    c->container_name = name;
  }
}

}  // namespace

std::vector<ContainerSample> ContainerSamples(const nlohmann::json& verdict_rows, const nlohmann::json& tiering,
                                              const CgroupCounters& counters, const ClassNames& names) {
  absl::flat_hash_map<uint64_t, const gt_cgroup_stats*> stats_of;
  for (const auto& [id, stats] : counters) stats_of[id] = &stats;
  std::map<std::string, ContainerSample> by_id;
  if (verdict_rows.is_array()) {
    for (const nlohmann::json& row : verdict_rows) {
      const std::string id = Str(row, "container_id");
      if (id.empty()) continue;  // a host cgroup
      ContainerSample& c = by_id[id];
      c.container_id = id;
      SetNames(Str(row, "name"), &c);
      c.verdict = Str(row, "verdict");
      c.confidence = static_cast<double>(U64(row, "confidence")) / 1000.0;
      auto it = stats_of.find(U64(row, "cgroup_id"));
      if (it == stats_of.end()) continue;
      const gt_cgroup_stats& s = *it->second;
      for (size_t k = 0; k < GT_CLASS_MAX; ++k) {
        if (!names[k].empty()) c.opens_by_class[names[k]] += s.opens_by_class[k];
      }
      c.opens_by_class["none"] += s.opens_noext;
      c.gpu_opens += s.gpu_opens;
      c.gpu_ioctls += s.gpu_ioctls;
      c.bytes_written += s.bytes_written;
    }
  }
  if (tiering.is_object() && tiering.contains("containers") && tiering["containers"].is_array()) {
    for (const nlohmann::json& row : tiering["containers"]) {
      auto it = by_id.find(Str(row, "container_id"));
      if (it == by_id.end()) continue;  // no counters (yet, or any more)
      ContainerSample& c = it->second;
      c.tier = Str(row, "tier");
      c.bytes_fast = U64(row, "bytes_fast");
      c.bytes_slow = U64(row, "bytes_slow");
      c.promotions = U64(row, "promotions");
      c.demotions = U64(row, "demotions");
      c.writeback_bytes = U64(row, "writeback_bytes");
    }
  }
  std::vector<ContainerSample> out;
  out.reserve(by_id.size());
  for (auto& [id, c] : by_id) out.push_back(std::move(c));
  return out;
}

namespace {

// The per-container families: each container of `own` with its own series,
// then `other` (when given) as container="_other", with how many of the
// others have each verdict and tier.
void AddContainerSeries(prometheus::Registry& registry, const std::vector<const ContainerSample*>& own,
                        const ContainerSample* other, const std::map<std::string, double>* other_verdicts,
                        const std::map<std::string, double>* other_tiers, double other_confidence) {
  using prometheus::BuildCounter;
  using prometheus::BuildGauge;
  auto& verdict = BuildGauge().Name("gputier_container_verdict")
                      .Help("1 for the container's verdict in force, 0 for the others; for "
                            "container=\"_other\": how many of those containers have it")
                      .Register(registry);
  auto& confidence = BuildGauge().Name("gputier_container_verdict_confidence")
                         .Help("Confidence of the verdict in force, 0..1 (\"_other\": the mean)")
                         .Register(registry);
  auto& tier = BuildGauge().Name("gputier_container_tier")
                   .Help("1 for the tier the container's tiered directories are on (mixed: some "
                         "fast, some slow), 0 for the others; only tiered containers")
                   .Register(registry);
  auto& tier_bytes = BuildGauge().Name("gputier_container_tier_bytes")
                         .Help("Bytes of the container's tiered directories on each tier")
                         .Register(registry);
  auto& opens = BuildCounter().Name("gputier_container_opens_total")
                    .Help("Opens of regular files by extension class (none: no extension)")
                    .Register(registry);
  auto& gpu_opens = BuildCounter().Name("gputier_container_gpu_opens_total")
                        .Help("Opens of a selected GPU device")
                        .Register(registry);
  auto& gpu_ioctls = BuildCounter().Name("gputier_container_gpu_ioctls_total")
                         .Help("ioctls on a selected GPU device")
                         .Register(registry);
  auto& written = BuildCounter().Name("gputier_container_written_bytes_total")
                      .Help("Bytes written to regular files")
                      .Register(registry);
  auto& promotions = BuildCounter().Name("gputier_container_promotions_total")
                         .Help("Directories moved to the fast tier since gputierd started")
                         .Register(registry);
  auto& demotions = BuildCounter().Name("gputier_container_demotions_total")
                        .Help("Directories moved back to the slow tier since gputierd started")
                        .Register(registry);
  auto& writeback = BuildCounter().Name("gputier_container_writeback_bytes_total")
                        .Help("Bytes folded from the fast layer into the slow one by demotions since "
                              "gputierd started")
                        .Register(registry);

  auto add_container = [&](const ContainerSample& c, const std::map<std::string, double>* verdict_counts,
                           const std::map<std::string, double>* tier_counts, double conf) {
    const Labels labels = ContainerLabels(c);
    for (const char* v : kVerdicts) {
      double value = c.verdict == v ? 1 : 0;
      if (verdict_counts != nullptr) {
        auto it = verdict_counts->find(v);
        value = it == verdict_counts->end() ? 0 : it->second;
      }
      verdict.Add(With(labels, "verdict", v)).Set(value);
    }
    confidence.Add(labels).Set(conf);
    if (!c.tier.empty() || (tier_counts != nullptr && !tier_counts->empty())) {
      for (const char* t : kTiers) {
        double value = c.tier == t ? 1 : 0;
        if (tier_counts != nullptr) {
          auto it = tier_counts->find(t);
          value = it == tier_counts->end() ? 0 : it->second;
        }
        tier.Add(With(labels, "tier", t)).Set(value);
      }
      tier_bytes.Add(With(labels, "tier", "fast")).Set(static_cast<double>(c.bytes_fast));
      tier_bytes.Add(With(labels, "tier", "slow")).Set(static_cast<double>(c.bytes_slow));
      promotions.Add(labels).Increment(static_cast<double>(c.promotions));
      demotions.Add(labels).Increment(static_cast<double>(c.demotions));
      writeback.Add(labels).Increment(static_cast<double>(c.writeback_bytes));
    }
    for (const auto& [cls, n] : c.opens_by_class) {
      opens.Add(With(labels, "class", SafeLabelValue(cls))).Increment(static_cast<double>(n));
    }
    gpu_opens.Add(labels).Increment(static_cast<double>(c.gpu_opens));
    gpu_ioctls.Add(labels).Increment(static_cast<double>(c.gpu_ioctls));
    written.Add(labels).Increment(static_cast<double>(c.bytes_written));
  };
  for (const ContainerSample* c : own) add_container(*c, nullptr, nullptr, c->confidence);
  if (other != nullptr) add_container(*other, other_verdicts, other_tiers, other_confidence);
}

// Every container: the most prominent max_containers with their own series,
// the rest summed into container="_other"; and how many are in each.
void AddContainerFamilies(prometheus::Registry& registry, const MetricsSnapshot& snapshot,
                          uint32_t max_containers) {
  using prometheus::BuildGauge;
  // Which containers get their own series.
  std::vector<const ContainerSample*> order;
  for (const ContainerSample& c : snapshot.containers) order.push_back(&c);
  std::stable_sort(order.begin(), order.end(), [](const ContainerSample* a, const ContainerSample* b) {
    if (Prominent(*a) != Prominent(*b)) return Prominent(*a);
    return a->container_id < b->container_id;
  });
  const size_t own = std::min<size_t>(order.size(), max_containers);
  ContainerSample other;
  other.container_id = kOther;
  std::map<std::string, double> other_verdicts, other_tiers;
  double other_confidence = 0;
  for (size_t i = own; i < order.size(); ++i) {
    AddInto(other, *order[i]);
    other_verdicts[order[i]->verdict] += 1;
    if (!order[i]->tier.empty()) other_tiers[order[i]->tier] += 1;
    other_confidence += order[i]->confidence;
  }
  const size_t others = order.size() - own;

  const std::vector<const ContainerSample*> own_series(order.begin(), order.begin() + own);
  if (others > 0) other.tier = other_tiers.empty() ? "" : "_other";
  AddContainerSeries(registry, own_series, others > 0 ? &other : nullptr, &other_verdicts, &other_tiers,
                     others > 0 ? other_confidence / static_cast<double>(others) : 0);

  auto& containers = BuildGauge().Name("gputier_containers")
                         .Help("Containers with counters: with their own series, and summed into "
                               "container=\"_other\" past metrics.max_containers")
                         .Register(registry);
  containers.Add({{"series", "own"}}).Set(static_cast<double>(own));
  containers.Add({{"series", "other"}}).Set(static_cast<double>(others));

}

// The agent's own: mode and enforcement.
void AddAgentInfo(prometheus::Registry& registry, const MetricsSnapshot& snapshot) {
  using prometheus::BuildGauge;
  BuildGauge().Name("gputier_agent_info")
      .Help("1; the observation mode and the enforcement setting in force as labels")
      .Register(registry)
      .Add({{"mode", SafeLabelValue(snapshot.mode)}, {"enforcement", SafeLabelValue(snapshot.enforcement)}})
      .Set(1);
}

// The BPF side: each program's run time and runs, each map's fill, drops.
void AddBpfFamilies(prometheus::Registry& registry, const MetricsSnapshot& snapshot) {
  using prometheus::BuildCounter;
  using prometheus::BuildGauge;
  if (!snapshot.programs.empty()) {
    auto& run_time = BuildCounter().Name("gputier_bpf_program_run_seconds_total")
                         .Help("Time the kernel accounted to the BPF program (run_time_ns; only "
                               "while kernel.bpf_stats_enabled=1)")
                         .Register(registry);
    auto& run_count = BuildCounter().Name("gputier_bpf_program_runs_total")
                          .Help("Runs of the BPF program (run_cnt; only while "
                                "kernel.bpf_stats_enabled=1)")
                          .Register(registry);
    for (const ProgramSample& p : snapshot.programs) {
      const Labels labels = {{"program", SafeLabelValue(p.name)}};
      run_time.Add(labels).Increment(static_cast<double>(p.run_time_ns) / 1e9);
      run_count.Add(labels).Increment(static_cast<double>(p.run_count));
    }
  }
  if (!snapshot.maps.empty()) {
    auto& fill = BuildGauge().Name("gputier_bpf_map_fill_ratio")
                     .Help("Entries of the hash map over its max_entries")
                     .Register(registry);
    auto& entries = BuildGauge().Name("gputier_bpf_map_entries")
                        .Help("Entries of the hash map (a key walk at scrape time)")
                        .Register(registry);
    for (const MapFillSample& m : snapshot.maps) {
      const Labels labels = {{"map", SafeLabelValue(m.name)}};
      entries.Add(labels).Set(static_cast<double>(m.entries));
      fill.Add(labels).Set(m.max_entries == 0 ? 0 : static_cast<double>(m.entries) /
                                                        static_cast<double>(m.max_entries));
    }
  }
  auto& drops = BuildCounter().Name("gputier_bpf_drops_total")
                    .Help("Events the BPF programs could not record, by reason (the gt_drops map)")
                    .Register(registry);
  for (const auto& [reason, n] : snapshot.drops) {
    drops.Add({{"reason", SafeLabelValue(reason)}}).Increment(static_cast<double>(n));
  }
}

// Errors, durations (histograms), the fast tier's use and the last tick.
void AddAgentHealth(prometheus::Registry& registry, const MetricsSnapshot& snapshot) {
  using prometheus::BuildCounter;
  using prometheus::BuildGauge;
  using prometheus::BuildHistogram;
  auto& errors = BuildCounter().Name("gputier_errors_total")
                     .Help("Errors since gputierd started, by kind")
                     .Register(registry);
  for (const auto& [kind, n] : snapshot.errors) {
    errors.Add({{"kind", SafeLabelValue(kind)}}).Increment(static_cast<double>(n));
  }
  auto add_histogram = [&](const char* name, const char* help, const HistogramSample& h) {
    if (h.counts.size() != h.bounds.size() + 1) return;
    BuildHistogram().Name(name).Help(help).Register(registry).Add({}, h.bounds).ObserveMultiple(h.counts, h.sum);
  };
  add_histogram("gputier_classification_tick_seconds",
                "Duration of a classification tick (counters read, verdicts decided and written)",
                snapshot.tick_seconds);
  add_histogram("gputier_promotion_seconds",
                "Duration of a directory's promotion to the fast tier (the container frozen "
                "part included)",
                snapshot.promotion_seconds);
  add_histogram("gputier_metrics_snapshot_seconds",
                "Time the main loop spent taking each metrics snapshot after a tick (status rows, "
                "counter and drop reads)",
                snapshot.snapshot_seconds);
  if (snapshot.have_fast_usage) {
    auto& fast = BuildGauge().Name("gputier_fast_tier_bytes")
                     .Help("The fast tier's filesystem: used and total bytes")
                     .Register(registry);
    fast.Add({{"kind", "used"}}).Set(static_cast<double>(snapshot.fast_used_bytes));
    fast.Add({{"kind", "total"}}).Set(static_cast<double>(snapshot.fast_total_bytes));
  }
  if (snapshot.have_slow_usage) {
    auto& slow = BuildGauge().Name("gputier_slow_tier_bytes")
                     .Help("Bytes gputier keeps under the slow root (used, of which quarantined: exited "
                           "containers' layers) and its quota (0: none)")
                     .Register(registry);
    slow.Add({{"kind", "used"}}).Set(static_cast<double>(snapshot.slow_used_bytes));
    slow.Add({{"kind", "quarantined"}}).Set(static_cast<double>(snapshot.slow_quarantined_bytes));
    slow.Add({{"kind", "quota"}}).Set(static_cast<double>(snapshot.slow_quota_bytes));
    BuildGauge().Name("gputier_slow_tier_adoption_held")
        .Help("1 while live containers' slow layers alone exceed tiers.slow_quota (no new container is "
              "adopted)")
        .Register(registry)
        .Add({})
        .Set(snapshot.slow_live_over_quota ? 1 : 0);
  }
  BuildGauge().Name("gputier_last_tick_timestamp_seconds")
      .Help("Unix time of the last classification tick")
      .Register(registry)
      .Add({})
      .Set(snapshot.last_tick_unix_seconds);
}

}  // namespace

std::vector<prometheus::MetricFamily> BuildMetricFamilies(const MetricsSnapshot& snapshot,
                                                          uint32_t max_containers) {
  prometheus::Registry registry;
  AddContainerFamilies(registry, snapshot, max_containers);
  AddAgentInfo(registry, snapshot);
  AddBpfFamilies(registry, snapshot);
  AddAgentHealth(registry, snapshot);
  return registry.Collect();
}

absl::StatusOr<std::string> ParseMetricsAddress(absl::string_view text) {
  if (text == "off") return std::string();
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--metrics-address=", text, ": ", why,
        "; write HOST:PORT with an IPv4 address or a bracketed IPv6 address (127.0.0.1:9464, "
        "[::1]:9464, 0.0.0.0:9464), or off"));
  };
  const size_t colon = text.rfind(':');
  if (colon == absl::string_view::npos) return bad("has no :PORT");
  absl::string_view host = text.substr(0, colon);
  const absl::string_view port_text = text.substr(colon + 1);
  uint32_t port = 0;
  if (port_text.empty() || port_text.find_first_not_of("0123456789") != absl::string_view::npos ||
      !absl::SimpleAtoi(port_text, &port) || port < 1 || port > 65535) {
    return bad(absl::StrCat("port \"", port_text, "\" is not a number in 1..65535"));
  }
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    in6_addr a6;
    if (inet_pton(AF_INET6, std::string(host.substr(1, host.size() - 2)).c_str(), &a6) != 1) {
      return bad(absl::StrCat("\"", host, "\" is not an IPv6 address"));
    }
    // civetweb: "[addr]:port" with a trailing "" is not IPv6-only; "+" would
    // add IPv4. The bracketed form binds IPv6 only.
    return absl::StrCat(host, ":", port);
  }
  in_addr a4;
  if (host.empty() || inet_pton(AF_INET, std::string(host).c_str(), &a4) != 1) {
    return bad(absl::StrCat("\"", host, "\" is not an IPv4 address"));
  }
  return absl::StrCat(host, ":", port);
}

std::string SerializeMetrics(const std::vector<prometheus::MetricFamily>& families) {
  return prometheus::TextSerializer().Serialize(families);
}

}  // namespace gputier
