// Benchmark: what each step of counting an open costs in program time here.
//
// Attaches the rungs of bench/hook_floor.bpf.c one at a time (each rung does
// what the rung it builds on did and one step more), runs a tight open+close
// loop on a `.safetensors` file with the kernel's BPF accounting on
// (BPF_ENABLE_STATS), and reports each rung's accounted time per open, its
// step over the rung it builds on, and the loop's time with the rung attached
// (stats off) over the loops without anything on either side: medians of
// --rounds. No gputierd runs; the rungs use private, unpinned copies of
// gputier's maps (the extension table filled with the built-in classes).
//
// It shows where a per-open program-time figure can go on this machine: an
// empty program's accounted time (the two clock reads of the accounting, the
// call into the program) is the floor under any program on the hook.
//
//   sudo build/bench/gputier_bench_hook_floor [--iterations=200000] [--rounds=5]
//
// The test suite runs it briefly (bench_hook_floor_loads_and_runs) so that a
// rung the verifier refuses is caught; no time is asserted.
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/bench_common.h"
#include "bpf/hook_floor.skel.h"
#include "loader/config/config.h"
#include "loader/observe/node_mounts.h"
#include "loader/observe/observer.h"

ABSL_FLAG(int, iterations, 200000, "open+close pairs per rung and round");
ABSL_FLAG(int, rounds, 5, "rounds over the whole ladder (medians reported)");

namespace {

using gputier::bench::Median;
using gputier::bench::ProgStats;
using gputier::bench::ProgStatsOf;
using gputier::bench::TimeLoop;

struct Rung {
  const char* program;
  const char* what;
  int step_from;  // index of the rung this one adds a step to, or -1
};

constexpr Rung kRungs[] = {
    {"rung_empty_sys_exit", "empty program, tp_btf/sys_exit (open and close exits)", -1},
    {"rung_empty_openat_exit", "empty program, syscalls/sys_exit_openat", -1},
    {"rung_current_task", "+ current task (bpf_get_current_task_btf)", 1},
    {"rung_opened_file", "+ the opened struct file and its mode (fd table)", 2},
    {"rung_ext_and_cgroup", "+ name tail, extension parse, cgroup id", 3},
    {"rung_ext_class", "+ extension class (gt_ext_index, inlined array)", 4},
    {"rung_ext_class_hash", "  (instead: extension class from gt_ext_class, hash)", 4},
    {"rung_counters_lookup", "+ cgroup counters (hash lookup) and an atomic add", 5},
    {"rung_gputier_count_open", "gputier's gt_count_open (count.bpf.h) on sys_exit_openat", -1},
};

// Wall time per open+close pair of n pairs (the median of 10,000-pair chunks).
double Loop(const std::string& path, int n) { return TimeLoop(path, n).wall_ns; }

// Exit status when this machine cannot run the ladder (not root, or a kernel
// before 6.2); the test suite counts it as skipped.
constexpr int kCannotRunHere = 77;

bool KernelHasRdonlyCast() {
  btf* vmlinux = btf__load_vmlinux_btf();
  if (vmlinux == nullptr) return false;
  const bool found = btf__find_by_name_kind(vmlinux, "bpf_rdonly_cast", BTF_KIND_FUNC) > 0;
  btf__free(vmlinux);
  return found;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const int iterations = absl::GetFlag(FLAGS_iterations);
  const int rounds = absl::GetFlag(FLAGS_rounds);
  if (iterations <= 0 || rounds <= 0) {
    fprintf(stderr, "gputier_bench_hook_floor: --iterations and --rounds must be positive\n");
    return 1;
  }
  if (geteuid() != 0) {
    fprintf(stderr, "gputier_bench_hook_floor: needs root (loads BPF programs); run it with sudo\n");
    return kCannotRunHere;
  }
  if (!KernelHasRdonlyCast()) {
    fprintf(stderr,
            "gputier_bench_hook_floor: this kernel's BTF has no bpf_rdonly_cast kfunc (Linux 6.2+), which "
            "the rungs use as gputier's tracepoint program does there; nothing to measure\n");
    return kCannotRunHere;
  }
  // The rungs on syscalls/sys_exit_openat are classic tracepoints: libbpf
  // reads their event ids from tracefs, which a freshly booted node lacks.
  absl::StatusOr<std::string> tracefs = gputier::EnsureTracefs();
  if (!tracefs.ok()) {
    fprintf(stderr, "gputier_bench_hook_floor: %s\n", std::string(tracefs.status().message()).c_str());
    return 1;
  }
  fprintf(stderr, "gputier_bench_hook_floor: %s\n", tracefs->c_str());
  hook_floor_bpf* skel = hook_floor_bpf__open();
  if (skel == nullptr) {
    fprintf(stderr, "gputier_bench_hook_floor: opening the BPF object failed: %s\n", strerror(errno));
    return 1;
  }
  bpf_map* map;
  bpf_object__for_each_map(map, skel->obj) bpf_map__set_pin_path(map, nullptr);  // never touch an agent's pins
  if (int err = hook_floor_bpf__load(skel); err != 0) {
    fprintf(stderr,
            "gputier_bench_hook_floor: loading the rungs failed (%s); they need BTF, syscall tracepoints "
            "and the bpf_rdonly_cast kfunc (Linux 6.2+)\n",
            strerror(-err));
    hook_floor_bpf__destroy(skel);
    return 1;
  }
  // The private extension table, its index and class names, as gputierd fills them.
  if (absl::Status s = gputier::FillClasses(skel->obj, gputier::DefaultConfig().classes); !s.ok()) {
    fprintf(stderr, "gputier_bench_hook_floor: filling the extension table failed: %s\n",
            std::string(s.message()).c_str());
    hook_floor_bpf__destroy(skel);
    return 1;
  }
  char tmpl[] = "/tmp/gputier-floor-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) {
    fprintf(stderr, "gputier_bench_hook_floor: making a directory under /tmp failed: %s\n", strerror(errno));
    hook_floor_bpf__destroy(skel);
    return 1;
  }
  const std::string dir = tmpl;
  const std::string file = dir + "/weights.safetensors";
  if (!(std::ofstream(file) << "x")) {
    fprintf(stderr, "gputier_bench_hook_floor: writing %s failed\n", file.c_str());
    rmdir(dir.c_str());
    hook_floor_bpf__destroy(skel);
    return 1;
  }

  auto clean_up = [&]() {
    hook_floor_bpf__destroy(skel);
    unlink(file.c_str());
    rmdir(dir.c_str());
  };
  constexpr size_t kN = sizeof(kRungs) / sizeof(kRungs[0]);
  std::vector<double> per_open[kN], runs_per_open[kN], ratio[kN];
  Loop(file, iterations / 10);  // warm the dentry and page caches
  for (int r = 0; r < rounds; ++r) {
    double before_ns = Loop(file, iterations);  // nothing attached
    for (size_t i = 0; i < kN; ++i) {
      bpf_program* prog = bpf_object__find_program_by_name(skel->obj, kRungs[i].program);
      bpf_link* link = prog != nullptr ? bpf_program__attach(prog) : nullptr;
      if (link == nullptr) {
        fprintf(stderr, "gputier_bench_hook_floor: attaching %s failed: %s\n", kRungs[i].program,
                strerror(errno));
        clean_up();
        return 1;
      }
      const double with_ns = Loop(file, iterations);  // stats off: what the rung costs a node
      // Stats stay on only while stats_fd is open (a kernel-wide switch).
      int stats_fd = bpf_enable_stats(BPF_STATS_RUN_TIME);
      if (stats_fd < 0) {
        fprintf(stderr, "gputier_bench_hook_floor: BPF_ENABLE_STATS failed: %s\n", strerror(errno));
        bpf_link__destroy(link);
        clean_up();
        return 1;
      }
      const ProgStats before = ProgStatsOf(bpf_program__fd(prog));
      Loop(file, iterations);
      const ProgStats after = ProgStatsOf(bpf_program__fd(prog));
      close(stats_fd);
      bpf_link__destroy(link);
      const double after_ns = Loop(file, iterations);  // nothing attached again
      per_open[i].push_back(double(after.run_time_ns - before.run_time_ns) / iterations);
      runs_per_open[i].push_back(double(after.run_cnt - before.run_cnt) / iterations);
      ratio[i].push_back(with_ns / ((before_ns + after_ns) / 2));
      before_ns = after_ns;
    }
    fprintf(stderr, "round %d/%d done\n", r + 1, rounds);
  }
  clean_up();

  printf("program time per open+close (kernel BPF accounting) and loop time with the rung attached over "
         "without (stats off), %d iterations, median of %d rounds\n",
         iterations, rounds);
  printf("  %-60s %9s %9s %8s %7s\n", "rung", "runs/open", "ns/open", "step", "ratio");
  std::string result = "RESULT";
  for (size_t i = 0; i < kN; ++i) {
    const double ns = Median(per_open[i]);
    const int from = kRungs[i].step_from;
    printf("  %-60s %9.2f %9.1f %8s %7.3f\n", kRungs[i].what, Median(runs_per_open[i]), ns,
           from >= 0 ? absl::StrFormat("%+.0f", ns - Median(per_open[from])).c_str() : "", Median(ratio[i]));
    absl::StrAppend(&result, " ", kRungs[i].program + 5, "=", static_cast<int>(ns * 10 + 0.5) / 10.0);
  }
  printf("%s\n", result.c_str());
  return 0;
}
