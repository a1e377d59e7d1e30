// The observer: loads one of the two BPF objects, fills its maps from config,
// attaches it and proves that its hooks fire before anyone trusts a counter.
//
//   auto        LSM mode when BTF is present, `bpf` is in the active LSM list,
//               the LSM and trampoline programs load and attach, and a probe
//               open moves the agent's own counters; otherwise tracepoint mode.
//   lsm         the same, but any failure is an error.
//   tracepoint  observe-only syscall tracepoints.
// Each decision comes with the reason, which gputierd logs and doctor prints.
#ifndef GPUTIER_LOADER_OBSERVE_OBSERVER_H_
#define GPUTIER_LOADER_OBSERVE_OBSERVER_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "gputier/abi.h"
#include "loader/config/config.h"
#include "loader/observe/gpu_devices.h"

struct bpf_object;

namespace gputier {

enum class ObserveMode { kAuto, kLsm, kTracepoint };

absl::StatusOr<ObserveMode> ParseObserveMode(absl::string_view text);
std::string ObserveModeName(ObserveMode mode);

// What the kernel offers, read from /sys (securityfs is mounted if needed).
struct KernelFacts {
  bool btf = false;         // /sys/kernel/btf/vmlinux
  std::string lsm_list;     // /sys/kernel/security/lsm, "" if unreadable
  bool bpf_lsm_active = false;
  std::string lsm_error;    // why lsm_list is empty, if it is
};
KernelFacts ReadKernelFacts();

struct ObserverOptions {
  ObserveMode mode = ObserveMode::kAuto;
  // Maps are pinned (and reused) here; empty means unpinned (doctor probes).
  std::string pin_dir;
  uint32_t max_cgroups = GT_DEFAULT_MAX_CGROUPS;
  std::vector<ExtensionClass> classes;
  std::vector<GpuDevice> gpu_devices;
  // A writable directory for the firing self-test file.
  std::string probe_dir = "/tmp";
  // Which programs to load, for doctor's per-hook probes; empty = all.
  std::vector<std::string> only_programs;
};

class Observer {
 public:
  // Loads, fills, attaches and verifies according to options.mode.
  static absl::StatusOr<std::unique_ptr<Observer>> Start(const ObserverOptions& options);

  virtual ~Observer() = default;

  ObserveMode mode() const { return mode_; }
  // Why this mode (and, for auto, why not the other).
  const std::string& reason() const { return reason_; }

  int map_fd(const char* name) const;
  // Kernel ids of its maps and links (for the tamper watch).
  virtual std::vector<uint32_t> MapIds() const = 0;
  virtual std::vector<uint32_t> LinkIds() const = 0;

  // Name and kernel id of each loaded program (for the metrics' run time
  // and run count).
  std::vector<std::pair<std::string, uint32_t>> ProgramIds() const;

  // Replaces the GPU device selectors in the kernel.
  absl::Status SetGpuDevices(const std::vector<GpuDevice>& devices);

 protected:
  Observer() = default;
  virtual bpf_object* object() const = 0;

  ObserveMode mode_ = ObserveMode::kTracepoint;
  std::string reason_;
};

}  // namespace gputier

namespace gputier {

// Loads (without attaching, without pins) just one program of one object,
// to tell whether the kernel accepts that kind of program: "lsm" loads
// lsm/file_open, "fexit" loads fexit/vfs_write, "tracepoint" loads
// tp_btf/sys_exit. Used by `gputierctl doctor`.
absl::Status ProbeProgramLoad(absl::string_view kind);

// Loads (without attaching, without pins) every program of one object,
// "observe_lsm" or "observe_tp", as gputierd would pick them on this kernel
// (the documented degradations applied): the verifier-acceptance probe.
absl::Status ProbeObjectLoad(absl::string_view object);

// Before load: clears pin paths when `pin_dir` is empty (probes), and sizes
// the per-cgroup maps to `max_cgroups`, or to what an existing pin of them
// holds (a pinned map is reused as it is). Shared by every object.
absl::Status PreparePinnedMaps(bpf_object* obj, const std::string& pin_dir, uint32_t max_cgroups);

// Writes the extension table (gt_ext_class), its index (gt_ext_index) and the
// class names of `obj` from `classes`, removing entries of an earlier config.
// Call it before attaching: the programs must never see the index half written.
absl::Status FillClasses(bpf_object* obj, const std::vector<ExtensionClass>& classes);

}  // namespace gputier

#endif  // GPUTIER_LOADER_OBSERVE_OBSERVER_H_
