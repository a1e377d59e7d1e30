// gputierctl: inspect a gputier node. Reads the pinned maps directly, so it
// needs no running daemon.
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <optional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "loader/cgroup/cgroup_resolver.h"
#include "loader/classify/classification_table.h"
#include "loader/cli.h"
#include "loader/config/config.h"
#include "loader/control/control.h"
#include "loader/doctor.h"
#include "loader/enforce/enforcement.h"
#include "loader/observe/gpu_devices.h"
#include "loader/enforce/guard_maps.h"
#include "loader/base/json_text.h"
#include "loader/base/log.h"
#include "loader/observe/maps.h"
#include "loader/observe/pin_dir.h"
#include "loader/report.h"
#include "loader/tier/tier_uninstall.h"
#include "loader/top_command.h"
#include "loader/base/utf8.h"

ABSL_FLAG(std::string, pin_dir, gputier::kDefaultPinDir, "bpffs directory of gputierd's pins");
ABSL_FLAG(std::string, run_dir, "/run/gputier", "gputierd's runtime directory (its control socket)");
ABSL_FLAG(std::string, state_dir, gputier::kDefaultStateDir,
          "uninstall: gputierd's state directory (the tier records of containers still tiered)");
ABSL_FLAG(std::string, config, "",
          "uninstall: gputierd's config file (where its tiers are; default: the built-in tiers)");
ABSL_FLAG(bool, json, false, "machine-readable output (audit, status, explain)");
ABSL_FLAG(bool, events, false,
          "audit: list the guard and tamper records (newest last) instead of the per-cgroup counters");
ABSL_FLAG(absl::Duration, wait, absl::Seconds(60),
          "tier: how long to wait for the move to finish (0: do not wait)");
ABSL_FLAG(bool, verbose, false, "debug logging, including libbpf's messages");
ABSL_FLAG(absl::Duration, interval, absl::Seconds(1), "top: time between refreshes");
ABSL_FLAG(bool, once, false, "top: print one snapshot and exit");
ABSL_FLAG(bool, plain, false, "top: plain lines, one snapshot per interval, even on a terminal");

namespace gputier {
namespace {

constexpr char kUsage[] =
    "inspect a gputier node.\n\n"
    "Usage: gputierctl <command> [flags]\n\n"
    "Commands:\n"
    "  doctor          what this kernel offers (BTF, LSM list, program loadability,\n"
    "                  cgroup2, overlayfs, mount API) and the mode gputierd would pick\n"
    "  audit [--json] [--events]\n"
    "                  per-cgroup counters (with guard and tamper counts) read straight\n"
    "                  from the pinned maps, then the guard and tamper records;\n"
    "                  --events: only the records\n"
    "  status [--json] one row per cgroup: container, verdict, confidence, source, since,\n"
    "                  features; then each tiered container's tier and bytes on each tier\n"
    "                  (asks the running gputierd)\n"
    "  top [--interval=1s] [--once] [--plain]\n"
    "                  live table of the containers (asks the running gputierd): verdict,\n"
    "                  confidence, tier, bytes on each tier, GPU ioctls/s, share of GPU-type\n"
    "                  files, last promotion or demotion; the agent's mode, enforcement and\n"
    "                  fast tier use on top. Full screen on a terminal (Ctrl-C quits),\n"
    "                  plain snapshots otherwise\n"
    "  explain TARGET  each feature against its threshold, the rule's answer, the model's\n"
    "                  per-class log-likelihoods, and why the verdict won\n"
    "  train           retrain the Naive Bayes model from the classification table now\n"
    "  label TARGET gpu|cpu|mixed\n"
    "                  record an operator label (outweighs the agent's rows in training)\n"
    "  tier TARGET fast|slow|auto [--wait=DURATION]\n"
    "                  put the container's tiered directories on that tier whatever its\n"
    "                  verdict (auto: follow the verdict again); waits until it is done\n"
    "  unpin           remove gputier's pinned maps from --pin-dir (counters are lost),\n"
    "                  and the directory when nothing else is in it\n"
    "  uninstall [--pin-dir=DIR] [--state-dir=DIR] [--config=FILE]\n"
    "                  with gputierd stopped: remove its pins and pin directory, the spare\n"
    "                  and every leftover fast partition (unmounted, loop device freed,\n"
    "                  image removed; a gone container's fast data written back to the\n"
    "                  slow tier first); one line per thing removed\n\n"
    "TARGET: a container's name (namespace/pod/container, or podman's name), its id (or a\n"
    "unique prefix of 4+ characters, such as the short id), its cgroup path, or a cgroup\n"
    "id. A name several containers share is refused with the list of them.\n";

int Doctor() {
  if (geteuid() != 0) {
    fprintf(stderr, "gputierctl doctor: needs root to load probe programs; run it as root\n");
    return 1;
  }
  DoctorReport report = RunDoctor("/tmp");
  fputs(FormatDoctorReport(report).c_str(), stdout);
  return report.mode == "none" ? 1 : 0;
}

const char* EnforcementWord(uint32_t mode) {
  switch (mode) {
    case GT_ENFORCE_AUDIT: return "audit";
    case GT_ENFORCE_DENY: return "enforce";
  }
  return "off";
}

std::string SocketPath();

// The names gputierd gave the containers it counts (cgroup id -> name), for
// audit, which reads the pins itself; empty when no gputierd answers within
// 2 s (audit works without one).
absl::flat_hash_map<uint64_t, std::string> NamesFromAgent() {
  absl::flat_hash_map<uint64_t, std::string> names;
  absl::StatusOr<nlohmann::json> answer =
      SendControlRequest(SocketPath(), {{"cmd", "status"}}, absl::Seconds(2));
  if (!answer.ok() || !answer->value("ok", false) || !answer->contains("cgroups")) return names;
  for (const nlohmann::json& r : (*answer)["cgroups"]) {
    if (!r.is_object() || !r.contains("name") || !r["name"].is_string() || !r["cgroup_id"].is_number_unsigned()) {
      continue;
    }
    names[r["cgroup_id"].get<uint64_t>()] = r["name"].get<std::string>();
  }
  return names;
}

nlohmann::json RecordJson(const gt_audit_record& r, const CgroupResolver& resolver,
                          const absl::flat_hash_map<uint64_t, std::string>& names) {
  absl::StatusOr<std::string> path = resolver.PathOf(r.cgroup_id);
  nlohmann::json j = {{"ts_ns", r.ts_ns},
                      {"kind", r.kind == GT_AUDIT_TAMPER ? "tamper" : "guard"},
                      {"op", AuditOpName(r.op)},
                      {"denied", r.denied != 0},
                      {"pid", r.pid},
                      {"uid", r.uid},
                      {"comm", std::string(r.comm, strnlen(r.comm, sizeof(r.comm)))},
                      {"cgroup_id", r.cgroup_id},
                      {"cgroup_path", path.ok() ? nlohmann::json(*path) : nlohmann::json(nullptr)},
                      {"name", names.contains(r.cgroup_id) ? nlohmann::json(names.at(r.cgroup_id))
                                                           : nlohmann::json(nullptr)},
                      {"verdict", r.verdict == GT_VERDICT_CPU     ? "cpu"
                                  : r.verdict == GT_VERDICT_GPU   ? "gpu"
                                  : r.verdict == GT_VERDICT_MIXED ? "mixed"
                                                                  : "unknown"}};
  if (r.kind == GT_AUDIT_TAMPER) {
    j[r.op == GT_OP_LINK_FD ? "link_id" : "map_id"] = r.target;
  } else {
    j["filesystem"] = absl::StrFormat("%u:%u", r.target >> 20, r.target & 0xfffff);
  }
  return j;
}

int Audit() {
  const std::string pin_dir = absl::GetFlag(FLAGS_pin_dir);
  absl::StatusOr<PinnedMaps> maps = OpenPinnedMaps(pin_dir);
  if (!maps.ok()) {
    fprintf(stderr, "gputierctl audit: %s\n", std::string(maps.status().message()).c_str());
    return 1;
  }
  absl::StatusOr<CgroupCounters> counters = ReadCgroupCounters(maps->cg_stats.get());
  absl::StatusOr<ClassNames> names = ReadClassNames(maps->class_names.get());
  absl::StatusOr<CgroupResolver> resolver = CgroupResolver::Create();
  absl::StatusOr<std::vector<std::pair<uint64_t, gt_guard_stats>>> guard = ReadGuardStats(maps->guard_cg.get());
  absl::StatusOr<std::vector<gt_audit_record>> records = ReadAuditLog(maps->audit_log.get());
  for (const absl::Status& s :
       {counters.status(), names.status(), resolver.status(), guard.status(), records.status()}) {
    if (!s.ok()) {
      fprintf(stderr, "gputierctl audit: %s\n", std::string(s.message()).c_str());
      return 1;
    }
  }
  const bool json = absl::GetFlag(FLAGS_json);
  const absl::flat_hash_map<uint64_t, std::string> agent_names = NamesFromAgent();
  if (absl::GetFlag(FLAGS_events)) {
    nlohmann::json out = nlohmann::json::array();
    for (const gt_audit_record& r : *records) out.push_back(RecordJson(r, *resolver, agent_names));
    if (json) {
      printf("%s\n", JsonText(out, 2).c_str());
    } else {
      for (const gt_audit_record& r : *records) {
        absl::StatusOr<std::string> path = resolver->PathOf(r.cgroup_id);
        printf("%.3f  %s\n", r.ts_ns / 1e9, DescribeAuditRecord(r, path.ok() ? *path : "removed").c_str());
      }
      if (records->empty()) printf("no guard or tamper records\n");
    }
    return 0;
  }
  absl::flat_hash_map<uint64_t, gt_guard_stats> guard_of(guard->begin(), guard->end());
  // A cgroup seen only by the guard or the tamper watch (say, a process that
  // made bpf() calls and nothing else) still gets its row.
  absl::flat_hash_set<uint64_t> counted;
  for (const auto& [id, stats] : *counters) counted.insert(id);
  for (const auto& [id, g] : *guard) {
    if (!counted.contains(id)) counters->emplace_back(id, gt_cgroup_stats{});
  }
  std::vector<CgroupRow> rows = BuildRows(*counters, *resolver);
  for (CgroupRow& row : rows) {
    auto it = agent_names.find(row.cgroup_id);
    // gputierd answers the short id where it knows no name.
    if (row.container && it != agent_names.end() && it->second != row.container->container_id.substr(0, 12)) {
      row.name = it->second;
    }
  }
  if (json) {
    nlohmann::json out = RowsToJson(rows, *names);
    for (nlohmann::json& row : out) {
      const auto it = guard_of.find(row.value("cgroup_id", uint64_t{0}));
      const gt_guard_stats g = it == guard_of.end() ? gt_guard_stats{} : it->second;
      row["guard_audited"] = g.guard_audited;
      row["guard_denied"] = g.guard_denied;
      row["tamper_events"] = g.tamper_events;
    }
    printf("%s\n", JsonText(out, 2).c_str());
    return 0;
  }
  absl::StatusOr<gt_meta> meta = ReadMeta(maps->meta.get());
  absl::StatusOr<std::array<uint64_t, GT_DROP_MAX>> drops = ReadDrops(maps->drops.get());
  absl::StatusOr<gt_guard_cfg> cfg = ReadGuardCfg(maps->guard_cfg.get());
  printf("pins: %s  layout v%u  last mode: %s\n", pin_dir.c_str(), meta.ok() ? meta->abi_version : 0,
         !meta.ok() ? "?" : meta->mode == GT_MODE_LSM ? "lsm" : meta->mode == GT_MODE_TRACEPOINT ? "tracepoint" : "none");
  if (cfg.ok()) {
    // A gputierd killed with SIGKILL never cleared its record: say whether
    // the agent that wrote it still runs (its links die with it).
    std::string comm;
    if (cfg->mode != GT_ENFORCE_OFF) {
      std::ifstream(absl::StrCat("/proc/", cfg->agent_tgid, "/comm")) >> comm;
    }
    printf("enforcement: %s\n",
           cfg->mode == GT_ENFORCE_OFF
               ? "off (no guard attached: tracepoint mode, enforcement off, or no gputierd)"
           : comm == "gputierd"
               ? absl::StrFormat("%s (guard attached by gputierd pid %u)", EnforcementWord(cfg->mode),
                                 cfg->agent_tgid).c_str()
               : absl::StrFormat("none attached (last set to %s by gputierd pid %u, which no longer runs)",
                                 EnforcementWord(cfg->mode), cfg->agent_tgid).c_str());
  }
  if (drops.ok()) {
    printf("dropped: %llu (cgroup map full), %llu (ring buffer full), %llu (name unreadable)\n",
           static_cast<unsigned long long>((*drops)[GT_DROP_CGROUP_MAP_FULL]),
           static_cast<unsigned long long>((*drops)[GT_DROP_RINGBUF_FULL]),
           static_cast<unsigned long long>((*drops)[GT_DROP_NAME_READ]));
  }
  fputs(RowsToTable(rows, *names).c_str(), stdout);
  if (!guard->empty()) {
    printf("\nguard and tamper counts per cgroup:\n%-10s %9s %9s %9s  %s\n", "cgroup", "audited", "denied",
           "tamper", "path");
    for (const auto& [id, g] : *guard) {
      absl::StatusOr<std::string> path = resolver->PathOf(id);
      printf("%-10llu %9llu %9llu %9llu  %s\n", static_cast<unsigned long long>(id),
             static_cast<unsigned long long>(g.guard_audited), static_cast<unsigned long long>(g.guard_denied),
             static_cast<unsigned long long>(g.tamper_events), path.ok() ? path->c_str() : "removed");
    }
  }
  printf("\nguard and tamper records (newest %d per CPU, oldest first):\n", GT_AUDIT_SLOTS);
  if (records->empty()) printf("  none\n");
  for (const gt_audit_record& r : *records) {
    absl::StatusOr<std::string> path = resolver->PathOf(r.cgroup_id);
    printf("  %.3f  %s\n", r.ts_ns / 1e9, DescribeAuditRecord(r, path.ok() ? *path : "removed").c_str());
  }
  return 0;
}

std::string SocketPath() {
  return absl::StrCat(absl::GetFlag(FLAGS_run_dir), "/", kControlSocketName);
}

// Sends a request to gputierd; prints the error and returns nullopt on failure.
std::optional<nlohmann::json> Ask(const char* command, const nlohmann::json& request) {
  absl::StatusOr<nlohmann::json> answer = SendControlRequest(SocketPath(), request);
  if (!answer.ok()) {
    fprintf(stderr, "gputierctl %s: %s\n", command, std::string(answer.status().message()).c_str());
    return std::nullopt;
  }
  return *answer;
}

std::string Num(const nlohmann::json& v, const char* fmt) {
  return v.is_number() ? absl::StrFormat(fmt, v.get<double>()) : "-";
}

void PrintTiering(const nlohmann::json& t) {
  const nlohmann::json& tiers = t["tiers"];
  printf("\ntiers: fast %s, slow %s%s", tiers["fast_root"].get<std::string>().c_str(),
         tiers["slow_root"].get<std::string>().c_str(),
         tiers["built_in_default"].get<bool>() ? " (built-in default on the local disk)" : "");
  if (tiers.contains("fast_used")) {
    printf("; fast tier %s of %s in use", HumanBytes(tiers["fast_used"].get<uint64_t>()).c_str(),
           HumanBytes(tiers["fast_total"].get<uint64_t>()).c_str());
  }
  printf("\n");
  if (tiers.contains("devices")) {
    for (const char* which : {"fast", "slow"}) {
      if (!tiers["devices"].contains(which)) continue;
      const nlohmann::json& d = tiers["devices"][which];
      printf("  %s: %s", which, d.value("description", std::string("?")).c_str());
      if (d.contains("probe_mib_per_s")) printf("; start probe %.0f MiB/s", d["probe_mib_per_s"].get<double>());
      printf("\n");
    }
  }
  if (t["containers"].empty()) {
    printf("no tiered containers%s\n",
           tiers["tiered_paths"].empty() && tiers["gpu_data_paths"].empty()
               ? " (no tiered_paths configured)"
               : "");
    return;
  }
  printf("%-22s %-6s %-8s %-8s %9s %9s  %s\n", "CONTAINER", "TIER", "VERDICT", "OVERRIDE", "FAST",
         "SLOW", "PATHS");
  for (const nlohmann::json& r : t["containers"]) {
    std::string paths;
    for (const auto& [path, tier] : r["paths"].items()) {
      absl::StrAppend(&paths, paths.empty() ? "" : " ", path, "=", tier.get<std::string>());
    }
    const std::string shown = r.contains("name") && r["name"].is_string() ? r["name"].get<std::string>()
                                                                           : r["container_id"].get<std::string>();
    printf("%-22s %-6s %-8s %-8s %9s %9s  %s\n", EscapeControlAndInvalid(shown).c_str(),
           r["tier"].get<std::string>().c_str(), r["verdict"].get<std::string>().c_str(),
           r["override"].get<std::string>().c_str(), HumanBytes(r["bytes_fast"].get<uint64_t>()).c_str(),
           HumanBytes(r["bytes_slow"].get<uint64_t>()).c_str(), paths.c_str());
    if (r["op"] != "none") printf("  in progress: %s\n", r["op"].get<std::string>().c_str());
    if (r["last_error"].is_string()) {
      printf("  %s\n", EscapeControlAndInvalid(r["last_error"].get<std::string>()).c_str());
    }
  }
}

int StatusCommand() {
  std::optional<nlohmann::json> a = Ask("status", {{"cmd", "status"}});
  if (!a) return 1;
  if (absl::GetFlag(FLAGS_json)) {
    a->erase("ok");
    printf("%s\n", JsonText(*a, 2).c_str());
    return 0;
  }
  printf("classifier: %s\n", (*a)["classifier"].get<std::string>().c_str());
  if (a->contains("degraded") && (*a)["degraded"].is_string()) {
    printf("DEGRADED: %s\n", EscapeControlAndInvalid((*a)["degraded"].get<std::string>()).c_str());
  }
  if (a->contains("enforcement")) {
    printf("%s\n", (*a)["enforcement"].value("reason", "").c_str());
  }
  printf("%-10s %-22s %-8s %5s %-8s %10s %6s %9s %9s  %s\n", "CGROUP_ID", "CONTAINER", "VERDICT", "CONF",
         "SOURCE", "GPU_IOCTL/s", "EXT", "OPENS/s", "WRITE/s", "CGROUP");
  for (const nlohmann::json& r : (*a)["cgroups"]) {
    std::string container = "-";
    if (r.contains("name") && r["name"].is_string()) {
      container = EscapeControlAndInvalid(r["name"].get<std::string>());
    } else if (r["container_id"].is_string()) {
      container = absl::StrCat(r["runtime"].get<std::string>(), ":",
                               r["container_id"].get<std::string>().substr(0, 12));
    }
    const nlohmann::json& f = r["features"];
    printf("%-10llu %-22s %-8s %5d %-8s %10s %6s %9s %9s  %s\n",
           static_cast<unsigned long long>(r["cgroup_id"].get<uint64_t>()), container.c_str(),
           r["verdict"].get<std::string>().c_str(), r["confidence"].get<int>(),
           r["source"].get<std::string>().c_str(), Num(f["gpu_ioctl_rate"], "%.1f").c_str(),
           Num(f["ext_ratio"], "%.2f").c_str(), Num(f["open_rate"], "%.1f").c_str(),
           HumanBytes(static_cast<uint64_t>(f["write_rate"].get<double>())).c_str(),
           r["cgroup_path"].is_string() ? EscapeControlAndInvalid(r["cgroup_path"].get<std::string>()).c_str()
                                        : "(removed)");
  }
  if (a->contains("tiering")) PrintTiering((*a)["tiering"]);
  return 0;
}

// Polls status until the container's directories are all on `want`, an
// operation ends in an error worth stopping for, or `wait` runs out.
int WaitForTier(const std::string& id, const std::string& want, absl::Duration wait) {
  const absl::Time deadline = absl::Now() + wait;
  std::string last_error;
  while (true) {
    std::optional<nlohmann::json> a = Ask("tier", {{"cmd", "status"}});
    if (!a) return 1;
    for (const nlohmann::json& r : (*a)["tiering"]["containers"]) {
      if (r["container_id"] != id) continue;
      if (r["tier"] == want && r["op"] == "none") {
        printf("container %s: %s\n", id.c_str(), want.c_str());
        return 0;
      }
      if (r["last_error"].is_string() && r["last_error"].get<std::string>() != last_error) {
        last_error = r["last_error"].get<std::string>();
        fprintf(stderr, "gputierctl tier: %s (still trying)\n", last_error.c_str());
      }
    }
    if (absl::Now() >= deadline) {
      fprintf(stderr, "gputierctl tier: container %s is not on the %s tier after %s; see gputierctl status\n",
              id.c_str(), want.c_str(), absl::FormatDuration(wait).c_str());
      return 1;
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
}

int TierCommand(const std::string& target, const std::string& choice) {
  std::optional<nlohmann::json> a = Ask("tier", {{"cmd", "tier"}, {"target", target}, {"tier", choice}});
  if (!a) return 1;
  const std::string id = (*a)["container_id"].get<std::string>();
  const absl::Duration wait = absl::GetFlag(FLAGS_wait);
  if (choice == "auto" || wait <= absl::ZeroDuration()) {
    const std::string name = a->contains("name") && (*a)["name"].is_string() ? (*a)["name"].get<std::string>() : id;
    printf("container %s: %s\n", EscapeControlAndInvalid(name).c_str(),
           choice == "auto" ? "follows its verdict" : "queued");
    return 0;
  }
  return WaitForTier(id, choice, wait);
}

std::string Bytes(uint64_t b) {
  if (b >= (uint64_t{1} << 30)) return absl::StrFormat("%.1f GiB", static_cast<double>(b) / (1 << 30));
  if (b >= (uint64_t{1} << 20)) return absl::StrFormat("%.1f MiB", static_cast<double>(b) / (1 << 20));
  return absl::StrCat(b, " B");
}

// The GPU use measured outside the counters, each with its source.
void PrintGpuUse(const nlohmann::json& a) {
  if (!a.contains("gpu_use")) return;
  const nlohmann::json& f = a["features"];
  const nlohmann::json& u = a["gpu_use"];
  printf("\ngpu use (measured outside the counters):\n");
  if (u.contains("proc_scan")) {
    const nlohmann::json& p = u["proc_scan"];
    const std::string summary = p["summary"].get<std::string>();
    printf("  gpu_contexts_held %d (proc scan: %s; %d processes%s)\n", p["contexts_held"].get<int>(),
           summary.empty() ? "no GPU device open" : summary.c_str(), p["processes"].get<int>(),
           p["truncated"].get<bool>() ? "; cut short by a scan bound" : "");
  } else {
    printf("  gpu_contexts_held unknown (not scanned: the cgroup never opened a GPU device, or not its turn yet)\n");
  }
  if (f["gpu_busy_share"].is_number()) {
    printf("  gpu_busy_share %.3g (%s)\n", f["gpu_busy_share"].get<double>(),
           f["gpu_busy_source"].get<std::string>().c_str());
  } else {
    printf("  gpu_busy_share unknown (no DRM usage stats, no NVML process)\n");
  }
  if (f.value("gpu_resident_bytes", uint64_t{0}) > 0) {
    printf("  gpu_resident %s\n", Bytes(f["gpu_resident_bytes"].get<uint64_t>()).c_str());
  }
  if (f["context_last_used_windows"].is_number()) {
    printf("  context_last_used %.3g windows ago (a held context is GPU use within %d windows)\n",
           f["context_last_used_windows"].get<double>(), a.value("gpu_context_used_windows", 0));
  } else {
    printf("  context_last_used never (no GPU ioctl and no busy share seen)\n");
  }
  if (u.contains("nvml")) {
    const nlohmann::json& n = u["nvml"];
    printf("  nvml: busy share %.3g, GPU memory %s\n", n["busy_share"].get<double>(),
           Bytes(n["used_memory_bytes"].get<uint64_t>()).c_str());
    for (const nlohmann::json& p : n["processes"]) {
      printf("    pid %u: sm %.3g (%u samples), memory %s, %u GPUs\n", p["pid"].get<unsigned>(),
             p["sm_share"].get<double>(), p["samples"].get<unsigned>(),
             Bytes(p["used_memory_bytes"].get<uint64_t>()).c_str(), p["gpus"].get<unsigned>());
    }
  }
  if (u.contains("drm")) {
    const nlohmann::json& d = u["drm"];
    printf("  drm: busy share %s, resident %s\n",
           d["busy_share"].is_number() ? absl::StrFormat("%.3g", d["busy_share"].get<double>()).c_str()
                                       : "unknown until the next scan",
           Bytes(d["resident_bytes"].get<uint64_t>()).c_str());
    for (const nlohmann::json& c : d["clients"]) {
      std::string engines;
      for (const auto& [name, ns] : c["engines_busy_ns"].items()) {
        absl::StrAppend(&engines, engines.empty() ? "" : ", ", name, " ", ns.get<uint64_t>(), " ns");
      }
      printf("    client %llu (%s %s): %s\n", static_cast<unsigned long long>(c["client_id"].get<uint64_t>()),
             c["driver"].get<std::string>().c_str(), c["pdev"].get<std::string>().c_str(),
             engines.empty() ? "no engine times" : engines.c_str());
    }
  }
}

// " (container NAME, id ID)" from a reply's container_id and name, " (container
// ID)" without a name, "" for a cgroup that is no container's.
std::string ContainerPhrase(const nlohmann::json& reply) {
  if (!reply.contains("container_id") || !reply["container_id"].is_string()) return "";
  const std::string id = reply["container_id"].get<std::string>();
  if (id.empty()) return "";
  const std::string name = reply.contains("name") && reply["name"].is_string() ? reply["name"].get<std::string>() : "";
  return name.empty() || name == id.substr(0, 12)
             ? absl::StrCat(" (container ", EscapeControlAndInvalid(id), ")")
             : absl::StrCat(" (container ", EscapeControlAndInvalid(name), ", id ", EscapeControlAndInvalid(id), ")");
}

int ExplainCommand(const std::string& target) {
  std::optional<nlohmann::json> a = Ask("explain", {{"cmd", "explain"}, {"target", target}});
  if (!a) return 1;
  if (absl::GetFlag(FLAGS_json)) {
    printf("%s\n", JsonText(*a, 2).c_str());
    return 0;
  }
  const std::string container = ContainerPhrase(*a);
  printf("cgroup %llu %s%s\n", static_cast<unsigned long long>((*a)["cgroup_id"].get<uint64_t>()),
         EscapeControlAndInvalid((*a)["cgroup_path"].get<std::string>()).c_str(), container.c_str());
  printf("\nrule: %s\n", (*a)["rule"]["verdict"].get<std::string>().c_str());
  for (const nlohmann::json& c : (*a)["rule"]["checks"]) {
    printf("  %-15s %12s  %s threshold %-10g%s\n", c["feature"].get<std::string>().c_str(),
           c["defined"].get<bool>() ? absl::StrFormat("%.4g", c["value"].get<double>()).c_str() : "undefined",
           c["at_or_above"].get<bool>() ? ">=" : "< ", c["threshold"].get<double>(),
           c["decisive"].get<bool>() ? "  <- decisive" : "");
  }
  printf("  %s\n", (*a)["rule"]["reason"].get<std::string>().c_str());
  PrintGpuUse(*a);
  const nlohmann::json& m = (*a)["model"];
  printf("\nmodel: %s\n", m.contains("version") ? absl::StrCat("version ", m["version"].get<int>()).c_str() : "none trained");
  if (m.contains("log_likelihood")) {
    for (const auto& [cls, ll] : m["log_likelihood"].items()) printf("  log-likelihood %-6s %10.3f\n", cls.c_str(), ll.get<double>());
    printf("  model's answer: %s (confidence %d/1000)\n", m["verdict"].get<std::string>().c_str(), m["confidence"].get<int>());
  }
  if (m.contains("not_used_because")) printf("  not used: %s\n", m["not_used_because"].get<std::string>().c_str());
  printf("\nverdict: %s\nwhy: %s\n", (*a)["verdict"].get<std::string>().c_str(), (*a)["why"].get<std::string>().c_str());
  return 0;
}

int TrainCommand() {
  std::optional<nlohmann::json> a = Ask("train", {{"cmd", "train"}});
  if (!a) return 1;
  printf("model version %d trained on %s\n", (*a)["version"].get<int>(), JsonText((*a)["rows"]).c_str());
  return 0;
}

int LabelCommand(const std::string& target, const std::string& verdict) {
  std::optional<nlohmann::json> a = Ask("label", {{"cmd", "label"}, {"target", target}, {"verdict", verdict}});
  if (!a) return 1;
  printf("labelled cgroup %llu%s as %s\n", static_cast<unsigned long long>((*a)["cgroup_id"].get<uint64_t>()),
         ContainerPhrase(*a).c_str(), verdict.c_str());
  return 0;
}

int UnpinCommand() {
  const std::string pin_dir = absl::GetFlag(FLAGS_pin_dir);
  absl::StatusOr<Fd> lock = LockPinDir(pin_dir);
  if (!lock.ok()) {
    fprintf(stderr, "gputierctl unpin: %s\n", std::string(lock.status().message()).c_str());
    return 1;
  }
  if (absl::Status s = Unpin(pin_dir); !s.ok()) {
    fprintf(stderr, "gputierctl unpin: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  printf("removed gputier pins from %s\n", pin_dir.c_str());
  // Nothing else in it: the directory goes too (the lock fd does not keep it).
  if (rmdir(pin_dir.c_str()) == 0) printf("removed the pin directory %s\n", pin_dir.c_str());
  return 0;
}

bool IsDirectory(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

int UninstallCommand() {
  if (geteuid() != 0) {
    fprintf(stderr, "gputierctl uninstall: needs root to unmount partitions and remove pins; run it as root\n");
    return 1;
  }
  const std::string pin_dir = absl::GetFlag(FLAGS_pin_dir);
  // Held until the end: no gputierd can start on these pins meanwhile.
  Fd lock;
  if (IsDirectory(pin_dir)) {
    absl::StatusOr<Fd> locked = LockPinDir(pin_dir);
    if (!locked.ok()) {
      if (absl::IsFailedPrecondition(locked.status())) {
        fprintf(stderr,
                "gputierctl uninstall: a gputierd is running on %s; stop it first (SIGTERM), then run "
                "uninstall again\n",
                pin_dir.c_str());
      } else {
        fprintf(stderr, "gputierctl uninstall: %s\n", std::string(locked.status().message()).c_str());
      }
      return 1;
    }
    lock = *std::move(locked);
  }
  Config config = DefaultConfig();
  if (const std::string path = absl::GetFlag(FLAGS_config); !path.empty()) {
    absl::StatusOr<Config> loaded = LoadConfigFile(path);
    if (!loaded.ok()) {
      fprintf(stderr, "gputierctl uninstall: %s\n", std::string(loaded.status().message()).c_str());
      return 2;
    }
    config = *std::move(loaded);
  }
  absl::StatusOr<CgroupResolver> resolver = CgroupResolver::Create();
  if (!resolver.ok()) {
    fprintf(stderr, "gputierctl uninstall: %s\n", std::string(resolver.status().message()).c_str());
    return 1;
  }
  int removed = 0;
  auto say = [&](const std::string& line) {
    printf("%s\n", line.c_str());
    fflush(stdout);
    ++removed;
  };
  if (absl::Status s =
          RemoveTierLeftovers(config.tiers, absl::GetFlag(FLAGS_state_dir), resolver->mount_point(), say);
      !s.ok()) {
    fprintf(stderr, "gputierctl uninstall: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  if (lock.valid()) {
    std::vector<std::string> pins;
    absl::Status s = Unpin(pin_dir, &pins);
    for (const std::string& pin : pins) say(absl::StrCat("removed the pin ", pin));
    if (!s.ok()) {
      fprintf(stderr, "gputierctl uninstall: %s\n", std::string(s.message()).c_str());
      return 1;
    }
    if (rmdir(pin_dir.c_str()) != 0) {
      if (errno == ENOTEMPTY) {
        fprintf(stderr,
                "gputierctl uninstall: %s still holds files that are not gputier's pins; remove them by hand "
                "(or leave them), nothing else is left\n",
                pin_dir.c_str());
      } else {
        fprintf(stderr, "gputierctl uninstall: removing %s: %s\n", pin_dir.c_str(), strerror(errno));
      }
      return 1;
    }
    say(absl::StrCat("removed the pin directory ", pin_dir));
  }
  if (removed == 0) {
    printf("nothing of gputier's to remove (no pins in %s, no partition in %s)\n", pin_dir.c_str(),
           config.tiers.fast_root.c_str());
  }
  return 0;
}

}  // namespace
}  // namespace gputier

int main(int argc, char** argv) {
  std::vector<std::string> args = gputier::ParseFlags(argc, argv, "gputierctl", gputier::kUsage);
  if (absl::GetFlag(FLAGS_verbose)) gputier::SetLogLevel(gputier::LogLevel::kDebug);
  gputier::RouteLibbpfLogs();
  if (args.empty()) {
    fprintf(stderr, "gputierctl: no command given; see gputierctl --help\n\n%s", gputier::kUsage);
    return 2;
  }
  const std::string& cmd = args[0];
  struct Command {
    const char* name;
    size_t args;        // including the command itself
    const char* needs;  // what is missing when too few are given
  };
  static constexpr Command kCommands[] = {
      {"doctor", 1, ""},   {"audit", 1, ""},  {"status", 1, ""}, {"top", 1, ""},
      {"explain", 2, "a TARGET (container id, cgroup path or cgroup id)"},
      {"train", 1, ""},
      {"label", 3, "a TARGET and a label (gpu, cpu or mixed)"},
      {"unpin", 1, ""},
      {"tier", 3, "a TARGET and a tier (fast, slow or auto)"},
      {"uninstall", 1, ""},
  };
  const Command* command = nullptr;
  for (const Command& c : kCommands) {
    if (cmd == c.name) command = &c;
  }
  if (command == nullptr) {
    fprintf(stderr,
            "gputierctl: unknown command '%s'; commands are doctor, audit, status, top, explain, train, "
            "label, tier, unpin, uninstall (see --help)\n",
            cmd.c_str());
    return 2;
  }
  if (args.size() > command->args) {
    fprintf(stderr, "gputierctl %s: unexpected argument '%s'; see gputierctl --help\n", cmd.c_str(),
            args[command->args].c_str());
    return 2;
  }
  if (args.size() < command->args) {
    fprintf(stderr, "gputierctl %s: needs %s; see gputierctl --help\n", cmd.c_str(), command->needs);
    return 2;
  }
  if (cmd == "doctor") return gputier::Doctor();
  if (cmd == "audit") return gputier::Audit();
  if (cmd == "status") return gputier::StatusCommand();
  if (cmd == "top") {
    return gputier::RunTop({.socket_path = gputier::SocketPath(),
                            .interval = std::max(absl::GetFlag(FLAGS_interval), absl::Milliseconds(100)),
                            .once = absl::GetFlag(FLAGS_once),
                            .plain = absl::GetFlag(FLAGS_plain)});
  }
  if (cmd == "explain") return gputier::ExplainCommand(args[1]);
  if (cmd == "train") return gputier::TrainCommand();
  if (cmd == "label") return gputier::LabelCommand(args[1], args[2]);
  if (cmd == "tier") return gputier::TierCommand(args[1], args[2]);
  if (cmd == "uninstall") return gputier::UninstallCommand();
  return gputier::UnpinCommand();
}

