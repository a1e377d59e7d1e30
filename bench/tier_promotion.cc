// Benchmark: promotion latency and write throughput on the fast tier.
//
// A real gputierd (tiered_paths: [/data], tiers in its private work dir)
// adopts a real runc container (busybox); then, per trial, this program asks
// gputierd over its control socket to put the container on the fast tier
// (the decision) and polls /proc/<container pid>/mountinfo until /data is the
// fast overlay (live). Between trials the container is demoted and the
// program waits until gputierd's spare partition is ready again, so every
// trial after the first measures the same path. The first promotion (no
// spare yet: fallocate + mkfs + mount in the way) is reported on its own.
// Nothing is copied during a promotion, so no data copy is in the figures.
//
// Write throughput: a forked child enters the container's mount namespace and
// writes --write_mib MiB to /data (promoted: overlay -> ext4 partition ->
// loop -> fast root's filesystem) with fsync, then the same child code writes
// the same bytes to a file directly in the fast root. Each figure is the best
// of --write_rounds.
//
// With --queued, each promotion is sent as soon as the previous demotion is
// live, while the manager still finishes it (frees the partition, makes the
// spare): the latency then includes whatever of that the worker waits for.
//
//   sudo build/bench/gputier_bench_tier_promotion [--trials=50] [--write_mib=256] [--queued]
#include <fcntl.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "bench/container_mounts.h"
#include "loader/base/clock.h"
#include "loader/control/control.h"
#include "loader/base/mount_refs.h"
#include "loader/tier/fs/tier_partition.h"
#include "tests/integration/agent_harness.h"
#include "tests/integration/runc_container.h"

ABSL_FLAG(int, trials, 50, "promotions to time");
ABSL_FLAG(int, write_mib, 256, "MiB written per throughput round");
ABSL_FLAG(int, write_rounds, 3, "throughput rounds (best is reported)");
ABSL_FLAG(bool, queued, false,
          "send each promotion as soon as the previous demotion is live at /data (the manager still "
          "freeing the partition and making the spare) instead of waiting until it is idle");

namespace gputier {
namespace {

using testing::AgentProcess;
using testing::RuncContainer;
using bench::DataOn;

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * v.size()))];
}

absl::Status Tier(const std::string& socket, const std::string& id, const std::string& tier) {
  absl::StatusOr<nlohmann::json> a = SendControlRequest(socket, {{"cmd", "tier"}, {"target", id}, {"tier", tier}});
  if (!a.ok()) return a.status();
  if (!(*a)["ok"].get<bool>()) return absl::InternalError((*a)["error"].get<std::string>());
  return absl::OkStatus();
}

bool WaitFor(const std::function<bool()>& done, absl::Duration limit) {
  const uint64_t end = MonotonicNs() + absl::ToInt64Nanoseconds(limit);
  while (MonotonicNs() < end) {
    if (done()) return true;
    usleep(500);
  }
  return done();
}

// MiB/s of writing `mib` MiB + fsync to `path`, seen from the mount namespace
// of `ns_pid` (0: this one), in a forked child.
double WriteMibPerSecond(pid_t ns_pid, const std::string& path, int mib) {
  double* result = static_cast<double*>(
      mmap(nullptr, sizeof(double), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  *result = -1;
  pid_t child = fork();
  if (child == 0) {
    if (ns_pid != 0) {
      int ns = open(absl::StrCat("/proc/", ns_pid, "/ns/mnt").c_str(), O_RDONLY | O_CLOEXEC);
      if (ns < 0 || setns(ns, CLONE_NEWNS) != 0) _exit(1);
    }
    std::vector<char> buf(1 << 20, 'g');
    int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) _exit(2);
    const uint64_t t0 = MonotonicNs();
    for (int i = 0; i < mib; ++i) {
      if (write(fd, buf.data(), buf.size()) != static_cast<ssize_t>(buf.size())) _exit(3);
    }
    if (fsync(fd) != 0) _exit(4);
    const uint64_t t1 = MonotonicNs();
    close(fd);
    unlink(path.c_str());
    *result = mib / ((t1 - t0) / 1e9);
    _exit(0);
  }
  int status = 0;
  waitpid(child, &status, 0);
  const double r = *result;
  munmap(result, sizeof(double));
  return r;
}

int Main() {
  const int write_mib = absl::GetFlag(FLAGS_write_mib);
  RuncContainer::Options copts;
  absl::StatusOr<std::unique_ptr<RuncContainer>> c = RuncContainer::Start(copts);
  if (!c.ok()) {
    fprintf(stderr, "container: %s\n", std::string(c.status().message()).c_str());
    return 1;
  }
  AgentProcess agent;
  const uint64_t partition_mib = std::max(64, write_mib + write_mib / 4 + 32);
  const std::string yaml = absl::StrFormat(
      "tiered_paths: [/data]\nrunc_roots: [%s]\npolicy: {tick: 200ms}\n"
      "tiers: {fast: %s, slow: %s, partition_size: %dMiB}\n",
      (*c)->state_root(), agent.tier_root("fast"), agent.tier_root("slow"), partition_mib);
  absl::StatusOr<std::string> mode = agent.Start({"auto", yaml});
  if (!mode.ok()) {
    fprintf(stderr, "gputierd did not start: %s\n", std::string(mode.status().message()).c_str());
    return 1;
  }
  const std::string socket = absl::StrCat(agent.work_dir(), "/run/", kControlSocketName);
  const std::string id = (*c)->id();
  const pid_t pid = (*c)->pid();
  const std::string fast = agent.tier_root("fast");
  const std::string slow = agent.tier_root("slow");
  const std::string spare_mnt = fast + "/.gputier-spare/mnt";
  auto spare_ready = [&] {
    const std::string info = Slurp("/proc/self/mountinfo");
    for (absl::string_view line : absl::StrSplit(info, '\n')) {
      if (absl::StrContains(line, absl::StrCat(" ", spare_mnt, " "))) return true;
    }
    return false;
  };
  // Adoption: the container must have counted activity, then /data is slow.
  if (!WaitFor(
          [&] {
            (void)(*c)->Exec("cat /bin/busybox >/dev/null");
            return DataOn(pid, slow);
          },
          absl::Seconds(30))) {
    fprintf(stderr, "the container was not adopted:\n%s\n", agent.LogTail().c_str());
    return 1;
  }
  printf("gputierd mode %s; container %s adopted, /data on the slow tier\n", mode->c_str(), id.c_str());

  std::vector<double> latencies;
  double first_ms = -1;
  for (int t = 0; t <= absl::GetFlag(FLAGS_trials); ++t) {
    // The manager is idle again once the previous demotion has freed the
    // container's partition (set aside, then released by its second thread)
    // and the spare is back: a request arriving earlier queues behind that
    // work (docs/BENCHMARKS.md).
    auto idle = [&] {
      absl::StatusOr<std::vector<AsidePartition>> freeing = PartitionsSetAside(fast);
      return spare_ready() && access(absl::StrCat(fast, "/", id).c_str(), F_OK) != 0 && freeing.ok() &&
             freeing->empty();
    };
    if (t > 0 && !absl::GetFlag(FLAGS_queued) && !WaitFor(idle, absl::Seconds(30))) {
      fprintf(stderr, "the spare partition did not come back:\n%s\n", agent.LogTail().c_str());
      return 1;
    }
    const uint64_t t0 = MonotonicNs();
    if (absl::Status s = Tier(socket, id, "fast"); !s.ok()) {
      fprintf(stderr, "tier fast: %s\n", std::string(s.message()).c_str());
      return 1;
    }
    if (!WaitFor([&] { return DataOn(pid, fast); }, absl::Seconds(30))) {
      fprintf(stderr, "promotion did not happen:\n%s\n", agent.LogTail().c_str());
      return 1;
    }
    const double ms = (MonotonicNs() - t0) / 1e6;
    if (t == 0) {
      first_ms = ms;
    } else {
      latencies.push_back(ms);
    }
    if (t == absl::GetFlag(FLAGS_trials)) break;  // stay promoted for the write test
    if (absl::Status s = Tier(socket, id, "slow"); !s.ok()) return 1;
    if (!WaitFor([&] { return DataOn(pid, slow); }, absl::Seconds(30))) return 1;
  }
  printf("promotion latency, decision (control request sent) -> fast overlay live at /data%s:\n",
         absl::GetFlag(FLAGS_queued) ? " (each sent right after the previous demotion went live)" : "");
  printf("  first (no spare partition yet: fallocate + mkfs + mount): %.1f ms\n", first_ms);
  printf("  %zu trials%s: p50 %.1f ms, p90 %.1f ms, p99 %.1f ms, max %.1f ms\n", latencies.size(),
         absl::GetFlag(FLAGS_queued) ? "" : " with the spare ready", Percentile(latencies, 0.5),
         Percentile(latencies, 0.9), Percentile(latencies, 0.99),
         *std::max_element(latencies.begin(), latencies.end()));

  double in_container = 0, direct = 0;
  for (int r = 0; r < absl::GetFlag(FLAGS_write_rounds); ++r) {
    in_container = std::max(in_container, WriteMibPerSecond(pid, "/data/bench-write", write_mib));
    direct = std::max(direct, WriteMibPerSecond(0, fast + "/bench-direct", write_mib));
  }
  printf("write throughput, %d MiB + fsync (best of %d):\n", write_mib, absl::GetFlag(FLAGS_write_rounds));
  printf("  inside the promoted container (/data): %.0f MiB/s\n", in_container);
  printf("  directly on the fast root (%s): %.0f MiB/s\n", fast.c_str(), direct);
  printf("  ratio %.3f (goal >= 0.9)\n", direct > 0 ? in_container / direct : 0);
  (void)Tier(socket, id, "slow");
  WaitFor([&] { return DataOn(pid, slow); }, absl::Seconds(60));
  if (getenv("GPUTIER_BENCH_LOG") != nullptr) printf("%s\n", agent.LogTail().c_str());
  return 0;
}

}  // namespace
}  // namespace gputier

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return gputier::Main();
}
