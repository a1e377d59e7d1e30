#include "loader/doctor.h"

#include <fcntl.h>
#include <linux/mount.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "loader/cgroup/cgroup_resolver.h"
#include "loader/config/config.h"
#include "loader/observe/gpu_devices.h"
#include "loader/enforce/guard.h"
#include "loader/observe/node_mounts.h"
#include "loader/observe/observer.h"

namespace gputier {
namespace {

DoctorCheck LoadCheck(const std::string& name, absl::string_view kind) {
  absl::Status s = ProbeProgramLoad(kind);
  return {name, s.ok(), s.ok() ? "loads" : std::string(s.message())};
}

// fsopen(2) of overlay proves both the new mount API and overlayfs.
DoctorCheck MountApiCheck(const char* fs, const std::string& name) {
  int fd = static_cast<int>(syscall(SYS_fsopen, fs, FSOPEN_CLOEXEC));
  if (fd < 0) {
    return {name, false, absl::StrFormat("fsopen(\"%s\") failed: %s", fs, strerror(errno))};
  }
  close(fd);
  return {name, true, absl::StrFormat("fsopen(\"%s\") works", fs)};
}

}  // namespace

DoctorReport RunDoctor(const std::string& probe_dir) {
  DoctorReport r;
  KernelFacts facts = ReadKernelFacts();
  r.checks.push_back({"btf", facts.btf,
                      facts.btf ? "/sys/kernel/btf/vmlinux present"
                                : "/sys/kernel/btf/vmlinux missing: CO-RE programs cannot load"});
  r.checks.push_back({"lsm-list", facts.bpf_lsm_active,
                      facts.lsm_list.empty() ? facts.lsm_error
                                             : absl::StrCat(facts.lsm_list,
                                                            facts.bpf_lsm_active ? "" : " (no bpf)")});
  r.checks.push_back(LoadCheck("lsm-programs", "lsm"));
  r.checks.push_back(LoadCheck("trampolines", "fexit"));
  r.checks.push_back(LoadCheck("tracepoints", "tracepoint"));
  absl::Status guard = ProbeGuardLoad();  // quiet: the check reports it
  r.checks.push_back({"guard-programs", guard.ok(),
                      guard.ok() ? "load (lsm/file_open, inode_*, bpf_map, bpf)" : std::string(guard.message())});
  absl::StatusOr<CgroupResolver> cg = CgroupResolver::Create();
  r.checks.push_back({"cgroup2", cg.ok(), cg.ok() ? cg->mount_point() : std::string(cg.status().message())});
  r.checks.push_back(MountApiCheck("overlay", "overlayfs+mount-api"));
  for (const NodeFilesystemState& fs : InspectNodeFilesystems()) {
    const bool required = std::string(fs.fs.fs_type) == "cgroup2";
    r.checks.push_back({absl::StrCat("mount:", fs.fs.fs_type), fs.mounted || !required,
                        fs.mounted ? absl::StrCat("mounted on ", fs.where, "; for ", fs.fs.needed_by)
                                   : absl::StrCat("not mounted (fix: ", fs.fix, "); for ", fs.fs.needed_by)});
  }

  std::vector<std::string> notes;
  absl::StatusOr<std::vector<GpuDevice>> devices = ResolveGpuDevices({}, &notes);
  if (devices.ok()) {
    std::string detail;
    for (const GpuDevice& d : *devices) {
      absl::StrAppend(&detail, detail.empty() ? "" : ", ", d.source);
    }
    r.checks.push_back({"gpu-selectors", true, detail});
  }

  ObserverOptions opt;  // unpinned: doctor leaves nothing behind
  opt.classes = DefaultConfig().classes;
  opt.probe_dir = probe_dir;
  if (devices.ok()) opt.gpu_devices = *devices;
  absl::StatusOr<std::unique_ptr<Observer>> observer = Observer::Start(opt);
  if (observer.ok()) {
    r.mode = ObserveModeName((*observer)->mode());
    r.reason = (*observer)->reason();
    const bool guard_loads = std::any_of(r.checks.begin(), r.checks.end(), [](const DoctorCheck& c) {
      return c.name == "guard-programs" && c.ok;
    });
    if (r.mode != "lsm") {
      r.enforcement = "unavailable: the fast-tier guard and the tamper watch need LSM mode; "
                      "`enforcement: enforce` would stop gputierd unless `enforcement_if_unavailable: off`";
    } else if (!guard_loads) {
      r.enforcement = "unavailable: the guard programs do not load on this kernel (see guard-programs)";
    } else {
      r.enforcement = "available: audit (the default) records, enforce also denies";
    }
  } else {
    r.mode = "none";
    r.reason = std::string(observer.status().message());
    r.enforcement = "unavailable: no mode runs";
  }
  return r;
}

std::string FormatDoctorReport(const DoctorReport& report) {
  std::string out;
  for (const DoctorCheck& c : report.checks) {
    absl::StrAppendFormat(&out, "%-4s %-22s %s\n", c.ok ? "ok" : "no", c.name, c.detail);
  }
  absl::StrAppendFormat(&out, "\ngputierd --mode=auto would run in: %s\n  why: %s\n", report.mode,
                        report.reason);
  if (report.mode == "tracepoint") {
    absl::StrAppend(&out, "  note: tracepoint mode observes only; it cannot deny or enforce.\n");
  }
  absl::StrAppendFormat(&out, "enforcement: %s\n", report.enforcement);
  return out;
}

}  // namespace gputier
