#include "tests/integration/host_mounts.h"

#include <dirent.h>
#include <sys/mount.h>

#include <algorithm>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "loader/base/mount_refs.h"
#include "tests/integration/agent_harness.h"
#include "tests/integration/runc_container.h"

namespace gputier::testing {

bool Below(const std::string& path, const std::string& dir) {
  return path == dir || absl::StartsWith(path, dir + "/");
}

std::vector<std::string> HostMountsUnder(const std::string& dir) {
  std::vector<std::string> out;
  absl::StatusOr<std::vector<MountinfoEntry>> mounts = ParseMountinfo(SlurpFile("/proc/self/mountinfo"));
  if (!mounts.ok()) return {"(mountinfo unreadable)"};
  for (const MountinfoEntry& m : *mounts) {
    if (Below(m.mount_point, dir)) out.push_back(m.mount_point);
  }
  return out;
}

std::vector<std::string> LoopsBackedUnder(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = opendir("/sys/block");
  if (d == nullptr) return out;
  while (struct dirent* e = readdir(d)) {
    if (!absl::StartsWith(e->d_name, "loop")) continue;
    std::string file(absl::StripTrailingAsciiWhitespace(
        SlurpFile(absl::StrCat("/sys/block/", e->d_name, "/loop/backing_file"))));
    if (Below(file, dir)) out.push_back(absl::StrCat(e->d_name, ": ", file));
  }
  closedir(d);
  return out;
}

std::vector<std::string> LosetupLinesUnder(const std::string& dir) {
  absl::StatusOr<CommandResult> r = RunCommand({"losetup", "-a"});
  if (!r.ok() || r->exit_code != 0) {
    return {absl::StrCat("(losetup -a failed: ", r.ok() ? r->output : std::string(r.status().message()), ")")};
  }
  std::vector<std::string> out;
  for (absl::string_view line : absl::StrSplit(r->output, '\n', absl::SkipEmpty())) {
    // "/dev/loop3: [2049]:1234 (/tmp/x/partition.img)"; a deleted file adds " (deleted)".
    if (absl::StrContains(line, absl::StrCat("(", dir, "/"))) out.emplace_back(line);
  }
  return out;
}

void UnmountAllUnder(const std::string& dir) {
  std::vector<std::string> mounts = HostMountsUnder(dir);
  std::sort(mounts.rbegin(), mounts.rend());
  for (const std::string& m : mounts) umount2(m.c_str(), MNT_DETACH);
}

std::string FindFileUnder(const std::string& root, const std::string& suffix, int depth) {
  if (absl::EndsWith(root, suffix)) return root;
  if (depth == 0) return "";
  DIR* d = opendir(root.c_str());
  if (d == nullptr) return "";
  std::string found;
  while (struct dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (name == "." || name == ".." || (e->d_type != DT_DIR && e->d_type != DT_REG)) continue;
    const std::string path = absl::StrCat(root, "/", name);
    if (e->d_type == DT_REG) {
      if (absl::EndsWith(path, suffix)) found = path;
    } else {
      found = FindFileUnder(path, suffix, depth - 1);
    }
    if (!found.empty()) break;
  }
  closedir(d);
  return found;
}

}  // namespace gputier::testing
