// Benchmark: time from a workload's first GPU device ioctl to its verdict in
// the pinned gt_verdicts map.
//
// A real gputierd (tracepoint mode here) watches a GPU test device (a char
// device with /dev/full's number, selected by config). Each trial makes a
// fresh cgroup; a child in it opens a few checkpoint files, opens the device,
// stamps CLOCK_MONOTONIC into shared memory and starts issuing ioctls; this
// process polls gt_verdicts for the cgroup until it reads GPU.
//
//   sudo build/bench/gputier_bench_verdict_latency [--trials=100] [--mode=tracepoint]
#include <bpf/bpf.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/bench_common.h"
#include "gputier/abi.h"
#include "loader/base/clock.h"
#include "tests/integration/agent_harness.h"

ABSL_FLAG(int, trials, 100, "workloads to time");
ABSL_FLAG(std::string, mode, "tracepoint", "gputierd --mode");

namespace gputier {
namespace {

struct Shared {
  std::atomic<uint64_t> first_ioctl_ns;
  std::atomic<int> stop;
};

int Main() {
  using testing::AgentProcess;
  using testing::GpuTestDevice;
  using testing::TestCgroup;
  GpuTestDevice gpu;
  AgentProcess agent;
  absl::StatusOr<std::string> mode = agent.Start({absl::GetFlag(FLAGS_mode), gpu.ConfigYaml()});
  if (!mode.ok()) {
    fprintf(stderr, "gputierd did not start: %s\n", std::string(mode.status().message()).c_str());
    return 1;
  }
  const std::string verdicts_pin = agent.pin_dir() + "/" GT_MAP_VERDICTS;
  int verdicts = bpf_obj_get(verdicts_pin.c_str());
  if (verdicts < 0) {
    perror(verdicts_pin.c_str());
    return 1;
  }
  std::vector<std::string> files;
  for (int i = 0; i < 4; ++i) {
    files.push_back(absl::StrCat(agent.work_dir(), "/shard", i, ".safetensors"));
    testing::WriteFile(files.back(), 8);
  }
  auto* shared = static_cast<Shared*>(
      mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  std::vector<double> ms;
  const int trials = absl::GetFlag(FLAGS_trials);
  for (int t = 0; t < trials; ++t) {
    TestCgroup cg(absl::StrCat("lat", t));
    shared->first_ioctl_ns = 0;
    shared->stop = 0;
    const std::string dev = gpu.path();
    pid_t runner = fork();
    if (runner == 0) {
      _exit(cg.RunInside([&]() -> int {
        for (const std::string& f : files) close(open(f.c_str(), O_RDONLY));
        int fd = open(dev.c_str(), O_RDWR);
        if (fd < 0) return 1;
        shared->first_ioctl_ns = MonotonicNs();
        for (int i = 0; i < 200000 && !shared->stop; ++i) ioctl(fd, 0x6400, 0);
        close(fd);
        return 0;
      }));
    }
    uint64_t seen = 0;
    const uint64_t give_up = MonotonicNs() + 10ull * 1000000000ull;
    while (MonotonicNs() < give_up) {
      gt_verdict v;
      uint64_t id = cg.id();
      if (shared->first_ioctl_ns != 0 && bpf_map_lookup_elem(verdicts, &id, &v) == 0 &&
          v.verdict == GT_VERDICT_GPU) {
        seen = MonotonicNs();
        break;
      }
    }
    shared->stop = 1;
    waitpid(runner, nullptr, 0);
    if (seen == 0) {
      fprintf(stderr, "trial %d: no GPU verdict within 10 s\n%s\n", t, agent.LogTail().c_str());
      return 1;
    }
    ms.push_back((seen - shared->first_ioctl_ns) / 1e6);
    if ((t + 1) % 25 == 0) fprintf(stderr, "  %d/%d trials\n", t + 1, trials);
  }
  std::sort(ms.begin(), ms.end());
  auto pct = [&](double p) { return ms[std::min(ms.size() - 1, static_cast<size_t>(p * ms.size()))]; };
  printf("first GPU ioctl -> GPU verdict in gt_verdicts, %d trials, mode=%s\n", trials, mode->c_str());
  printf("  p50 %.2f ms   p90 %.2f ms   p99 %.2f ms   max %.2f ms\n", pct(0.50), pct(0.90), pct(0.99),
         ms.back());
  printf("RESULT p50_ms=%.2f p99_ms=%.2f max_ms=%.2f trials=%d\n", pct(0.50), pct(0.99), ms.back(), trials);
  close(verdicts);
  return 0;
}

}  // namespace
}  // namespace gputier

int main(int argc, char** argv) {
  if (int rc = gputier::bench::ParseFlagsAndRequireRoot(argc, argv, "gputier_bench_verdict_latency", "starts gputierd, makes cgroups"); rc != 0) return rc;
  return gputier::Main();
}
