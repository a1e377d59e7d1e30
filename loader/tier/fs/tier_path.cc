#include "loader/tier/fs/tier_path.h"

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

namespace gputier {

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
