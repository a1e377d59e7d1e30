#include "loader/observe/pin_dir.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace gputier {
namespace {

constexpr long kBpfFsMagic = 0xcafe4a11;
constexpr char kBpfMount[] = "/sys/fs/bpf";

bool OnBpfFs(const std::string& path) {
  struct statfs st;
  return statfs(path.c_str(), &st) == 0 && st.f_type == kBpfFsMagic;
}

// The nearest existing ancestor of `path` (or path itself).
std::string ExistingAncestor(std::string path) {
  struct stat st;
  while (!path.empty() && stat(path.c_str(), &st) != 0) {
    size_t slash = path.find_last_of('/');
    path = slash == 0 ? "/" : path.substr(0, slash);
    if (path == "/") break;
  }
  return path;
}

}  // namespace

absl::Status EnsurePinDir(const std::string& pin_dir) {
  if (pin_dir.empty() || pin_dir[0] != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("--pin-dir=", pin_dir, " is not an absolute path; pass a directory under /sys/fs/bpf"));
  }
  std::string base = ExistingAncestor(pin_dir);
  if (!OnBpfFs(base)) {
    const bool under_default = absl::StartsWith(pin_dir, absl::StrCat(kBpfMount, "/"));
    if (!under_default) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "--pin-dir=%s is not on a bpf filesystem; mount one (mount -t bpf bpf DIR) or use a "
          "directory under %s",
          pin_dir, kBpfMount));
    }
    if (mount("bpf", kBpfMount, "bpf", 0, "mode=0700") != 0) {
      return absl::ErrnoToStatus(errno, absl::StrCat("mounting bpffs on ", kBpfMount));
    }
  }
  // mkdir -p, 0700: pins are root's.
  for (size_t pos = 1; pos <= pin_dir.size(); ++pos) {
    if (pos != pin_dir.size() && pin_dir[pos] != '/') continue;
    std::string part = pin_dir.substr(0, pos);
    if (mkdir(part.c_str(), 0700) != 0 && errno != EEXIST) {
      return absl::ErrnoToStatus(errno, absl::StrCat("creating pin directory ", part));
    }
  }
  if (!OnBpfFs(pin_dir)) {
    return absl::FailedPreconditionError(
        absl::StrCat(pin_dir, " is not on a bpf filesystem; choose a --pin-dir under /sys/fs/bpf"));
  }
  return absl::OkStatus();
}

absl::StatusOr<Fd> LockPinDir(const std::string& pin_dir) {
  int fd = open(pin_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return absl::ErrnoToStatus(errno, absl::StrCat("opening ", pin_dir));
  Fd owned(fd);
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "another gputierd is using %s; stop it first, or give this one its own --pin-dir",
          pin_dir));
    }
    return absl::ErrnoToStatus(errno, absl::StrCat("locking ", pin_dir));
  }
  return owned;
}

}  // namespace gputier
