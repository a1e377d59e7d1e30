#include "policy/rule.h"

#include <algorithm>
#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace gputier {
namespace {

// A number for a sentence: 3 significant digits, no exponent for large values.
std::string Num(double v) {
  if (std::isfinite(v) && std::fabs(v) >= 1000) return absl::StrFormat("%.0f", v);
  return absl::StrFormat("%.3g", v);
}

absl::Status BadThreshold(absl::string_view key, double value, absl::string_view problem,
                          absl::string_view fix) {
  return absl::InvalidArgumentError(absl::StrCat("policy.thresholds.", key, ": ",
                                                 absl::StrFormat("%g", value), " ", problem,
                                                 "; ", fix));
}

// How far a value lies beyond a threshold, relative to the room on that side,
// in [0, 1]; 1 when there is no room (the value is as far as it can be).
double Margin(double distance, double room) {
  if (!(room > 0)) return 1.0;
  return std::clamp(distance / room, 0.0, 1.0);
}

// A held, recently used context says the GPU is in use but not how much:
// it decides at confidence 750 (docs/FEATURES.md).
constexpr double kContextMargin = 0.5;

int ConfidenceFromMargin(double margin) {
  return 500 + static_cast<int>(std::lround(500.0 * margin));
}

}  // namespace

absl::Status ValidateThresholds(const RuleThresholds& t) {
  constexpr absl::string_view kRateFix = "give GPU ioctls per second above 0, e.g. 1.0";
  constexpr absl::string_view kRatioFix = "the ratio of GPU-type extensions lies in [0, 1]";
  if (std::isnan(t.gpu_ioctl_rate)) {
    return BadThreshold("gpu_ioctl_rate", t.gpu_ioctl_rate, "is not a number", kRateFix);
  }
  if (std::isinf(t.gpu_ioctl_rate)) {
    return BadThreshold("gpu_ioctl_rate", t.gpu_ioctl_rate, "is not finite", kRateFix);
  }
  if (t.gpu_ioctl_rate < 0) {
    return BadThreshold("gpu_ioctl_rate", t.gpu_ioctl_rate, "is negative", kRateFix);
  }
  if (t.gpu_ioctl_rate == 0) {
    return BadThreshold("gpu_ioctl_rate", t.gpu_ioctl_rate,
                        "would count every cgroup, even one that never touched a GPU, as a GPU user",
                        kRateFix);
  }
  if (std::isnan(t.ext_ratio)) {
    return BadThreshold("ext_ratio", t.ext_ratio, "is not a number", kRatioFix);
  }
  if (t.ext_ratio < 0) return BadThreshold("ext_ratio", t.ext_ratio, "is below 0", kRatioFix);
  if (t.ext_ratio > 1) return BadThreshold("ext_ratio", t.ext_ratio, "is above 1", kRatioFix);
  constexpr absl::string_view kBusyFix =
      "give the share of GPU engine busy time above 0 at which a cgroup uses the GPU, e.g. 0.05";
  if (!std::isfinite(t.gpu_busy_share)) {
    return BadThreshold("gpu_busy_share", t.gpu_busy_share, "is not a finite number", kBusyFix);
  }
  if (t.gpu_busy_share <= 0) {
    return BadThreshold("gpu_busy_share", t.gpu_busy_share,
                        "would count every cgroup with a measured busy share, even an idle one, "
                        "as a GPU user",
                        kBusyFix);
  }
  return absl::OkStatus();
}

RuleExplanation EvaluateRule(const Features& f, const RuleThresholds& t) {
  const bool enough_evidence = f.evidence >= t.min_evidence;
  const bool gpu_opened = f.gpu_opened >= 1.0;
  const bool rate_high = f.gpu_ioctl_rate >= t.gpu_ioctl_rate;
  const bool ratio_high = f.ext_ratio_defined && f.ext_ratio >= t.ext_ratio;
  const bool busy_high = f.gpu_busy_share_defined && f.gpu_busy_share >= t.gpu_busy_share;
  const bool context_recent = f.gpu_context_recent >= 1.0;
  const bool uses_gpu = rate_high || busy_high || context_recent;
  const bool gpu_used = gpu_opened || f.gpu_ioctl_rate > 0 || uses_gpu;

  RuleExplanation e;
  RuleCheck evidence{"evidence", static_cast<double>(f.evidence),
                     static_cast<double>(t.min_evidence), enough_evidence};
  RuleCheck opened{"gpu_opened", f.gpu_opened, 1.0, gpu_opened};
  RuleCheck rate{"gpu_ioctl_rate", f.gpu_ioctl_rate, t.gpu_ioctl_rate, rate_high};
  RuleCheck ratio{"ext_ratio", f.ext_ratio, t.ext_ratio, ratio_high, f.ext_ratio_defined};
  RuleCheck busy{"gpu_busy_share", f.gpu_busy_share, t.gpu_busy_share, busy_high,
                 f.gpu_busy_share_defined};
  RuleCheck context{"gpu_context_recent", f.gpu_context_recent, 1.0, context_recent};

  if (!enough_evidence && !gpu_used) {
    e.verdict = Verdict::kUnknown;
    e.confidence_permille = 0;
    evidence.decisive = opened.decisive = true;
    e.reason = absl::StrCat("evidence ", f.evidence, " is below min_evidence ", t.min_evidence,
                            " and the cgroup never used a GPU: unknown");
  } else if (!uses_gpu) {
    e.verdict = Verdict::kCpu;
    rate.decisive = true;
    double margin = Margin(t.gpu_ioctl_rate - f.gpu_ioctl_rate, t.gpu_ioctl_rate);
    std::string why = absl::StrCat("gpu_ioctl_rate ", Num(f.gpu_ioctl_rate), "/s is below ",
                                   Num(t.gpu_ioctl_rate), "/s");
    if (f.gpu_busy_share_defined) {
      busy.decisive = true;
      margin = std::min(margin, Margin(t.gpu_busy_share - f.gpu_busy_share, t.gpu_busy_share));
      absl::StrAppend(&why, ", gpu_busy_share ", Num(f.gpu_busy_share), " (",
                      BusySourceName(f.gpu_busy_source), ") is below ", Num(t.gpu_busy_share));
    }
    if (f.gpu_contexts_held > 0) {
      context.decisive = true;
      absl::StrAppend(&why, ", its ", Num(f.gpu_contexts_held), " held GPU contexts ",
                      f.context_last_used_defined
                          ? absl::StrCat("were last used ", Num(f.context_last_used_windows),
                                         " windows ago")
                          : std::string("were never seen used"));
    }
    e.confidence_permille = ConfidenceFromMargin(margin);
    e.reason = absl::StrCat(why, ": cpu, whatever the files it opens");
  } else {
    ratio.decisive = true;
    // The GPU use that holds, strongest first, and how far it is from its
    // threshold.
    double use_margin = 0;
    std::string use_text;
    if (rate_high) {
      rate.decisive = true;
      use_margin = Margin(f.gpu_ioctl_rate - t.gpu_ioctl_rate, t.gpu_ioctl_rate);
      use_text = absl::StrCat("gpu_ioctl_rate ", Num(f.gpu_ioctl_rate), "/s is at or above ",
                              Num(t.gpu_ioctl_rate), "/s");
    }
    if (busy_high) {
      busy.decisive = true;
      const double m = Margin(f.gpu_busy_share - t.gpu_busy_share, t.gpu_busy_share);
      if (use_text.empty() || m > use_margin) {
        use_margin = m;
        use_text = absl::StrCat("gpu_busy_share ", Num(f.gpu_busy_share), " (",
                                BusySourceName(f.gpu_busy_source), ") is at or above ",
                                Num(t.gpu_busy_share));
      }
    }
    if (context_recent) {
      context.decisive = true;
      if (use_text.empty()) {
        use_margin = kContextMargin;
        use_text = absl::StrCat(Num(f.gpu_contexts_held),
                                " GPU contexts are held and were last used ",
                                Num(f.context_last_used_windows), " windows ago");
      }
    }
    double ratio_margin = 1.0;
    if (ratio_high) {
      e.verdict = Verdict::kGpu;
      ratio_margin = Margin(f.ext_ratio - t.ext_ratio, 1.0 - t.ext_ratio);
      e.reason = absl::StrCat(use_text, " and ext_ratio ", Num(f.ext_ratio),
                              " is at or above ", Num(t.ext_ratio), ": gpu");
    } else if (f.ext_ratio_defined) {
      e.verdict = Verdict::kMixed;
      ratio_margin = Margin(t.ext_ratio - f.ext_ratio, t.ext_ratio);
      e.reason = absl::StrCat(use_text, " but ext_ratio ", Num(f.ext_ratio), " is below ",
                              Num(t.ext_ratio), ": mixed");
    } else {
      e.verdict = Verdict::kMixed;
      e.reason = absl::StrCat(use_text, " but no file with an extension was opened: mixed");
    }
    e.confidence_permille = ConfidenceFromMargin(std::min(use_margin, ratio_margin));
  }
  e.checks = {evidence, opened, rate, ratio, busy, context};
  return e;
}

Verdict RuleVerdict(const Features& features, const RuleThresholds& thresholds) {
  return EvaluateRule(features, thresholds).verdict;
}

}  // namespace gputier
