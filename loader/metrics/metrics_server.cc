#include "loader/metrics/metrics_server.h"

#include <bpf/bpf.h>
#include <linux/bpf.h>
#include <unistd.h>

#include <CivetServer.h>

#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "loader/observe/maps.h"
#include "loader/base/fd.h"

namespace gputier {
namespace {

void Reply(mg_connection* conn, int code, const std::string& content_type, const std::string& body) {
  const char* reason = code == 200 ? "OK" : code == 503 ? "Service Unavailable" : "Error";
  mg_printf(conn,
            "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nCache-Control: no-store\r\n"
            "Connection: close\r\n\r\n",
            code, reason, content_type.c_str(), body.size());
  mg_write(conn, body.data(), body.size());
}

// civetweb's own words for a start-up failure ("cannot bind to ...: 98
// (Address already in use)"), captured on the thread that starts it.
thread_local std::string* g_start_log = nullptr;

int CaptureStartLog(const mg_connection*, const char* message) {
  if (g_start_log == nullptr) return 0;  // later messages: civetweb logs them
  if (!g_start_log->empty()) g_start_log->append("; ");
  g_start_log->append(message);
  return 1;
}

bool IsHashMap(uint32_t type) {
  return type == BPF_MAP_TYPE_HASH || type == BPF_MAP_TYPE_PERCPU_HASH || type == BPF_MAP_TYPE_LRU_HASH ||
         type == BPF_MAP_TYPE_LRU_PERCPU_HASH;
}

}  // namespace

struct MetricsServer::Handlers {
  class Path : public CivetHandler {
   public:
    Path(MetricsServer* owner, int which) : owner_(owner), which_(which) {}
    bool handleGet(CivetServer*, mg_connection* conn) override {
      if (which_ == 0) {
        Reply(conn, 200, "text/plain; version=0.0.4; charset=utf-8", owner_->MetricsText());
      } else {
        auto [code, body] = which_ == 1 ? owner_->Healthz() : owner_->Readyz();
        Reply(conn, code, "text/plain; charset=utf-8", body);
      }
      return true;
    }

   private:
    MetricsServer* owner_;
    int which_;
  };
  explicit Handlers(MetricsServer* owner) : metrics(owner, 0), healthz(owner, 1), readyz(owner, 2) {}
  Path metrics, healthz, readyz;
};

MetricsServer::MetricsServer(Options options) : options_(std::move(options)) {}

MetricsServer::~MetricsServer() {
  if (server_) server_->close();  // waits for the HTTP threads
}

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(const Options& options) {
  std::unique_ptr<MetricsServer> s(new MetricsServer(options));
  s->handlers_ = std::make_unique<Handlers>(s.get());
  const std::vector<std::string> civet_options = {
      "listening_ports", options.listening_ports, "num_threads", "2", "request_timeout_ms", "10000",
      "enable_keep_alive", "no"};
  CivetCallbacks callbacks;
  callbacks.log_message = CaptureStartLog;
  std::string start_log;
  g_start_log = &start_log;
  try {
    s->server_ = std::make_unique<CivetServer>(civet_options, &callbacks);
  } catch (const std::exception& e) {
    g_start_log = nullptr;
    return absl::FailedPreconditionError(absl::StrCat(
        "--metrics-address=", options.address, ": cannot listen there (",
        start_log.empty() ? std::string(e.what()) : start_log,
        "); if another process holds the port, pick a free one, or pass --metrics-address=off"));
  }
  g_start_log = nullptr;
  s->server_->addHandler("/metrics", &s->handlers_->metrics);
  s->server_->addHandler("/healthz", &s->handlers_->healthz);
  s->server_->addHandler("/readyz", &s->handlers_->readyz);
  return s;
}

void MetricsServer::SetBpfObjects(std::vector<std::pair<std::string, uint32_t>> programs,
                                  std::vector<uint32_t> maps) {
  std::lock_guard<std::mutex> lock(mu_);
  programs_ = std::move(programs);
  maps_ = std::move(maps);
}

void MetricsServer::Publish(MetricsSnapshot snapshot) {
  std::lock_guard<std::mutex> lock(mu_);
  snapshot_ = std::move(snapshot);
  published_ = true;
  last_publish_ = std::chrono::steady_clock::now();
}

void MetricsServer::SetReady() {
  std::lock_guard<std::mutex> lock(mu_);
  ready_ = true;
}

std::pair<int, std::string> MetricsServer::Healthz() {
  std::lock_guard<std::mutex> lock(mu_);
  // Loading and verifying the programs comes before the main loop: that is
  // progress, not a hang (readiness says whether it is done).
  if (!published_) return {200, "ok: starting\n"};
  const auto age = std::chrono::steady_clock::now() - last_publish_;
  const double seconds = std::chrono::duration<double>(age).count();
  if (seconds > absl::ToDoubleSeconds(options_.stale_after)) {
    return {503, absl::StrCat("main loop stalled: last tick ", seconds, " s ago\n")};
  }
  return {200, "ok\n"};
}

std::pair<int, std::string> MetricsServer::Readyz() {
  std::lock_guard<std::mutex> lock(mu_);
  if (ready_ && published_) return {200, "ready\n"};
  return {503, "not ready: programs not attached or no classification tick yet\n"};
}

std::string MetricsServer::MetricsText() {
  std::lock_guard<std::mutex> scrape(scrape_mu_);
  MetricsSnapshot snapshot;
  std::vector<std::pair<std::string, uint32_t>> programs;
  std::vector<uint32_t> maps;
  {
    std::lock_guard<std::mutex> lock(mu_);
    snapshot = snapshot_;
    programs = programs_;
    maps = maps_;
  }
  snapshot.programs = ReadProgramStats(programs);
  snapshot.maps = ReadMapFill(maps);
  return SerializeMetrics(BuildMetricFamilies(snapshot, options_.max_containers));
}

MetricsFeed::MetricsFeed(std::string mode, std::string enforcement)
    : mode_(std::move(mode)),
      enforcement_(std::move(enforcement)),
      tick_seconds_(TickSecondsBuckets()),
      promotion_seconds_(PromotionSecondsBuckets()),
      snapshot_seconds_(TickSecondsBuckets()) {}

MetricsSnapshot MetricsFeed::Take(const nlohmann::json& verdict_rows, const nlohmann::json& tiering,
                                  int stats_fd, int drops_fd, const ClassNames& names) {
  MetricsSnapshot s;
  s.mode = mode_;
  s.enforcement = enforcement_;
  absl::StatusOr<CgroupCounters> counters = ReadCgroupCounters(stats_fd);
  if (!counters.ok()) CountError("counter_read");
  s.containers = ContainerSamples(verdict_rows, tiering, counters.ok() ? *counters : CgroupCounters{}, names);
  if (absl::StatusOr<std::array<uint64_t, GT_DROP_MAX>> drops = ReadDrops(drops_fd); drops.ok()) {
    s.drops["cgroup_map_full"] = (*drops)[GT_DROP_CGROUP_MAP_FULL];
    s.drops["ringbuf_full"] = (*drops)[GT_DROP_RINGBUF_FULL];
    s.drops["name_read"] = (*drops)[GT_DROP_NAME_READ];
  }
  // A promotion since the last tick: its duration (the tier manager keeps
  // the last one per container; two in one tick count the later twice).
  if (tiering.is_object() && tiering.contains("containers") && tiering["containers"].is_array()) {
    for (const nlohmann::json& row : tiering["containers"]) {
      const std::string id = row.value("container_id", "");
      const uint64_t promotions = row.value("promotions", uint64_t{0});
      uint64_t& seen = promotions_seen_[id];
      if (promotions > seen && row.contains("last_promotion_ms") && row["last_promotion_ms"].is_number()) {
        const double seconds = row["last_promotion_ms"].get<double>() / 1000.0;
        for (uint64_t i = seen; i < promotions; ++i) promotion_seconds_.Observe(seconds);
      }
      seen = promotions;
    }
    if (tiering.contains("tiers") && tiering["tiers"].contains("fast_total")) {
      s.have_fast_usage = true;
      s.fast_used_bytes = tiering["tiers"].value("fast_used", uint64_t{0});
      s.fast_total_bytes = tiering["tiers"].value("fast_total", uint64_t{0});
    }
    if (tiering.contains("tiers") && tiering["tiers"].contains("slow_used")) {
      const nlohmann::json& t = tiering["tiers"];
      s.have_slow_usage = true;
      s.slow_used_bytes = t.value("slow_used", uint64_t{0});
      s.slow_quarantined_bytes = t.value("slow_quarantined", uint64_t{0});
      s.slow_quota_bytes = t.value("slow_quota", uint64_t{0});
      s.slow_live_over_quota = t.value("slow_live_over_quota", false);
    }
  }
  s.tick_seconds = tick_seconds_;
  s.promotion_seconds = promotion_seconds_;
  s.snapshot_seconds = snapshot_seconds_;
  s.errors = errors_;
  s.last_tick_unix_seconds = absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch());
  return s;
}

nlohmann::json VerdictRowsOf(const std::vector<ContainerVerdictView>& containers) {
  nlohmann::json rows = nlohmann::json::array();
  for (const ContainerVerdictView& c : containers) {
    rows.push_back({{"cgroup_id", c.cgroup_id},
                    {"container_id", c.container_id},
                    {"name", c.container_name},
                    {"verdict", std::string(VerdictName(c.verdict))},
                    {"confidence", c.confidence_permille}});
  }
  return rows;
}

std::vector<ProgramSample> ReadProgramStats(const std::vector<std::pair<std::string, uint32_t>>& programs) {
  std::vector<ProgramSample> out;
  for (const auto& [name, id] : programs) {
    Fd fd(bpf_prog_get_fd_by_id(id));
    if (fd.get() < 0) continue;
    bpf_prog_info info = {};
    uint32_t len = sizeof(info);
    if (bpf_obj_get_info_by_fd(fd.get(), &info, &len) != 0) continue;
    out.push_back({name, info.run_time_ns, info.run_cnt});
  }
  return out;
}

std::vector<MapFillSample> ReadMapFill(const std::vector<uint32_t>& maps) {
  std::vector<MapFillSample> out;
  for (uint32_t id : maps) {
    Fd fd(bpf_map_get_fd_by_id(id));
    if (fd.get() < 0) continue;
    bpf_map_info info = {};
    uint32_t len = sizeof(info);
    if (bpf_obj_get_info_by_fd(fd.get(), &info, &len) != 0 || !IsHashMap(info.type)) continue;
    std::vector<unsigned char> key(info.key_size), next(info.key_size);
    uint64_t entries = 0;
    const void* prev = nullptr;
    while (entries < info.max_entries && bpf_map_get_next_key(fd.get(), prev, next.data()) == 0) {
      ++entries;
      key.swap(next);
      prev = key.data();
    }
    out.push_back({info.name, entries, info.max_entries});
  }
  return out;
}

}  // namespace gputier
