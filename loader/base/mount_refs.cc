#include "loader/base/mount_refs.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "loader/base/fd.h"
#include "loader/base/read_file.h"

namespace gputier {
namespace {

bool IsOctal(char c) { return c >= '0' && c <= '7'; }

// Reads a small /proc file relative to `dir_fd`; returns 0 or an errno.
int ReadAt(int dir_fd, const char* name, std::string* out) {
  Fd fd(openat(dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd.valid()) return errno;
  out->clear();
  return ReadAll(fd.get(), out);
}

std::string LinkAt(int dir_fd, const std::string& name) {
  char buf[PATH_MAX];
  ssize_t n = readlinkat(dir_fd, name.c_str(), buf, sizeof(buf));
  if (n <= 0) return "?";
  return std::string(buf, static_cast<size_t>(n));
}

// The mount id of what the magic link `name` in `dir_fd` points at, 0 when
// it is gone; an errno other than "gone" in `*err`.
uint64_t MountIdAt(int dir_fd, const char* name, int* err) {
  struct statx stx;
  std::memset(&stx, 0, sizeof(stx));
  *err = 0;
  if (statx(dir_fd, name, AT_STATX_DONT_SYNC, STATX_MNT_ID, &stx) != 0) {
    if (errno != ENOENT && errno != ESRCH) *err = errno;
    return 0;
  }
  return (stx.stx_mask & STATX_MNT_ID) ? stx.stx_mnt_id : 0;
}

bool Vanished(int err) { return err == ENOENT || err == ESRCH; }

absl::Status ProcError(int err, pid_t pid, absl::string_view what) {
  std::string fix = (err == EPERM || err == EACCES)
                        ? "; run as root (CAP_SYS_ADMIN and ptrace access are needed)"
                        : "";
  return absl::ErrnoToStatus(
      err, absl::StrCat("reading ", what, " of process ", pid, fix));
}

// Appends the references of one process; returns OK when it vanished.
absl::Status ReferencesOf(pid_t pid, uint64_t mount_id,
                          std::vector<MountReference>* out) {
  std::string base = absl::StrCat("/proc/", pid);
  Fd proc(open(base.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!proc.valid()) {
    if (Vanished(errno)) return absl::OkStatus();
    return ProcError(errno, pid, base);
  }

  for (const char* link : {"cwd", "root"}) {
    int err = 0;
    uint64_t id = MountIdAt(proc.get(), link, &err);
    if (err != 0) return ProcError(err, pid, link);
    if (id == mount_id) {
      out->push_back({pid, link, absl::StrCat(link, " ", LinkAt(proc.get(), link))});
    }
  }

  Fd fdinfo_fd(openat(proc.get(), "fdinfo", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fdinfo_fd.valid()) {
    if (Vanished(errno)) return absl::OkStatus();
    return ProcError(errno, pid, "fdinfo");
  }
  DIR* fdinfo = fdopendir(fdinfo_fd.Release());
  if (fdinfo == nullptr) return ProcError(errno, pid, "fdinfo");
  std::string text;
  while (struct dirent* entry = readdir(fdinfo)) {
    int n = 0;
    if (!absl::SimpleAtoi(entry->d_name, &n)) continue;  // "." and ".."
    int err = ReadAt(dirfd(fdinfo), entry->d_name, &text);
    if (Vanished(err)) continue;  // closed meanwhile
    if (err != 0) {
      closedir(fdinfo);
      return ProcError(err, pid, absl::StrCat("fdinfo/", n));
    }
    for (absl::string_view line : absl::StrSplit(text, '\n')) {
      uint64_t id = 0;
      if (absl::ConsumePrefix(&line, "mnt_id:") &&
          absl::SimpleAtoi(absl::StripAsciiWhitespace(line), &id) && id == mount_id) {
        out->push_back({pid, "fd",
                        absl::StrCat("fd ", n, " -> ",
                                     LinkAt(proc.get(), absl::StrCat("fd/", n)))});
      }
    }
  }
  closedir(fdinfo);

  Fd maps_fd(openat(proc.get(), "map_files", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!maps_fd.valid()) {
    if (Vanished(errno)) return absl::OkStatus();
    return ProcError(errno, pid, "map_files");
  }
  DIR* maps = fdopendir(maps_fd.Release());
  if (maps == nullptr) return ProcError(errno, pid, "map_files");
  while (struct dirent* entry = readdir(maps)) {
    if (entry->d_name[0] == '.') continue;
    int err = 0;
    uint64_t id = MountIdAt(dirfd(maps), entry->d_name, &err);
    if (err != 0) {
      closedir(maps);
      return ProcError(err, pid, absl::StrCat("map_files/", entry->d_name));
    }
    if (id == mount_id) {
      out->push_back({pid, "map",
                      absl::StrCat(entry->d_name, " ",
                                   LinkAt(dirfd(maps), entry->d_name))});
    }
  }
  closedir(maps);
  return absl::OkStatus();
}

}  // namespace

std::string UnescapeMountinfo(absl::string_view field) {
  std::string out;
  out.reserve(field.size());
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size() && IsOctal(field[i + 1]) &&
        IsOctal(field[i + 2]) && IsOctal(field[i + 3])) {
      out += static_cast<char>(((field[i + 1] - '0') << 6) | ((field[i + 2] - '0') << 3) |
                               (field[i + 3] - '0'));
      i += 3;
    } else {
      out += field[i];
    }
  }
  return out;
}

absl::StatusOr<MountinfoEntry> ParseMountinfoLine(absl::string_view line) {
  size_t dash = line.find(" - ");
  if (dash == absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("mountinfo line without ' - ' separator: '", line, "'"));
  }
  std::vector<absl::string_view> head =
      absl::StrSplit(line.substr(0, dash), ' ', absl::SkipEmpty());
  std::vector<absl::string_view> tail =
      absl::StrSplit(line.substr(dash + 3), ' ', absl::SkipEmpty());
  MountinfoEntry entry;
  if (head.size() < 6 || tail.size() < 2 || !absl::SimpleAtoi(head[0], &entry.mount_id) ||
      !absl::SimpleAtoi(head[1], &entry.parent_id)) {
    return absl::InvalidArgumentError(
        absl::StrCat("malformed mountinfo line: '", line, "'"));
  }
  entry.root = UnescapeMountinfo(head[3]);
  entry.mount_point = UnescapeMountinfo(head[4]);
  entry.fstype = UnescapeMountinfo(tail[0]);
  entry.source = UnescapeMountinfo(tail[1]);
  if (tail.size() > 2) {
    for (absl::string_view option : absl::StrSplit(tail[2], ',', absl::SkipEmpty())) {
      entry.super_options.push_back(UnescapeMountinfo(option));
    }
  }
  return entry;
}

absl::StatusOr<std::vector<MountinfoEntry>> ParseMountinfo(absl::string_view text) {
  std::vector<MountinfoEntry> entries;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipWhitespace())) {
    absl::StatusOr<MountinfoEntry> entry = ParseMountinfoLine(line);
    if (!entry.ok()) return entry.status();
    entries.push_back(*std::move(entry));
  }
  return entries;
}

absl::StatusOr<std::vector<MountReference>> FindMountReferences(
    const std::vector<pid_t>& pids, uint64_t mount_id) {
  std::vector<MountReference> refs;
  for (pid_t pid : pids) {
    if (pid <= 0) {
      return absl::InvalidArgumentError(absl::StrCat("pid ", pid, " is not a process id"));
    }
    if (absl::Status s = ReferencesOf(pid, mount_id, &refs); !s.ok()) return s;
  }
  return refs;
}

}  // namespace gputier
