// The agent's two clocks. CLOCK_MONOTONIC is the clock of bpf_ktime_get_ns()
// (the counters' first/last-seen times, feature windows); CLOCK_REALTIME is
// for what people read (decision times, table rows).
#ifndef GPUTIER_LOADER_BASE_CLOCK_H_
#define GPUTIER_LOADER_BASE_CLOCK_H_

#include <time.h>

#include <cstdint>

namespace gputier {

inline uint64_t MonotonicNs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

inline int64_t UnixNs() {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000ll + ts.tv_nsec;
}

}  // namespace gputier

#endif  // GPUTIER_LOADER_BASE_CLOCK_H_
