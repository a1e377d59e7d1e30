// DRM client usage stats: the drm-* keys a DRM driver prints in
// /proc/<pid>/fdinfo/<fd> for an open DRM file (the kernel's
// Documentation/gpu/drm-usage-stats.rst). Pure: parses text, reads nothing.
//
// Keys used (everything else, and every malformed line, is ignored):
//   drm-driver: <valstr>                  mandatory: which driver
//   drm-pdev: <valstr>                    the device (PCI slot), optional
//   drm-client-id: <uint>                 unique per open DRM file description
//   drm-engine-<name>: <uint> ns          busy time of an engine for this client
//   drm-engine-capacity-<name>: <uint>    engines of that class (default 1)
//   drm-total-<region>: <uint> [KiB|MiB]  memory of the client's objects
//   drm-resident-<region>: <uint> [KiB|MiB]
//   drm-memory-<region>: <uint> [KiB|MiB] the older name of drm-resident-
// drm-cycles-<name> and drm-total-cycles-<name> (drivers that report cycles
// instead of time) are recognised and not used: they give no busy time.
#ifndef GPUTIER_LOADER_GPU_USE_DRM_FDINFO_H_
#define GPUTIER_LOADER_GPU_USE_DRM_FDINFO_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace gputier {

struct DrmEngineBusy {
  std::string name;       // the <name> of drm-engine-<name>, e.g. "render", "gfx"
  uint64_t busy_ns = 0;   // cumulative busy time of this client on it
  uint64_t capacity = 1;  // drm-engine-capacity-<name>
};

struct DrmClientUsage {
  std::string driver;  // drm-driver
  std::string pdev;    // drm-pdev ("" if absent)
  std::optional<uint64_t> client_id;
  std::vector<DrmEngineBusy> engines;
  uint64_t total_bytes = 0;     // sum of drm-total-<region>
  uint64_t resident_bytes = 0;  // sum of drm-resident-<region> (or drm-memory-)

  // drm-driver and drm-client-id are both present: the file exports usage
  // stats (vgem, for one, prints neither).
  bool has_usage() const { return !driver.empty() && client_id.has_value(); }
  // What identifies the client across fds and processes (dup, fork, SCM_RIGHTS).
  std::string Key() const;
};

// At most this many engines and this many bytes of input are looked at.
inline constexpr size_t kMaxDrmEngines = 16;
inline constexpr size_t kMaxFdinfoBytes = 8192;

// Parses an fdinfo text. Never fails: garbage gives a DrmClientUsage without
// usage (has_usage() false).
DrmClientUsage ParseDrmFdinfo(absl::string_view text);

}  // namespace gputier

#endif  // GPUTIER_LOADER_GPU_USE_DRM_FDINFO_H_
