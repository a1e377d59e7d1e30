#include "loader/cgroup/cgroup_freezer.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "loader/base/fd.h"
#include "loader/base/read_file.h"
#include "loader/base/mount_refs.h"

namespace gputier {
namespace {

constexpr long kCgroup2Magic = 0x63677270;  // CGROUP2_SUPER_MAGIC

bool Gone(int err) { return err == ENOENT || err == ENODEV; }

std::string WhereCgroup2Is() {
  absl::StatusOr<std::string> root = Cgroup2Root();
  if (!root.ok()) return "the cgroup2 mount (none found in /proc/self/mountinfo)";
  return absl::StrCat("the cgroup2 mount ", *root);
}

absl::Status Missing(const std::string& dir) {
  return absl::NotFoundError(absl::StrCat(
      "cgroup ", dir, " does not exist (has the container exited?); give ",
      "its directory under ", WhereCgroup2Is(),
      " plus the \"0::\" path of /proc/<pid>/cgroup"));
}

// Opens the cgroup directory `dir`, refusing symlinks and anything that is
// not cgroup2.
absl::StatusOr<Fd> OpenCgroup(const std::string& dir) {
  if (dir.empty() || dir[0] != '/') {
    return absl::InvalidArgumentError(absl::StrCat(
        "cgroup directory '", dir, "' is not absolute; give the full path under ",
        WhereCgroup2Is()));
  }
  Fd fd(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) {
    int err = errno;
    if (err == ENOENT) return Missing(dir);
    if (err == ELOOP || err == ENOTDIR) {
      return absl::FailedPreconditionError(absl::StrCat(
          "cgroup ", dir, " is a symlink or not a directory; give the real "
          "directory under ", WhereCgroup2Is()));
    }
    return absl::ErrnoToStatus(err, absl::StrCat("opening cgroup ", dir));
  }
  struct statfs sfs;
  if (fstatfs(fd.get(), &sfs) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("statfs of cgroup ", dir));
  }
  if (sfs.f_type != kCgroup2Magic) {
    return absl::FailedPreconditionError(absl::StrCat(
        "'", dir, "' is not a cgroup2 directory (a cgroup v1 hierarchy?); give ",
        "the container's directory under ", WhereCgroup2Is()));
  }
  return fd;
}

// Opens a file of the cgroup. ENOENT means either the cgroup went away or
// the file does not exist there (the root cgroup has no cgroup.freeze).
absl::StatusOr<Fd> OpenCgroupFile(int dir_fd, const std::string& dir,
                                  const char* name, int flags) {
  Fd fd(openat(dir_fd, name, flags | O_NOFOLLOW | O_CLOEXEC));
  if (fd.valid()) return fd;
  int err = errno;
  if (Gone(err)) {
    struct stat st;
    if (lstat(dir.c_str(), &st) != 0) return Missing(dir);
    return absl::FailedPreconditionError(absl::StrCat(
        "cgroup ", dir, " has no ", name,
        " (is it the root cgroup? that one has no freezer; the freezer also "
        "needs Linux 5.2+); give the container's own cgroup"));
  }
  return absl::ErrnoToStatus(err, absl::StrCat("opening ", dir, "/", name));
}

// Writes "0" or "1" to cgroup.freeze; `*gone` says the cgroup vanished.
absl::Status WriteFreeze(int dir_fd, const std::string& dir, bool freeze,
                         bool* gone) {
  *gone = false;
  absl::StatusOr<Fd> file = OpenCgroupFile(dir_fd, dir, "cgroup.freeze", O_WRONLY);
  if (!file.ok()) {
    *gone = file.status().code() == absl::StatusCode::kNotFound;
    return file.status();
  }
  const char* value = freeze ? "1" : "0";
  if (write(file->get(), value, 1) != 1) {
    int err = errno;
    if (Gone(err)) {
      *gone = true;
      return Missing(dir);
    }
    return absl::ErrnoToStatus(
        err, absl::StrCat("writing ", value, " to ", dir, "/cgroup.freeze"));
  }
  return absl::OkStatus();
}

// Reads "frozen N" from an open cgroup.events.
absl::StatusOr<bool> ReadFrozen(int events_fd, const std::string& dir) {
  char buf[256];
  ssize_t n;
  do {
    n = pread(events_fd, buf, sizeof(buf) - 1, 0);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (Gone(errno)) return Missing(dir);
    return absl::ErrnoToStatus(errno, absl::StrCat("reading ", dir, "/cgroup.events"));
  }
  for (absl::string_view line :
       absl::StrSplit(absl::string_view(buf, static_cast<size_t>(n)), '\n')) {
    if (absl::ConsumePrefix(&line, "frozen ")) return absl::StripAsciiWhitespace(line) == "1";
  }
  return absl::FailedPreconditionError(absl::StrCat(
      dir, "/cgroup.events has no 'frozen' line; the cgroup v2 freezer needs Linux 5.2+"));
}

// Whether cgroup.freeze already asks for a freeze (someone else's, e.g.
// `runc pause`).
absl::StatusOr<bool> FreezeRequested(int dir_fd, const std::string& dir) {
  absl::StatusOr<Fd> file = OpenCgroupFile(dir_fd, dir, "cgroup.freeze", O_RDONLY);
  if (!file.ok()) return file.status();
  char buf[8] = {};
  ssize_t n = pread(file->get(), buf, sizeof(buf) - 1, 0);
  if (n < 0) {
    if (Gone(errno)) return Missing(dir);
    return absl::ErrnoToStatus(errno, absl::StrCat("reading ", dir, "/cgroup.freeze"));
  }
  return buf[0] == '1';
}

absl::Status CollectProcs(int dir_fd, const std::string& dir, bool top,
                          std::vector<pid_t>* out) {
  Fd procs(openat(dir_fd, "cgroup.procs", O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!procs.valid()) {
    if (!top && Gone(errno)) return absl::OkStatus();
    return absl::ErrnoToStatus(errno, absl::StrCat("opening ", dir, "/cgroup.procs"));
  }
  std::string text;
  if (int err = ReadAll(procs.get(), &text); err != 0) {
    if (!top && Gone(err)) return absl::OkStatus();
    return absl::ErrnoToStatus(err, absl::StrCat("reading ", dir, "/cgroup.procs"));
  }
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipWhitespace())) {
    pid_t pid = 0;
    if (absl::SimpleAtoi(line, &pid) && pid > 0) out->push_back(pid);
  }

  int list_fd = dup(dir_fd);
  DIR* children = list_fd >= 0 ? fdopendir(list_fd) : nullptr;
  if (children == nullptr) {
    if (list_fd >= 0) close(list_fd);
    return absl::ErrnoToStatus(errno, absl::StrCat("listing cgroup ", dir));
  }
  absl::Status status;
  while (struct dirent* entry = readdir(children)) {
    if (entry->d_type != DT_DIR || std::strcmp(entry->d_name, ".") == 0 ||
        std::strcmp(entry->d_name, "..") == 0) {
      continue;
    }
    std::string child_dir = absl::StrCat(dir, "/", entry->d_name);
    Fd child(openat(dir_fd, entry->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!child.valid()) {
      if (Gone(errno)) continue;
      status = absl::ErrnoToStatus(errno, absl::StrCat("opening cgroup ", child_dir));
      break;
    }
    status = CollectProcs(child.get(), child_dir, false, out);
    if (!status.ok()) break;
  }
  closedir(children);
  return status;
}

// FreezeCgroup; `*requested_before` says whether cgroup.freeze was "1"
// already, in which case a timeout leaves it so.
absl::Status FreezeAndWait(const std::string& dir, absl::Duration timeout,
                           bool* requested_before) {
  *requested_before = false;
  absl::StatusOr<Fd> cgroup = OpenCgroup(dir);
  if (!cgroup.ok()) return cgroup.status();
  // Opened before the write: a change after this open is never missed.
  absl::StatusOr<Fd> events =
      OpenCgroupFile(cgroup->get(), dir, "cgroup.events", O_RDONLY);
  if (!events.ok()) return events.status();
  absl::StatusOr<bool> requested = FreezeRequested(cgroup->get(), dir);
  if (!requested.ok()) return requested.status();
  *requested_before = *requested;
  bool gone = false;
  if (!*requested_before) {
    if (absl::Status s = WriteFreeze(cgroup->get(), dir, true, &gone); !s.ok()) return s;
  }

  auto deadline = std::chrono::steady_clock::now() +
                  absl::ToChronoNanoseconds(std::max(timeout, absl::ZeroDuration()));
  absl::Status failure;
  for (;;) {
    absl::StatusOr<bool> frozen = ReadFrozen(events->get(), dir);
    if (!frozen.ok()) {
      failure = frozen.status();
      break;
    }
    if (*frozen) return absl::OkStatus();
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      failure = absl::DeadlineExceededError(absl::StrCat(
          "cgroup ", dir, " did not freeze within ", absl::FormatDuration(timeout),
          " (a task in uninterruptible sleep, e.g. I/O on a hung device, delays "
          "freezing)", *requested_before ? "; it was frozen before and stays so"
                                         : "; it was thawed again",
          ": retry, or allow a longer timeout"));
      break;
    }
    // cgroup.events signals a change with POLLPRI; the 100 ms cap is only a
    // safety net.
    struct pollfd pfd = {events->get(), POLLPRI, 0};
    int wait_ms = static_cast<int>(std::min<int64_t>(left.count() + 1, 100));
    if (poll(&pfd, 1, wait_ms) < 0 && errno != EINTR) {
      failure = absl::ErrnoToStatus(errno, absl::StrCat("polling ", dir, "/cgroup.events"));
      break;
    }
  }
  if (*requested_before) return failure;
  absl::Status thawed = WriteFreeze(cgroup->get(), dir, false, &gone);
  if (gone) thawed = absl::OkStatus();
  if (!thawed.ok()) {
    return absl::Status(failure.code(),
                        absl::StrCat(failure.message(), "; thawing it failed too (",
                                     thawed.message(), "): write 0 to ", dir,
                                     "/cgroup.freeze"));
  }
  return failure;
}

}  // namespace

absl::Status FreezeCgroup(const std::string& dir, absl::Duration timeout) {
  bool requested_before = false;
  return FreezeAndWait(dir, timeout, &requested_before);
}

absl::Status ThawCgroup(const std::string& dir) {
  absl::StatusOr<Fd> cgroup = OpenCgroup(dir);
  if (!cgroup.ok()) {
    if (cgroup.status().code() == absl::StatusCode::kNotFound) return absl::OkStatus();
    return cgroup.status();
  }
  bool gone = false;
  absl::Status s = WriteFreeze(cgroup->get(), dir, false, &gone);
  return gone ? absl::OkStatus() : s;
}

absl::StatusOr<bool> CgroupFrozen(const std::string& dir) {
  absl::StatusOr<Fd> cgroup = OpenCgroup(dir);
  if (!cgroup.ok()) return cgroup.status();
  absl::StatusOr<Fd> events = OpenCgroupFile(cgroup->get(), dir, "cgroup.events", O_RDONLY);
  if (!events.ok()) return events.status();
  return ReadFrozen(events->get(), dir);
}

absl::StatusOr<std::vector<pid_t>> CgroupProcs(const std::string& dir) {
  absl::StatusOr<Fd> cgroup = OpenCgroup(dir);
  if (!cgroup.ok()) return cgroup.status();
  std::vector<pid_t> pids;
  if (absl::Status s = CollectProcs(cgroup->get(), dir, true, &pids); !s.ok()) return s;
  std::sort(pids.begin(), pids.end());
  pids.erase(std::unique(pids.begin(), pids.end()), pids.end());
  return pids;
}

absl::StatusOr<std::string> Cgroup2Root() {
  absl::StatusOr<std::string> text = ReadFile("/proc/self/mountinfo");
  if (!text.ok()) return text.status();
  absl::StatusOr<std::vector<MountinfoEntry>> mounts = ParseMountinfo(*text);
  if (!mounts.ok()) return mounts.status();
  for (const MountinfoEntry& mount : *mounts) {
    if (mount.fstype == "cgroup2") return mount.mount_point;
  }
  return absl::NotFoundError(
      "no cgroup2 mount in /proc/self/mountinfo; the freezer needs the cgroup v2 "
      "hierarchy (mount -t cgroup2 none /sys/fs/cgroup/unified, or boot with "
      "systemd.unified_cgroup_hierarchy=1)");
}

ScopedFreeze::ScopedFreeze(ScopedFreeze&& other) noexcept
    : dir_(std::move(other.dir_)), armed_(std::exchange(other.armed_, false)) {}

ScopedFreeze& ScopedFreeze::operator=(ScopedFreeze&& other) noexcept {
  if (this != &other) {
    if (armed_) (void)ThawCgroup(dir_);
    dir_ = std::move(other.dir_);
    armed_ = std::exchange(other.armed_, false);
  }
  return *this;
}

ScopedFreeze::~ScopedFreeze() {
  if (armed_) (void)ThawCgroup(dir_);
}

absl::StatusOr<ScopedFreeze> ScopedFreeze::Freeze(const std::string& dir,
                                                  absl::Duration timeout) {
  bool requested_before = false;
  if (absl::Status s = FreezeAndWait(dir, timeout, &requested_before); !s.ok()) return s;
  ScopedFreeze freeze(dir);
  freeze.armed_ = !requested_before;  // someone else's freeze is not ours to undo
  return freeze;
}

void ScopedFreeze::Keep() { armed_ = false; }

absl::Status ScopedFreeze::Thaw() {
  if (!armed_) return absl::OkStatus();
  armed_ = false;
  return ThawCgroup(dir_);
}

}  // namespace gputier
