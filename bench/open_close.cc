// Benchmark: the cost gputierd adds to open()+close().
//
// One run alternates rounds without and with a real gputierd (its own pin
// directory, --quiet), timing a tight open+close loop on a regular file with
// a classified extension, and reads the kernel's own accounting of the
// programs (BPF_ENABLE_STATS: run_time_ns / run_cnt) during the "with" rounds.
//
//   sudo build/bench/gputier_bench_open_close [--mode=tracepoint] [--iterations=200000] [--rounds=5]
//
// Prints the median per-iteration time of each side, their ratio, and the
// programs' average ns per run and per open.
#include <bpf/bpf.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
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
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

ABSL_FLAG(std::string, mode, "tracepoint", "gputierd --mode for the 'with' rounds");
ABSL_FLAG(int, iterations, 200000, "open+close pairs per round");
ABSL_FLAG(int, rounds, 5, "rounds per side (median reported)");
ABSL_FLAG(std::string, gputierd, GPUTIER_BIN_DIR "/gputierd", "agent binary");

namespace {

double LoopNsPerIteration(const std::string& path, int iterations) {
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < iterations; ++i) {
    int fd = open(path.c_str(), O_RDONLY);
    if (fd < 0) {
      perror("open");
      exit(1);
    }
    close(fd);
  }
  auto end = std::chrono::steady_clock::now();
  return std::chrono::duration<double, std::nano>(end - start).count() / iterations;
}

struct ProgStats {
  uint64_t run_time_ns = 0;
  uint64_t run_cnt = 0;
};

// Sums the kernel's stats over loaded programs whose name starts with "gt_".
ProgStats ReadGtProgStats() {
  ProgStats total;
  uint32_t id = 0;
  while (bpf_prog_get_next_id(id, &id) == 0) {
    int fd = bpf_prog_get_fd_by_id(id);
    if (fd < 0) continue;
    bpf_prog_info info = {};
    uint32_t len = sizeof(info);
    if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0 && strncmp(info.name, "gt_", 3) == 0) {
      total.run_time_ns += info.run_time_ns;
      total.run_cnt += info.run_cnt;
    }
    close(fd);
  }
  return total;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  if (geteuid() != 0) {
    fprintf(stderr, "gputier_bench_open_close: needs root (starts gputierd); run it with sudo\n");
    return 1;
  }
  const int iterations = absl::GetFlag(FLAGS_iterations);
  const int rounds = absl::GetFlag(FLAGS_rounds);
  char tmpl[] = "/tmp/gputier-bench-XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  const std::string file = dir + "/weights.safetensors";
  std::ofstream(file) << "x";
  const std::string pin_dir = absl::StrFormat("/sys/fs/bpf/gputier-bench-%d", getpid());
  const std::string ready = dir + "/ready";

  int stats_fd = bpf_enable_stats(BPF_STATS_RUN_TIME);
  if (stats_fd < 0) fprintf(stderr, "warning: BPF_ENABLE_STATS failed (%s): no program times\n", strerror(errno));

  std::vector<double> without, with;
  ProgStats prog_total;
  uint64_t opens_with = 0;
  LoopNsPerIteration(file, iterations / 10);  // warm the dentry and page caches
  for (int r = 0; r < rounds; ++r) {
    without.push_back(LoopNsPerIteration(file, iterations));

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
            static_cast<char*>(nullptr));
      _exit(127);
    }
    struct stat st;
    for (int i = 0; i < 600 && stat(ready.c_str(), &st) != 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    if (stat(ready.c_str(), &st) != 0) {
      fprintf(stderr, "gputierd did not become ready; run it by hand to see why\n");
      kill(pid, SIGKILL);
      return 1;
    }
    ProgStats before = ReadGtProgStats();
    with.push_back(LoopNsPerIteration(file, iterations));
    ProgStats after = ReadGtProgStats();
    prog_total.run_time_ns += after.run_time_ns - before.run_time_ns;
    prog_total.run_cnt += after.run_cnt - before.run_cnt;
    opens_with += iterations;
    kill(pid, SIGTERM);
    waitpid(pid, nullptr, 0);
  }
  std::string unpin = absl::StrCat(GPUTIER_BIN_DIR "/gputierctl unpin --pin-dir ", pin_dir, " >/dev/null");
  (void)system(unpin.c_str());
  rmdir(pin_dir.c_str());
  (void)system(absl::StrCat("rm -rf ", dir).c_str());
  if (stats_fd >= 0) close(stats_fd);

  const double base = Median(without), agent = Median(with);
  const double per_run = prog_total.run_cnt ? double(prog_total.run_time_ns) / prog_total.run_cnt : 0;
  const double per_open = opens_with ? double(prog_total.run_time_ns) / opens_with : 0;
  printf("open+close loop, %d iterations x %d rounds, mode=%s\n", iterations, rounds,
         absl::GetFlag(FLAGS_mode).c_str());
  printf("  without gputierd: %8.1f ns per open+close (median)\n", base);
  printf("  with gputierd:    %8.1f ns per open+close (median)\n", agent);
  printf("  ratio:            %8.3f\n", agent / base);
  printf("  program time:     %8.1f ns per program run, %.1f ns per open (runs include the close exit)\n",
         per_run, per_open);
  printf("RESULT ratio=%.3f base_ns=%.1f agent_ns=%.1f prog_ns_per_run=%.1f prog_ns_per_open=%.1f\n",
         agent / base, base, agent, per_run, per_open);
  return 0;
}
