// GPU contexts held: which open files of a cgroup's processes are GPU device
// nodes, counted per device, and the DRM clients among them. Pure: the
// matching, the counting and the busy share from DRM engine times; the /proc
// reading is loader/gpu_use/gpu_context_scan.h.
#ifndef GPUTIER_LOADER_GPU_USE_GPU_CONTEXT_H_
#define GPUTIER_LOADER_GPU_USE_GPU_CONTEXT_H_

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "loader/gpu_use/drm_fdinfo.h"

namespace gputier {

// The device numbers the GPU selectors match (gt_gpu_devs: (major, minor)
// or (major, any)), the same set the BPF programs count.
class GpuDeviceMatcher {
 public:
  GpuDeviceMatcher() = default;
  // minor == GT_MINOR_ANY selects every minor of the major.
  explicit GpuDeviceMatcher(absl::Span<const std::pair<uint32_t, uint32_t>> selectors);
  bool Matches(uint32_t major, uint32_t minor) const;
  bool empty() const { return any_minor_.empty() && exact_.empty(); }

 private:
  absl::flat_hash_set<uint32_t> any_minor_;
  absl::flat_hash_set<uint64_t> exact_;
};

// DRM's major: the only GPU device nodes whose fdinfo may carry drm-* keys.
inline constexpr uint32_t kDrmMajor = 226;

// One file descriptor of a process on a selected GPU device node.
struct GpuFd {
  pid_t pid = 0;
  int fd = 0;
  uint32_t major = 0;
  uint32_t minor = 0;
  // The node's path as the process opened it (readlink of /proc/<pid>/fd/N,
  // in the process's mount namespace: a label, never followed).
  std::string label;
  std::optional<DrmClientUsage> drm;  // parsed fdinfo, DRM nodes only
};

// A readlink result made safe for a log line and JSON: printable ASCII, at
// most 64 bytes; "char <major>:<minor>" when empty.
std::string FdLabel(absl::string_view link_text, uint32_t major, uint32_t minor);

struct GpuContextTally {
  uint32_t contexts_held = 0;  // GPU device fds
  uint32_t processes = 0;      // processes holding at least one
  // Per label: fds, most first (ties: by label).
  std::vector<std::pair<std::string, uint32_t>> by_device;
  // DRM clients with usage stats, each once (de-duplicated by Key()).
  std::vector<DrmClientUsage> drm_clients;
  uint64_t drm_resident_bytes = 0;  // over drm_clients
};

GpuContextTally TallyGpuFds(absl::Span<const GpuFd> fds);

// "/dev/nvidia0 x20, /dev/nvidia-uvm x2, /dev/nvidiactl x1" (at most
// `max_items` labels, then "+N more").
std::string DescribeByDevice(const GpuContextTally& tally, size_t max_items = 6);

// The GPU engine busy share of one cgroup's DRM clients between two scans:
// per engine name, the busy nanoseconds the clients added (each client once),
// divided by the wall time and the engine's capacity; the share is that of the
// busiest engine. A client seen for the first time has no baseline and adds
// nothing until the next scan.
class DrmBusyTracker {
 public:
  // nullopt when no client exports engine times, or on the first scan.
  std::optional<double> Update(uint64_t mono_ns, absl::Span<const DrmClientUsage> clients);

 private:
  uint64_t last_ns_ = 0;
  // client key -> engine name -> busy ns at last_ns_
  absl::flat_hash_map<std::string, absl::flat_hash_map<std::string, uint64_t>> last_;
};

// The cgroup v2 path in a /proc/<pid>/cgroup text (the "0::<path>" line),
// nullopt if there is none.
std::optional<std::string> CgroupV2PathOf(absl::string_view proc_cgroup_text);

}  // namespace gputier

#endif  // GPUTIER_LOADER_GPU_USE_GPU_CONTEXT_H_
