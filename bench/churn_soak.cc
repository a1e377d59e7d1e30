// Churn soak: the real gputierd tiering a stream of real runc containers.
//
// A real gputierd (tiered_paths: [/data], tiers in its private work dir, the
// harness's GPU test device configured) watches containers that this program
// starts and removes in a loop, --alive at once, until --containers have run
// or --duration has passed. Each container's init writes numbered files
// (/data/w<i>.pt, each `seq i i+300`, fsync'd by dd) until told to stop, then
// reports how many it wrote. Half the containers issue ioctls on the GPU test
// device from a process moved into their cgroup: they are classified GPU and
// the verdict promotes them. The other half are classified CPU and promoted by
// `gputierctl tier X fast`. Then half of each are demoted (`tier X slow`)
// before they are removed, the rest are removed while on the fast tier (the
// write-back at container exit).
//
// Asserted (exit 1 otherwise):
//   - 0 files lost: after each container is gone and written back, every
//     file its writer reported is in its slow layer with its exact content,
//     and no other w file is there;
//   - after gputierd is stopped (SIGTERM): 0 mounts under the tier roots, 0
//     loop devices backed by files of its work dir (losetup -a and sysfs),
//     0 partitions (nothing left in the fast root);
//   - gputierd's RSS (VmRSS) and open fds, read when it is idle (no tiered
//     container, nothing being freed) after the warm-up containers and again
//     after the last one, grew by at most --rss_bound_kib and --fd_bound.
// Exit 77: cannot run here (not root, no runc, busybox-static or losetup).
//
//   sudo build/bench/gputier_bench_churn_soak [--containers=200] [--duration=10m] [--alive=4]
#include <fcntl.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "loader/cgroup/cgroup_resolver.h"
#include "tests/integration/agent_harness.h"
#include "tests/integration/host_mounts.h"
#include "tests/integration/runc_container.h"
#include "tests/integration/tier_dirs.h"

ABSL_FLAG(int, containers, 200, "containers to run through their whole life (unless --duration ends first)");
ABSL_FLAG(absl::Duration, duration, absl::Minutes(10), "no container is started after this much time");
ABSL_FLAG(int, alive, 4, "containers alive at once");
ABSL_FLAG(int, warmup, 0, "containers run before the RSS/fd baseline is read (0: as many as --alive)");
ABSL_FLAG(int64_t, rss_bound_kib, 16384, "how much gputierd's VmRSS may grow from warm-up to the end, KiB");
ABSL_FLAG(int, fd_bound, 4, "how many more fds gputierd may hold at the end than after warm-up");
ABSL_FLAG(absl::Duration, hold, absl::Seconds(1), "how long each container writes on each tier");
ABSL_FLAG(int, writer_pause_us, 10000, "pause of each container's writer between two files");

namespace gputier {
namespace {

using testing::AgentProcess;
using testing::CommandResult;
using testing::GpuTestDevice;
using testing::RuncContainer;
using testing::RunCommand;
using testing::SlurpFile;

constexpr int kCannotRun = 77;

bool WaitFor(const std::function<bool()>& done, absl::Duration limit, absl::Duration every = absl::Milliseconds(100)) {
  const absl::Time deadline = absl::Now() + limit;
  while (true) {
    if (done()) return true;
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(every);
  }
}

// What the writer puts into /data/w<i>.pt.
std::string Expected(int i) {
  std::string s;
  for (int n = i; n <= i + 300; ++n) absl::StrAppend(&s, n, "\n");
  return s;
}

std::string WriterScript(int pause_us) {
  return absl::StrCat(
      "while [ ! -e /data/go ]; do usleep 10000; done; i=0; "
      "while [ ! -e /data/stop ]; do seq $i $((i+300)) | dd of=/data/w$i.pt conv=fsync 2>/dev/null || exit 1; "
      "i=$((i+1)); usleep ",
      pause_us, "; done; echo $i > /data/count; exec sleep 100000");
}

struct Sample {
  int64_t rss_kib = -1;
  int fds = -1;
};

Sample Read(pid_t pid) {
  Sample s;
  for (absl::string_view line : absl::StrSplit(SlurpFile(absl::StrCat("/proc/", pid, "/status")), '\n')) {
    if (absl::ConsumePrefix(&line, "VmRSS:")) {
      line = absl::StripAsciiWhitespace(line);
      (void)absl::ConsumeSuffix(&line, " kB");
      (void)absl::SimpleAtoi(line, &s.rss_kib);
    }
  }
  if (DIR* d = opendir(absl::StrCat("/proc/", pid, "/fd").c_str())) {
    s.fds = 0;
    while (struct dirent* e = readdir(d)) s.fds += e->d_name[0] != '.';
    closedir(d);
  }
  return s;
}

// `ioctls` ioctls on `device` from a child moved into the cgroup `cgroup_dir`
// first (so they count for the container). Returns the child's exit code.
int IoctlsInCgroup(const std::string& cgroup_dir, const std::string& device, int ioctls) {
  return testing::RunInCgroup(cgroup_dir, [&]() -> int {
    int fd = open(device.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) return 11;
    for (int i = 0; i < ioctls; ++i) ioctl(fd, 0x6400 + i, 0);  // ENOTTY: still an ioctl on the device
    close(fd);
    return 0;
  });
}

struct Outcome {
  std::string id;
  bool gpu = false;
  bool demoted = false;  // demoted before removal (else removed on the fast tier)
  int written = -1;
  int lost = 0;          // missing or different
  int extra = 0;         // w files the writer never reported
  double seconds = 0;
  std::string error;     // a step that failed
};

class Soak {
 public:
  Soak(AgentProcess* agent, const std::string& runc_root, const std::string& cgroup_root, const std::string& gpu)
      : agent_(agent), runc_root_(runc_root), cgroup_root_(cgroup_root), gpu_(gpu) {}

  nlohmann::json TierRow(const std::string& id) const {
    absl::StatusOr<nlohmann::json> t = agent_->Tiering();
    if (!t.ok()) return nullptr;
    for (const nlohmann::json& r : (*t)["containers"]) {
      if (r["container_id"] == id) return r;
    }
    return nullptr;
  }

  std::string VerdictOf(const std::string& id) const {
    absl::StatusOr<nlohmann::json> rows = agent_->Status();
    if (!rows.ok()) return "";
    for (const nlohmann::json& r : *rows) {
      if (r["container_id"].is_string() && r["container_id"] == id) return r["verdict"].get<std::string>();
    }
    return "";
  }

  // No tiered container left and nothing being freed: gputierd is idle.
  bool Idle() const {
    absl::StatusOr<nlohmann::json> t = agent_->Tiering();
    return t.ok() && (*t)["containers"].empty() && (*t)["tiers"].value("fast_freeing", uint64_t{1}) == 0;
  }

  Outcome RunOne(int index) {
    Outcome o;
    o.gpu = index % 2 == 0;
    o.demoted = index % 4 < 2;
    const absl::Time t0 = absl::Now();
    auto fail = [&](const std::string& what) {
      o.error = what;
      o.seconds = absl::ToDoubleSeconds(absl::Now() - t0);
      return o;
    };
    RuncContainer::Options options;
    options.script = WriterScript(absl::GetFlag(FLAGS_writer_pause_us));
    options.state_root = runc_root_;
    absl::StatusOr<std::unique_ptr<RuncContainer>> made = RuncContainer::Start(options);
    if (!made.ok()) return fail(absl::StrCat("start: ", made.status().message()));
    RuncContainer& c = **made;
    o.id = c.id();
    absl::Time next_poke = absl::InfinitePast();
    if (!WaitFor(
            [&] {
              if (absl::Now() >= next_poke) {
                (void)c.Exec("cat /bin/busybox >/dev/null");
                next_poke = absl::Now() + absl::Seconds(2);
              }
              nlohmann::json r = TierRow(c.id());
              return r.is_object() && r["paths"].value("/data", "") == "slow" && r["op"] == "none";
            },
            absl::Seconds(60))) {
      return fail("not adopted within 60 s");
    }
    absl::StatusOr<CommandResult> go = c.Exec("touch /data/go");
    if (!go.ok() || go->exit_code != 0) return fail("touch /data/go failed");
    const std::string want = o.gpu ? "gpu" : "cpu";
    if (o.gpu && IoctlsInCgroup(cgroup_root_ + c.cgroup(), gpu_, 20) != 0) return fail("GPU ioctls failed");
    if (!WaitFor([&] { return VerdictOf(c.id()) == want; }, absl::Seconds(30))) {
      return fail(absl::StrCat("not classified ", want, " within 30 s (", VerdictOf(c.id()), ")"));
    }
    if (!o.gpu) {
      absl::StatusOr<std::string> r = agent_->Ctl(absl::StrCat("tier ", c.id(), " fast --wait=60s"));
      if (!r.ok()) return fail(absl::StrCat("tier fast: ", r.status().message()));
    }
    // The GPU verdict promotes on its own.
    if (!WaitFor([&] { nlohmann::json r = TierRow(c.id());
                       return r.is_object() && r["tier"] == "fast" && r["op"] == "none"; },
                 absl::Seconds(60))) {
      return fail("not on the fast tier within 60 s");
    }
    absl::SleepFor(absl::GetFlag(FLAGS_hold));
    if (o.demoted) {
      absl::StatusOr<std::string> r = agent_->Ctl(absl::StrCat("tier ", c.id(), " slow --wait=60s"));
      if (!r.ok()) return fail(absl::StrCat("tier slow: ", r.status().message()));
      absl::SleepFor(absl::GetFlag(FLAGS_hold));
    }
    absl::StatusOr<CommandResult> stop = c.Exec("touch /data/stop");
    if (!stop.ok() || stop->exit_code != 0) return fail("touch /data/stop failed");
    WaitFor(
        [&] {
          absl::StatusOr<CommandResult> r = c.Exec("cat /data/count 2>/dev/null");
          return r.ok() && r->exit_code == 0 && absl::SimpleAtoi(absl::StripAsciiWhitespace(r->output), &o.written);
        },
        absl::Seconds(20));
    if (o.written < 0) return fail("the writer reported no count (a write failed?)");
    if (absl::Status s = c.Kill(); !s.ok()) return fail(absl::StrCat("kill: ", s.message()));
    if (!WaitFor([&] { return TierRow(c.id()).is_null(); }, absl::Seconds(60))) {
      return fail("gputierd kept the record of the removed container for 60 s");
    }
    // Written back: every reported file, exactly, in the slow layer (in
    // quarantine now that the container is gone).
    const std::string upper = SlowLayerOf(agent_->tier_root("slow"), c.id()) + "/data/upper";
    for (int i = 0; i < o.written; ++i) {
      if (SlurpFile(absl::StrCat(upper, "/w", i, ".pt")) != Expected(i)) ++o.lost;
    }
    if (DIR* d = opendir(upper.c_str())) {
      int w = 0;
      while (struct dirent* e = readdir(d)) w += e->d_name[0] == 'w';
      closedir(d);
      o.extra = std::max(0, w - o.written);
    }
    made->reset();  // runc delete
    o.seconds = absl::ToDoubleSeconds(absl::Now() - t0);
    return o;
  }

  // Runs containers [first, last) with --alive workers; stops starting new
  // ones at `deadline`.
  void RunPhase(int first, int last, absl::Time deadline) {
    std::atomic<int> next{first};
    std::vector<std::thread> workers;
    for (int w = 0; w < absl::GetFlag(FLAGS_alive); ++w) {
      workers.emplace_back([&] {
        while (true) {
          const int i = next++;
          if (i >= last || absl::Now() >= deadline) return;
          Outcome o = RunOne(i);
          std::lock_guard<std::mutex> lock(mu_);
          if (!o.error.empty()) fprintf(stderr, "container %d (%s): %s\n", i, o.id.c_str(), o.error.c_str());
          outcomes_.push_back(std::move(o));
          if (outcomes_.size() % 10 == 0) {
            printf("... %zu containers done\n", outcomes_.size());
            fflush(stdout);
          }
        }
      });
    }
    for (std::thread& t : workers) t.join();
  }

  const std::vector<Outcome>& outcomes() const { return outcomes_; }

 private:
  AgentProcess* agent_;
  std::string runc_root_;
  std::string cgroup_root_;
  std::string gpu_;
  std::mutex mu_;
  std::vector<Outcome> outcomes_;
};

bool Have(const std::vector<std::string>& argv) {
  absl::StatusOr<CommandResult> r = RunCommand(argv);
  return r.ok() && r->exit_code == 0;
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * v.size()))];
}

int Run() {
  if (geteuid() != 0) {
    fprintf(stderr, "churn soak: needs root (runc, mounts, BPF); skipped\n");
    return kCannotRun;
  }
  if (!Have({"/bin/busybox", "true"}) || !Have({"runc", "--version"}) || !Have({"losetup", "--version"})) {
    fprintf(stderr, "churn soak: needs busybox-static (/bin/busybox), runc and losetup; skipped\n");
    return kCannotRun;
  }
  absl::StatusOr<CgroupResolver> cgroups = CgroupResolver::Create();
  if (!cgroups.ok()) {
    fprintf(stderr, "churn soak: no cgroup2 (%s); skipped\n", std::string(cgroups.status().message()).c_str());
    return kCannotRun;
  }
  const int containers = absl::GetFlag(FLAGS_containers);
  const int alive = std::max(1, absl::GetFlag(FLAGS_alive));
  const int warmup = std::min(containers, absl::GetFlag(FLAGS_warmup) > 0 ? absl::GetFlag(FLAGS_warmup) : alive);
  const absl::Duration duration = absl::GetFlag(FLAGS_duration);

  GpuTestDevice gpu;
  testing::TempDir runc_root("gputier-soak-runc");
  std::vector<std::string> failures;
  Sample base, end;
  std::vector<Outcome> outcomes;
  std::string tiers, work;
  std::vector<std::string> mounts_left, loops_left, parts_left;
  double run_seconds = 0;
  {
    AgentProcess agent;
    tiers = agent.tier_root("");
    tiers.pop_back();
    work = agent.work_dir();
    const std::string yaml = absl::StrCat(
        gpu.ConfigYaml(), "tiered_paths: [/data]\nrunc_roots: [", runc_root.path(), "]\n",
        "policy: {tick: 200ms, window: 2s, demote_after_cpu_windows: 1000}\n", "tiers: {fast: ",
        agent.tier_root("fast"), ", slow: ", agent.tier_root("slow"), ", partition_size: 32MiB}\n");
    absl::StatusOr<std::string> mode = agent.Start({testing::RequestedMode(), yaml});
    if (!mode.ok()) {
      fprintf(stderr, "churn soak: gputierd did not start: %s\n", std::string(mode.status().message()).c_str());
      return 1;
    }
    printf("churn soak: gputierd pid %d (%s mode), GPU test device %s (1:7, a configured device number, not a "
           "GPU); %d containers, %d alive at once, at most %s\n",
           agent.pid(), mode->c_str(), gpu.path().c_str(), containers, alive, absl::FormatDuration(duration).c_str());
    fflush(stdout);
    Soak soak(&agent, runc_root.path(), cgroups->mount_point(), gpu.path());
    const absl::Time t0 = absl::Now();
    const absl::Time deadline = t0 + duration;
    soak.RunPhase(0, warmup, deadline);
    if (!WaitFor([&] { return soak.Idle(); }, absl::Seconds(60))) failures.push_back("not idle after the warm-up");
    base = Read(agent.pid());
    printf("after %d warm-up containers: VmRSS %lld KiB, %d fds\n", warmup, static_cast<long long>(base.rss_kib),
           base.fds);
    fflush(stdout);
    soak.RunPhase(warmup, containers, deadline);
    run_seconds = absl::ToDoubleSeconds(absl::Now() - t0);
    if (!WaitFor([&] { return soak.Idle(); }, absl::Seconds(60))) failures.push_back("not idle at the end");
    end = Read(agent.pid());
    outcomes = soak.outcomes();
    if (absl::Status s = agent.Stop(); !s.ok()) failures.push_back(std::string(s.message()));

    // What a stopped gputierd leaves: nothing mounted, no loop device, no partition.
    mounts_left = testing::HostMountsUnder(tiers);
    loops_left = testing::LosetupLinesUnder(work);
    for (const std::string& l : testing::LoopsBackedUnder(work)) loops_left.push_back(l);
    if (DIR* d = opendir(agent.tier_root("fast").c_str())) {
      while (struct dirent* e = readdir(d)) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) parts_left.emplace_back(e->d_name);
      }
      closedir(d);
    }
    for (const std::string& m : mounts_left) failures.push_back("left mounted: " + m);
    for (const std::string& l : loops_left) failures.push_back("loop device left: " + l);
    for (const std::string& p : parts_left) failures.push_back("left in the fast root: " + p);
  }

  int written = 0, lost = 0, extra = 0, gpu_n = 0, demoted = 0, errors = 0;
  std::vector<double> lives;
  for (const Outcome& o : outcomes) {
    written += std::max(0, o.written);
    lost += o.lost;
    extra += o.extra;
    gpu_n += o.gpu;
    demoted += o.demoted;
    errors += !o.error.empty();
    if (o.error.empty()) lives.push_back(o.seconds);
  }
  if (lost > 0) failures.push_back(absl::StrCat(lost, " files lost or different"));
  if (extra > 0) failures.push_back(absl::StrCat(extra, " files the writers never reported"));
  if (errors > 0) failures.push_back(absl::StrCat(errors, " containers failed a step (above)"));
  if (static_cast<int>(outcomes.size()) < warmup + 1 && containers > warmup) {
    failures.push_back("--duration ended before any container after the warm-up ran");
  }
  const int64_t rss_growth = end.rss_kib - base.rss_kib;
  const int fd_growth = end.fds - base.fds;
  const bool rss_ok = base.rss_kib > 0 && end.rss_kib > 0 && rss_growth <= absl::GetFlag(FLAGS_rss_bound_kib);
  const bool fd_ok = base.fds > 0 && end.fds > 0 && fd_growth <= absl::GetFlag(FLAGS_fd_bound);
  if (!rss_ok) failures.push_back(absl::StrCat("VmRSS grew by ", rss_growth, " KiB"));
  if (!fd_ok) failures.push_back(absl::StrCat("open fds grew by ", fd_growth));

  printf("\nchurn soak: %zu containers in %.0f s (%d GPU by ioctls, %zu CPU; %d demoted before removal, %zu "
         "removed on the fast tier), %d alive at once\n",
         outcomes.size(), run_seconds, gpu_n, outcomes.size() - gpu_n, demoted, outcomes.size() - demoted, alive);
  printf("%-34s %14s %14s %14s  %s\n", "", "after warm-up", "at the end", "bound", "result");
  printf("%-34s %14lld %14lld %14s  %s\n", "gputierd VmRSS (KiB)", static_cast<long long>(base.rss_kib),
         static_cast<long long>(end.rss_kib), absl::StrCat("+", absl::GetFlag(FLAGS_rss_bound_kib)).c_str(),
         rss_ok ? "ok" : "FAIL");
  printf("%-34s %14d %14d %14s  %s\n", "gputierd open fds", base.fds, end.fds,
         absl::StrCat("+", absl::GetFlag(FLAGS_fd_bound)).c_str(), fd_ok ? "ok" : "FAIL");
  printf("%-34s %14s %14d %14s  %s\n", "files written (fsync'd, reported)", "", written, "", "");
  printf("%-34s %14s %14d %14s  %s\n", "files lost or different", "", lost, "0", lost == 0 ? "ok" : "FAIL");
  printf("%-34s %14s %14d %14s  %s\n", "containers failing a step", "", errors, "0", errors == 0 ? "ok" : "FAIL");
  auto row = [](const char* what, size_t n) {
    printf("%-34s %14s %14zu %14s  %s\n", what, "", n, "0", n == 0 ? "ok" : "FAIL");
  };
  row("mounts left (gputierd stopped)", mounts_left.size());
  row("loop devices left", loops_left.size());
  row("partitions left in the fast root", parts_left.size());
  printf("container life (start to removed and checked): p50 %.1f s, p90 %.1f s, max %.1f s\n",
         Percentile(lives, 0.5), Percentile(lives, 0.9), Percentile(lives, 1.0));
  if (failures.empty()) {
    printf("PASS\n");
    return 0;
  }
  for (const std::string& f : failures) printf("FAIL: %s\n", f.c_str());
  return 1;
}

}  // namespace
}  // namespace gputier

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return gputier::Run();
}
