// Hysteresis on a cgroup's verdict: promotion to the fast tier is immediate,
// demotion needs a run of CPU windows, so a GPU job that pauses (data loading,
// checkpointing) keeps its tier.
//
//   UNKNOWN -> anything            immediately
//   any     -> GPU or MIXED        immediately (GPU <-> MIXED too)
//   GPU/MIXED -> CPU               after demote_after_cpu_windows consecutive
//                                  CPU proposals (a GPU or MIXED one resets the
//                                  count)
//   decided -> UNKNOWN             never: an UNKNOWN proposal keeps the current
//                                  verdict and leaves the count as it is
#ifndef GPUTIER_POLICY_HYSTERESIS_H_
#define GPUTIER_POLICY_HYSTERESIS_H_

#include <cstdint>

#include "policy/verdict.h"

namespace gputier {

// Per-cgroup state: 8 bytes.
class Hysteresis {
 public:
  // demote_after_cpu_windows 0 is taken as 1 (demote on the first CPU window).
  explicit Hysteresis(uint32_t demote_after_cpu_windows = 3);

  // Feeds one proposed verdict (one classification window) and returns the
  // verdict now in force.
  Verdict Apply(Verdict proposed);

  // After an agent restart: the verdict in force before it (from the verdict
  // map), with no pending demotion.
  void Restore(Verdict verdict);

  Verdict current() const { return current_; }
  // Consecutive CPU proposals seen while GPU or MIXED (0 otherwise).
  uint32_t cpu_streak() const { return cpu_streak_; }

 private:
  Verdict current_ = Verdict::kUnknown;
  uint16_t cpu_streak_ = 0;
  uint16_t demote_after_;
};

}  // namespace gputier

#endif  // GPUTIER_POLICY_HYSTERESIS_H_
