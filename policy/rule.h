// The threshold rule of the patent's claims 2-4: a cgroup is classified from
// its GPU resource usage (GPU ioctl rate) and the ratio of GPU-type file
// extensions among the files it opens.
//
// "Uses the GPU" is any of: gpu_ioctl_rate at or above its threshold; the
// GPU engine busy share (DRM or NVML, when measured) at or above its
// threshold; a held GPU context used within gpu_context_used_windows windows
// (gpu_context_recent, features.h).
//
//   evidence < min_evidence and no GPU use         -> UNKNOWN
//   does not use the GPU                           -> CPU (whatever the files)
//   uses the GPU, ext_ratio >= its threshold       -> GPU
//   uses the GPU, ext_ratio <  its threshold       -> MIXED (also: ratio undefined)
//
// A value exactly at a threshold counts as at or above it. Pure.
#ifndef GPUTIER_POLICY_RULE_H_
#define GPUTIER_POLICY_RULE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "policy/features.h"
#include "policy/verdict.h"

namespace gputier {

struct RuleThresholds {
  // GPU device ioctls per second at or above which a cgroup uses the GPU. A
  // CUDA or ROCm context creation alone issues hundreds; a CPU workload none.
  // Must be above 0 (at 0 every cgroup would be GPU-side).
  double gpu_ioctl_rate = 1.0;
  // Share of GPU-type extensions (image, video, tensor, graphics by default)
  // among opened files with an extension at or above which a GPU user is GPU
  // rather than MIXED. In [0, 1].
  double ext_ratio = 0.3;
  // Lifetime evidence (file opens + GPU opens + GPU ioctls) below which a
  // cgroup that never touched a GPU is UNKNOWN.
  uint64_t min_evidence = 10;
  // GPU engine busy share (engine busy time / wall time over the last
  // interval, from DRM fdinfo or NVML) at or above which a cgroup uses the
  // GPU. Above 0 (every measured cgroup is at or above 0).
  double gpu_busy_share = 0.05;
};

// InvalidArgument with one sentence naming the key (policy.thresholds.*):
// NaN or infinite values, a gpu_ioctl_rate <= 0, an ext_ratio outside [0, 1],
// a gpu_busy_share <= 0.
absl::Status ValidateThresholds(const RuleThresholds& thresholds);

// One feature compared with its threshold.
struct RuleCheck {
  // "evidence", "gpu_opened", "gpu_ioctl_rate", "ext_ratio", "gpu_busy_share",
  // "gpu_context_recent"
  std::string feature;
  double value = 0;
  double threshold = 0;
  bool at_or_above = false;  // value >= threshold
  bool defined = true;       // false: ext_ratio with no file with an extension,
                             // gpu_busy_share that nothing measured
  bool decisive = false;     // this comparison chose the verdict
};

// The rule's verdict and why (gputierctl explain).
struct RuleExplanation {
  Verdict verdict = Verdict::kUnknown;
  // 0 for UNKNOWN; else 500 + 500 * margin, margin in [0, 1] being how far the
  // deciding features lie from their thresholds (docs/FEATURES.md): 500 exactly
  // at a threshold, 1000 at twice the rate threshold or beyond.
  int confidence_permille = 0;
  // Always six checks, in the order evidence (vs min_evidence), gpu_opened
  // (vs 1), gpu_ioctl_rate, ext_ratio, gpu_busy_share, gpu_context_recent
  // (vs 1).
  std::vector<RuleCheck> checks;
  // One sentence, e.g. "gpu_ioctl_rate 12/s is at or above 1/s and ext_ratio
  // 0.45 is at or above 0.3: gpu".
  std::string reason;
};

RuleExplanation EvaluateRule(const Features& features, const RuleThresholds& thresholds);

// EvaluateRule(...).verdict.
Verdict RuleVerdict(const Features& features, const RuleThresholds& thresholds);

}  // namespace gputier

#endif  // GPUTIER_POLICY_RULE_H_
