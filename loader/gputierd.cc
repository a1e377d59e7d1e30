// gputierd: the node agent. Loads the observer (LSM or tracepoint mode), pins
// its maps, and shows live per-container counters.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/flags/flag.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "loader/cgroup/cgroup_resolver.h"
#include "loader/classify/classification_table.h"
#include "loader/cli.h"
#include "loader/control/control.h"
#include "loader/config/config.h"
#include "loader/config/config_tiers.h"
#include "loader/enforce/enforcement.h"
#include "loader/observe/gpu_devices.h"
#include "loader/enforce/guard_maps.h"
#include "loader/base/log.h"
#include "loader/observe/maps.h"
#include "loader/metrics/metrics.h"
#include "loader/metrics/metrics_server.h"
#include "loader/observe/observer.h"
#include "loader/observe/pin_dir.h"
#include "loader/report.h"
#include "loader/runtime/container_names.h"
#include "loader/runtime/runtime_table.h"
#include "loader/tier/move_times.h"
#include "loader/tier/tier_manager.h"
#include "loader/tier/tier_plan.h"
#include "loader/classify/verdict_service.h"

ABSL_FLAG(std::string, mode, "auto",
          "auto | lsm | tracepoint. auto prefers BPF LSM and falls back to observe-only "
          "tracepoints, logging why");
ABSL_FLAG(std::string, config, "", "YAML config file (default: built-in defaults)");
ABSL_FLAG(std::string, pin_dir, gputier::kDefaultPinDir, "bpffs directory for the pinned maps");
ABSL_FLAG(std::string, run_dir, "/run/gputier",
          "runtime directory (control socket gputierd.sock, probe files)");
ABSL_FLAG(std::string, state_dir, gputier::kDefaultStateDir,
          "state directory: classification table (classifications.db) and model (model.json)");
ABSL_FLAG(absl::Duration, interval, absl::Seconds(2), "how often the live counters are printed");
ABSL_FLAG(bool, quiet, false, "do not print live counters (log only)");
ABSL_FLAG(std::string, ready_file, "",
          "write this file once the programs are attached and verified (for supervisors/tests)");
ABSL_FLAG(std::string, metrics_address, "127.0.0.1:9464",
          "HOST:PORT serving Prometheus /metrics, /healthz and /readyz (docs/METRICS.md); off disables");
ABSL_FLAG(bool, check_config, false,
          "parse and validate --config (and --mode, --metrics-address), print the result and exit: "
          "0 valid, 1 not (for ExecStartPre= and deploy checks); loads nothing");
ABSL_FLAG(bool, verbose, false, "debug logging, including libbpf's messages");

namespace gputier {
namespace {

std::atomic<bool> g_stop{false};

void OnSignal(int) { g_stop = true; }

absl::Status MakeDir(const std::string& dir) {
  for (size_t pos = 1; pos <= dir.size(); ++pos) {
    if (pos != dir.size() && dir[pos] != '/') continue;
    if (mkdir(dir.substr(0, pos).c_str(), 0700) != 0 && errno != EEXIST) {
      return absl::ErrnoToStatus(errno, absl::StrCat("creating ", dir.substr(0, pos)));
    }
  }
  return absl::OkStatus();
}

struct EventContext {
  const CgroupResolver* resolver;
  VerdictService* verdicts;
  TierManager* tiers;
  // Guard/tamper log lines: at most kAuditLinesPerSecond, then a count.
  int64_t audit_second = 0;
  int audit_lines = 0;
  uint64_t audit_suppressed = 0;
};

constexpr int kAuditLinesPerSecond = 20;

void LogAuditEvent(EventContext* c, const gt_audit_record& r) {
  const int64_t second = absl::ToUnixSeconds(absl::Now());
  if (second != c->audit_second) {
    if (c->audit_suppressed > 0) {
      LogWarning("guard/tamper: %d more records not logged (see `gputierctl audit`)", c->audit_suppressed);
    }
    c->audit_second = second;
    c->audit_lines = 0;
    c->audit_suppressed = 0;
  }
  if (++c->audit_lines > kAuditLinesPerSecond) {
    ++c->audit_suppressed;
    return;
  }
  absl::StatusOr<std::string> path = c->resolver->PathOf(r.cgroup_id);
  LogWarning("%s", DescribeAuditRecord(r, path.ok() ? *path : "removed"));
}

int OnEvent(void* ctx, void* data, size_t size) {
  if (size < sizeof(gt_event)) return 0;
  const gt_event* e = static_cast<const gt_event*>(data);
  EventContext* c = static_cast<EventContext*>(ctx);
  if (e->type == GT_EV_AUDIT) {
    if (size >= sizeof(gt_audit_event)) LogAuditEvent(c, static_cast<const gt_audit_event*>(data)->rec);
    return 0;
  }
  if (e->type == GT_EV_FIRST_GPU_IOCTL) {
    // GPU use: decide now, the verdict must not wait for the next tick. (An
    // open alone is not use yet; the tick takes care of it.)
    if (absl::Status s = c->verdicts->OnGpuAccess(e->cgroup_id); !s.ok()) LogDebug("%s", s.message());
    c->tiers->UpdateContainers(c->verdicts->Containers());
    return 0;
  }
  if (e->type != GT_EV_FIRST_GPU_ACCESS) return 0;
  absl::StatusOr<std::string> path = c->resolver->PathOf(e->cgroup_id);
  LogInfo("first GPU access: cgroup %d (%s) pid %d (%s) device %u:%u kind %s", e->cgroup_id,
          path.ok() ? *path : "removed", e->pid, std::string(e->comm, strnlen(e->comm, 16)),
          e->dev_major, e->dev_minor, GpuKindName(e->gpu_kind));
  return 0;
}

using DropCounts = std::array<uint64_t, GT_DROP_MAX>;

nlohmann::json DropsJson(const DropCounts& d) {
  return {{"cgroup_map_full", d[GT_DROP_CGROUP_MAP_FULL]},
          {"events_lost", d[GT_DROP_RINGBUF_FULL]},
          {"name_unreadable", d[GT_DROP_NAME_READ]}};
}

// Reads gt_drops and warns once per increase: a full counter map or a full
// event ring means counts or first-GPU events were lost.
void CheckDrops(int drops_fd, DropCounts* last) {
  absl::StatusOr<DropCounts> now = ReadDrops(drops_fd);
  if (!now.ok()) return;
  const DropCounts before = *last;
  *last = *now;
  if ((*now)[GT_DROP_CGROUP_MAP_FULL] > before[GT_DROP_CGROUP_MAP_FULL]) {
    LogWarning("gt_cg_stats is full: %d new cgroup(s) not counted (%d in all); raise max_cgroups in the config",
               (*now)[GT_DROP_CGROUP_MAP_FULL] - before[GT_DROP_CGROUP_MAP_FULL], (*now)[GT_DROP_CGROUP_MAP_FULL]);
  }
  if ((*now)[GT_DROP_RINGBUF_FULL] > before[GT_DROP_RINGBUF_FULL]) {
    LogWarning("gt_events was full: %d event(s) lost (%d in all); first-GPU-access decisions wait for the next tick",
               (*now)[GT_DROP_RINGBUF_FULL] - before[GT_DROP_RINGBUF_FULL], (*now)[GT_DROP_RINGBUF_FULL]);
  }
  if ((*now)[GT_DROP_NAME_READ] > before[GT_DROP_NAME_READ]) {
    LogDebug("%d file name(s) could not be read (%d in all)", (*now)[GT_DROP_NAME_READ] - before[GT_DROP_NAME_READ],
             (*now)[GT_DROP_NAME_READ]);
  }
}

// Control requests: the classifier's, plus `tier` and the tiering part of
// `status`.
// `agent` in status: what this gputierd is, for a client that shows it
// (gputierctl top's header).
struct AgentFacts {
  std::string mode;  // lsm or tracepoint
  absl::Time started;
  MoveTimes* moves;  // when each container last moved, noted each tick
};

nlohmann::json HandleRequest(const ControlRequest& request, VerdictService* verdicts, TierManager* tiers,
                             const EnforcementService* enforcement, const DropCounts& drops,
                             const AgentFacts& agent) {
  if (request.command == ControlCommand::kTier) {
    absl::StatusOr<TierOverride> choice = ParseTierOverride(request.tier);
    if (!choice.ok()) return {{"ok", false}, {"error", std::string(choice.status().message())}};
    absl::StatusOr<ContainerVerdictView> who = verdicts->ResolveContainer(request.target);
    if (!who.ok()) return {{"ok", false}, {"error", std::string(who.status().message())}};
    if (absl::Status s = tiers->SetOverride(*who, *choice); !s.ok()) {
      return {{"ok", false}, {"error", std::string(s.message())}};
    }
    return {{"ok", true},
            {"container_id", who->container_id},
            {"name", who->container_name.empty() ? who->container_id.substr(0, 12) : who->container_name},
            {"tier", TierOverrideName(*choice)}};
  }
  if (request.command == ControlCommand::kCreating) {
    // gputier-oci-hook waits for this answer while the runtime waits on the
    // hook: bounded, and the hook lets the container start whatever it says.
    absl::StatusOr<std::string> done = tiers->AdoptCreating(
        {request.target, static_cast<pid_t>(request.pid), request.bundle}, absl::Seconds(2));
    if (!done.ok()) return {{"ok", false}, {"error", std::string(done.status().message())}};
    return {{"ok", true}, {"container_id", request.target}, {"adopted", *done}};
  }
  nlohmann::json answer = verdicts->Handle(request);
  if (request.command == ControlCommand::kStatus && answer.value("ok", false)) {
    answer["tiering"] = tiers->StatusJson();
    agent.moves->Note(answer["tiering"], absl::Now());
    agent.moves->Annotate(&answer["tiering"]);
    answer["enforcement"] = enforcement->StatusJson();
    answer["drops"] = DropsJson(drops);
    const absl::Time now = absl::Now();
    answer["agent"] = {{"pid", getpid()},
                       {"mode", agent.mode},
                       {"enforcement", answer["enforcement"].value("mode", "off")},
                       {"uptime_s", absl::ToInt64Seconds(now - agent.started)},
                       {"now_unix_ms", absl::ToUnixMillis(now)}};
  }
  return answer;
}

void LogGpuDevices(const std::vector<GpuDevice>& devices) {
  for (const GpuDevice& d : devices) {
    LogInfo("GPU device selector %u:%s kind=%s from %s", d.major,
            d.minor == GT_MINOR_ANY ? "*" : absl::StrCat(d.minor), GpuKindName(d.kind), d.source);
  }
}

// The (major, minor or GT_MINOR_ANY) pairs the proc scan matches.
std::vector<std::pair<uint32_t, uint32_t>> SelectorPairs(const std::vector<GpuDevice>& devices) {
  std::vector<std::pair<uint32_t, uint32_t>> out;
  for (const GpuDevice& d : devices) out.emplace_back(d.major, d.minor);
  return out;
}

// What the kernel map holds for a device list, comparable across rescans.
std::vector<std::tuple<uint32_t, uint32_t, uint32_t>> SelectorsOf(const std::vector<GpuDevice>& devices) {
  std::vector<std::tuple<uint32_t, uint32_t, uint32_t>> out;
  for (const GpuDevice& d : devices) out.emplace_back(d.major, d.minor, d.kind);
  std::sort(out.begin(), out.end());
  return out;
}

// Deletes counters (and guard counters) of cgroups that are gone: removed
// while no agent was attached (the in-kernel cgroup_rmdir hook handles the rest).
void SweepRemovedCgroups(int stats_fd, int guard_fd, const CgroupResolver& resolver) {
  if (absl::StatusOr<CgroupCounters> counters = ReadCgroupCounters(stats_fd); counters.ok()) {
    for (const auto& [id, stats] : *counters) {
      if (absl::IsNotFound(resolver.PathOf(id).status())) {
        if (DeleteCgroupCounter(stats_fd, id).ok()) LogDebug("swept removed cgroup %d", id);
      }
    }
  }
  if (absl::StatusOr<std::vector<std::pair<uint64_t, gt_guard_stats>>> guard = ReadGuardStats(guard_fd);
      guard.ok()) {
    for (const auto& [id, g] : *guard) {
      if (absl::IsNotFound(resolver.PathOf(id).status())) bpf_map_delete_elem(guard_fd, &id);
    }
  }
}

// Cgroups of the containers the tier manager has (partly) on the fast tier,
// or is moving: the guard lets them write there whatever their verdict.
std::vector<uint64_t> OnFastTier(const nlohmann::json& tiering, const std::vector<ContainerVerdictView>& containers) {
  absl::flat_hash_map<std::string, uint64_t> cgroup_of;
  for (const ContainerVerdictView& c : containers) cgroup_of[c.container_id] = c.cgroup_id;
  std::vector<uint64_t> out;
  if (!tiering.contains("containers")) return out;
  for (const nlohmann::json& row : tiering["containers"]) {
    if (row.value("tier", "slow") == "slow" && row.value("op", "none") == "none") continue;
    auto it = cgroup_of.find(row.value("container_id", ""));
    if (it != cgroup_of.end()) out.push_back(it->second);
  }
  return out;
}

// --check-config: the config file and the flags that shape the start, checked
// without root and without touching the node. Tier roots and devices are the
// node's and are checked when gputierd starts.
int CheckConfig() {
  const std::string path = absl::GetFlag(FLAGS_config);
  absl::StatusOr<Config> config = path.empty() ? absl::StatusOr<Config>(DefaultConfig()) : LoadConfigFile(path);
  absl::Status status = config.status();
  if (status.ok()) status = ParseObserveMode(absl::GetFlag(FLAGS_mode)).status();
  if (status.ok()) status = ParseMetricsAddress(absl::GetFlag(FLAGS_metrics_address)).status();
  if (!status.ok()) {
    fprintf(stderr, "gputierd --check-config: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  printf("gputierd --check-config: %s is valid (tiers: fast %s, slow %s%s; %zu tiered path(s))\n",
         path.empty() ? "the built-in default config" : path.c_str(), config->tiers.fast_root.c_str(),
         config->tiers.slow_root.c_str(), config->tiers.embedded_roots ? ", built in" : "",
         config->tiers.tiered_paths.size() + config->tiers.gpu_data_paths.size());
  return 0;
}

// A supervisor may stop the agent as soon as it reports ready (or before),
// and SIGTERM must always mean a clean stop, never the default kill. The
// flag is checked once the loop runs.
void InstallSignalHandlers() {
  struct sigaction sa = {};
  sa.sa_handler = OnSignal;
  sa.sa_flags = SA_RESTART;  // start-up syscalls carry on; the poll loop sees EINTR
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  // A control client that goes away before reading its reply must not kill
  // the agent (sends use MSG_NOSIGNAL too).
  signal(SIGPIPE, SIG_IGN);
}

// The config file (or the built-in defaults), logged.
absl::StatusOr<Config> LoadConfig() {
  const std::string path = absl::GetFlag(FLAGS_config);
  if (path.empty()) {
    LogInfo("config: built-in defaults (no --config given)");
    return DefaultConfig();
  }
  absl::StatusOr<Config> loaded = LoadConfigFile(path);
  if (!loaded.ok()) return loaded;
  LogInfo("config: %s", path);
  for (const std::string& note : loaded->notes) LogWarning("config: %s", note);
  return loaded;
}

// The group whose members may ask for status and explain (none: root only).
absl::StatusOr<std::optional<uint32_t>> ControlReadGroup(const Config& config) {
  if (config.control_read_group.empty()) return std::nullopt;
  const group* g = getgrnam(config.control_read_group.c_str());
  if (g == nullptr) {
    return absl::NotFoundError(absl::StrFormat(
        "control_read_group: no group named \"%s\" on this node; create it or remove the key",
        config.control_read_group));
  }
  LogInfo("control socket: root, and members of group %s (gid %u) for status and explain",
          config.control_read_group, g->gr_gid);
  return g->gr_gid;
}

// The metrics server, listening (null when --metrics-address=off).
absl::StatusOr<std::unique_ptr<MetricsServer>> StartMetrics(const Config& config, const std::string& ports) {
  if (ports.empty()) {
    LogInfo("metrics: off (--metrics-address=off)");
    return nullptr;
  }
  MetricsServer::Options metrics_options;
  metrics_options.address = absl::GetFlag(FLAGS_metrics_address);
  metrics_options.listening_ports = ports;
  metrics_options.max_containers = config.metrics.max_containers;
  metrics_options.stale_after = std::max(absl::Seconds(5), 5 * config.policy.tick);
  absl::StatusOr<std::unique_ptr<MetricsServer>> started = MetricsServer::Start(metrics_options);
  if (started.ok()) LogInfo("metrics: http://%s/metrics (and /healthz, /readyz)", metrics_options.address);
  return started;
}

// The run, state and pin directories, made and checked.
absl::Status PrepareDirectories(const std::string& run_dir, const std::string& state_dir,
                                const std::string& pin_dir, std::optional<uint32_t> read_group) {
  if (absl::Status s = MakeDir(run_dir); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat(s.message(), "; pass a writable --run-dir"));
  }
  if (absl::Status s = CheckRunDir(run_dir, read_group); !s.ok()) return s;
  if (absl::Status s = MakeDir(state_dir); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat(s.message(), "; pass a writable --state-dir"));
  }
  return EnsurePinDir(pin_dir);
}

// --ready-file: written whole, then renamed, so a watcher never reads a
// half-written file.
void WriteReadyFile(absl::string_view mode_name) {
  const std::string ready = absl::GetFlag(FLAGS_ready_file);
  if (ready.empty()) return;
  const std::string tmp = ready + ".tmp";
  std::ofstream out(tmp);
  out << mode_name << "\n";
  out.close();
  if (!out || rename(tmp.c_str(), ready.c_str()) != 0) LogWarning("could not write --ready-file %s", ready);
}

// The live counters of the cgroups whose counters changed since they were
// last shown (--interval, unless --quiet).
void PrintChangedCounters(int stats_fd, const CgroupResolver& resolver, const ClassNames& names, absl::Time now,
                          absl::flat_hash_map<uint64_t, gt_cgroup_stats>* shown) {
  absl::StatusOr<CgroupCounters> counters = ReadCgroupCounters(stats_fd);
  if (!counters.ok()) {
    LogWarning("%s", counters.status().message());
    return;
  }
  CgroupCounters changed;
  for (const auto& [id, stats] : *counters) {
    auto it = shown->find(id);
    if (it == shown->end() || memcmp(&it->second, &stats, sizeof(stats)) != 0) {
      changed.emplace_back(id, stats);
      (*shown)[id] = stats;
    }
  }
  if (changed.empty()) return;
  std::string table = RowsToTable(BuildRows(changed, resolver), names);
  printf("--- %s: %zu of %zu cgroups changed (lifetime counters)\n%s",
         absl::FormatTime("%H:%M:%S", now, absl::UTCTimeZone()).c_str(), changed.size(), counters->size(),
         table.c_str());
  fflush(stdout);
}

// The observer loaded and attached in `mode` (or what auto chose), logged.
absl::StatusOr<std::unique_ptr<Observer>> StartObserver(ObserveMode mode, const Config& config,
                                                        const std::vector<GpuDevice>& devices,
                                                        const std::string& pin_dir, const std::string& run_dir) {
  ObserverOptions options;
  options.mode = mode;
  options.pin_dir = pin_dir;
  options.max_cgroups = config.max_cgroups;
  options.classes = config.classes;
  options.gpu_devices = devices;
  options.probe_dir = run_dir;
  absl::StatusOr<std::unique_ptr<Observer>> observer = Observer::Start(options);
  if (!observer.ok()) return observer;
  LogInfo("mode: %s: %s", ObserveModeName((*observer)->mode()), (*observer)->reason());
  if ((*observer)->mode() == ObserveMode::kTracepoint) {
    LogInfo("observe only: tracepoint mode counts but can never deny or enforce anything");
  }
  return observer;
}

absl::StatusOr<std::unique_ptr<VerdictService>> StartVerdicts(const Config& config, const std::string& state_dir,
                                                              const std::vector<GpuDevice>& devices,
                                                              const Observer& observer,
                                                              const CgroupResolver* resolver) {
  VerdictService::Options verdict_options;
  verdict_options.policy = config.policy;
  verdict_options.classes = config.classes;
  verdict_options.state_dir = state_dir;
  verdict_options.runc_roots = RootsOf(config.tiers, *FindRuntime("runc"));
  verdict_options.gpu_selectors = SelectorPairs(devices);
  // Names from the runtimes, one config.json read per container.
  auto names = std::make_shared<ContainerNameCache>(
      [tiers = config.tiers](const std::string& runtime, const std::string& id, const std::string& cgroup) {
        return LookUpContainerName(tiers, runtime, id, cgroup);
      });
  verdict_options.name_of = [names](const ContainerIdentity& container, const std::string& cgroup_path) {
    return names->NameOf(container.runtime, container.container_id, cgroup_path, absl::Now());
  };
  absl::StatusOr<std::unique_ptr<VerdictService>> verdicts = VerdictService::Create(
      verdict_options, observer.map_fd(GT_MAP_CG_STATS), observer.map_fd(GT_MAP_VERDICTS), resolver);
  if (!verdicts.ok()) return verdicts;
  LogInfo("classifier: %s decides; state in %s; a tick every %s", (*verdicts)->Describe(), state_dir,
          absl::FormatDuration(config.policy.tick));
  return verdicts;
}

absl::StatusOr<std::unique_ptr<TierManager>> CreateTiers(const Config& config, const std::string& state_dir,
                                                         const CgroupResolver& resolver) {
  TierManager::Options tier_options;
  tier_options.config = config.tiers;
  tier_options.state_dir = state_dir;
  tier_options.cgroup_root = resolver.mount_point();
  return TierManager::Create(tier_options);
}

absl::StatusOr<std::unique_ptr<EnforcementService>> StartEnforcement(const Config& config,
                                                                     const std::string& pin_dir,
                                                                     Observer& observer,
                                                                     const CgroupResolver& resolver) {
  EnforcementService::Options enforcement_options;
  enforcement_options.config = config.enforcement;
  enforcement_options.fast_root = config.tiers.fast_root;
  enforcement_options.pin_dir = pin_dir;
  enforcement_options.max_cgroups = config.max_cgroups;
  return EnforcementService::Start(enforcement_options, observer, resolver);
}

// What the main loop drives; owned by Run.
struct Agent {
  Observer* observer;
  const CgroupResolver* resolver;
  VerdictService* verdicts;
  TierManager* tiers;
  EnforcementService* enforcement;
  MetricsServer* metrics;  // null when off
  int stats_fd;
  int guard_cg_fd;
  int drops_fd;
  const AgentFacts* facts;  // what status says of this gputierd
};

// One classification tick, and what follows from it: the tier manager and
// the guard get the new verdicts, the metrics a new snapshot.
void Tick(const Agent& agent, const absl::StatusOr<ClassNames>& names, MetricsFeed* feed, DropCounts* drops) {
  const absl::Time tick_start = absl::Now();
  if (absl::Status s = agent.verdicts->Tick(); !s.ok()) {
    LogWarning("classification tick: %s", s.message());
    feed->CountError("tick");
  }
  feed->ObserveTick(absl::Now() - tick_start);
  CheckDrops(agent.drops_fd, drops);
  std::vector<ContainerVerdictView> containers = agent.verdicts->Containers();
  agent.tiers->UpdateContainers(containers);
  // One copy of the tier worker's published status serves the move times,
  // the guard and the metrics snapshot.
  const nlohmann::json tiering = agent.tiers->StatusJson();
  agent.facts->moves->Note(tiering, absl::Now());
  if (agent.enforcement->active()) agent.enforcement->Refresh(OnFastTier(tiering, containers));
  if (agent.metrics != nullptr) {
    const absl::Time snapshot_start = absl::Now();
    agent.metrics->Publish(feed->Take(VerdictRowsOf(containers), tiering, agent.stats_fd,
                                      agent.drops_fd, names.ok() ? *names : ClassNames{}));
    agent.metrics->SetReady();
    feed->ObserveSnapshot(absl::Now() - snapshot_start);
  }
}

// GPU devices that appeared or went since `*devices`: the observer and the
// classifier follow them.
void RescanGpuDevices(const Agent& agent, const Config& config, std::vector<GpuDevice>* devices) {
  std::vector<std::string> ignored;
  absl::StatusOr<std::vector<GpuDevice>> fresh = ResolveGpuDevices(config.gpu_devices, &ignored);
  if (!fresh.ok() || SelectorsOf(*fresh) == SelectorsOf(*devices)) return;
  LogInfo("GPU devices changed on the node");
  LogGpuDevices(*fresh);
  if (absl::Status s = agent.observer->SetGpuDevices(*fresh); !s.ok()) LogWarning("%s", s.message());
  agent.verdicts->SetGpuSelectors(SelectorPairs(*fresh));
  *devices = *std::move(fresh);
}

// What gt_drops counted before this start (pins reused): reported once, not
// warned about again.
DropCounts DropsAtStart(int drops_fd) {
  absl::StatusOr<DropCounts> drops = ReadDrops(drops_fd);
  if (!drops.ok()) return {};
  if ((*drops)[GT_DROP_CGROUP_MAP_FULL] + (*drops)[GT_DROP_RINGBUF_FULL] > 0) {
    LogInfo("gt_drops from earlier runs: %d new cgroup(s) not counted, %d event(s) lost",
            (*drops)[GT_DROP_CGROUP_MAP_FULL], (*drops)[GT_DROP_RINGBUF_FULL]);
  }
  return *drops;
}

// The main loop, until SIGINT or SIGTERM: BPF events, control requests,
// classification ticks, GPU device rescans, sweeps of removed cgroups, and
// the live counters.
void ServeUntilStopped(const Agent& agent, const Config& config, ring_buffer* rb, ControlServer* control,
                       std::vector<GpuDevice>* devices) {
  absl::StatusOr<ClassNames> names = ReadClassNames(agent.observer->map_fd(GT_MAP_CLASS_NAMES));
  // The enforcement in force ("off" where the guard is not running).
  MetricsFeed feed(ObserveModeName(agent.observer->mode()), agent.enforcement->StatusJson().value("mode", "off"));
  absl::flat_hash_map<uint64_t, gt_cgroup_stats> shown;
  const absl::Duration interval = absl::GetFlag(FLAGS_interval);
  absl::Time next_print = absl::Now() + interval;
  absl::Time next_rescan = absl::Now() + absl::Seconds(10);
  absl::Time next_sweep = absl::Now() + absl::Minutes(5);
  absl::Time next_tick = absl::Now();
  DropCounts drops = DropsAtStart(agent.drops_fd);
  std::vector<pollfd> fds;
  while (!g_stop) {
    const int wait_ms = static_cast<int>(
        std::clamp<int64_t>(absl::ToInt64Milliseconds(next_tick - absl::Now()), 0, 200));
    fds.assign({{ring_buffer__epoll_fd(rb), POLLIN, 0}});
    control->AddPollFds(&fds);
    if (poll(fds.data(), fds.size(), wait_ms) < 0 && errno != EINTR) {
      LogError("poll: %s", strerror(errno));
      break;
    }
    if (int n = ring_buffer__consume(rb); n < 0 && n != -EINTR) {
      LogError("reading gt_events: %s", strerror(-n));
      break;
    }
    // Every connection moves on as far as it can without blocking; one
    // that stalls only runs into its own deadline.
    control->Serve([&](const ControlRequest& request) {
      nlohmann::json answer = HandleRequest(request, agent.verdicts, agent.tiers, agent.enforcement, drops,
                                            *agent.facts);
      if (!answer.value("ok", false)) feed.CountError("control_request");
      return answer;
    });
    absl::Time now = absl::Now();
    if (now >= next_tick) {
      next_tick = now + config.policy.tick;
      Tick(agent, names, &feed, &drops);
    }
    if (now >= next_rescan) {
      next_rescan = now + absl::Seconds(10);
      RescanGpuDevices(agent, config, devices);
    }
    if (now >= next_sweep) {
      // The cgroup_rmdir hook removes entries as cgroups go; this only catches
      // what was removed while no agent was attached (resolving every id costs
      // two syscalls each, so it runs rarely).
      next_sweep = now + absl::Minutes(5);
      SweepRemovedCgroups(agent.stats_fd, agent.guard_cg_fd, *agent.resolver);
    }
    if (now < next_print || absl::GetFlag(FLAGS_quiet) || !names.ok()) continue;
    next_print = now + interval;
    PrintChangedCounters(agent.stats_fd, *agent.resolver, *names, now, &shown);
  }
}

// A start step that failed: its reason logged, true. Run turns it into the
// step's exit code (2: bad flags or config, 1: the node refused).
bool Failed(const absl::Status& status) {
  if (status.ok()) return false;
  LogError("%s", status.message());
  return true;
}
template <typename T>
bool Failed(const absl::StatusOr<T>& value) {
  return Failed(value.status());
}

// What the flags and the config ask for, checked before anything is made.
struct StartRequest {
  ObserveMode mode = ObserveMode::kAuto;
  Config config;
  std::string metrics_ports;
  std::optional<uint32_t> read_group;
  std::string pin_dir = absl::GetFlag(FLAGS_pin_dir);
  std::string run_dir = absl::GetFlag(FLAGS_run_dir);
  std::string state_dir = absl::GetFlag(FLAGS_state_dir);
};

// Opens the event ring and the control socket, says the agent is ready and
// serves until SIGINT or SIGTERM.
int Serve(const StartRequest& request, const Agent& agent, std::vector<GpuDevice>* devices) {
  EventContext event_context{agent.resolver, agent.verdicts, agent.tiers};
  ring_buffer* rb = ring_buffer__new(agent.observer->map_fd(GT_MAP_EVENTS), OnEvent, &event_context, nullptr);
  if (rb == nullptr) {
    LogError("opening the gt_events ring buffer failed: %s", strerror(errno));
    return 1;
  }
  ControlServer::Options control_options;
  control_options.read_group = request.read_group;
  absl::StatusOr<ControlServer> control =
      ControlServer::Listen(absl::StrCat(request.run_dir, "/", kControlSocketName), control_options);
  if (Failed(control)) {
    ring_buffer__free(rb);
    return 1;
  }
  WriteReadyFile(ObserveModeName(agent.observer->mode()));
  LogInfo("attached; counting per cgroup. Ctrl-C or SIGTERM stops (maps stay pinned in %s)", request.pin_dir);
  ServeUntilStopped(agent, request.config, rb, &*control, devices);
  ring_buffer__free(rb);
  LogInfo("stopping: programs detached, maps stay pinned in %s", request.pin_dir);
  return 0;
}

// Makes and loads everything, then serves until SIGINT or SIGTERM.
int RunAgent(const StartRequest& request, absl::Time process_start) {
  const Config& config = request.config;
  const std::string& pin_dir = request.pin_dir;
  // Bound before anything is made or loaded: a port in use stops the start
  // at once and leaves nothing behind.
  absl::StatusOr<std::unique_ptr<MetricsServer>> started = StartMetrics(config, request.metrics_ports);
  if (Failed(started)) return 1;
  std::unique_ptr<MetricsServer> metrics = *std::move(started);
  if (Failed(PrepareDirectories(request.run_dir, request.state_dir, pin_dir, request.read_group))) return 1;
  absl::StatusOr<Fd> lock = LockPinDir(pin_dir);
  if (Failed(lock)) return 1;
  absl::StatusOr<PinState> pins = CheckPinnedLayout(pin_dir);
  if (Failed(pins)) return 1;
  LogInfo("pins: %s (%s)", pin_dir,
          *pins == PinState::kEmpty ? "new" : "reusing maps of a previous run: counters continue");

  std::vector<std::string> notes;
  absl::StatusOr<std::vector<GpuDevice>> devices = ResolveGpuDevices(config.gpu_devices, &notes);
  if (Failed(devices)) return 1;
  for (const std::string& n : notes) LogWarning("%s", n);
  LogGpuDevices(*devices);
  absl::StatusOr<CgroupResolver> resolver = CgroupResolver::Create();
  if (Failed(resolver)) return 1;
  LogInfo("cgroup2 mount: %s", resolver->mount_point());

  absl::StatusOr<std::unique_ptr<Observer>> observer =
      StartObserver(request.mode, config, *devices, pin_dir, request.run_dir);
  if (Failed(observer)) {
    // libbpf removed the pins it made; leave no empty directory behind either.
    if (*pins == PinState::kEmpty) rmdir(pin_dir.c_str());
    return 1;
  }
  if (metrics) metrics->SetBpfObjects((*observer)->ProgramIds(), (*observer)->MapIds());
  const int stats_fd = (*observer)->map_fd(GT_MAP_CG_STATS);
  const int guard_cg_fd = (*observer)->map_fd(GT_MAP_GUARD_CG);
  SweepRemovedCgroups(stats_fd, guard_cg_fd, *resolver);

  absl::StatusOr<std::unique_ptr<VerdictService>> verdicts =
      StartVerdicts(config, request.state_dir, *devices, **observer, &*resolver);
  if (Failed(verdicts)) return 1;
  absl::StatusOr<std::unique_ptr<TierManager>> tiers = CreateTiers(config, request.state_dir, *resolver);
  if (Failed(tiers)) return 1;
  absl::StatusOr<std::unique_ptr<EnforcementService>> enforcement =
      StartEnforcement(config, pin_dir, **observer, *resolver);
  if (Failed(enforcement)) return 1;
  (*tiers)->Start();

  MoveTimes moves;
  const AgentFacts facts = {ObserveModeName((*observer)->mode()), process_start, &moves};
  const Agent agent{observer->get(), &*resolver, verdicts->get(), tiers->get(), enforcement->get(),
                    metrics.get(),   stats_fd,   guard_cg_fd,     (*observer)->map_fd(GT_MAP_DROPS),
                    &facts};
  return Serve(request, agent, &*devices);
}

int Run() {
  const absl::Time process_start = absl::Now();
  InstallSignalHandlers();
  StartRequest request;
  absl::StatusOr<ObserveMode> mode = ParseObserveMode(absl::GetFlag(FLAGS_mode));
  if (Failed(mode)) return 2;
  request.mode = *mode;
  absl::StatusOr<Config> loaded = LoadConfig();
  if (Failed(loaded)) return 2;
  request.config = *std::move(loaded);
  absl::StatusOr<std::string> metrics_ports = ParseMetricsAddress(absl::GetFlag(FLAGS_metrics_address));
  if (Failed(metrics_ports)) return 2;
  request.metrics_ports = *std::move(metrics_ports);
  if (geteuid() != 0) {
    LogError("gputierd needs root (CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN) to load BPF programs; run it as root");
    return 1;
  }
  absl::StatusOr<std::optional<uint32_t>> read_group = ControlReadGroup(request.config);
  if (Failed(read_group)) return 2;
  request.read_group = *read_group;
  return RunAgent(request, process_start);
}

}  // namespace
}  // namespace gputier

int main(int argc, char** argv) {
  std::vector<std::string> rest = gputier::ParseFlags(
      argc, argv, "gputierd",
      "the gputier node agent.\n\n"
      "Watches every cgroup from the kernel (BPF LSM when the kernel allows it, observe-only\n"
      "tracepoints otherwise), pins its maps for `gputierctl audit`, and prints live\n"
      "per-container counters.\n\n"
      "Usage: gputierd [--mode=auto|lsm|tracepoint] [--config=FILE] [--pin-dir=DIR] [-v]\n"
      "       gputierd --check-config [--config=FILE]\n"
      "Flags may be spelled with - or _ (--pin-dir or --pin_dir).");
  if (!rest.empty()) {
    fprintf(stderr, "gputierd: unexpected argument '%s'; see gputierd --help\n", rest[0].c_str());
    return 2;
  }
  if (absl::GetFlag(FLAGS_check_config)) return gputier::CheckConfig();
  // Under systemd with stderr on the journal: "<N>message" lines.
  gputier::SetLogFormat(gputier::LogFormatFor(STDERR_FILENO, getenv("JOURNAL_STREAM")));
  if (absl::GetFlag(FLAGS_verbose)) gputier::SetLogLevel(gputier::LogLevel::kDebug);
  gputier::RouteLibbpfLogs();
  return gputier::Run();
}
