// Which char devices count as GPUs: the defaults found on the node plus the
// operator's `gpu_devices:` selectors, resolved to (major, minor) entries for
// the gt_gpu_devs map.
#ifndef GPUTIER_LOADER_OBSERVE_GPU_DEVICES_H_
#define GPUTIER_LOADER_OBSERVE_GPU_DEVICES_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "gputier/abi.h"
#include "loader/config/config.h"
#include "loader/base/node_facts.h"

namespace gputier {

struct GpuDevice {
  uint32_t major = 0;
  uint32_t minor = GT_MINOR_ANY;
  gt_gpu_kind kind = GT_GPU_NONE;
  // Where it came from, for the log: "drm (226, built-in)", "/dev/kfd", ...
  std::string source;
  // True when no GPU driver is known behind it (a configured device number).
  bool configured_number = false;
};

// A char device node found under /dev.
struct DevNode {
  std::string path;
  uint32_t major = 0;
  uint32_t minor = 0;
};

// The GPU kind of a driver name from /proc/devices, GT_GPU_NONE if not a GPU.
gt_gpu_kind GpuKindOfDriver(absl::string_view driver_name);

// Pure: the default selectors (well-known majors 195 and 226, every GPU
// driver in /proc/devices) plus `selectors` matched against `nodes` (path
// globs) or taken as numbers. A glob that matches no node is skipped with a
// note in `notes`; a glob matching a non-char node is never passed in.
std::vector<GpuDevice> PlanGpuDevices(const std::vector<CharDevice>& char_devices,
                                      const std::vector<GpuDeviceSelector>& selectors,
                                      const std::vector<DevNode>& nodes,
                                      std::vector<std::string>* notes);

// Adapter: reads /proc/devices, expands the globs of `selectors` and the
// default GPU paths (/dev/nvidia*, /dev/dri/*, /dev/kfd, /dev/accel/*) with
// glob(3) and stat(2), then calls PlanGpuDevices.
absl::StatusOr<std::vector<GpuDevice>> ResolveGpuDevices(
    const std::vector<GpuDeviceSelector>& selectors, std::vector<std::string>* notes);

std::string GpuKindName(uint32_t kind);

}  // namespace gputier

#endif  // GPUTIER_LOADER_OBSERVE_GPU_DEVICES_H_
