#include "loader/tier_path.h"

#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "loader/utf8.h"

namespace gputier {

absl::StatusOr<ContainerPath> ParseContainerPath(absl::string_view path) {
  if (path.empty() || path[0] != '/') {
    return absl::InvalidArgumentError(absl::StrCat(
        "container path '", path, "' is not absolute; write it as '/",
        path, "'"));
  }
  if (path.find('\0') != absl::string_view::npos) {
    return absl::InvalidArgumentError("container path contains a NUL byte");
  }
  // Recorded in JSON and shown in logs: printable UTF-8 only.
  bool printable = IsValidUtf8(path);
  for (char c : path) printable = printable && static_cast<unsigned char>(c) >= 0x20 && c != 0x7f;
  if (!printable) {
    return absl::InvalidArgumentError(absl::StrCat(
        "container path '", EscapeControlAndInvalid(path),
        "' holds a control character or bytes that are not UTF-8; give a printable UTF-8 path"));
  }
  if (path.size() >= PATH_MAX) {
    return absl::InvalidArgumentError(absl::StrCat(
        "container path is ", path.size(), " bytes; the limit is ",
        PATH_MAX - 1));
  }
  std::vector<absl::string_view> parts;
  for (absl::string_view part : absl::StrSplit(path, '/', absl::SkipEmpty())) {
    if (part == ".") continue;
    if (part == "..") {
      return absl::InvalidArgumentError(absl::StrCat(
          "container path '", path,
          "' contains '..'; give the directory without '..'"));
    }
    parts.push_back(part);
  }
  if (parts.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "container path '", path,
        "' is the container's root; only a directory below it can be tiered"));
  }
  return ContainerPath{absl::StrCat("/", absl::StrJoin(parts, "/"))};
}

std::string EscapeContainerPath(const ContainerPath& path) {
  std::string out;
  for (char c : absl::string_view(path.path).substr(1)) {
    if (c == '%') {
      out += "%25";
    } else if (c == '/') {
      out += "%2F";
    } else {
      out += c;
    }
  }
  return out;
}

absl::Status ValidateContainerId(absl::string_view id) {
  bool ok = !id.empty() && id.size() <= 128 && id != "." && id != "..";
  for (char c : id) {
    bool allowed = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                   (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
    ok = ok && allowed;
  }
  if (ok) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "container id '", id,
      "' cannot name a tier directory; use 1-128 bytes of [A-Za-z0-9_.-], "
      "not '.' or '..'"));
}

absl::StatusOr<Fd> OpenContainerRoot(pid_t pid) {
  std::string proc_root = absl::StrCat("/proc/", pid, "/root");
  int fd = open(proc_root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    return absl::ErrnoToStatus(
        errno, absl::StrCat("opening ", proc_root,
                            " (is process ", pid, " still running?)"));
  }
  return Fd(fd);
}

// O_NOFOLLOW | O_DIRECTORY reports a symlink as the last component with
// ENOTDIR; say which of the two it was (the answer is only for the message).
std::string DescribeNotDirectory(int root_fd, const std::string& relative,
                                 struct open_how how) {
  how.flags = O_PATH | O_NOFOLLOW | O_CLOEXEC;
  long fd = syscall(SYS_openat2, root_fd, relative.c_str(), &how, sizeof(how));
  if (fd >= 0) {
    struct stat st;
    bool link = fstat(static_cast<int>(fd), &st) == 0 && S_ISLNK(st.st_mode);
    close(static_cast<int>(fd));
    if (link) return "it is a symlink, which tiering never follows";
    return "it is not a directory";
  }
  return "a component of it is not a directory";
}

absl::StatusOr<Fd> OpenContainerDirectory(int root_fd,
                                                const ContainerPath& path) {
  struct open_how how;
  std::memset(&how, 0, sizeof(how));
  how.flags = O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
  how.resolve =
      RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  // Relative to root_fd: with RESOLVE_IN_ROOT a leading "/" would mean the
  // same thing, but a relative name keeps the intent obvious.
  std::string relative = path.path.substr(1);
  long fd = syscall(SYS_openat2, root_fd, relative.c_str(), &how, sizeof(how));
  if (fd < 0) {
    int err = errno;
    std::string why;
    switch (err) {
      case ELOOP:
        why = "a component of it is a symlink, which tiering never follows";
        break;
      case ENOTDIR:
        why = DescribeNotDirectory(root_fd, relative, how);
        break;
      case ENOENT:
        why = "it does not exist (or vanished)";
        break;
      case EXDEV:
        why = "resolving it would leave the container's root";
        break;
      case EAGAIN:
        why = "the container's tree changed while it was resolved; retry";
        break;
      default:
        why = std::strerror(err);
    }
    return absl::ErrnoToStatus(
        err, absl::StrCat("container path '", path.path, "' refused: ", why));
  }
  Fd dir(static_cast<int>(fd));
  struct stat st;
  if (fstat(dir.get(), &st) != 0) {
    return absl::ErrnoToStatus(
        errno, absl::StrCat("stat of container path '", path.path, "'"));
  }
  if (!S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "container path '", path.path, "' refused: it is not a directory"));
  }
  return dir;
}

}  // namespace gputier
