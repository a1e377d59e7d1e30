#include "tests/integration/runtime_container.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>

#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "loader/base/mount_refs.h"
#include "tests/integration/agent_harness.h"

namespace gputier::testing {
namespace {

// Mount points of every cgroup hierarchy (v1 controllers and cgroup2).
std::vector<std::string> CgroupMounts() {
  std::vector<std::string> out;
  absl::StatusOr<std::vector<MountinfoEntry>> mounts = ParseMountinfo(SlurpFile("/proc/self/mountinfo"));
  if (!mounts.ok()) return out;
  for (const MountinfoEntry& m : *mounts) {
    if (m.fstype == "cgroup" || m.fstype == "cgroup2") out.push_back(m.mount_point);
  }
  return out;
}

}  // namespace

bool RuntimeContainer::WaitExited(std::chrono::milliseconds timeout) const {
  return WaitFor(
      [&] {
        absl::StatusOr<bool> exited = Exited();
        return exited.ok() && *exited;
      },
      timeout, std::chrono::milliseconds(100));
}

absl::StatusOr<std::string> OutputIfExitedZero(const absl::StatusOr<CommandResult>& result,
                                               const std::string& command) {
  if (!result.ok()) return result.status();
  if (result->exit_code != 0) {
    return absl::InternalError(absl::StrCat(command, " exited ", result->exit_code, ": ", result->output));
  }
  return result->output;
}

std::string CgroupOfPid(pid_t pid) {
  for (absl::string_view line : absl::StrSplit(SlurpFile(absl::StrCat("/proc/", pid, "/cgroup")), '\n')) {
    if (absl::ConsumePrefix(&line, "0::")) return std::string(line);
  }
  return "";
}

std::vector<pid_t> CgroupPids(const std::string& relative) {
  std::vector<pid_t> out;
  for (const std::string& m : CgroupMounts()) {
    for (absl::string_view line : absl::StrSplit(SlurpFile(m + relative + "/cgroup.procs"), '\n')) {
      pid_t pid = 0;
      if (absl::SimpleAtoi(line, &pid) && std::find(out.begin(), out.end(), pid) == out.end()) out.push_back(pid);
    }
  }
  return out;
}

std::vector<std::string> ExistingCgroupDirs(const std::vector<std::string>& relative) {
  std::vector<std::string> out;
  const std::vector<std::string> mounts = CgroupMounts();
  for (const std::string& r : relative) {
    for (const std::string& m : mounts) {
      if (PathExists(m + r)) {
        out.push_back(r);
        break;
      }
    }
  }
  return out;
}

std::vector<std::string> CgroupDirsNow(const std::vector<std::string>& relative) {
  std::vector<std::string> out;
  for (const std::string& m : CgroupMounts()) {
    for (const std::string& r : relative) {
      if (PathExists(m + r)) out.push_back(m + r);
    }
  }
  return out;
}

void RemoveCgroupDirs(const std::vector<std::string>& relative, const std::vector<std::string>& existed_before) {
  // Longest first: a child before its parent.
  std::vector<std::string> ours = relative;
  std::sort(ours.begin(), ours.end(), [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  // A runtime's last process (a shim, conmon, the exit cleanup conmon runs)
  // may still be leaving its cgroup when the container is gone: EBUSY is
  // retried for up to 20 s per cgroup; one still in use by anyone after that
  // stays.
  for (const std::string& m : CgroupMounts()) {
    for (const std::string& r : ours) {
      // Only what was not there before, hierarchy by hierarchy.
      if (std::find(existed_before.begin(), existed_before.end(), m + r) != existed_before.end()) continue;
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
      while (rmdir((m + r).c_str()) != 0 && errno == EBUSY && std::chrono::steady_clock::now() < deadline) {
        usleep(50 * 1000);
      }
    }
  }
}

}  // namespace gputier::testing
