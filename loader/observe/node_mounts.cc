#include "loader/observe/node_mounts.h"

#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "loader/base/node_facts.h"

namespace gputier {
namespace {

constexpr char kTracefsMount[] = "/sys/kernel/tracing";
// libbpf reads tracepoint ids under debugfs's tracing/ when that path exists,
// else under /sys/kernel/tracing.
constexpr char kDebugfsTracing[] = "/sys/kernel/debug/tracing";

std::string ReadMountInfo() {
  std::ifstream in("/proc/self/mountinfo");
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string MountCommand(const NodeFilesystem& fs) {
  if (std::string(fs.fs_type) == "cgroup2") return absl::StrCat("mount -t cgroup2 none ", fs.mount_point);
  return absl::StrCat("mount -t ", fs.fs_type, " ", fs.fs_type, " ", fs.mount_point);
}

bool HasTracepointEvents(const char* tracefs) {
  return access(absl::StrCat(tracefs, "/events").c_str(), F_OK) == 0;
}

}  // namespace

const std::vector<NodeFilesystem>& NodeFilesystems() {
  static const std::vector<NodeFilesystem> kFilesystems = {
      {"bpf", "/sys/fs/bpf", "gputierd's pinned maps (it mounts bpffs itself when it is missing)"},
      {"securityfs", "/sys/kernel/security",
       "reading the active LSM list (gputierd and doctor mount it themselves)"},
      {"cgroup2", "/sys/fs/cgroup", "naming cgroups and containers (required; gputierd stops without it)"},
      {"tracefs", kTracefsMount,
       "only the benchmark ladder's classic tracepoints (it mounts tracefs itself); gputierd uses tp_btf"},
  };
  return kFilesystems;
}

std::vector<NodeFilesystemState> InspectNodeFilesystems() {
  const std::vector<MountEntry> mounts = ParseMountInfo(ReadMountInfo());
  std::vector<NodeFilesystemState> states;
  for (const NodeFilesystem& fs : NodeFilesystems()) {
    NodeFilesystemState state{fs};
    for (const MountEntry& m : mounts) {
      if (m.fs_type == fs.fs_type) {
        state.mounted = true;
        state.where = m.mount_point;
        break;
      }
    }
    if (!state.mounted) state.fix = MountCommand(fs);
    states.push_back(std::move(state));
  }
  return states;
}

absl::StatusOr<std::string> EnsureTracefs() {
  if (access(kDebugfsTracing, F_OK) == 0) {
    if (HasTracepointEvents(kDebugfsTracing)) return absl::StrCat("tracefs is reachable at ", kDebugfsTracing);
    return absl::FailedPreconditionError(absl::StrCat(
        kDebugfsTracing, " exists but holds no events/ (libbpf reads tracepoint ids there); mount tracefs "
        "on it: mount -t tracefs tracefs ", kDebugfsTracing));
  }
  if (HasTracepointEvents(kTracefsMount)) return absl::StrCat("tracefs is mounted at ", kTracefsMount);

  std::string where = "on the node";
  if (unshare(CLONE_NEWNS) == 0) {
    // Our mounts must not propagate back to the node's namespace.
    if (mount(nullptr, "/", nullptr, MS_REC | MS_SLAVE, nullptr) != 0) {
      return absl::ErrnoToStatus(errno, "making this process's new mount namespace a slave of the node's");
    }
    where = "in this process's own mount namespace (nothing stays mounted on the node)";
  }
  if (mount("tracefs", kTracefsMount, "tracefs", 0, nullptr) != 0) {
    return absl::ErrnoToStatus(
        errno, absl::StrCat("tracefs is not mounted and mounting it on ", kTracefsMount,
                            " failed; classic tracepoints cannot attach without it. Fix: run as root, or "
                            "mount -t tracefs tracefs ",
                            kTracefsMount));
  }
  if (!HasTracepointEvents(kTracefsMount)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "tracefs mounted on ", kTracefsMount, " has no events/: this kernel lacks CONFIG_FTRACE_SYSCALLS "
        "or tracepoint events"));
  }
  return absl::StrCat("tracefs was not mounted: mounted it on ", kTracefsMount, " ", where);
}

}  // namespace gputier
