#include "bench/headline/scenario_round.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "bench/container_mounts.h"
#include "loader/base/clock.h"
#include "tests/integration/agent_harness.h"
#include "tests/integration/runc_container.h"

namespace gputier::bench {

std::atomic<bool> g_interrupted{false};

namespace {

namespace fs = std::filesystem;
using testing::AgentProcess;
using testing::CommandResult;
using testing::RuncContainer;

// The GPU test device inside the containers: runc gives every container
// /dev/full (1:7), and gputierd is configured to count that device number
// as a GPU. No GPU driver is involved: the ioctls answer ENOTTY.
constexpr const char* kGpuDeviceInContainer = "/dev/full";
constexpr const char* kGpuDeviceYaml = "gpu_devices:\n  - {major: 1, minor: 7}\n";
constexpr const char* kJobInContainer = "/bin/headline-job";
constexpr const char* kCpuLogPrefix = "cpu-log-";

// Bytes in files named like the CPU job's logs anywhere below `dir`
// (partitions mounted below it included).
uint64_t CpuLogBytesUnder(const std::string& dir) {
  uint64_t bytes = 0;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(dir, fs::directory_options::skip_permission_denied, ec), end;
       !ec && it != end; it.increment(ec)) {
    if (!it->is_regular_file(ec) || it->is_symlink(ec)) continue;
    if (absl::StartsWith(it->path().filename().string(), kCpuLogPrefix)) bytes += it->file_size(ec);
  }
  return bytes;
}

bool WaitUntil(const std::function<bool()>& done, double seconds) {
  const uint64_t end = MonotonicNs() + static_cast<uint64_t>(seconds * 1e9);
  while (MonotonicNs() < end && !g_interrupted) {
    if (done()) return true;
    usleep(2000);
  }
  return done();
}

absl::Status ParseGpuOutput(const std::string& output, RoundResult& r) {
  for (absl::string_view line : absl::StrSplit(output, '\n', absl::SkipWhitespace())) {
    std::vector<absl::string_view> f = absl::StrSplit(line, ' ');
    uint64_t a = 0, b = 0;
    if (f.size() == 2 && f[0] == "first_ioctl" && absl::SimpleAtoi(f[1], &a)) {
      r.first_ioctl_ns = a;
    } else if (f.size() == 4 && f[0] == "step" && absl::SimpleAtoi(f[2], &a) && absl::SimpleAtoi(f[3], &b)) {
      r.steps.push_back({a, b});
    }
  }
  if (r.first_ioctl_ns == 0 || r.steps.empty()) {
    return absl::InternalError(absl::StrCat("the GPU job reported no steps: ", output));
  }
  return absl::OkStatus();
}

absl::Status ParseCpuOutput(const std::string& output, RoundResult& r) {
  for (absl::string_view line : absl::StrSplit(output, '\n', absl::SkipWhitespace())) {
    std::vector<absl::string_view> f = absl::StrSplit(line, ' ');
    uint64_t bytes = 0, start = 0, end = 0;
    if (f.size() == 4 && f[0] == "cpu" && absl::SimpleAtoi(f[1], &bytes) && absl::SimpleAtoi(f[2], &start) &&
        absl::SimpleAtoi(f[3], &end) && end > start) {
      r.cpu_bytes = bytes;
      r.cpu_seconds = (end - start) / 1e9;
      return absl::OkStatus();
    }
  }
  return absl::InternalError(absl::StrCat("the CPU job reported nothing: ", output));
}

// The blkio cgroup directory (v1) of `pid`, from /proc/<pid>/cgroup.
std::string BlkioCgroupOf(pid_t pid) {
  for (absl::string_view line :
       absl::StrSplit(testing::SlurpFile(absl::StrCat("/proc/", pid, "/cgroup")), '\n', absl::SkipEmpty())) {
    std::vector<absl::string_view> f = absl::StrSplit(line, absl::MaxSplits(':', 2));
    if (f.size() == 3 && f[1] == "blkio") return absl::StrCat("/sys/fs/cgroup/blkio", f[2]);
  }
  return "";
}

// Moves the job that `runc exec` is starting in `c` (every process of the
// container's blkio cgroup but its init) into the tiers' throttle group,
// then opens the job's gate (/go).
absl::Status JoinThrottleGroup(const RuncContainer& c, EmulatedTiers& tiers, const std::atomic<bool>& exited) {
  const std::string cgroup = BlkioCgroupOf(c.pid());
  if (cgroup.empty()) return absl::InternalError(absl::StrCat("no blkio cgroup for ", c.id()));
  bool moved = false;
  if (!WaitUntil(
          [&] {
            for (absl::string_view p :
                 absl::StrSplit(testing::SlurpFile(cgroup + "/cgroup.procs"), '\n', absl::SkipEmpty())) {
              pid_t pid = 0;
              if (absl::SimpleAtoi(p, &pid) && pid != c.pid() && tiers.Join(pid).ok()) moved = true;
            }
            return moved || exited;
          },
          30) ||
      !moved) {
    return absl::InternalError(absl::StrCat("the job in ", c.id(), " did not start (runc exec)"));
  }
  std::ofstream(c.rootfs() + "/go").close();
  return absl::OkStatus();
}

}  // namespace

const char* ScenarioName(Scenario s) {
  switch (s) {
    case Scenario::kDefault:
      return "default";
    case Scenario::kAllFast:
      return "all-fast";
    case Scenario::kGputier:
      return "gputier";
  }
  return "?";
}

double RoundResult::JobSeconds() const {
  return steps.empty() ? 0 : (steps.back().end_ns - first_ioctl_ns) / 1e9;
}

int RoundResult::FirstFastStep() const {
  if (promoted_ns == 0) return -1;
  for (size_t i = 0; i < steps.size(); ++i) {
    if (steps[i].start_ns >= promoted_ns) return static_cast<int>(i);
  }
  return -1;
}

absl::StatusOr<RoundResult> RunRound(Scenario scenario, const RoundConfig& config, EmulatedTiers& tiers) {
  if (absl::Status s = tiers.Empty(); !s.ok()) return s;
  RoundResult r;
  r.scenario = scenario;
  const std::string fast_root = tiers.fast() + "/gputier";
  const std::string slow_root = tiers.slow() + "/gputier";
  testing::TempDir runc_root("gputier-headline-runc");

  // Where each container's /data is: the slow tier (what a node does
  // today), the fast tier (an operator who moved every container there), or
  // left to gputierd, which puts it on the slow tier and promotes the GPU job.
  RuncContainer::Options gpu_opts, cpu_opts;
  gpu_opts.state_root = cpu_opts.state_root = runc_root.path();
  gpu_opts.binds = {{config.tensor_dir, "/models"}};
  if (scenario != Scenario::kGputier) {
    const std::string base = scenario == Scenario::kDefault ? tiers.slow() : tiers.fast();
    for (const char* which : {"gpu-data", "cpu-data"}) fs::create_directories(absl::StrCat(base, "/", which));
    gpu_opts.binds.push_back({base + "/gpu-data", "/data"});
    cpu_opts.binds.push_back({base + "/cpu-data", "/data"});
  }

  std::unique_ptr<AgentProcess> agent;
  if (scenario == Scenario::kGputier) {
    agent = std::make_unique<AgentProcess>();
    const std::string yaml = absl::StrFormat(
        "%stiered_paths: [/data]\nrunc_roots: [%s]\n"
        "policy: {tick: 200ms, window: 2s, demote_after_cpu_windows: 1000}\n"
        "tiers: {fast: %s, slow: %s, partition_size: %dMiB}\n",
        kGpuDeviceYaml, runc_root.path(), fast_root, slow_root, config.partition_mib);
    absl::StatusOr<std::string> mode = agent->Start({"auto", yaml});
    if (!mode.ok()) return absl::InternalError(absl::StrCat("gputierd did not start: ", mode.status().message()));
  }

  absl::StatusOr<std::unique_ptr<RuncContainer>> gpu = RuncContainer::Start(gpu_opts);
  if (!gpu.ok()) return gpu.status();
  absl::StatusOr<std::unique_ptr<RuncContainer>> cpu = RuncContainer::Start(cpu_opts);
  if (!cpu.ok()) return cpu.status();
  for (const RuncContainer* c : {gpu->get(), cpu->get()}) {
    std::error_code ec;
    fs::copy_file(config.job_binary, c->rootfs() + kJobInContainer, fs::copy_options::overwrite_existing, ec);
    if (ec) return absl::InternalError(absl::StrCat("copying ", config.job_binary, ": ", ec.message()));
  }
  if (scenario == Scenario::kGputier) {
    // gputierd adopts a container once it has counted activity: /data is
    // then the slow tier's overlay, where the jobs must start.
    for (const RuncContainer* c : {gpu->get(), cpu->get()}) {
      if (!WaitUntil(
              [&] {
                (void)c->Exec("cat /bin/busybox >/dev/null");
                return DataOn(c->pid(), slow_root);
              },
              30)) {
        return absl::InternalError(absl::StrCat("gputierd did not adopt ", c->id(), ":\n", agent->LogTail()));
      }
    }
  }

  absl::StatusOr<CommandResult> cpu_out, gpu_out;
  std::atomic<bool> gpu_done{false}, cpu_done{false};
  std::thread cpu_job([&] {
    cpu_out = (*cpu)->Exec(absl::StrCat(kJobInContainer, " cpu /go /stop"));
    cpu_done = true;
  });
  absl::Status joined = JoinThrottleGroup(**cpu, tiers, cpu_done);
  usleep(300'000);  // the CPU job is already writing when the GPU job starts
  std::thread gpu_job([&] {
    gpu_out = (*gpu)->Exec(absl::StrFormat("%s gpu /go %s %d %d /models", kJobInContainer, kGpuDeviceInContainer,
                                           config.steps, config.checkpoint_mib));
    gpu_done = true;
  });
  if (joined.ok()) joined = JoinThrottleGroup(**gpu, tiers, gpu_done);
  if (!joined.ok()) {
    // Let both jobs go (they then finish at once) so the threads end.
    for (const RuncContainer* c : {gpu->get(), cpu->get()}) {
      std::ofstream(c->rootfs() + "/stop").close();
      std::ofstream(c->rootfs() + "/go").close();
    }
    (void)(*gpu)->Kill();
    (void)(*cpu)->Kill();
    gpu_job.join();
    cpu_job.join();
    return joined;
  }
  bool killed = false;
  while (!gpu_done) {
    if (g_interrupted && !killed) {
      (void)(*gpu)->Kill();
      (void)(*cpu)->Kill();
      killed = true;
    }
    if (scenario == Scenario::kGputier) {
      if (r.promoted_ns == 0 && DataOn((*gpu)->pid(), fast_root)) r.promoted_ns = MonotonicNs();
      if (DataOn((*cpu)->pid(), fast_root)) r.cpu_data_seen_on_fast = true;
    }
    usleep(2000);
  }
  gpu_job.join();
  std::ofstream((*cpu)->rootfs() + "/stop").close();
  cpu_job.join();
  if (g_interrupted) return absl::CancelledError("interrupted");
  r.cpu_bytes_on_fast = CpuLogBytesUnder(tiers.fast());
  if (!gpu_out.ok()) return gpu_out.status();
  if (!cpu_out.ok()) return cpu_out.status();
  if (gpu_out->exit_code != 0) {
    return absl::InternalError(absl::StrCat("the GPU job exited ", gpu_out->exit_code, ": ", gpu_out->output));
  }
  if (cpu_out->exit_code != 0) {
    return absl::InternalError(absl::StrCat("the CPU job exited ", cpu_out->exit_code, ": ", cpu_out->output));
  }
  if (absl::Status s = ParseGpuOutput(gpu_out->output, r); !s.ok()) return s;
  if (absl::Status s = ParseCpuOutput(cpu_out->output, r); !s.ok()) return s;
  return r;
}

}  // namespace gputier::bench
