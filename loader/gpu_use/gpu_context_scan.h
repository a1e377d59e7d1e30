// Adapter: the GPU device fds a cgroup's processes hold, read from /proc.
//
// For each pid in <cgroup>/cgroup.procs: /proc/<pid> is opened once as a
// directory (so a pid that exits and is reused cannot be confused with
// another process: later reads through that fd fail), its /proc/<pid>/cgroup
// must still name the cgroup, then every entry of /proc/<pid>/fd is
// statx'ed through the magic link (the fd's own file, AT_STATX_DONT_SYNC:
// no round trip to a FUSE or network filesystem a container may control),
// and a char device whose number the GPU selectors match is kept, with its
// readlink text as a label and, for DRM nodes, its fdinfo. Nothing else is
// followed or opened. A process that vanishes midway is skipped.
//
// Pids and fds are container-controlled, so everything is bounded
// (GpuScanLimits); a scan cut short by a bound says so (truncated).
#ifndef GPUTIER_LOADER_GPU_USE_GPU_CONTEXT_SCAN_H_
#define GPUTIER_LOADER_GPU_USE_GPU_CONTEXT_SCAN_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "loader/gpu_use/gpu_context.h"

namespace gputier {

// docs/FEATURES.md "GPU contexts held" gives the reasons for each bound.
struct GpuScanLimits {
  uint32_t max_cgroups_per_tick = 32;  // GPU cgroups scanned per tick (round robin)
  uint32_t max_pids_per_cgroup = 256;  // pids read from cgroup.procs
  uint32_t max_fds_per_pid = 4096;     // /proc/<pid>/fd entries examined
  uint32_t max_fds_per_tick = 32768;   // statx calls per tick, all cgroups together
};

struct CgroupGpuScan {
  std::vector<GpuFd> fds;
  uint32_t pids_listed = 0;    // pids read from cgroup.procs (bounded)
  uint32_t pids_scanned = 0;   // still there and still in the cgroup
  uint32_t fds_examined = 0;   // statx calls
  bool truncated = false;      // a bound cut the scan short
};

// cgroup_dir: the cgroup's directory (mount point + relative); relative: its
// path from the cgroup2 root, as /proc/<pid>/cgroup shows it. fd_budget: the
// statx calls left this tick (decremented). An unreadable cgroup.procs is an
// error; everything per process is tolerated.
absl::StatusOr<CgroupGpuScan> ScanCgroupGpuFds(const std::string& cgroup_dir,
                                               const std::string& relative,
                                               const GpuDeviceMatcher& matcher,
                                               const GpuScanLimits& limits,
                                               uint32_t* fd_budget);

// Reads at most max_bytes of a file under dir_fd (openat, O_NOFOLLOW).
// "" when it cannot be read.
std::string ReadSmallFileAt(int dir_fd, const char* name, size_t max_bytes);

}  // namespace gputier

#endif  // GPUTIER_LOADER_GPU_USE_GPU_CONTEXT_SCAN_H_
