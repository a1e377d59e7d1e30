// Features of one cgroup, computed from its lifetime counters (struct
// gt_cgroup_stats, read from the BPF map) sampled over time.
//
// A FeatureWindow holds a few recent samples of the counters one cgroup's
// features need and turns them into rates over a sliding window, plus a few
// lifetime facts. Pure: time is passed in, nothing is read from the system.
// docs/FEATURES.md defines every feature and the model's input transform.
#ifndef GPUTIER_POLICY_FEATURES_H_
#define GPUTIER_POLICY_FEATURES_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "gputier/abi.h"

namespace gputier {

// One read of a cgroup's counters. mono_ns: CLOCK_MONOTONIC nanoseconds when
// the map entry was read (the clock of stats.first_seen_ns).
struct CounterSample {
  uint64_t mono_ns = 0;
  gt_cgroup_stats stats = {};
};

// The extension classes (enum gt_ext_class ids) whose files a GPU processes:
// the "preset extensions" of the patent's claims 3 and 4.
class GpuClassSet {
 public:
  // image, video, tensor, graphics (ids 1..4).
  GpuClassSet();

  // Ids 1..7 (built-in and custom classes). Id 0 ("other": extensions in no
  // class) and ids >= GT_CLASS_MAX are InvalidArgument errors naming the id.
  static absl::StatusOr<GpuClassSet> FromIds(absl::Span<const uint32_t> class_ids);

  bool Contains(uint32_t class_id) const {
    return class_id < GT_CLASS_MAX && (mask_ & (1u << class_id)) != 0;
  }
  // Bit (1 << id) per class in the set.
  uint32_t mask() const { return mask_; }

 private:
  explicit GpuClassSet(uint32_t mask) : mask_(mask) {}
  uint32_t mask_;
};

struct FeatureOptions {
  // Length of the sliding window over which rates and the windowed extension
  // ratio are computed. At least 1 s.
  absl::Duration window = absl::Seconds(30);
  // Fewer opens of files with an extension than this inside the window and
  // ext_ratio falls back to the lifetime totals (a quiet window says little
  // about what kind of files a workload uses).
  uint64_t min_ext_opens_in_window = 5;
  // A held GPU context counts as GPU use while the cgroup used the GPU (GPU
  // ioctls, or a busy share above 0) within this many windows
  // (policy.gpu_context_used_windows). 1..1000000.
  uint32_t gpu_context_used_windows = 10;
};

// policy.window below 1 s or infinite is an InvalidArgument error
// naming the key.
absl::Status ValidateFeatureOptions(const FeatureOptions& options);

// Where the GPU engine busy share came from.
enum class BusySource : uint8_t {
  kNone,  // nothing measured it (no DRM usage keys, no NVML)
  kDrm,   // DRM fdinfo drm-engine-* of the cgroup's DRM clients
  kNvml,  // NVML per-process utilisation of the cgroup's processes
};
absl::string_view BusySourceName(BusySource source);  // "none", "drm", "nvml"

// GPU use measured outside the counters, once per tick, for one cgroup
// (loader/gpu_use/gpu_context_scan.h, loader/gpu_use/nvml.h): what its processes hold open
// and how busy the GPU was for them.
struct GpuUsageSample {
  // File descriptors of the cgroup's processes on selected GPU device nodes.
  uint32_t contexts_held = 0;
  bool contexts_known = false;  // the proc scan ran for this cgroup
  // Engine busy time / wall time over the last interval (0..GPUs).
  double busy_share = 0;
  BusySource busy_source = BusySource::kNone;
  // GPU memory resident for the cgroup, bytes (DRM drm-resident-*, NVML).
  uint64_t resident_bytes = 0;
};

// Where ext_ratio came from.
enum class RatioSource {
  kNone,      // no file with an extension was ever opened: ext_ratio undefined
  kWindow,    // deltas over the window
  kLifetime,  // lifetime totals (the window had too few such opens)
};
absl::string_view RatioSourceName(RatioSource source);  // "none", "window", "lifetime"

// See docs/FEATURES.md for the exact definitions.
struct Features {
  // GPU device ioctls per second over the effective window.
  double gpu_ioctl_rate = 0;
  // 1 if the cgroup ever opened or ioctl'ed a GPU device, else 0.
  double gpu_opened = 0;
  // Opens of GPU-type-class files / opens of files with an extension; 0 when
  // undefined.
  double ext_ratio = 0;
  bool ext_ratio_defined = false;
  RatioSource ext_ratio_source = RatioSource::kNone;
  // Regular-file opens per second over the effective window.
  double open_rate = 0;
  // Bytes written to regular files per second over the effective window.
  double write_rate = 0;
  // Lifetime opens_total + gpu_opens + gpu_ioctls.
  uint64_t evidence = 0;
  // GPU device fds its processes hold (the latest proc scan); 0 if not scanned.
  double gpu_contexts_held = 0;
  bool gpu_contexts_known = false;
  // GPU engine busy share (busy time / wall time, 0..GPUs) from DRM or NVML.
  double gpu_busy_share = 0;
  bool gpu_busy_share_defined = false;
  BusySource gpu_busy_source = BusySource::kNone;
  uint64_t gpu_resident_bytes = 0;
  // Windows since the cgroup last used the GPU (GPU ioctls, or busy share
  // above 0); undefined if it never did.
  double context_last_used_windows = 0;
  bool context_last_used_defined = false;
  // 1 if it holds a GPU context and used the GPU within
  // gpu_context_used_windows windows, else 0.
  double gpu_context_recent = 0;

  // What the numbers rest on, for explanations.
  double window_seconds = 0;      // the effective window (denominator of the rates)
  uint64_t ext_opens = 0;         // denominator of ext_ratio (window or lifetime)
  uint64_t gpu_class_opens = 0;   // numerator of ext_ratio
  uint32_t samples = 0;           // samples held when computed
};

// The counters one cgroup's features need, over a sliding window.
//
// Memory is bounded and inline (no heap): kSlots compact samples (96 bytes
// each, not whole gt_cgroup_stats). Samples closer together than
// window / (kSlots - 2) are coalesced: the newest stored sample is replaced
// until it is that far from the one before it, so kSlots slots always reach
// back over the whole window, whatever the sampling period.
//
// Not thread-safe; one per cgroup.
class FeatureWindow {
 public:
  static constexpr int kSlots = 8;

  explicit FeatureWindow(const FeatureOptions& options = FeatureOptions());

  // Adds a read of the counters. A sample older than the newest held is
  // ignored. Counters that went backwards, or a changed first_seen_ns, mean
  // the map entry was recreated: the window restarts from this sample.
  void Add(const CounterSample& sample);

  // GPU use measured at mono_ns outside the counters (proc scan, DRM, NVML);
  // replaces the previous measurement. A busy share above 0 counts as use.
  void AddUsage(uint64_t mono_ns, const GpuUsageSample& usage);

  // Features as of now_ns (CLOCK_MONOTONIC; a value before the newest sample
  // is taken as the newest sample's time). With no samples: all zero.
  Features Compute(uint64_t now_ns, const GpuClassSet& gpu_classes) const;

  // Samples held (at most kSlots).
  int size() const { return size_; }

 private:
  // The counters features need, at one instant.
  struct Point {
    uint64_t mono_ns;
    uint64_t opens_total;
    uint64_t gpu_ioctls;
    uint64_t bytes_written;
    std::array<uint64_t, GT_CLASS_MAX> opens_by_class;
  };

  const Point& At(int i) const { return ring_[(head_ + i) % kSlots]; }  // 0 = oldest
  Point& MutableAt(int i) { return ring_[(head_ + i) % kSlots]; }
  void DropOldest();
  void Reset();
  // Drops samples no longer needed as the baseline of a window ending at end_ns.
  void Prune(uint64_t end_ns);

  std::array<Point, kSlots> ring_;
  uint64_t window_ns_;
  uint64_t checkpoint_ns_;  // minimum distance between stored samples
  uint64_t min_ext_opens_;
  uint32_t context_used_windows_;
  // The latest GpuUsageSample and when the GPU was last used.
  double busy_share_ = 0;
  uint64_t resident_bytes_ = 0;
  uint64_t last_gpu_use_ns_ = 0;  // 0: never seen used
  uint32_t contexts_held_ = 0;
  bool contexts_known_ = false;
  BusySource busy_source_ = BusySource::kNone;
  // Lifetime facts from the newest sample.
  uint64_t first_seen_ns_ = 0;
  uint64_t gpu_opens_ = 0;
  uint32_t flags_ = 0;
  uint8_t head_ = 0;
  uint8_t size_ = 0;
};

// The model's input vector (docs/FEATURES.md):
//   [log1p(gpu_ioctl_rate), gpu_opened, ext_ratio, log1p(open_rate),
//    log1p(write_rate / 1024), gpu_busy_share, gpu_context_recent]
inline constexpr size_t kModelInputCount = 7;
std::vector<double> ModelInputs(const Features& features);

// Names of ModelInputs' elements, in order, for explanations and the model file.
const std::array<absl::string_view, kModelInputCount>& ModelInputNames();

}  // namespace gputier

#endif  // GPUTIER_POLICY_FEATURES_H_
