#include "loader/gpu_use/gpu_context_scan.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "loader/base/fd.h"

namespace gputier {
namespace {

struct DirCloser {
  void operator()(DIR* d) const { closedir(d); }
};

// The pids of cgroup.procs, at most `max` (truncated set when there are more).
absl::StatusOr<std::vector<pid_t>> ReadProcs(const std::string& cgroup_dir, uint32_t max, bool* truncated) {
  const std::string path = absl::StrCat(cgroup_dir, "/cgroup.procs");
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return absl::ErrnoToStatus(errno, absl::StrCat("reading ", path));
  Fd closer(fd);
  // A pid is at most 7 digits and a newline.
  const size_t limit = static_cast<size_t>(max) * 8 + 8;
  std::string text;
  char buf[4096];
  while (text.size() < limit) {
    const ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return absl::ErrnoToStatus(errno, absl::StrCat("reading ", path));
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  std::vector<pid_t> pids;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    pid_t pid = 0;
    if (!absl::SimpleAtoi(line, &pid) || pid <= 0) continue;
    if (pids.size() == max) {
      *truncated = true;
      break;
    }
    pids.push_back(pid);
  }
  if (text.size() >= limit) *truncated = true;
  return pids;
}

}  // namespace

std::string ReadSmallFileAt(int dir_fd, const char* name, size_t max_bytes) {
  const int fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return "";
  Fd closer(fd);
  std::string text(max_bytes, '\0');
  size_t got = 0;
  while (got < max_bytes) {
    const ssize_t n = read(fd, text.data() + got, max_bytes - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  text.resize(got);
  return text;
}

absl::StatusOr<CgroupGpuScan> ScanCgroupGpuFds(const std::string& cgroup_dir,
                                               const std::string& relative,
                                               const GpuDeviceMatcher& matcher,
                                               const GpuScanLimits& limits,
                                               uint32_t* fd_budget) {
  CgroupGpuScan scan;
  absl::StatusOr<std::vector<pid_t>> pids = ReadProcs(cgroup_dir, limits.max_pids_per_cgroup, &scan.truncated);
  if (!pids.ok()) return pids.status();
  scan.pids_listed = static_cast<uint32_t>(pids->size());
  for (pid_t pid : *pids) {
    if (*fd_budget == 0) {
      scan.truncated = true;
      break;
    }
    const std::string proc = absl::StrCat("/proc/", pid);
    const int pid_fd = open(proc.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (pid_fd < 0) continue;  // gone
    Fd pid_closer(pid_fd);
    // Still this cgroup's process (not moved away, not a reused pid).
    std::optional<std::string> cg = CgroupV2PathOf(ReadSmallFileAt(pid_fd, "cgroup", 4096));
    if (!cg.has_value() || *cg != relative) continue;
    const int fd_dir = openat(pid_fd, "fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (fd_dir < 0) continue;
    std::unique_ptr<DIR, DirCloser> dir(fdopendir(fd_dir));
    if (dir == nullptr) {
      close(fd_dir);
      continue;
    }
    ++scan.pids_scanned;
    uint32_t examined = 0;
    while (dirent* e = readdir(dir.get())) {
      int fd = 0;
      if (!absl::SimpleAtoi(e->d_name, &fd) || fd < 0) continue;  // ".", ".."
      if (examined == limits.max_fds_per_pid || *fd_budget == 0) {
        scan.truncated = true;
        break;
      }
      ++examined;
      --*fd_budget;
      struct statx stx;
      // Through the magic link: the open file itself. DONT_SYNC: cached
      // attributes only (no FUSE/NFS round trip).
      if (statx(dirfd(dir.get()), e->d_name, AT_STATX_DONT_SYNC, STATX_TYPE, &stx) != 0) continue;
      if (!S_ISCHR(stx.stx_mode) || !matcher.Matches(stx.stx_rdev_major, stx.stx_rdev_minor)) continue;
      GpuFd g;
      g.pid = pid;
      g.fd = fd;
      g.major = stx.stx_rdev_major;
      g.minor = stx.stx_rdev_minor;
      char link[256];
      const ssize_t n = readlinkat(dirfd(dir.get()), e->d_name, link, sizeof(link));
      g.label = FdLabel(n > 0 ? absl::string_view(link, static_cast<size_t>(n)) : absl::string_view(),
                        g.major, g.minor);
      if (g.major == kDrmMajor) {
        const std::string name = absl::StrCat("fdinfo/", fd);
        g.drm = ParseDrmFdinfo(ReadSmallFileAt(pid_fd, name.c_str(), kMaxFdinfoBytes));
      }
      scan.fds.push_back(std::move(g));
    }
    scan.fds_examined += examined;
  }
  return scan;
}

}  // namespace gputier
