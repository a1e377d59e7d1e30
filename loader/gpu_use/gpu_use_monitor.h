// GPU use measured outside the BPF counters, once per classification tick:
// the GPU contexts the processes of each GPU cgroup hold (proc scan), the
// busy share of their DRM clients (fdinfo), and NVML's per-process figures
// where libnvidia-ml.so.1 is on the node. Only cgroups that ever opened a GPU
// device (gpu_opens > 0) are scanned, a bounded number per tick, in turn.
// docs/FEATURES.md describes each piece of evidence, its source and cost.
#ifndef GPUTIER_LOADER_GPU_USE_GPU_USE_MONITOR_H_
#define GPUTIER_LOADER_GPU_USE_GPU_USE_MONITOR_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/container/flat_hash_map.h"
#include "absl/types/span.h"
#include "gputier/abi.h"
#include "loader/cgroup/cgroup_resolver.h"
#include "loader/gpu_use/gpu_context.h"
#include "loader/gpu_use/gpu_context_scan.h"
#include "loader/gpu_use/nvml.h"
#include "policy/verdict_engine.h"

namespace gputier {

class GpuUseMonitor {
 public:
  struct Options {
    GpuScanLimits limits;
    // "" disables NVML; else the library dlopen'ed (libnvidia-ml.so.1).
    std::string nvml_library = "libnvidia-ml.so.1";
  };

  // Logs once whether NVML is there (library, version, GPUs) or why not.
  GpuUseMonitor(Options options, const CgroupResolver* resolver);

  // The (major, minor-or-GT_MINOR_ANY) selectors of gt_gpu_devs.
  void SetSelectors(absl::Span<const std::pair<uint32_t, uint32_t>> selectors);

  // Measures the GPU cgroups among `counters`; `path_of` gives a cgroup's
  // path from the cgroup2 root ("" if unknown).
  template <typename PathOf>
  GpuUsageMap Measure(absl::Span<const std::pair<uint64_t, gt_cgroup_stats>> counters, uint64_t now_mono_ns,
                      PathOf&& path_of) {
    std::vector<std::pair<uint64_t, std::string>> gpu_cgroups;
    for (const auto& [id, stats] : counters) {
      if (stats.gpu_opens > 0) gpu_cgroups.emplace_back(id, "");
    }
    for (auto& [id, path] : gpu_cgroups) path = path_of(id);
    return MeasureCgroups(gpu_cgroups, now_mono_ns);
  }

  // The evidence behind a cgroup's GPU use, with sources, for explain:
  // {"proc_scan": {...}, "drm": {...}, "nvml": {...}} (absent parts omitted).
  nlohmann::json ExplainJson(uint64_t cgroup_id) const;
  // The cost and reach of the last tick's measurement, for status.
  nlohmann::json StatsJson() const;
  bool nvml_present() const { return nvml_ != nullptr; }

  // Drops what is held for cgroups no longer present.
  void Forget(uint64_t cgroup_id);

 private:
  struct CgroupEvidence {
    bool scanned = false;
    GpuContextTally tally;
    bool truncated = false;
    uint64_t scanned_at_ns = 0;
    DrmBusyTracker drm_tracker;
    std::optional<double> drm_busy;
    // NVML, the last poll
    bool nvml_seen = false;
    double nvml_busy = 0;
    uint64_t nvml_memory = 0;
    std::vector<NvmlProcessUse> nvml_processes;  // at most a few, for explain
  };

  GpuUsageMap MeasureCgroups(std::vector<std::pair<uint64_t, std::string>>& gpu_cgroups, uint64_t now_mono_ns);
  void PollNvml(uint64_t now_mono_ns, absl::flat_hash_map<uint64_t, bool>& touched);

  Options options_;
  const CgroupResolver* resolver_;
  GpuDeviceMatcher matcher_;
  std::unique_ptr<NvmlSource> nvml_;
  std::string nvml_status_;
  bool nvml_error_logged_ = false;
  uint64_t next_nvml_ns_ = 0;
  size_t cursor_ = 0;  // round robin over the GPU cgroups
  absl::flat_hash_map<uint64_t, CgroupEvidence> evidence_;
  // The last tick.
  uint32_t last_gpu_cgroups_ = 0, last_scanned_ = 0, last_pids_ = 0, last_fds_ = 0;
  bool last_truncated_ = false;
  double last_scan_ms_ = 0, last_nvml_ms_ = 0;
};

}  // namespace gputier

#endif  // GPUTIER_LOADER_GPU_USE_GPU_USE_MONITOR_H_
