#include "policy/features.h"

#include <algorithm>
#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace gputier {
namespace {

constexpr uint64_t kNsPerSecond = 1000000000ull;
// The shortest effective window: a burst right after a cgroup appears is
// counted as a rate per second, not per millisecond.
constexpr uint64_t kMinEffectiveWindowNs = kNsPerSecond;

constexpr uint32_t kDefaultGpuClassMask = (1u << GT_CLASS_IMAGE) | (1u << GT_CLASS_VIDEO) |
                                          (1u << GT_CLASS_TENSOR) | (1u << GT_CLASS_GRAPHICS);

}  // namespace

// Held per cgroup, for 10,000 cgroups and more.
static_assert(sizeof(FeatureWindow) <= 1024, "FeatureWindow must stay within 1 KiB");

GpuClassSet::GpuClassSet() : mask_(kDefaultGpuClassMask) {}

absl::StatusOr<GpuClassSet> GpuClassSet::FromIds(absl::Span<const uint32_t> class_ids) {
  uint32_t mask = 0;
  for (uint32_t id : class_ids) {
    if (id == GT_CLASS_OTHER) {
      return absl::InvalidArgumentError(
          "policy.gpu_classes: class 0 counts extensions that are in no class ('other') "
          "and cannot be a GPU-type class; name classes 1..7");
    }
    if (id >= GT_CLASS_MAX) {
      return absl::InvalidArgumentError(absl::StrCat("policy.gpu_classes: class id ", id,
                                                     " is out of range; class ids are 1..",
                                                     GT_CLASS_MAX - 1));
    }
    mask |= 1u << id;
  }
  return GpuClassSet(mask);
}

absl::Status ValidateFeatureOptions(const FeatureOptions& options) {
  if (options.window == absl::InfiniteDuration() || options.window == -absl::InfiniteDuration()) {
    return absl::InvalidArgumentError(
        "policy.window: an infinite window cannot slide; give a duration such as 30s");
  }
  if (options.window < absl::Seconds(1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("policy.window: ", absl::FormatDuration(options.window),
                     " is below 1s; rates are per second, so the window must be at least 1s"));
  }
  if (options.gpu_context_used_windows < 1 || options.gpu_context_used_windows > 1000000) {
    return absl::InvalidArgumentError(absl::StrCat(
        "policy.gpu_context_used_windows: ", options.gpu_context_used_windows,
        " is outside 1..1000000; give how many windows a held GPU context counts as GPU use "
        "after the cgroup last used the GPU, e.g. 10"));
  }
  return absl::OkStatus();
}

absl::string_view BusySourceName(BusySource source) {
  switch (source) {
    case BusySource::kNone:
      return "none";
    case BusySource::kDrm:
      return "drm";
    case BusySource::kNvml:
      return "nvml";
  }
  return "none";
}

absl::string_view RatioSourceName(RatioSource source) {
  switch (source) {
    case RatioSource::kNone:
      return "none";
    case RatioSource::kWindow:
      return "window";
    case RatioSource::kLifetime:
      return "lifetime";
  }
  return "none";
}

FeatureWindow::FeatureWindow(const FeatureOptions& options)
    : ring_(),
      window_ns_(static_cast<uint64_t>(
          std::max<int64_t>(absl::ToInt64Nanoseconds(options.window), kMinEffectiveWindowNs))),
      // Rounded up, so that kSlots - 2 gaps of at least this span the window.
      checkpoint_ns_((window_ns_ + kSlots - 3) / (kSlots - 2)),
      min_ext_opens_(options.min_ext_opens_in_window),
      context_used_windows_(options.gpu_context_used_windows) {}

void FeatureWindow::DropOldest() {
  head_ = static_cast<uint8_t>((head_ + 1) % kSlots);
  --size_;
}

void FeatureWindow::Reset() {
  head_ = 0;
  size_ = 0;
}

void FeatureWindow::Prune(uint64_t end_ns) {
  // Keep exactly one sample at or before the window's start: the baseline.
  while (size_ >= 2 && At(1).mono_ns + window_ns_ <= end_ns) DropOldest();
}

void FeatureWindow::Add(const CounterSample& sample) {
  const gt_cgroup_stats& s = sample.stats;
  Point p;
  p.mono_ns = sample.mono_ns;
  p.opens_total = s.opens_total;
  p.gpu_ioctls = s.gpu_ioctls;
  p.bytes_written = s.bytes_written;
  for (int c = 0; c < GT_CLASS_MAX; ++c) p.opens_by_class[c] = s.opens_by_class[c];

  if (size_ > 0) {
    const Point& newest = At(size_ - 1);
    if (p.mono_ns < newest.mono_ns) return;  // out of order: stale
    bool recreated = s.first_seen_ns != first_seen_ns_ || s.gpu_opens < gpu_opens_ ||
                     p.opens_total < newest.opens_total || p.gpu_ioctls < newest.gpu_ioctls ||
                     p.bytes_written < newest.bytes_written;
    for (int c = 0; c < GT_CLASS_MAX; ++c) {
      recreated = recreated || p.opens_by_class[c] < newest.opens_by_class[c];
    }
    if (recreated) {
      Reset();
    } else if (p.gpu_ioctls > newest.gpu_ioctls) {
      last_gpu_use_ns_ = p.mono_ns;  // GPU ioctls since the previous sample
    }
  }
  if (size_ == 0) {
    // First sample (or the entry was recreated): the GPU was last used no
    // earlier than the first GPU access, the only time the counters give.
    last_gpu_use_ns_ = 0;
    if (p.gpu_ioctls > 0) {
      last_gpu_use_ns_ = s.gpu_first_ns != 0 && s.gpu_first_ns <= p.mono_ns ? s.gpu_first_ns
                                                                             : p.mono_ns;
    }
  }
  first_seen_ns_ = s.first_seen_ns;
  gpu_opens_ = s.gpu_opens;
  flags_ = s.flags;

  Prune(p.mono_ns);
  // The newest slot moves with the samples until it is a checkpoint away from
  // the one before it; then it stays and the next sample takes a new slot.
  if (size_ >= 2 && At(size_ - 1).mono_ns - At(size_ - 2).mono_ns < checkpoint_ns_) {
    MutableAt(size_ - 1) = p;
    return;
  }
  if (size_ == kSlots) DropOldest();
  ring_[(head_ + size_) % kSlots] = p;
  ++size_;
}

void FeatureWindow::AddUsage(uint64_t mono_ns, const GpuUsageSample& usage) {
  contexts_held_ = usage.contexts_held;
  contexts_known_ = usage.contexts_known;
  busy_share_ = std::isfinite(usage.busy_share) ? std::max(usage.busy_share, 0.0) : 0.0;
  busy_source_ = usage.busy_source;
  resident_bytes_ = usage.resident_bytes;
  if (busy_share_ > 0) last_gpu_use_ns_ = std::max(last_gpu_use_ns_, mono_ns);
}

Features FeatureWindow::Compute(uint64_t now_ns, const GpuClassSet& gpu_classes) const {
  Features f;
  f.samples = size_;
  f.gpu_contexts_held = contexts_held_;
  f.gpu_contexts_known = contexts_known_;
  f.gpu_busy_source = busy_source_;
  f.gpu_busy_share_defined = busy_source_ != BusySource::kNone;
  f.gpu_busy_share = f.gpu_busy_share_defined ? busy_share_ : 0.0;
  f.gpu_resident_bytes = resident_bytes_;
  if (last_gpu_use_ns_ != 0) {
    const uint64_t now = size_ > 0 ? std::max(now_ns, At(size_ - 1).mono_ns) : now_ns;
    const uint64_t idle_ns = now > last_gpu_use_ns_ ? now - last_gpu_use_ns_ : 0;
    f.context_last_used_defined = true;
    f.context_last_used_windows = static_cast<double>(idle_ns) / static_cast<double>(window_ns_);
  }
  f.gpu_context_recent = contexts_held_ > 0 && f.context_last_used_defined &&
                                 f.context_last_used_windows <= context_used_windows_
                             ? 1.0
                             : 0.0;
  if (size_ == 0) return f;

  const Point& latest = At(size_ - 1);
  now_ns = std::max(now_ns, latest.mono_ns);
  const uint64_t window_start = now_ns > window_ns_ ? now_ns - window_ns_ : 0;

  // The baseline: the newest earlier sample at or before the window's start;
  // else the cgroup's origin (all counters were 0 at first_seen_ns); else the
  // oldest sample held.
  Point origin = {};
  const Point* base = nullptr;
  for (int i = size_ - 2; i >= 0; --i) {
    if (At(i).mono_ns <= window_start) {
      base = &At(i);
      break;
    }
  }
  if (base == nullptr) {
    if (first_seen_ns_ != 0 && first_seen_ns_ <= At(0).mono_ns) {
      origin.mono_ns = first_seen_ns_;
      base = &origin;
    } else {
      base = &At(0);
    }
  }

  const uint64_t span_ns = std::max(now_ns - base->mono_ns, kMinEffectiveWindowNs);
  const double span_s = static_cast<double>(span_ns) / kNsPerSecond;
  f.window_seconds = span_s;
  f.gpu_ioctl_rate = static_cast<double>(latest.gpu_ioctls - base->gpu_ioctls) / span_s;
  f.open_rate = static_cast<double>(latest.opens_total - base->opens_total) / span_s;
  f.write_rate = static_cast<double>(latest.bytes_written - base->bytes_written) / span_s;

  uint64_t window_ext = 0, window_gpu = 0, lifetime_ext = 0, lifetime_gpu = 0;
  for (uint32_t c = 0; c < GT_CLASS_MAX; ++c) {
    const uint64_t delta = latest.opens_by_class[c] - base->opens_by_class[c];
    window_ext += delta;
    lifetime_ext += latest.opens_by_class[c];
    if (gpu_classes.Contains(c)) {
      window_gpu += delta;
      lifetime_gpu += latest.opens_by_class[c];
    }
  }
  if (window_ext > 0 && window_ext >= min_ext_opens_) {
    f.ext_ratio_source = RatioSource::kWindow;
    f.ext_opens = window_ext;
    f.gpu_class_opens = window_gpu;
  } else if (lifetime_ext > 0) {
    f.ext_ratio_source = RatioSource::kLifetime;
    f.ext_opens = lifetime_ext;
    f.gpu_class_opens = lifetime_gpu;
  }
  f.ext_ratio_defined = f.ext_opens > 0;
  if (f.ext_ratio_defined) {
    f.ext_ratio = static_cast<double>(f.gpu_class_opens) / static_cast<double>(f.ext_opens);
  }

  const bool gpu_seen =
      (flags_ & GT_CG_GPU_SEEN) != 0 || gpu_opens_ > 0 || latest.gpu_ioctls > 0;
  f.gpu_opened = gpu_seen ? 1.0 : 0.0;
  f.evidence = latest.opens_total + gpu_opens_ + latest.gpu_ioctls;
  return f;
}

std::vector<double> ModelInputs(const Features& f) {
  return {std::log1p(f.gpu_ioctl_rate), f.gpu_opened,         f.ext_ratio,
          std::log1p(f.open_rate),       std::log1p(f.write_rate / 1024.0),
          f.gpu_busy_share,              f.gpu_context_recent};
}

const std::array<absl::string_view, kModelInputCount>& ModelInputNames() {
  static constexpr std::array<absl::string_view, kModelInputCount> kNames = {
      "log1p_gpu_ioctl_rate", "gpu_opened", "ext_ratio", "log1p_open_rate",
      "log1p_write_kib_rate", "gpu_busy_share", "gpu_context_recent"};
  return kNames;
}

}  // namespace gputier
