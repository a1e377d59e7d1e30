#include "loader/gpu_use/gpu_use_monitor.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "loader/base/fd.h"
#include "loader/base/log.h"

namespace gputier {
namespace {

constexpr uint64_t kNvmlPeriodNs = 1000000000ull;  // NVML is polled at most once a second
constexpr size_t kNvmlMaxPids = 4096;
constexpr size_t kExplainProcesses = 8;

double MillisSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

GpuUseMonitor::GpuUseMonitor(Options options, const CgroupResolver* resolver)
    : options_(std::move(options)), resolver_(resolver) {
  if (options_.nvml_library.empty()) {
    nvml_status_ = "disabled";
    LogInfo("nvml: disabled; GPU busy share only from DRM fdinfo");
    return;
  }
  std::string why_not;
  nvml_ = NvmlSource::Open(options_.nvml_library, &why_not);
  if (nvml_ != nullptr) {
    nvml_status_ = nvml_->description();
    LogInfo("nvml: loaded %s", nvml_->description());
  } else {
    nvml_status_ = absl::StrCat("absent: ", why_not);
    LogInfo("nvml: absent (%s): no NVML per-process utilisation; GPU use from GPU ioctls, held "
            "GPU contexts and DRM fdinfo",
            why_not);
  }
}

void GpuUseMonitor::SetSelectors(absl::Span<const std::pair<uint32_t, uint32_t>> selectors) {
  matcher_ = GpuDeviceMatcher(selectors);
}

void GpuUseMonitor::Forget(uint64_t cgroup_id) { evidence_.erase(cgroup_id); }

void GpuUseMonitor::PollNvml(uint64_t now_mono_ns, absl::flat_hash_map<uint64_t, bool>& touched) {
  if (nvml_ == nullptr || now_mono_ns < next_nvml_ns_) return;
  next_nvml_ns_ = now_mono_ns + kNvmlPeriodNs;
  const auto t0 = std::chrono::steady_clock::now();
  absl::StatusOr<std::vector<NvmlProcessUse>> procs = nvml_->Poll();
  for (auto& [id, ev] : evidence_) {
    if (!ev.nvml_seen) continue;
    ev.nvml_seen = false;
    ev.nvml_busy = 0;
    ev.nvml_memory = 0;
    ev.nvml_processes.clear();
    touched[id] = true;
  }
  if (!procs.ok()) {
    if (!nvml_error_logged_) LogWarning("nvml: %s", procs.status().message());
    nvml_error_logged_ = true;
    last_nvml_ms_ = MillisSince(t0);
    return;
  }
  nvml_error_logged_ = false;
  size_t looked_up = 0;
  for (const NvmlProcessUse& p : *procs) {
    if (++looked_up > kNvmlMaxPids) break;
    const std::string proc = absl::StrCat("/proc/", p.pid);
    const int pid_fd = open(proc.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (pid_fd < 0) continue;  // gone, or in another pid namespace
    Fd closer(pid_fd);
    std::optional<std::string> path = CgroupV2PathOf(ReadSmallFileAt(pid_fd, "cgroup", 4096));
    if (!path.has_value() || resolver_ == nullptr) continue;
    absl::StatusOr<uint64_t> id = resolver_->IdOf(*path);
    if (!id.ok()) continue;
    CgroupEvidence& ev = evidence_[*id];
    ev.nvml_seen = true;
    ev.nvml_busy += p.sm_share;
    ev.nvml_memory += p.used_memory_bytes;
    if (ev.nvml_processes.size() < kExplainProcesses) ev.nvml_processes.push_back(p);
    touched[*id] = true;
  }
  last_nvml_ms_ = MillisSince(t0);
}

GpuUsageMap GpuUseMonitor::MeasureCgroups(std::vector<std::pair<uint64_t, std::string>>& gpu_cgroups,
                                          uint64_t now_mono_ns) {
  absl::flat_hash_map<uint64_t, bool> touched;
  const auto t0 = std::chrono::steady_clock::now();
  std::sort(gpu_cgroups.begin(), gpu_cgroups.end());
  last_gpu_cgroups_ = static_cast<uint32_t>(gpu_cgroups.size());
  last_scanned_ = last_pids_ = last_fds_ = 0;
  last_truncated_ = false;
  if (!gpu_cgroups.empty() && !matcher_.empty() && resolver_ != nullptr) {
    uint32_t budget = options_.limits.max_fds_per_tick;
    const size_t n = gpu_cgroups.size();
    const size_t start = cursor_ % n;
    const size_t turns = std::min<size_t>(n, options_.limits.max_cgroups_per_tick);
    size_t k = 0;
    for (; k < turns && budget > 0; ++k) {
      const auto& [id, path] = gpu_cgroups[(start + k) % n];
      if (path.empty()) continue;
      const std::string dir = path == "/" ? resolver_->mount_point() : resolver_->mount_point() + path;
      absl::StatusOr<CgroupGpuScan> scan = ScanCgroupGpuFds(dir, path, matcher_, options_.limits, &budget);
      CgroupEvidence& ev = evidence_[id];
      touched[id] = true;
      if (!scan.ok()) {  // the cgroup went away
        ev.scanned = false;
        ev.tally = GpuContextTally();
        continue;
      }
      ++last_scanned_;
      last_pids_ += scan->pids_scanned;
      last_fds_ += scan->fds_examined;
      last_truncated_ = last_truncated_ || scan->truncated;
      ev.scanned = true;
      ev.truncated = scan->truncated;
      ev.scanned_at_ns = now_mono_ns;
      ev.tally = TallyGpuFds(scan->fds);
      ev.drm_busy = ev.drm_tracker.Update(now_mono_ns, ev.tally.drm_clients);
    }
    cursor_ = start + k;
    last_truncated_ = last_truncated_ || k < n;
  }
  last_scan_ms_ = MillisSince(t0);
  PollNvml(now_mono_ns, touched);

  GpuUsageMap out;
  for (const auto& [id, unused] : touched) {
    auto it = evidence_.find(id);
    if (it == evidence_.end()) continue;
    const CgroupEvidence& ev = it->second;
    GpuUsageSample s;
    s.contexts_known = ev.scanned;
    s.contexts_held = ev.scanned ? ev.tally.contexts_held : 0;
    s.resident_bytes = ev.tally.drm_resident_bytes;
    if (ev.drm_busy.has_value()) {
      s.busy_share = *ev.drm_busy;
      s.busy_source = BusySource::kDrm;
    }
    if (ev.nvml_seen && (s.busy_source == BusySource::kNone || ev.nvml_busy >= s.busy_share)) {
      s.busy_share = ev.nvml_busy;
      s.busy_source = BusySource::kNvml;
    }
    if (ev.nvml_seen) s.resident_bytes = std::max(s.resident_bytes, ev.nvml_memory);
    out[id] = s;
  }
  return out;
}

nlohmann::json GpuUseMonitor::ExplainJson(uint64_t cgroup_id) const {
  nlohmann::json j = nlohmann::json::object();
  auto it = evidence_.find(cgroup_id);
  if (it == evidence_.end()) return j;
  const CgroupEvidence& ev = it->second;
  if (ev.scanned) {
    nlohmann::json devices = nlohmann::json::array();
    for (const auto& [label, n] : ev.tally.by_device) devices.push_back({{"device", label}, {"fds", n}});
    j["proc_scan"] = {{"contexts_held", ev.tally.contexts_held},
                      {"processes", ev.tally.processes},
                      {"devices", devices},
                      {"summary", DescribeByDevice(ev.tally)},
                      {"truncated", ev.truncated}};
  }
  if (!ev.tally.drm_clients.empty() || ev.drm_busy.has_value()) {
    nlohmann::json clients = nlohmann::json::array();
    for (const DrmClientUsage& c : ev.tally.drm_clients) {
      nlohmann::json engines = nlohmann::json::object();
      for (const DrmEngineBusy& e : c.engines) engines[e.name] = e.busy_ns;
      clients.push_back({{"driver", c.driver},
                         {"pdev", c.pdev},
                         {"client_id", c.client_id.value_or(0)},
                         {"engines_busy_ns", engines},
                         {"resident_bytes", c.resident_bytes},
                         {"total_bytes", c.total_bytes}});
    }
    j["drm"] = {{"clients", clients},
                {"busy_share", ev.drm_busy.has_value() ? nlohmann::json(*ev.drm_busy) : nlohmann::json(nullptr)},
                {"resident_bytes", ev.tally.drm_resident_bytes}};
  }
  if (ev.nvml_seen) {
    nlohmann::json procs = nlohmann::json::array();
    for (const NvmlProcessUse& p : ev.nvml_processes) {
      procs.push_back({{"pid", p.pid},
                       {"sm_share", p.sm_share},
                       {"samples", p.samples},
                       {"used_memory_bytes", p.used_memory_bytes},
                       {"gpus", p.gpus}});
    }
    j["nvml"] = {{"busy_share", ev.nvml_busy}, {"used_memory_bytes", ev.nvml_memory}, {"processes", procs}};
  }
  return j;
}

nlohmann::json GpuUseMonitor::StatsJson() const {
  return {{"gpu_cgroups", last_gpu_cgroups_},
          {"scanned", last_scanned_},
          {"pids", last_pids_},
          {"fds", last_fds_},
          {"truncated", last_truncated_},
          {"scan_ms", last_scan_ms_},
          {"nvml", nvml_status_},
          {"nvml_ms", last_nvml_ms_},
          {"limits",
           {{"max_cgroups_per_tick", options_.limits.max_cgroups_per_tick},
            {"max_pids_per_cgroup", options_.limits.max_pids_per_cgroup},
            {"max_fds_per_pid", options_.limits.max_fds_per_pid},
            {"max_fds_per_tick", options_.limits.max_fds_per_tick}}}};
}

}  // namespace gputier
