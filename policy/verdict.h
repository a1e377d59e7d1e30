// The verdict of a cgroup: what kind of workload it runs, and so which storage
// tier its writes go to (GPU and MIXED: the fast tier; CPU: the slow tier).
#ifndef GPUTIER_POLICY_VERDICT_H_
#define GPUTIER_POLICY_VERDICT_H_

#include <array>
#include <cstddef>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace gputier {

enum class Verdict {
  kUnknown,  // too little evidence yet
  kCpu,      // no GPU use (whatever files it opens)
  kGpu,      // GPU use and mostly GPU-type files
  kMixed,    // GPU use, but mostly other files
};

// The verdicts a classifier can reach with evidence, in the order used for
// per-class arrays (log-likelihoods, model parameters).
inline constexpr std::array<Verdict, 3> kDecidedVerdicts = {Verdict::kCpu, Verdict::kGpu,
                                                           Verdict::kMixed};
inline constexpr size_t kDecidedVerdictCount = kDecidedVerdicts.size();

// "unknown", "cpu", "gpu", "mixed".
absl::string_view VerdictName(Verdict verdict);

// The inverse of VerdictName (ASCII case-insensitive); anything else is an
// InvalidArgument error naming the text and the accepted names.
absl::StatusOr<Verdict> ParseVerdict(absl::string_view name);

// Index of a decided verdict in kDecidedVerdicts; -1 for kUnknown.
int DecidedVerdictIndex(Verdict verdict);

}  // namespace gputier

#endif  // GPUTIER_POLICY_VERDICT_H_
