// Small helpers shared by the benchmarks in bench/.
#ifndef GPUTIER_BENCH_BENCH_COMMON_H_
#define GPUTIER_BENCH_BENCH_COMMON_H_

#include <bpf/bpf.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/flags/parse.h"

namespace gputier::bench {

// The opening every benchmark's main() shares: parses the flags and, as the
// benchmark needs root (`root_for` says what for), refuses to go on without
// it. Returns 0 to go on, else main's exit code.
inline int ParseFlagsAndRequireRoot(int argc, char** argv, const char* name, const char* root_for) {
  absl::ParseCommandLine(argc, argv);
  if (geteuid() == 0) return 0;
  fprintf(stderr, "%s: needs root (%s); run it with sudo\n", name, root_for);
  return 1;
}

inline double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

// Per-iteration time of one loop: wall clock, and the thread's CPU time (which
// leaves out time the thread spent preempted by other work on the host).
struct LoopTime {
  double wall_ns = 0;
  double cpu_ns = 0;
};

inline double ThreadCpuNs() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e9 + ts.tv_nsec;
}

// Times `iterations` open+close pairs in chunks of kChunk. Each side of a
// loop is the median of its chunks, so a burst of other work on a shared host
// that covers less than half of the loop does not move it; every chunk is also
// kept in *chunks for the percentiles.
constexpr int kChunk = 10000;

inline LoopTime TimeLoop(const std::string& path, int iterations, std::vector<LoopTime>* chunks = nullptr) {
  std::vector<double> wall, cpu;
  for (int done = 0; done < iterations;) {
    const int n = std::min(kChunk, iterations - done);
    const double cpu_start = ThreadCpuNs();
    auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < n; ++i) {
      int fd = open(path.c_str(), O_RDONLY);
      if (fd < 0) {
        perror("open");
        exit(1);
      }
      close(fd);
    }
    auto end = std::chrono::steady_clock::now();
    const double cpu_end = ThreadCpuNs();
    wall.push_back(std::chrono::duration<double, std::nano>(end - start).count() / n);
    cpu.push_back((cpu_end - cpu_start) / n);
    if (chunks != nullptr) chunks->push_back({wall.back(), cpu.back()});
    done += n;
  }
  return {Median(wall), Median(cpu)};
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
