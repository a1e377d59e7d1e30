#include "policy/verdict.h"

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace gputier {

absl::string_view VerdictName(Verdict verdict) {
  switch (verdict) {
    case Verdict::kUnknown:
      return "unknown";
    case Verdict::kCpu:
      return "cpu";
    case Verdict::kGpu:
      return "gpu";
    case Verdict::kMixed:
      return "mixed";
  }
  return "unknown";
}

absl::StatusOr<Verdict> ParseVerdict(absl::string_view name) {
  for (Verdict v : {Verdict::kUnknown, Verdict::kCpu, Verdict::kGpu, Verdict::kMixed}) {
    if (absl::EqualsIgnoreCase(name, VerdictName(v))) return v;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "'", name, "' is not a verdict; expected one of unknown, cpu, gpu, mixed"));
}

int DecidedVerdictIndex(Verdict verdict) {
  for (size_t i = 0; i < kDecidedVerdictCount; ++i) {
    if (kDecidedVerdicts[i] == verdict) return static_cast<int>(i);
  }
  return -1;
}

}  // namespace gputier
