#include "loader/gpu_use/nvml.h"

#include <dlfcn.h>

#include <algorithm>
#include <cstring>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace gputier {
namespace {

// From NVIDIA's NVML API reference (nvml.h): the return codes used, the
// opaque device handle, and the three structures read.
using nvmlReturn_t = int;
constexpr nvmlReturn_t kNvmlSuccess = 0;
constexpr nvmlReturn_t kNvmlErrorNotFound = 6;
constexpr nvmlReturn_t kNvmlErrorInsufficientSize = 7;
using nvmlDevice_t = void*;

// nvmlProcessInfo_v1_t: nvmlDeviceGetComputeRunningProcesses (v1).
struct NvmlProcessInfoV1 {
  unsigned int pid;
  unsigned long long usedGpuMemory;
};
// nvmlProcessInfo_v2_t / nvmlProcessInfo_t: the _v2 and _v3 functions.
struct NvmlProcessInfoV2 {
  unsigned int pid;
  unsigned long long usedGpuMemory;
  unsigned int gpuInstanceId;
  unsigned int computeInstanceId;
};
// nvmlProcessUtilizationSample_t.
struct NvmlProcessUtilizationSample {
  unsigned int pid;
  unsigned long long timeStamp;  // CPU timestamp, microseconds
  unsigned int smUtil;
  unsigned int memUtil;
  unsigned int encUtil;
  unsigned int decUtil;
};
static_assert(sizeof(NvmlProcessInfoV1) == 16 && sizeof(NvmlProcessInfoV2) == 24 &&
                  sizeof(NvmlProcessUtilizationSample) == 32,
              "NVML structures as the x86-64 and arm64 ABIs lay them out");

// "NVML: not all of its GPUs" etc. Memory "not available" in NVML is ~0ull.
constexpr unsigned long long kNvmlValueNotAvailable = ~0ull;
constexpr unsigned kMaxProcessesPerGpu = 1024;
constexpr unsigned kMaxSamplesPerGpu = 4096;

}  // namespace

struct NvmlSource::Api {
  nvmlReturn_t (*init)() = nullptr;
  nvmlReturn_t (*shutdown)() = nullptr;
  const char* (*error_string)(nvmlReturn_t) = nullptr;
  nvmlReturn_t (*get_count)(unsigned int*) = nullptr;
  nvmlReturn_t (*get_handle)(unsigned int, nvmlDevice_t*) = nullptr;
  nvmlReturn_t (*get_name)(nvmlDevice_t, char*, unsigned int) = nullptr;
  nvmlReturn_t (*driver_version)(char*, unsigned int) = nullptr;
  nvmlReturn_t (*nvml_version)(char*, unsigned int) = nullptr;
  // One of the three, with the matching structure size.
  nvmlReturn_t (*processes)(nvmlDevice_t, unsigned int*, void*) = nullptr;
  size_t process_info_size = 0;
  nvmlReturn_t (*utilization)(nvmlDevice_t, NvmlProcessUtilizationSample*, unsigned int*,
                              unsigned long long) = nullptr;

  std::string Error(nvmlReturn_t rc) const {
    const char* s = error_string != nullptr ? error_string(rc) : nullptr;
    return s != nullptr ? std::string(s) : absl::StrCat("NVML error ", rc);
  }
};

template <typename F>
static bool Bind(void* handle, const char* name, F* out) {
  void* sym = dlsym(handle, name);
  *out = reinterpret_cast<F>(sym);
  return sym != nullptr;
}

std::unique_ptr<NvmlSource> NvmlSource::Open(const std::string& library, std::string* why_not) {
  void* handle = dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* err = dlerror();
    *why_not = absl::StrCat(library, " is not on this node (", err != nullptr ? err : "dlopen failed", ")");
    return nullptr;
  }
  std::unique_ptr<NvmlSource> s(new NvmlSource());
  s->handle_ = handle;
  s->api_ = std::make_unique<Api>();
  Api& a = *s->api_;
  Bind(handle, "nvmlErrorString", &a.error_string);
  const bool core = (Bind(handle, "nvmlInit_v2", &a.init) || Bind(handle, "nvmlInit", &a.init)) &&
                    Bind(handle, "nvmlShutdown", &a.shutdown) &&
                    (Bind(handle, "nvmlDeviceGetCount_v2", &a.get_count) ||
                     Bind(handle, "nvmlDeviceGetCount", &a.get_count)) &&
                    (Bind(handle, "nvmlDeviceGetHandleByIndex_v2", &a.get_handle) ||
                     Bind(handle, "nvmlDeviceGetHandleByIndex", &a.get_handle));
  if (!core) {
    *why_not = absl::StrCat(library, " lacks nvmlInit/nvmlDeviceGetCount/nvmlDeviceGetHandleByIndex");
    return nullptr;  // the destructor dlcloses
  }
  if (Bind(handle, "nvmlDeviceGetComputeRunningProcesses_v3", &a.processes)) {
    s->processes_symbol_ = "nvmlDeviceGetComputeRunningProcesses_v3";
    a.process_info_size = sizeof(NvmlProcessInfoV2);
  } else if (Bind(handle, "nvmlDeviceGetComputeRunningProcesses_v2", &a.processes)) {
    s->processes_symbol_ = "nvmlDeviceGetComputeRunningProcesses_v2";
    a.process_info_size = sizeof(NvmlProcessInfoV2);
  } else if (Bind(handle, "nvmlDeviceGetComputeRunningProcesses", &a.processes)) {
    s->processes_symbol_ = "nvmlDeviceGetComputeRunningProcesses";
    a.process_info_size = sizeof(NvmlProcessInfoV1);
  }
  Bind(handle, "nvmlDeviceGetProcessUtilization", &a.utilization);
  Bind(handle, "nvmlDeviceGetName", &a.get_name);
  Bind(handle, "nvmlSystemGetDriverVersion", &a.driver_version);
  Bind(handle, "nvmlSystemGetNVMLVersion", &a.nvml_version);
  if (a.processes == nullptr && a.utilization == nullptr) {
    *why_not = absl::StrCat(library, " has neither nvmlDeviceGetComputeRunningProcesses nor "
                                     "nvmlDeviceGetProcessUtilization");
    return nullptr;
  }
  if (nvmlReturn_t rc = a.init(); rc != kNvmlSuccess) {
    *why_not = absl::StrCat(library, ": nvmlInit failed: ", a.Error(rc));
    return nullptr;
  }
  s->initialised_ = true;
  unsigned int count = 0;
  if (nvmlReturn_t rc = a.get_count(&count); rc != kNvmlSuccess) {
    *why_not = absl::StrCat(library, ": nvmlDeviceGetCount failed: ", a.Error(rc));
    return nullptr;
  }
  absl::flat_hash_map<std::string, int> names;
  std::vector<std::string> order;
  for (unsigned int i = 0; i < count; ++i) {
    nvmlDevice_t dev = nullptr;
    if (a.get_handle(i, &dev) != kNvmlSuccess || dev == nullptr) continue;
    s->devices_.push_back(dev);
    char name[96] = "GPU";
    if (a.get_name != nullptr && a.get_name(dev, name, sizeof(name)) != kNvmlSuccess) std::strcpy(name, "GPU");
    name[sizeof(name) - 1] = '\0';
    if (names[name]++ == 0) order.push_back(name);
  }
  s->last_seen_.assign(s->devices_.size(), 0);
  char nvml_version[80] = "?";
  char driver_version[80] = "?";
  if (a.nvml_version != nullptr) a.nvml_version(nvml_version, sizeof(nvml_version));
  if (a.driver_version != nullptr) a.driver_version(driver_version, sizeof(driver_version));
  nvml_version[sizeof(nvml_version) - 1] = driver_version[sizeof(driver_version) - 1] = '\0';
  std::vector<std::string> kinds;
  for (const std::string& n : order) kinds.push_back(absl::StrCat(n, " x", names[n]));
  s->description_ = absl::StrCat(library, ": NVML ", nvml_version, ", driver ", driver_version, ", ",
                                 s->devices_.size(), " GPUs (", absl::StrJoin(kinds, ", "),
                                 "); processes from ",
                                 s->processes_symbol_.empty() ? "none" : s->processes_symbol_,
                                 a.utilization != nullptr ? ", utilisation from nvmlDeviceGetProcessUtilization"
                                                          : ", no per-process utilisation");
  return s;
}

NvmlSource::~NvmlSource() {
  if (initialised_ && api_ && api_->shutdown != nullptr) api_->shutdown();
  if (handle_ != nullptr) dlclose(handle_);
}

absl::StatusOr<std::vector<NvmlProcessUse>> NvmlSource::Poll() {
  const Api& a = *api_;
  absl::flat_hash_map<uint32_t, NvmlProcessUse> use;
  std::string last_error;
  size_t failed = 0;
  for (size_t i = 0; i < devices_.size(); ++i) {
    nvmlDevice_t dev = devices_[i];
    bool ok = true;
    if (a.processes != nullptr) {
      unsigned int n = kMaxProcessesPerGpu;
      std::vector<unsigned char> buf(static_cast<size_t>(n) * a.process_info_size);
      nvmlReturn_t rc = a.processes(dev, &n, buf.data());
      if (rc == kNvmlSuccess) {
        n = std::min(n, kMaxProcessesPerGpu);
        for (unsigned int k = 0; k < n; ++k) {
          NvmlProcessInfoV1 p;  // the first two fields of either layout
          std::memcpy(&p, buf.data() + k * a.process_info_size, sizeof(p));
          NvmlProcessUse& u = use[p.pid];
          u.pid = p.pid;
          ++u.gpus;
          if (p.usedGpuMemory != kNvmlValueNotAvailable) u.used_memory_bytes += p.usedGpuMemory;
        }
      } else {
        ok = false;
        last_error = absl::StrCat("GPU ", i, ": ", processes_symbol_, ": ", a.Error(rc));
      }
    }
    if (a.utilization != nullptr) {
      unsigned int n = kMaxSamplesPerGpu;
      std::vector<NvmlProcessUtilizationSample> samples(n);
      nvmlReturn_t rc = a.utilization(dev, samples.data(), &n, last_seen_[i]);
      if (rc == kNvmlSuccess) {
        n = std::min(n, kMaxSamplesPerGpu);
        // Mean SM share per pid over its samples on this GPU.
        absl::flat_hash_map<uint32_t, std::pair<double, uint32_t>> per_pid;
        for (unsigned int k = 0; k < n; ++k) {
          const NvmlProcessUtilizationSample& smp = samples[k];
          last_seen_[i] = std::max(last_seen_[i], smp.timeStamp);
          auto& acc = per_pid[smp.pid];
          acc.first += std::min(smp.smUtil, 100u) / 100.0;
          ++acc.second;
        }
        for (const auto& [pid, acc] : per_pid) {
          NvmlProcessUse& u = use[pid];
          u.pid = pid;
          u.sm_share += acc.first / acc.second;
          u.samples += acc.second;
        }
      } else if (rc != kNvmlErrorNotFound && rc != kNvmlErrorInsufficientSize) {
        // NOT_FOUND: no sample since the last poll (idle).
        ok = false;
        last_error = absl::StrCat("GPU ", i, ": nvmlDeviceGetProcessUtilization: ", a.Error(rc));
      }
    }
    if (!ok) ++failed;
  }
  if (!devices_.empty() && failed == devices_.size()) {
    return absl::UnavailableError(absl::StrCat("NVML: every GPU failed; last: ", last_error));
  }
  std::vector<NvmlProcessUse> out;
  out.reserve(use.size());
  for (auto& [pid, u] : use) out.push_back(u);
  return out;
}

}  // namespace gputier
