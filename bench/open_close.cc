// Benchmark: the cost gputierd adds to open()+close().
//
// Times a tight open+close loop on a regular file with a classified extension,
// without and with a real gputierd (its own pin directory, --quiet). Rounds
// alternate; each round starts gputierd, times two loops, and stops it:
//   with     gputierd attached, kernel BPF stats off: what a node pays;
//   stats    gputierd attached, BPF_ENABLE_STATS on, reading the kernel's own
//            accounting of the programs (run_time_ns / run_cnt).
// A "without" loop runs before the first round and after every round, and each
// round's ratio is its "with" loop over the mean of the two "without" loops
// around it, so slow drift on a shared host cancels. The reported ratio is the
// median of the rounds' ratios. It never uses the "stats" loops:
// BPF_ENABLE_STATS adds two clock reads per program run. A loop is timed in
// chunks of 10000 pairs and counts as the median of its chunks, so a burst of
// other work on the host shorter than half a loop does not move it; the 10th
// percentile of all chunks (with over without) is printed too.
//
// The accounting has a floor: an empty program on the same hook reports a
// non-zero time per run (the clock reads themselves, the call into the
// program). During the "stats" loops the benchmark also attaches such an
// empty raw tracepoint program to sys_exit and reports its time per run, and
// the programs' time per open with that floor taken out (tracepoint mode runs
// the program on both the open and the close exit).
//
//   sudo build/bench/gputier_bench_open_close [--mode=tracepoint] [--iterations=200000] [--rounds=5]
#include <bpf/bpf.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/bench_common.h"

ABSL_FLAG(std::string, mode, "tracepoint", "gputierd --mode for the 'with' rounds");
ABSL_FLAG(int, iterations, 200000, "open+close pairs per loop");
ABSL_FLAG(int, rounds, 5, "rounds with gputierd (medians reported)");
ABSL_FLAG(std::string, gputierd, GPUTIER_BIN_DIR "/gputierd", "agent binary");

namespace {

using gputier::bench::kChunk;
using gputier::bench::LoopTime;
using gputier::bench::Median;
using gputier::bench::ProgStats;
using gputier::bench::ProgStatsOf;
using gputier::bench::TimeLoop;

// The p-th percentile (0..100) of v, nearest rank.
double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(p / 100 * (v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

// Sums the kernel's stats over loaded programs whose name starts with "gt_"
// (and counts them in *count).
ProgStats ReadGtProgStats(int* count = nullptr) {
  ProgStats total;
  uint32_t id = 0;
  while (bpf_prog_get_next_id(id, &id) == 0) {
    int fd = bpf_prog_get_fd_by_id(id);
    if (fd < 0) continue;
    bpf_prog_info info = {};
    uint32_t len = sizeof(info);
    if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0 && strncmp(info.name, "gt_", 3) == 0) {
      if (count != nullptr) ++*count;
      total.run_time_ns += info.run_time_ns;
      total.run_cnt += info.run_cnt;
    }
    close(fd);
  }
  return total;
}

// An empty raw tracepoint program ("return 0") attached to sys_exit: what the
// kernel's accounting reports for a program that does nothing. Returns the
// program fd (and the attachment in *link_fd), or -1.
int AttachEmptySysExitProgram(int* link_fd) {
  const bpf_insn insns[] = {
      {BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 0},  // r0 = 0
      {BPF_JMP | BPF_EXIT, 0, 0, 0, 0},                   // exit
  };
  int prog = bpf_prog_load(BPF_PROG_TYPE_RAW_TRACEPOINT, "bench_floor", "GPL", insns, 2, nullptr);
  if (prog < 0) return -1;
  *link_fd = bpf_raw_tracepoint_open("sys_exit", prog);
  if (*link_fd < 0) {
    close(prog);
    return -1;
  }
  return prog;
}


template <typename F>
double MedianOf(const std::vector<LoopTime>& v, F f) {
  std::vector<double> x;
  for (const LoopTime& t : v) x.push_back(f(t));
  return Median(x);
}

// Removes the agent's pins and the benchmark's scratch directory.
void CleanUp(const std::string& pin_dir, const std::string& dir) {
  std::string unpin = absl::StrCat(GPUTIER_BIN_DIR "/gputierctl unpin --pin-dir ", pin_dir, " >/dev/null 2>&1");
  (void)system(unpin.c_str());
  rmdir(pin_dir.c_str());
  (void)system(absl::StrCat("rm -rf ", dir).c_str());
}

double Wall(const LoopTime& t) { return t.wall_ns; }
double Cpu(const LoopTime& t) { return t.cpu_ns; }

}  // namespace

int main(int argc, char** argv) {
  if (int rc = gputier::bench::ParseFlagsAndRequireRoot(argc, argv, "gputier_bench_open_close", "starts gputierd"); rc != 0) return rc;
  const int iterations = absl::GetFlag(FLAGS_iterations);
  const int rounds = absl::GetFlag(FLAGS_rounds);
  if (iterations <= 0 || rounds <= 0) {
    fprintf(stderr, "gputier_bench_open_close: --iterations and --rounds must be positive\n");
    return 1;
  }
  char tmpl[] = "/tmp/gputier-bench-XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  const std::string file = dir + "/weights.safetensors";
  std::ofstream(file) << "x";
  const std::string pin_dir = absl::StrFormat("/sys/fs/bpf/gputier-bench-%d", getpid());
  const std::string ready = dir + "/ready";

  int others = 0;
  ReadGtProgStats(&others);
  if (others > 0) {
    fprintf(stderr,
            "warning: %d gputier programs of another agent are loaded: they run in every loop and their "
            "time is counted as ours\n",
            others);
  }

  std::vector<LoopTime> without, with, with_stats, without_chunks, with_chunks;
  std::vector<double> ratios, cpu_ratios, per_run, per_open, floor_per_run, net_per_open;
  bool stats_ok = true;
  TimeLoop(file, iterations / 10);  // warm the dentry and page caches
  without.push_back(TimeLoop(file, iterations, &without_chunks));
  for (int r = 0; r < rounds; ++r) {
    unlink(ready.c_str());
    pid_t pid = fork();
    if (pid == 0) {
      int devnull = open("/dev/null", O_WRONLY);
      dup2(devnull, 1);
      dup2(devnull, 2);
      std::string bin = absl::GetFlag(FLAGS_gputierd);
      std::string a1 = "--mode=" + absl::GetFlag(FLAGS_mode), a2 = "--pin-dir=" + pin_dir,
                  a3 = "--run-dir=" + dir + "/run", a4 = "--ready-file=" + ready;
      execl(bin.c_str(), bin.c_str(), a1.c_str(), a2.c_str(), a3.c_str(), a4.c_str(), "--quiet",
            "--metrics-address=off", static_cast<char*>(nullptr));
      _exit(127);
    }
    struct stat st;
    for (int i = 0; i < 600 && stat(ready.c_str(), &st) != 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    if (stat(ready.c_str(), &st) != 0) {
      fprintf(stderr, "gputierd did not become ready; run it by hand to see why\n");
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
      CleanUp(pin_dir, dir);
      return 1;
    }
    with.push_back(TimeLoop(file, iterations, &with_chunks));

    // Stats stay on only while stats_fd is open (a kernel-wide switch).
    int stats_fd = bpf_enable_stats(BPF_STATS_RUN_TIME);
    if (stats_fd < 0) {
      if (stats_ok) {
        fprintf(stderr, "warning: BPF_ENABLE_STATS failed (%s): no program times\n", strerror(errno));
      }
      stats_ok = false;
    } else {
      int floor_link = -1;
      int floor_prog = AttachEmptySysExitProgram(&floor_link);
      ProgStats floor_before = floor_prog >= 0 ? ProgStatsOf(floor_prog) : ProgStats{};
      ProgStats before = ReadGtProgStats();
      with_stats.push_back(TimeLoop(file, iterations));
      ProgStats after = ReadGtProgStats();
      ProgStats floor_after = floor_prog >= 0 ? ProgStatsOf(floor_prog) : ProgStats{};
      close(stats_fd);
      const uint64_t ns = after.run_time_ns - before.run_time_ns;
      const uint64_t runs = after.run_cnt - before.run_cnt;
      if (runs > 0) {
        per_run.push_back(double(ns) / runs);
        per_open.push_back(double(ns) / iterations);
      }
      if (floor_prog >= 0) {
        close(floor_link);
        close(floor_prog);
        const uint64_t floor_runs = floor_after.run_cnt - floor_before.run_cnt;
        if (floor_runs > 0 && runs > 0) {
          const double f = double(floor_after.run_time_ns - floor_before.run_time_ns) / floor_runs;
          floor_per_run.push_back(f);
          net_per_open.push_back((double(ns) - f * runs) / iterations);
        }
      }
    }
    kill(pid, SIGTERM);
    waitpid(pid, nullptr, 0);

    without.push_back(TimeLoop(file, iterations, &without_chunks));
    const LoopTime& a = without[without.size() - 2];
    const LoopTime& b = without.back();
    ratios.push_back(with.back().wall_ns / ((a.wall_ns + b.wall_ns) / 2));
    cpu_ratios.push_back(with.back().cpu_ns / ((a.cpu_ns + b.cpu_ns) / 2));
  }
  CleanUp(pin_dir, dir);

  const double base = MedianOf(without, Wall), agent = MedianOf(with, Wall);
  const double stats_ns = MedianOf(with_stats, Wall);
  const double ratio = Median(ratios), cpu_ratio = Median(cpu_ratios);
  std::vector<double> without_p10, with_p10;
  for (const LoopTime& t : without_chunks) without_p10.push_back(t.wall_ns);
  for (const LoopTime& t : with_chunks) with_p10.push_back(t.wall_ns);
  const double p10_ratio = Percentile(with_p10, 10) / Percentile(without_p10, 10);
  const double run_ns = Median(per_run), open_ns = Median(per_open);
  const double floor_ns = Median(floor_per_run), net_ns = Median(net_per_open);
  std::vector<double> sorted = ratios;
  std::sort(sorted.begin(), sorted.end());
  printf("open+close loop, %d iterations, %d rounds, mode=%s\n", iterations, rounds,
         absl::GetFlag(FLAGS_mode).c_str());
  printf("  without gputierd: %8.1f ns per open+close (median wall; %.1f CPU)\n", base,
         MedianOf(without, Cpu));
  printf("  with gputierd:    %8.1f ns per open+close (median wall; %.1f CPU; BPF stats off)\n", agent,
         MedianOf(with, Cpu));
  printf("  ratio:            %8.3f (median of per-round ratios, range %.3f..%.3f)\n", ratio, sorted.front(),
         sorted.back());
  printf("                    %8.3f (the same on thread CPU time)\n", cpu_ratio);
  printf("                    %8.3f (10th percentile of %d-pair chunks, with over without)\n", p10_ratio,
         kChunk);
  if (stats_ok) {
    printf("  with BPF stats:   %8.1f ns per open+close (median wall; not used for the ratio)\n", stats_ns);
    printf("  program time:     %8.1f ns per program run, %.1f ns per open "
           "(tracepoint mode: runs include the close exit)\n",
           run_ns, open_ns);
    if (!floor_per_run.empty()) {
      printf("  accounting floor: %8.1f ns per run of an empty sys_exit program; "
             "programs net of it: %.1f ns per open\n",
             floor_ns, net_ns);
    }
  }
  printf("RESULT ratio=%.3f cpu_ratio=%.3f p10_ratio=%.3f base_ns=%.1f agent_ns=%.1f stats_ns=%.1f "
         "prog_ns_per_run=%.1f prog_ns_per_open=%.1f floor_ns_per_run=%.1f net_prog_ns_per_open=%.1f\n",
         ratio, cpu_ratio, p10_ratio, base, agent, stats_ns, run_ns, open_ns, floor_ns, net_ns);
  return 0;
}
