// Benchmark: the cost of one classification tick of the real gputierd at
// 1,000 and 10,000 live cgroups: CPU time per tick and the agent's RSS.
//
// For each size, N real (empty) cgroups are made; their entries in the
// agent's pinned gt_cg_stats are filled with synthetic counters (10% of them
// GPU-like), and between ticks --active of the cgroups get new counts, as a
// busy node would produce. The agent's own CPU time comes from
// /proc/<pid>/schedstat; its RSS from /proc/<pid>/status.
//
//   sudo build/bench/gputier_bench_tick_cost [--sizes=1000,10000] [--ticks=20] [--active=0.1]
//        [--holders=32]
#include <bpf/bpf.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "bench/bench_common.h"
#include "gputier/abi.h"
#include "loader/cgroup/cgroup_resolver.h"
#include "tests/integration/agent_harness.h"

ABSL_FLAG(std::string, sizes, "1000,10000", "numbers of live cgroups");
ABSL_FLAG(int, ticks, 20, "ticks measured per size (after 3 warm-up ticks)");
ABSL_FLAG(double, active, 0.1, "share of cgroups whose counters move each tick");
ABSL_FLAG(int, holders, 32, "GPU-like cgroups with a process holding the GPU test device open");

namespace gputier {
namespace {

uint64_t CpuNs(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/schedstat"));
  uint64_t ns = 0;
  in >> ns;
  return ns;
}

uint64_t RssKiB(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      uint64_t kib = 0;
      std::istringstream(line.substr(6)) >> kib;
      return kib;
    }
  }
  return 0;
}

// A process in cgroup `dir` holding the GPU test device open (4 fds) and 16
// other fds, as a GPU job holds its contexts; killed by the caller.
pid_t StartHolder(const std::string& dir, const std::string& gpu_path) {
  int go[2];
  if (pipe(go) != 0) return -1;
  const pid_t pid = fork();
  if (pid == 0) {
    close(go[1]);
    char c;
    if (read(go[0], &c, 1) != 1) _exit(1);
    for (int k = 0; k < 4; ++k) open(gpu_path.c_str(), O_RDWR);
    for (int k = 0; k < 16; ++k) open("/dev/null", O_RDONLY);
    for (;;) pause();
  }
  close(go[0]);
  std::ofstream(dir + "/cgroup.procs") << pid;
  (void)!write(go[1], "g", 1);
  close(go[1]);
  return pid;
}

int RunSize(int n, int ticks, double active, int holders) {
  testing::AgentProcess agent;
  testing::GpuTestDevice gpu;
  absl::StatusOr<CgroupResolver> resolver = CgroupResolver::Create();
  if (!resolver.ok()) return 1;
  const std::string parent = absl::StrCat(resolver->mount_point(), "/gputier-bench-", getpid());
  mkdir(parent.c_str(), 0755);
  std::vector<uint64_t> ids;
  std::vector<std::string> dirs;
  for (int i = 0; i < n; ++i) {
    dirs.push_back(absl::StrCat(parent, "/c", i));
    mkdir(dirs.back().c_str(), 0755);
    struct stat st;
    stat(dirs.back().c_str(), &st);
    ids.push_back(st.st_ino);
  }
  absl::StatusOr<std::string> mode =
      agent.Start({"tracepoint", absl::StrCat(gpu.ConfigYaml(), "max_cgroups: ", std::max(16384, 2 * n), "\n")});
  if (!mode.ok()) {
    fprintf(stderr, "%s\n", std::string(mode.status().message()).c_str());
    return 1;
  }
  int stats = bpf_obj_get((agent.pin_dir() + "/" GT_MAP_CG_STATS).c_str());
  if (stats < 0) return 1;
  std::vector<gt_cgroup_stats> values(n);
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  const uint64_t now = ts.tv_sec * 1000000000ull + ts.tv_nsec;
  for (int i = 0; i < n; ++i) {
    gt_cgroup_stats& s = values[i];
    s.first_seen_ns = s.last_seen_ns = now;
    s.opens_total = 100;
    s.opens_by_class[i % 10 == 0 ? GT_CLASS_TENSOR : GT_CLASS_OTHER] = 100;
    if (i % 10 == 0) s.gpu_opens = 1, s.gpu_ioctls = 500, s.flags = GT_CG_GPU_SEEN;
    bpf_map_update_elem(stats, &ids[i], &s, BPF_ANY);
  }
  // Processes holding the GPU device in some of the GPU-like cgroups, so the
  // proc scan of held GPU contexts finds something to count.
  std::vector<pid_t> holder_pids;
  for (int i = 0; i < n && static_cast<int>(holder_pids.size()) < holders; i += 10) {
    holder_pids.push_back(StartHolder(dirs[i], gpu.path()));
  }
  std::mt19937 rng(42);
  auto move_some = [&]() {
    const int k = static_cast<int>(active * n);
    for (int j = 0; j < k; ++j) {
      int i = rng() % n;
      gt_cgroup_stats& s = values[i];
      s.opens_total += 5;
      s.opens_by_class[i % 10 == 0 ? GT_CLASS_TENSOR : GT_CLASS_OTHER] += 5;
      s.bytes_written += 4096, s.writes += 1;
      if (i % 10 == 0) s.gpu_ioctls += 50;
      s.last_seen_ns += 1000000;
      bpf_map_update_elem(stats, &ids[i], &s, BPF_ANY);
    }
  };
  // Warm-up: the first ticks decide every cgroup and record a row for each.
  const uint64_t cpu0 = CpuNs(agent.pid());
  for (int t = 0; t < 3; ++t) {
    move_some();
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  const uint64_t cpu1 = CpuNs(agent.pid());
  for (int t = 0; t < ticks; ++t) {
    move_some();
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  const uint64_t cpu2 = CpuNs(agent.pid());
  const uint64_t rss = RssKiB(agent.pid());
  printf("%6d cgroups: %7.2f ms CPU per tick (steady, %d%% active), %7.2f ms per tick in the first 3 "
         "(every cgroup decided and recorded), RSS %.1f MiB\n",
         n, (cpu2 - cpu1) / 1e6 / ticks, static_cast<int>(active * 100), (cpu1 - cpu0) / 1e6 / 3,
         rss / 1024.0);
  printf("RESULT cgroups=%d tick_cpu_ms=%.2f warmup_tick_cpu_ms=%.2f rss_mib=%.1f\n", n,
         (cpu2 - cpu1) / 1e6 / ticks, (cpu1 - cpu0) / 1e6 / 3, rss / 1024.0);
  if (absl::StatusOr<std::string> st = agent.Ctl("status --json"); st.ok()) {
    const nlohmann::json j = nlohmann::json::parse(*st, nullptr, false);
    if (j.is_object() && j.contains("gpu_use")) {
      const nlohmann::json& g = j["gpu_use"];
      printf("  last tick's GPU use scan: %d GPU cgroups, %d scanned, %d pids, %d fds, %.3f ms (%d holders)\n",
             g.value("gpu_cgroups", 0), g.value("scanned", 0), g.value("pids", 0), g.value("fds", 0),
             g.value("scan_ms", 0.0), holders);
    }
  }
  close(stats);
  (void)agent.Stop();
  for (pid_t p : holder_pids) {
    if (p > 0) kill(p, SIGKILL), waitpid(p, nullptr, 0);
  }
  for (const std::string& d : dirs) rmdir(d.c_str());
  rmdir(parent.c_str());
  return 0;
}

}  // namespace
}  // namespace gputier

int main(int argc, char** argv) {
  if (int rc = gputier::bench::ParseFlagsAndRequireRoot(argc, argv, "gputier_bench_tick_cost", "starts gputierd, makes cgroups"); rc != 0) return rc;
  printf("classification tick of gputierd (tick 1 s, window 30 s)\n");
  for (absl::string_view s : absl::StrSplit(absl::GetFlag(FLAGS_sizes), ',')) {
    int n = 0;
    if (!absl::SimpleAtoi(s, &n) || n <= 0) {
      fprintf(stderr, "--sizes: '%s' is not a positive number\n", std::string(s).c_str());
      return 2;
    }
    if (int rc = gputier::RunSize(n, absl::GetFlag(FLAGS_ticks), absl::GetFlag(FLAGS_active),
                                            absl::GetFlag(FLAGS_holders)); rc) return rc;
  }
  return 0;
}
