// Small helpers shared by the benchmarks in bench/.
#ifndef GPUTIER_BENCH_BENCH_COMMON_H_
#define GPUTIER_BENCH_BENCH_COMMON_H_

#include <bpf/bpf.h>

#include <algorithm>
#include <cstdint>
#include <vector>

namespace gputier::bench {

inline double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

// The kernel's accounting of one program (BPF_ENABLE_STATS must be on for it
// to move).
struct ProgStats {
  uint64_t run_time_ns = 0;
  uint64_t run_cnt = 0;
};

inline ProgStats ProgStatsOf(int prog_fd) {
  ProgStats s;
  bpf_prog_info info = {};
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(prog_fd, &info, &len) == 0) {
    s.run_time_ns = info.run_time_ns;
    s.run_cnt = info.run_cnt;
  }
  return s;
}

}  // namespace gputier::bench

#endif  // GPUTIER_BENCH_BENCH_COMMON_H_
