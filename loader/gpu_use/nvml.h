// Adapter: NVIDIA's management library (NVML), loaded at run time with
// dlopen where the node has it (libnvidia-ml.so.1 comes with the driver), so
// gputier has no build or package dependency on it. Without the library the
// feature is absent: Open() says why, once, and nothing else changes.
//
// Per poll, for every GPU: the compute processes (pid, GPU memory) and the
// per-process utilisation samples since the previous poll (SM busy percent).
// The few NVML types and signatures used are declared in nvml.cc from
// NVIDIA's public NVML API reference; no header is vendored.
#ifndef GPUTIER_LOADER_GPU_USE_NVML_H_
#define GPUTIER_LOADER_GPU_USE_NVML_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace gputier {

// One process's GPU use over the last poll, summed over the GPUs.
struct NvmlProcessUse {
  uint32_t pid = 0;
  uint64_t used_memory_bytes = 0;  // 0 when NVML does not say
  // Mean SM busy share of its utilisation samples since the previous poll,
  // summed over GPUs (0..GPUs); 0 with no sample (idle).
  double sm_share = 0;
  uint32_t samples = 0;  // utilisation samples behind sm_share
  uint32_t gpus = 0;     // GPUs it runs on
};

class NvmlSource {
 public:
  // Loads `library`, initialises NVML and lists the GPUs. nullptr with
  // *why_not set when the library is absent or NVML fails.
  static std::unique_ptr<NvmlSource> Open(const std::string& library, std::string* why_not);
  ~NvmlSource();
  NvmlSource(const NvmlSource&) = delete;
  NvmlSource& operator=(const NvmlSource&) = delete;

  // "libnvidia-ml.so.1: NVML 12.580.159.04, driver 580.159.04, 8 GPUs (NVIDIA H200 x8)"
  const std::string& description() const { return description_; }
  unsigned gpu_count() const { return static_cast<unsigned>(devices_.size()); }
  // Which symbol lists the compute processes ("..._v3", "..._v2" or the v1 name).
  const std::string& processes_symbol() const { return processes_symbol_; }

  // One poll of every GPU. Per-GPU failures are skipped (logged once by the
  // caller from the returned error of a poll where every GPU failed).
  absl::StatusOr<std::vector<NvmlProcessUse>> Poll();

 private:
  struct Api;
  NvmlSource() = default;

  void* handle_ = nullptr;
  std::unique_ptr<Api> api_;
  std::vector<void*> devices_;
  std::vector<unsigned long long> last_seen_;  // per GPU: newest sample timestamp (us)
  std::string description_;
  std::string processes_symbol_;
  bool initialised_ = false;
};

}  // namespace gputier

#endif  // GPUTIER_LOADER_GPU_USE_NVML_H_
