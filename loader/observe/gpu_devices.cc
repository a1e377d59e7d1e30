#include "loader/observe/gpu_devices.h"

#include <fnmatch.h>
#include <glob.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <fstream>
#include <sstream>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace gputier {
namespace {

constexpr uint32_t kNvidiaFrontendMajor = 195;
constexpr uint32_t kDrmMajor = 226;
const char* const kDefaultGpuGlobs[] = {"/dev/nvidia*", "/dev/dri/*", "/dev/kfd",
                                        "/dev/accel/*"};

std::string DriverOfMajor(const std::vector<CharDevice>& devs, uint32_t major) {
  for (const CharDevice& d : devs) {
    if (d.major == major) return d.name;
  }
  return "";
}

}  // namespace

std::string GpuKindName(uint32_t kind) {
  switch (kind) {
    case GT_GPU_NVIDIA: return "nvidia";
    case GT_GPU_DRM: return "drm";
    case GT_GPU_KFD: return "kfd";
    case GT_GPU_ACCEL: return "accel";
    case GT_GPU_CONFIGURED: return "configured";
    default: return "none";
  }
}

gt_gpu_kind GpuKindOfDriver(absl::string_view name) {
  if (absl::StartsWith(name, "nvidia")) return GT_GPU_NVIDIA;
  if (name == "drm") return GT_GPU_DRM;
  if (name == "kfd") return GT_GPU_KFD;
  if (name == "accel") return GT_GPU_ACCEL;
  return GT_GPU_NONE;
}

std::vector<GpuDevice> PlanGpuDevices(const std::vector<CharDevice>& char_devices,
                                      const std::vector<GpuDeviceSelector>& selectors,
                                      const std::vector<DevNode>& nodes,
                                      std::vector<std::string>* notes) {
  std::vector<GpuDevice> out;
  auto add = [&out](GpuDevice d) {
    for (const GpuDevice& e : out) {
      if (e.major == d.major && (e.minor == GT_MINOR_ANY || e.minor == d.minor)) return;
    }
    out.push_back(std::move(d));
  };
  // Well-known static majors, present even before their driver loads.
  add({kNvidiaFrontendMajor, GT_MINOR_ANY, GT_GPU_NVIDIA, "nvidia-frontend (195, built-in)", false});
  add({kDrmMajor, GT_MINOR_ANY, GT_GPU_DRM, "drm (226, built-in)", false});
  // Dynamic majors of GPU drivers that are loaded now.
  for (const CharDevice& d : char_devices) {
    gt_gpu_kind kind = GpuKindOfDriver(d.name);
    if (kind != GT_GPU_NONE) {
      add({d.major, GT_MINOR_ANY, kind, absl::StrFormat("%s (%u, /proc/devices)", d.name, d.major), false});
    }
  }
  // Device nodes at the default GPU paths whose major a driver registered.
  for (const DevNode& n : nodes) {
    bool default_path = false;
    for (const char* g : kDefaultGpuGlobs) default_path |= fnmatch(g, n.path.c_str(), FNM_PATHNAME) == 0;
    if (!default_path) continue;
    gt_gpu_kind kind = GpuKindOfDriver(DriverOfMajor(char_devices, n.major));
    if (kind != GT_GPU_NONE) {
      add({n.major, n.minor, kind, absl::StrFormat("%s (%u:%u)", n.path, n.major, n.minor), false});
    }
  }
  // The operator's selectors.
  for (const GpuDeviceSelector& s : selectors) {
    if (s.major.has_value()) {
      uint32_t minor = s.minor.value_or(GT_MINOR_ANY);
      std::string driver = DriverOfMajor(char_devices, *s.major);
      gt_gpu_kind kind = GpuKindOfDriver(driver);
      bool number_only = kind == GT_GPU_NONE;
      std::string minor_text = minor == GT_MINOR_ANY ? "*" : absl::StrCat(minor);
      std::string source = absl::StrFormat(
          "config {major: %u, minor: %s}%s", *s.major, minor_text,
          number_only ? absl::StrFormat(": a configured device number, not a GPU driver (driver %s)",
                                        driver.empty() ? "none registered" : "'" + driver + "'")
                      : "");
      add({*s.major, minor, number_only ? GT_GPU_CONFIGURED : kind, source, number_only});
      continue;
    }
    if (!s.path_glob.has_value()) continue;
    bool matched = false;
    for (const DevNode& n : nodes) {
      if (fnmatch(s.path_glob->c_str(), n.path.c_str(), FNM_PATHNAME) != 0) continue;
      matched = true;
      std::string driver = DriverOfMajor(char_devices, n.major);
      gt_gpu_kind kind = GpuKindOfDriver(driver);
      bool number_only = kind == GT_GPU_NONE;
      std::string source = absl::StrFormat(
          "config {path: %s} -> %s (%u:%u)%s", *s.path_glob, n.path, n.major, n.minor,
          number_only ? absl::StrFormat(": a configured device number, not a GPU driver (driver %s)",
                                        driver.empty() ? "none registered" : "'" + driver + "'")
                      : "");
      add({n.major, n.minor, number_only ? GT_GPU_CONFIGURED : kind, source, number_only});
    }
    if (!matched && notes != nullptr) {
      notes->push_back(absl::StrFormat(
          "gpu_devices: path %s matches no character device now; it is ignored until "
          "gputierd restarts",
          *s.path_glob));
    }
  }
  return out;
}

absl::StatusOr<std::vector<GpuDevice>> ResolveGpuDevices(
    const std::vector<GpuDeviceSelector>& selectors, std::vector<std::string>* notes) {
  std::ifstream in("/proc/devices");
  if (!in) return absl::ErrnoToStatus(errno, "reading /proc/devices");
  std::stringstream text;
  text << in.rdbuf();
  std::vector<CharDevice> char_devices = ParseCharDevices(text.str());

  std::vector<std::string> patterns(std::begin(kDefaultGpuGlobs), std::end(kDefaultGpuGlobs));
  for (const GpuDeviceSelector& s : selectors) {
    if (s.path_glob.has_value()) patterns.push_back(*s.path_glob);
  }
  std::vector<DevNode> nodes;
  for (size_t p = 0; p < patterns.size(); ++p) {
    const std::string& pattern = patterns[p];
    const bool from_config = p >= std::size(kDefaultGpuGlobs);
    glob_t g = {};
    if (glob(pattern.c_str(), GLOB_NOSORT, nullptr, &g) == 0) {
      for (size_t i = 0; i < g.gl_pathc; ++i) {
        struct stat st;
        // stat follows links: /dev/dri/by-path/* style links name real nodes.
        if (stat(g.gl_pathv[i], &st) != 0 || !S_ISCHR(st.st_mode)) {
          if (notes != nullptr && from_config) {
            notes->push_back(absl::StrFormat("gpu_devices: %s is not a character device; skipped",
                                             g.gl_pathv[i]));
          }
          continue;
        }
        nodes.push_back({g.gl_pathv[i], major(st.st_rdev), minor(st.st_rdev)});
      }
    }
    globfree(&g);
  }
  return PlanGpuDevices(char_devices, selectors, nodes, notes);
}

}  // namespace gputier
