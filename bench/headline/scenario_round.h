// One round of the headline benchmark: two real runc containers (a GPU job
// and a CPU job, bench/headline/job.c) run side by side in one scenario, on
// the emulated tiers, and what they report.
#ifndef GPUTIER_BENCH_HEADLINE_SCENARIO_ROUND_H_
#define GPUTIER_BENCH_HEADLINE_SCENARIO_ROUND_H_

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "bench/headline/emulated_tiers.h"

namespace gputier::bench {

enum class Scenario { kDefault, kAllFast, kGputier };
inline constexpr Scenario kScenarios[] = {Scenario::kDefault, Scenario::kAllFast, Scenario::kGputier};
const char* ScenarioName(Scenario s);

struct RoundConfig {
  int steps = 40;
  int checkpoint_mib = 32;
  std::string job_binary;  // bench/headline/job.c, static
  std::string tensor_dir;  // host directory bound at /models in the GPU job's container
  uint64_t partition_mib = 256;
};

struct StepTime {
  uint64_t start_ns = 0, end_ns = 0;
};

struct RoundResult {
  Scenario scenario = Scenario::kDefault;
  uint64_t first_ioctl_ns = 0;
  std::vector<StepTime> steps;
  uint64_t promoted_ns = 0;  // gputier: when the GPU job's /data became the fast overlay (0: never)
  uint64_t cpu_bytes = 0;
  double cpu_seconds = 0;
  uint64_t cpu_bytes_on_fast = 0;  // sizes of the CPU job's files found on the fast tier at the end
  bool cpu_data_seen_on_fast = false;  // the CPU job's /data was ever a fast-tier overlay

  double JobSeconds() const;
  // The first step whose checkpoint started after the promotion (-1: none).
  int FirstFastStep() const;
};

// Set by SIGINT/SIGTERM: a running round kills its containers and returns.
extern std::atomic<bool> g_interrupted;

absl::StatusOr<RoundResult> RunRound(Scenario scenario, const RoundConfig& config, EmulatedTiers& tiers);

}  // namespace gputier::bench

#endif  // GPUTIER_BENCH_HEADLINE_SCENARIO_ROUND_H_
