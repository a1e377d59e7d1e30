// The HTTP endpoint of gputierd: /metrics (Prometheus text format, built by
// prometheus-cpp from the latest MetricsSnapshot), /healthz and /readyz,
// all three served by one civetweb CivetServer on its own threads.
//
// prometheus-cpp's pull Exposer serves only registries, not /healthz or
// /readyz, so the server is civetweb's (what that Exposer is built on), and
// the /metrics body is prometheus::TextSerializer's output.
//
// The scrape never touches the main loop: the main loop Publish()es a
// snapshot each tick into a mutex-guarded slot; a scrape copies it, adds
// the BPF programs' run statistics and the hash maps' fill (syscalls, done
// here, on the HTTP thread), and builds the families (metrics.h).
#ifndef GPUTIER_LOADER_METRICS_METRICS_SERVER_H_
#define GPUTIER_LOADER_METRICS_METRICS_SERVER_H_

#include <chrono>
#include <map>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "loader/metrics/metrics.h"
#include "loader/classify/verdict_service.h"

class CivetServer;

namespace gputier {

class MetricsServer {
 public:
  struct Options {
    std::string address;          // as given to --metrics-address (for errors)
    std::string listening_ports;  // ParseMetricsAddress's result
    uint32_t max_containers = 1000;
    // /healthz fails when the main loop has not published for this long.
    absl::Duration stale_after = absl::Seconds(5);
  };

  // Binds and starts serving. A port in use (or any bind failure) is an
  // error naming --metrics-address.
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(const Options& options);
  ~MetricsServer();  // stops the HTTP threads

  // The BPF objects whose statistics a scrape reads, by kernel id (read
  // through bpf_*_get_fd_by_id, so nothing breaks if they go away).
  void SetBpfObjects(std::vector<std::pair<std::string, uint32_t>> programs, std::vector<uint32_t> maps);
  // The main loop's latest state; also its heartbeat for /healthz.
  void Publish(MetricsSnapshot snapshot);
  // Programs attached and the first classification tick done: /readyz 200.
  void SetReady();

  // The bodies and status codes of the three paths (also for tests).
  std::pair<int, std::string> Healthz();
  std::pair<int, std::string> Readyz();
  std::string MetricsText();

 private:
  explicit MetricsServer(Options options);

  const Options options_;
  std::unique_ptr<CivetServer> server_;
  struct Handlers;
  std::unique_ptr<Handlers> handlers_;

  std::mutex mu_;
  MetricsSnapshot snapshot_;
  bool published_ = false;
  bool ready_ = false;
  std::chrono::steady_clock::time_point last_publish_;
  std::vector<std::pair<std::string, uint32_t>> programs_;
  std::vector<uint32_t> maps_;
  std::mutex scrape_mu_;  // one BPF walk at a time
};

// What the main loop keeps between ticks for the metrics (histograms,
// error counts) and turns into a snapshot after each tick.
class MetricsFeed {
 public:
  MetricsFeed(std::string mode, std::string enforcement);

  void ObserveTick(absl::Duration duration) { tick_seconds_.Observe(absl::ToDoubleSeconds(duration)); }
  // The time the previous snapshot took (observed into the next one).
  void ObserveSnapshot(absl::Duration duration) { snapshot_seconds_.Observe(absl::ToDoubleSeconds(duration)); }
  void CountError(const std::string& kind) { ++errors_[kind]; }

  // The snapshot after a tick: `verdict_rows` are the classifier's status
  // rows, `tiering` the tier manager's status; the counters and drops are
  // read from their maps (one batch read, one per-CPU array read).
  MetricsSnapshot Take(const nlohmann::json& verdict_rows, const nlohmann::json& tiering, int stats_fd,
                       int drops_fd, const ClassNames& names);

 private:
  std::string mode_;
  std::string enforcement_;
  HistogramSample tick_seconds_;
  HistogramSample promotion_seconds_;
  HistogramSample snapshot_seconds_;
  std::map<std::string, uint64_t> errors_;
  std::map<std::string, uint64_t> promotions_seen_;  // container id -> promotions counted
};

// The classifier's view of the containers as the status rows that
// ContainerSamples takes (cgroup_id, container_id, name, verdict, confidence):
// what the tick computed anyway, without the features of `status`.
nlohmann::json VerdictRowsOf(const std::vector<ContainerVerdictView>& containers);

// Reads run_time_ns/run_cnt of each program id (skipping ids that are gone).
std::vector<ProgramSample> ReadProgramStats(const std::vector<std::pair<std::string, uint32_t>>& programs);
// Counts the entries of each hash map id with a key walk of at most
// max_entries steps; other map types are skipped.
std::vector<MapFillSample> ReadMapFill(const std::vector<uint32_t>& maps);

}  // namespace gputier

#endif  // GPUTIER_LOADER_METRICS_METRICS_SERVER_H_
