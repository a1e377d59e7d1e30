#include "policy/hysteresis.h"

#include <algorithm>

namespace gputier {

static_assert(sizeof(Hysteresis) <= 8, "Hysteresis is held per cgroup");

Hysteresis::Hysteresis(uint32_t demote_after_cpu_windows)
    : demote_after_(static_cast<uint16_t>(
          std::clamp<uint32_t>(demote_after_cpu_windows, 1, UINT16_MAX))) {}

Verdict Hysteresis::Apply(Verdict proposed) {
  if (proposed == Verdict::kUnknown) return current_;
  if (current_ == Verdict::kUnknown || proposed != Verdict::kCpu) {
    current_ = proposed;
    cpu_streak_ = 0;
    return current_;
  }
  // proposed is CPU and a verdict is in force.
  if (current_ == Verdict::kCpu) return current_;
  if (++cpu_streak_ >= demote_after_) {
    current_ = Verdict::kCpu;
    cpu_streak_ = 0;
  }
  return current_;
}

void Hysteresis::Restore(Verdict verdict) {
  current_ = verdict;
  cpu_streak_ = 0;
}

}  // namespace gputier
