// The headline benchmark: how much faster a GPU job's checkpoints are on a
// node it shares with a CPU job, with gputier against what operators do
// today (docs/BENCHMARKS.md, "The headline").
//
// Two tiers are made on the host (bench/headline/emulated_tiers.h: ext4 on
// RAM-backed loop devices, the slow one throttled to a SATA SSD's or an
// HDD's datasheet figures). Per slow-tier setting, rounds of three scenarios
// alternate (default, all-fast, gputier); each round runs two real runc
// containers side by side (bench/headline/scenario_round.h): a GPU job
// writing a checkpoint + fsync per step and a CPU job appending logs with
// fsyncs. Printed: a table; written to --out_dir: summary.csv, steps.csv and,
// with gnuplot on PATH, headline.png (bench/headline/plot.gp).
//
//   sudo build/bench/gputier_bench_headline [--rounds=5] [--steps=40] [--checkpoint_mib=32]
//        [--settings=sata,hdd] [--out_dir=build/headline]
//
// --check makes it a test: exit 1 if the CPU job's data was ever on the fast
// tier in a gputier or default round, 77 if it cannot run here.
#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "bench/headline/emulated_tiers.h"
#include "bench/headline/scenario_round.h"
#include "loader/base/clock.h"
#include "tests/integration/runc_container.h"

ABSL_FLAG(int, rounds, 5, "rounds of each scenario per slow-tier setting (alternated)");
ABSL_FLAG(int, steps, 40, "checkpoints the GPU job writes per round");
ABSL_FLAG(int, checkpoint_mib, 32, "MiB per checkpoint");
ABSL_FLAG(std::string, settings, "sata,hdd", "slow-tier settings to run: sata, hdd");
ABSL_FLAG(int, tier_mib, 1024, "size of each tier's filesystem, MiB (held in RAM)");
ABSL_FLAG(int, tensor_mib, 32, "MiB of tensor files the GPU job reads every step");
ABSL_FLAG(std::string, out_dir, "headline", "directory for summary.csv, steps.csv and headline.png");
ABSL_FLAG(bool, check, false,
          "exit 1 if the CPU job's data reached the fast tier in a default or gputier round (a test)");

namespace gputier::bench {
namespace {

namespace fs = std::filesystem;

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * v.size()))];
}
double MedianOf(std::vector<double> v) { return Percentile(std::move(v), 0.5); }

struct Summary {
  double ckpt_p50_ms = 0, ckpt_p99_ms = 0, job_s = 0, cpu_mib_s = 0;
  uint64_t cpu_bytes_on_fast = 0;
  bool cpu_seen_on_fast = false;
  double ioctl_to_fast_ms = -1;  // gputier only; -1: never promoted
  double first_fast_step = -1;
  int rounds_promoted = 0;
};

Summary Summarize(const std::vector<RoundResult>& rounds) {
  Summary s;
  std::vector<double> ckpt, job, cpu, to_fast, fast_step;
  for (const RoundResult& r : rounds) {
    for (const StepTime& t : r.steps) ckpt.push_back((t.end_ns - t.start_ns) / 1e6);
    job.push_back(r.JobSeconds());
    cpu.push_back(r.cpu_bytes / r.cpu_seconds / (1 << 20));
    s.cpu_bytes_on_fast = std::max(s.cpu_bytes_on_fast, r.cpu_bytes_on_fast);
    s.cpu_seen_on_fast |= r.cpu_data_seen_on_fast;
    if (const int step = r.FirstFastStep(); step >= 0) {
      to_fast.push_back((r.steps[step].end_ns - r.first_ioctl_ns) / 1e6);
      fast_step.push_back(step);
      ++s.rounds_promoted;
    }
  }
  s.ckpt_p50_ms = Percentile(ckpt, 0.5);
  s.ckpt_p99_ms = Percentile(ckpt, 0.99);
  s.job_s = MedianOf(job);
  s.cpu_mib_s = MedianOf(cpu);
  if (!to_fast.empty()) {
    s.ioctl_to_fast_ms = MedianOf(to_fast);
    s.first_fast_step = MedianOf(fast_step);
  }
  return s;
}

void OnSignal(int) { g_interrupted = true; }

double CheckpointMBps(EmulatedTiers& tiers, const std::string& dir, int mib, int n);

// The same on the fast tier through what a promoted container writes to: an
// ext4 image file on the fast tier on a loop device with direct I/O, as
// gputierd makes its partitions (loader/tier/fs/tier_partition.cc). 0 when
// it cannot be made.
double PartitionCheckpointMBps(EmulatedTiers& tiers, int partition_mib, int mib, int n) {
  const std::string image = tiers.fast() + "/probe-partition.img";
  char mnt[] = "/tmp/gputier-headline-probe-XXXXXX";
  if (mkdtemp(mnt) == nullptr) return 0;
  double rate = 0;
  std::ofstream(image).close();
  absl::StatusOr<testing::CommandResult> loop;
  if (truncate(image.c_str(), static_cast<off_t>(partition_mib) << 20) == 0 &&
      (loop = testing::RunCommand({"losetup", "--direct-io=on", "--show", "-f", image})).ok() &&
      loop->exit_code == 0) {
    const std::string dev(absl::StripAsciiWhitespace(loop->output));
    absl::StatusOr<testing::CommandResult> mkfs =
        testing::RunCommand({"mkfs.ext4", "-q", "-F", "-b", "4096", "-m", "0", dev});
    if (mkfs.ok() && mkfs->exit_code == 0 && mount(dev.c_str(), mnt, "ext4", 0, nullptr) == 0) {
      rate = CheckpointMBps(tiers, mnt, mib, n);
      umount2(mnt, 0);
    }
    (void)testing::RunCommand({"losetup", "-d", dev});
  }
  unlink(image.c_str());
  rmdir(mnt);
  return rate;
}

// MB/s of one checkpoint (`mib` MiB in 1 MiB writes, then fsync) written to
// `dir` by a child in the tiers' throttle group, nothing else running: the
// most a job can get from that tier here. Median of `n`.
double CheckpointMBps(EmulatedTiers& tiers, const std::string& dir, int mib, int n) {
  std::vector<double> rates;
  for (int i = 0; i < n; ++i) {
    int fds[2];
    if (pipe(fds) != 0) return 0;
    pid_t child = fork();
    if (child == 0) {
      close(fds[0]);
      double rate = 0;
      if (tiers.Join(getpid()).ok()) {
        std::vector<char> buf(1 << 20, 'k');
        const std::string path = dir + "/calibration.bin";
        int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        const uint64_t t0 = MonotonicNs();
        bool ok = fd >= 0;
        for (int m = 0; ok && m < mib; ++m) ok = write(fd, buf.data(), buf.size()) == static_cast<ssize_t>(buf.size());
        ok = ok && fsync(fd) == 0;
        if (ok) rate = (static_cast<double>(mib) * (1 << 20)) / ((MonotonicNs() - t0) / 1e9) / 1e6;
        if (fd >= 0) close(fd);
        unlink(path.c_str());
      }
      (void)!write(fds[1], &rate, sizeof(rate));
      _exit(0);
    }
    close(fds[1]);
    double rate = 0;
    if (read(fds[0], &rate, sizeof(rate)) == sizeof(rate) && rate > 0) rates.push_back(rate);
    close(fds[0]);
    waitpid(child, nullptr, 0);
  }
  return MedianOf(rates);
}

int Main() {
  if (std::string why = testing::RuncTestsCannotRunBecause(); !why.empty()) {
    fprintf(stderr, "headline: skipped: %s\n", why.c_str());
    return 77;
  }
  if (std::string why = EmulatedTiersCannotRunBecause(); !why.empty()) {
    fprintf(stderr, "headline: skipped: %s\n", why.c_str());
    return 77;
  }
  std::vector<DeviceLimits> settings;
  for (absl::string_view name : absl::StrSplit(absl::GetFlag(FLAGS_settings), ',', absl::SkipEmpty())) {
    absl::StatusOr<DeviceLimits> l = SlowTierLimits(std::string(name));
    if (!l.ok()) {
      fprintf(stderr, "headline: --settings: %s\n", std::string(l.status().message()).c_str());
      return 2;
    }
    settings.push_back(*l);
  }
  struct sigaction sa = {};
  sa.sa_handler = OnSignal;
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaction(sig, &sa, nullptr);

  const std::string out_dir = absl::GetFlag(FLAGS_out_dir);
  fs::create_directories(out_dir);
  testing::TempDir tensors("gputier-headline-tensors");
  for (int i = 0; i < 4; ++i) {
    std::ofstream f(absl::StrCat(tensors.path(), "/layer-", i, ".safetensors"), std::ios::binary);
    std::string chunk(1 << 20, 't');
    for (int m = 0; m < absl::GetFlag(FLAGS_tensor_mib) / 4; ++m) f << chunk;
  }
  RoundConfig config;
  config.steps = absl::GetFlag(FLAGS_steps);
  config.checkpoint_mib = absl::GetFlag(FLAGS_checkpoint_mib);
  config.job_binary = GPUTIER_HEADLINE_JOB;
  config.tensor_dir = tensors.path();
  config.partition_mib = std::max(64, 4 * config.checkpoint_mib + 64);

  absl::StatusOr<std::unique_ptr<EmulatedTiers>> tiers = EmulatedTiers::Make(absl::GetFlag(FLAGS_tier_mib));
  if (!tiers.ok()) {
    fprintf(stderr, "headline: making the tiers: %s\n", std::string(tiers.status().message()).c_str());
    return 1;
  }
  printf("headline: fast tier %s (loop %s), slow tier %s (loop %s); %d rounds x %d checkpoints of %d MiB\n",
         (*tiers)->fast().c_str(), (*tiers)->fast_device().c_str(), (*tiers)->slow().c_str(),
         (*tiers)->slow_device().c_str(), absl::GetFlag(FLAGS_rounds), config.steps, config.checkpoint_mib);

  std::ofstream steps_csv(out_dir + "/steps.csv");
  steps_csv << "setting,scenario,round,step,start_s,checkpoint_ms,on_fast\n";
  std::ofstream summary_csv(out_dir + "/summary.csv");
  summary_csv << "setting,scenario,rounds,checkpoint_p50_ms,checkpoint_p99_ms,job_s,cpu_mib_s,"
                 "cpu_bytes_on_fast,ioctl_to_first_fast_checkpoint_ms,first_fast_step,"
                 "alone_fast_mb_s,alone_fast_partition_mb_s,alone_slow_mb_s\n";
  bool leaked = false;
  std::vector<std::string> table;
  for (const DeviceLimits& limits : settings) {
    if (absl::Status s = (*tiers)->Throttle(limits); !s.ok()) {
      fprintf(stderr, "headline: throttle: %s\n", std::string(s.message()).c_str());
      return 1;
    }
    // What bounds the ratios: one checkpoint alone on each tier.
    const double fast_mbps = CheckpointMBps(**tiers, (*tiers)->fast(), config.checkpoint_mib, 5);
    const double slow_mbps = CheckpointMBps(**tiers, (*tiers)->slow(), config.checkpoint_mib, 5);
    const double partition_mbps =
        PartitionCheckpointMBps(**tiers, config.partition_mib, config.checkpoint_mib, 5);
    printf("  %s: one %d MiB checkpoint alone: fast tier %.0f MB/s (through a partition %.0f MB/s), slow tier %.0f "
           "MB/s\n",
           limits.name.c_str(), config.checkpoint_mib, fast_mbps, partition_mbps, slow_mbps);
    std::map<Scenario, std::vector<RoundResult>> results;
    for (int round = 0; round < absl::GetFlag(FLAGS_rounds); ++round) {
      for (Scenario scenario : kScenarios) {
        if (g_interrupted) break;
        absl::StatusOr<RoundResult> r = RunRound(scenario, config, **tiers);
        if (!r.ok()) {
          fprintf(stderr, "headline: %s round %d (%s): %s\n", ScenarioName(scenario), round, limits.name.c_str(),
                  std::string(r.status().message()).c_str());
          return g_interrupted ? 130 : 1;
        }
        printf("  %s round %d %-8s: checkpoint median %.1f ms, job %.2f s, CPU job %.1f MiB/s%s\n",
               limits.name.c_str(), round, ScenarioName(scenario),
               Summarize({*r}).ckpt_p50_ms, r->JobSeconds(), r->cpu_bytes / r->cpu_seconds / (1 << 20),
               r->promoted_ns ? absl::StrFormat(", promoted at step %d", r->FirstFastStep()).c_str() : "");
        fflush(stdout);
        for (size_t i = 0; i < r->steps.size(); ++i) {
          const StepTime& t = r->steps[i];
          steps_csv << absl::StrFormat("%s,%s,%d,%d,%.3f,%.2f,%d\n", limits.name, ScenarioName(scenario), round, i,
                                       (t.start_ns - r->first_ioctl_ns) / 1e9, (t.end_ns - t.start_ns) / 1e6,
                                       r->promoted_ns != 0 && t.start_ns >= r->promoted_ns);
        }
        if (scenario != Scenario::kAllFast && (r->cpu_bytes_on_fast > 0 || r->cpu_data_seen_on_fast)) leaked = true;
        results[scenario].push_back(std::move(*r));
      }
    }
    if (g_interrupted) return 130;
    std::map<Scenario, Summary> sum;
    for (Scenario s : kScenarios) {
      sum[s] = Summarize(results[s]);
      const Summary& m = sum[s];
      summary_csv << absl::StrFormat("%s,%s,%d,%.2f,%.2f,%.3f,%.2f,%d,%.1f,%.1f,%.0f,%.0f,%.0f\n", limits.name,
                                     ScenarioName(s), results[s].size(), m.ckpt_p50_ms, m.ckpt_p99_ms, m.job_s,
                                     m.cpu_mib_s, m.cpu_bytes_on_fast, m.ioctl_to_fast_ms, m.first_fast_step,
                                     fast_mbps, partition_mbps, slow_mbps);
    }
    const Summary &d = sum[Scenario::kDefault], &f = sum[Scenario::kAllFast], &g = sum[Scenario::kGputier];
    table.push_back(absl::StrFormat("\nslow tier: %s (read %.0f MB/s, write %.0f MB/s, %d/%d IOPS)", limits.name,
                                    limits.read_bps / 1e6, limits.write_bps / 1e6, limits.read_iops,
                                    limits.write_iops));
    table.push_back(absl::StrFormat(
        "a checkpoint alone (no CPU job): fast tier %.0f MB/s, through a partition on it (gputier's path) %.0f MB/s, "
        "slow tier %.0f MB/s",
        fast_mbps, partition_mbps, slow_mbps));
    table.push_back(absl::StrFormat("%-9s %12s %12s %9s %12s %16s %16s", "scenario", "ckpt p50 ms", "ckpt p99 ms",
                                    "job s", "CPU MiB/s", "CPU bytes fast", "ioctl->fast ms"));
    for (Scenario s : kScenarios) {
      const Summary& m = sum[s];
      table.push_back(absl::StrFormat("%-9s %12.1f %12.1f %9.2f %12.1f %16d %16s", ScenarioName(s), m.ckpt_p50_ms,
                                      m.ckpt_p99_ms, m.job_s, m.cpu_mib_s, m.cpu_bytes_on_fast,
                                      s == Scenario::kGputier
                                          ? absl::StrFormat("%.0f (%d/%zu)", m.ioctl_to_fast_ms, m.rounds_promoted,
                                                            results[s].size())
                                          : "-"));
    }
    table.push_back(absl::StrFormat(
        "checkpoint p50 default/gputier %.2fx (goal >= 3), gputier/all-fast %.2fx (goal <= 1.15), default/all-fast "
        "%.2fx (the most any placement can gain); job default/gputier %.2fx; CPU job gputier/default %.2fx (goal >= "
        "0.9); CPU job data on the fast tier with gputier: %d bytes%s",
        d.ckpt_p50_ms / g.ckpt_p50_ms, g.ckpt_p50_ms / f.ckpt_p50_ms, d.ckpt_p50_ms / f.ckpt_p50_ms,
        d.job_s / g.job_s, g.cpu_mib_s / d.cpu_mib_s, g.cpu_bytes_on_fast,
        g.cpu_seen_on_fast ? " (its /data was seen on the fast tier)" : ""));
  }
  for (const std::string& line : table) printf("%s\n", line.c_str());
  steps_csv.close();
  summary_csv.close();
  printf("\nwritten: %s/summary.csv, %s/steps.csv\n", out_dir.c_str(), out_dir.c_str());
  const std::string plot = absl::StrFormat("gnuplot -e \"dir='%s'; settings='%s'\" %s", out_dir,
                                           absl::StrReplaceAll(absl::GetFlag(FLAGS_settings), {{",", " "}}),
                                           GPUTIER_HEADLINE_PLOT);
  if (system("command -v gnuplot >/dev/null 2>&1") == 0) {
    if (system(plot.c_str()) == 0) printf("plotted: %s/headline.png\n", out_dir.c_str());
  } else {
    printf("no gnuplot on PATH (Debian: gnuplot-nox); plot later with: %s\n", plot.c_str());
  }
  if (absl::GetFlag(FLAGS_check) && leaked) {
    fprintf(stderr, "headline: FAIL: the CPU job's data reached the fast tier without all-fast\n");
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace gputier::bench

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return gputier::bench::Main();
}
