#include "loader/tier/fs/tier_partition.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "loader/base/fd.h"
#include "loader/base/read_file.h"
#include "loader/config/container_path.h"

namespace gputier {
namespace {

constexpr char kImageName[] = "partition.img";
constexpr char kMountName[] = "mnt";
constexpr uint64_t kExt4RootInode = 2;
constexpr unsigned kLoopMajor = 7;

// Reads a sysfs or procfs file whole (up to 4 MiB); "" when unreadable.
std::string ReadProcFile(const std::string& path) {
  return ReadFile(path, 0, 4u << 20).value_or("");
}

// The fast root and the directory name of paths.dir; refuses paths that
// PlanPartition did not make.
absl::Status SplitDir(const PartitionPaths& paths, std::string* root,
                      std::string* name) {
  size_t slash = paths.dir.rfind('/');
  bool ok = slash != std::string::npos && paths.dir[0] == '/' &&
            paths.image == absl::StrCat(paths.dir, "/", kImageName) &&
            paths.mount_point == absl::StrCat(paths.dir, "/", kMountName);
  if (ok) {
    *root = slash == 0 ? "/" : paths.dir.substr(0, slash);
    *name = paths.dir.substr(slash + 1);
    ok = ValidateTierKey(*name).ok();
  }
  if (ok) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "partition paths for '", paths.dir,
      "' are inconsistent; make them with PlanPartition"));
}

// Opens `name` below `parent` without following a symlink there. A missing
// entry is NotFound; a symlink or a wrong file type is FailedPrecondition.
absl::StatusOr<Fd> OpenNoFollow(int parent, const char* name,
                                const std::string& full, int flags) {
  int fd = openat(parent, name, flags | O_NOFOLLOW | O_CLOEXEC);
  if (fd >= 0) return Fd(fd);
  int err = errno;
  struct stat st;
  if ((err == ELOOP || err == ENOTDIR) &&
      fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "'", full, "' is ", S_ISLNK(st.st_mode) ? "a symlink" : "of the wrong type",
        ", which a tier partition never follows or uses; remove it"));
  }
  return absl::ErrnoToStatus(err, absl::StrCat("opening '", full, "'"));
}

// What exists of a partition; missing parts stay invalid / false.
struct Layout {
  std::string root_path, name;
  Fd root, dir, mnt;
  bool has_image = false;
  struct stat image;  // valid when has_image
};

absl::StatusOr<Layout> OpenLayout(const PartitionPaths& paths) {
  Layout l;
  if (absl::Status s = SplitDir(paths, &l.root_path, &l.name); !s.ok()) return s;
  l.root.Reset(open(l.root_path.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!l.root.valid()) {
    if (errno == ENOENT) return l;
    return absl::ErrnoToStatus(errno, absl::StrCat("opening fast root '", l.root_path, "'"));
  }
  absl::StatusOr<Fd> dir = OpenNoFollow(l.root.get(), l.name.c_str(), paths.dir,
                                        O_PATH | O_DIRECTORY);
  if (absl::IsNotFound(dir.status())) return l;
  if (!dir.ok()) return dir.status();
  l.dir = *std::move(dir);
  absl::StatusOr<Fd> mnt = OpenNoFollow(l.dir.get(), kMountName, paths.mount_point,
                                        O_PATH | O_DIRECTORY);
  if (mnt.ok()) {
    l.mnt = *std::move(mnt);
  } else if (!absl::IsNotFound(mnt.status())) {
    return mnt.status();
  }
  if (fstatat(l.dir.get(), kImageName, &l.image, AT_SYMLINK_NOFOLLOW) == 0) {
    if (!S_ISREG(l.image.st_mode)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "'", paths.image, "' is not a regular file (a symlink?); remove it"));
    }
    l.has_image = true;
  } else if (errno != ENOENT) {
    return absl::ErrnoToStatus(errno, absl::StrCat("stat of '", paths.image, "'"));
  }
  return l;
}

// The path the kernel shows for the image (symlinks in the fast root resolved).
std::string KernelPath(const Layout& l) {
  char buf[PATH_MAX];
  std::string link = absl::StrCat("/proc/self/fd/", l.dir.get());
  ssize_t n = readlink(link.c_str(), buf, sizeof(buf));
  if (n <= 0 || n >= static_cast<ssize_t>(sizeof(buf))) return "";
  return absl::StrCat(absl::string_view(buf, n), "/", kImageName);
}

// Whether loop device `index` is bound to the file `image` (dev + inode).
bool LoopBackedBy(int index, const struct stat& image) {
  Fd loop(open(absl::StrCat("/dev/loop", index).c_str(), O_RDONLY | O_CLOEXEC));
  struct loop_info64 info;
  if (!loop.valid() || ioctl(loop.get(), LOOP_GET_STATUS64, &info) != 0) return false;
  uint64_t d = info.lo_device;  // the kernel's new_encode_dev()
  unsigned maj = (d & 0xfff00) >> 8;
  unsigned min = (d & 0xff) | ((d >> 12) & 0xfff00);
  return maj == major(image.st_dev) && min == minor(image.st_dev) &&
         info.lo_inode == image.st_ino;
}

// Loop devices bound to the image: sysfs names candidates, the ioctl decides.
std::vector<int> LoopsBackedBy(const Layout& l) {
  std::vector<int> found;
  std::string path = KernelPath(l);
  DIR* d = opendir("/sys/block");
  if (d == nullptr || path.empty()) {
    if (d != nullptr) closedir(d);
    return found;
  }
  while (struct dirent* e = readdir(d)) {
    int index;
    if (!absl::StartsWith(e->d_name, "loop") ||
        !absl::SimpleAtoi(e->d_name + 4, &index)) {
      continue;
    }
    std::string backing = ReadProcFile(
        absl::StrCat("/sys/block/", e->d_name, "/loop/backing_file"));
    if (absl::StripTrailingAsciiWhitespace(backing) == path &&
        LoopBackedBy(index, l.image)) {
      found.push_back(index);
    }
  }
  closedir(d);
  return found;
}

std::string LoopNames(const std::vector<int>& loops) {
  return absl::StrJoin(loops, ", ", [](std::string* out, int i) {
    absl::StrAppend(out, "/dev/loop", i);
  });
}

// Replaces a freed loop device by a fresh one of the same number (best
// effort: EBUSY when someone took it meanwhile). Partitions set
// discard_max_bytes to 0 and this kernel refuses to raise it again on that
// device (discard_granularity drops to 0), so the next user would inherit
// discard off; a new device starts with the defaults.
void RenewLoopDevice(int index) {
  Fd ctl(open("/dev/loop-control", O_RDWR | O_CLOEXEC));
  if (ctl.valid() && ioctl(ctl.get(), LOOP_CTL_REMOVE, index) >= 0) {
    ioctl(ctl.get(), LOOP_CTL_ADD, index);  // EEXIST: GET_FREE made it already
  }
}

enum class MountState { kNone, kOurs, kForeign };

// What is mounted at the directory `mnt` (an fd opened after the mount); for
// kOurs the loop device's number lands in `*index`.
MountState StateAt(const Layout& l, dev_t* dev = nullptr, int* index = nullptr) {
  struct statx stx;
  if (statx(l.mnt.get(), "", AT_EMPTY_PATH, STATX_BASIC_STATS, &stx) != 0 ||
      !(stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) ||
      !(stx.stx_attributes & STATX_ATTR_MOUNT_ROOT)) {
    return MountState::kNone;
  }
  if (dev != nullptr) *dev = makedev(stx.stx_dev_major, stx.stx_dev_minor);
  if (!l.has_image || stx.stx_ino != kExt4RootInode || stx.stx_dev_major != kLoopMajor) {
    return MountState::kForeign;
  }
  // /sys/dev/block/7:M -> .../block/loopN (partition devices do not match).
  char buf[PATH_MAX];
  std::string link = absl::StrCat("/sys/dev/block/", stx.stx_dev_major, ":",
                                  stx.stx_dev_minor);
  ssize_t n = readlink(link.c_str(), buf, sizeof(buf) - 1);
  absl::string_view target(buf, n > 0 ? n : 0);
  target.remove_prefix(target.rfind('/') + 1);  // npos + 1 == 0
  int number;
  if (!absl::ConsumePrefix(&target, "loop") || !absl::SimpleAtoi(target, &number) ||
      !LoopBackedBy(number, l.image)) {
    return MountState::kForeign;
  }
  if (index != nullptr) *index = number;
  return MountState::kOurs;
}

// Who keeps the filesystem on `dev` busy: submounts and processes (cwd, root,
// open files), at most a few, for the error message. AT_STATX_DONT_SYNC: an
// open file on a dead NFS server must not hang the agent here.
std::string DescribeHolders(dev_t dev, const std::string& mount_point) {
  std::vector<std::string> holders;
  for (absl::string_view line :
       absl::StrSplit(ReadProcFile("/proc/self/mountinfo"), '\n')) {
    std::vector<absl::string_view> f = absl::StrSplit(line, ' ');
    if (f.size() > 4 && absl::StartsWith(f[4], absl::StrCat(mount_point, "/"))) {
      holders.push_back(absl::StrCat("a mount at ", f[4]));
    }
  }
  DIR* proc = opendir("/proc");
  while (proc != nullptr && holders.size() < 4) {
    struct dirent* e = readdir(proc);
    if (e == nullptr) break;
    int pid;
    if (!absl::SimpleAtoi(e->d_name, &pid)) continue;
    std::string base = absl::StrCat("/proc/", pid, "/");
    std::string comm(absl::StripTrailingAsciiWhitespace(ReadProcFile(base + "comm")));
    auto on_dev = [dev](const std::string& p) {
      struct statx stx;
      return statx(AT_FDCWD, p.c_str(), AT_STATX_DONT_SYNC, 0, &stx) == 0 &&
             makedev(stx.stx_dev_major, stx.stx_dev_minor) == dev;
    };
    std::string what;
    if (on_dev(base + "cwd")) what = "its working directory";
    if (on_dev(base + "root")) what = "its root";
    if (DIR* fds = opendir((base + "fd").c_str())) {
      while (struct dirent* fe = readdir(fds)) {
        if (what.empty() && fe->d_name[0] != '.' &&
            on_dev(absl::StrCat(base, "fd/", fe->d_name))) {
          what = "an open file";
        }
      }
      closedir(fds);
    }
    if (!what.empty()) {
      holders.push_back(absl::StrCat("process ", pid, " (", comm, ") has ", what, " there"));
    }
  }
  if (proc != nullptr) closedir(proc);
  if (holders.empty()) return "no holder found; an open fd of a short-lived process?";
  return absl::StrJoin(holders, "; ");
}

// Runs mkfs.ext4 on the open image (as /proc/self/fd/3 of the child). -m 0:
// no blocks reserved for root, so that statvfs' "available" is what the
// container can write (overlay writes to its upper layer with the mounter's,
// i.e. root's, credentials, which may use reserved blocks anyway).
absl::Status MakeExt4(int image_fd, const std::string& image) {
  // -b 4096: the loop device presents 4 KiB logical blocks (see BindLoop),
  // which a smaller filesystem block (mke2fs' choice for small images) cannot sit on.
  const char* argv[] = {"mkfs.ext4", "-q", "-F", "-b", "4096", "-m", "0", "-E",
                        "nodiscard,lazy_itable_init=1,lazy_journal_init=1,root_owner=0:0",
                        "/proc/self/fd/3", nullptr};
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) return absl::ErrnoToStatus(errno, "pipe for mkfs.ext4");
  Fd out_r(out[0]);
  // Above the fds the child sets up, so that dup2() cannot clobber them.
  Fd out_w(fcntl(out[1], F_DUPFD_CLOEXEC, 10));
  Fd img(fcntl(image_fd, F_DUPFD_CLOEXEC, 10));
  close(out[1]);
  if (!out_w.valid() || !img.valid()) return absl::ErrnoToStatus(errno, "dup for mkfs.ext4");
  pid_t child = fork();
  if (child < 0) return absl::ErrnoToStatus(errno, "fork for mkfs.ext4");
  if (child == 0) {
    int null = open("/dev/null", O_RDONLY);
    if (null < 0 || dup2(null, 0) < 0 || dup2(out_w.get(), 1) < 0 ||
        dup2(out_w.get(), 2) < 0 || dup2(img.get(), 3) < 0) {
      _exit(126);
    }
    execvp(argv[0], const_cast<char* const*>(argv));
    _exit(errno == ENOENT ? 127 : 126);
  }
  out_w.Reset();
  std::string output;
  char buf[1024];
  ssize_t n;
  while ((n = read(out_r.get(), buf, sizeof(buf))) != 0) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    if (output.size() < 4096) output.append(buf, n);
  }
  int status = 0;
  while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return absl::OkStatus();
  if (WIFEXITED(status) && WEXITSTATUS(status) == 127) {
    return absl::FailedPreconditionError(
        "mkfs.ext4 was not found in PATH; install e2fsprogs on the node");
  }
  return absl::InternalError(absl::StrCat(
      "mkfs.ext4 of '", image, "' failed (status ", status, ": ",
      absl::StripTrailingAsciiWhitespace(output), "); check the fast tier's filesystem"));
}

// Binds the image to a free loop device (AUTOCLEAR, direct I/O if possible).
absl::StatusOr<Fd> BindLoop(int image_fd, const std::string& image, int* index) {
  Fd ctl(open("/dev/loop-control", O_RDWR | O_CLOEXEC));
  if (!ctl.valid()) {
    return absl::ErrnoToStatus(errno, "opening /dev/loop-control (is the loop module loaded?)");
  }
  bool direct_io = true;
  int err = 0;
  for (int attempt = 0; attempt < 32; ++attempt) {
    int n = ioctl(ctl.get(), LOOP_CTL_GET_FREE);
    if (n < 0) return absl::ErrnoToStatus(errno, "LOOP_CTL_GET_FREE: no free loop device");
    Fd loop(open(absl::StrCat("/dev/loop", n).c_str(), O_RDWR | O_CLOEXEC));
    if (!loop.valid()) {
      err = errno;
      if (err == ENOENT || err == EBUSY) continue;  // not yet there / raced
      break;
    }
    struct loop_config config;
    std::memset(&config, 0, sizeof(config));
    config.fd = image_fd;
    config.info.lo_flags = LO_FLAGS_AUTOCLEAR | (direct_io ? LO_FLAGS_DIRECT_IO : 0);
    // 4 KiB logical blocks: with 512-byte ones the kernel cannot issue direct
    // I/O to a 4 KiB-block backing filesystem and the loop device runs at a
    // fraction of the disk's write throughput (docs/BENCHMARKS.md).
    config.block_size = direct_io ? 4096 : 0;
    if (ioctl(loop.get(), LOOP_CONFIGURE, &config) == 0) {
      *index = n;
      return loop;
    }
    err = errno;
    if (err == EINVAL && direct_io) {
      direct_io = false;  // the backing filesystem refuses O_DIRECT
      continue;
    }
    if (err != EBUSY) break;  // EBUSY: another loop user took it first
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return absl::ErrnoToStatus(err, absl::StrCat("attaching '", image,
                                               "' to a loop device; check dmesg"));
}

std::string FsLog(int fs_fd) {
  std::string log;
  char buf[512];
  ssize_t n;
  while ((n = read(fs_fd, buf, sizeof(buf))) > 0) {
    absl::StrAppend(&log, log.empty() ? "" : "; ",
                    absl::StripTrailingAsciiWhitespace(absl::string_view(buf, n)));
  }
  return log;
}

// Turns discard off on the bound loop device `index` and mounts it on
// `mnt_fd`.
absl::Status DisableDiscardAndMount(int index, int mnt_fd, const PartitionPaths& paths) {
  std::string dev = absl::StrCat("/dev/loop", index);
  std::string knob = absl::StrCat("/sys/block/loop", index, "/queue/discard_max_bytes");
  Fd k(open(knob.c_str(), O_WRONLY | O_CLOEXEC));
  if (!k.valid() || write(k.get(), "0", 1) != 1) {
    return absl::ErrnoToStatus(errno, absl::StrCat(
        "turning discard off via ", knob, " (needed so that the image of '",
        paths.dir, "' stays preallocated); check that sysfs is mounted rw"));
  }
  Fd fs(fsopen("ext4", FSOPEN_CLOEXEC));
  if (!fs.valid()) return absl::ErrnoToStatus(errno, "fsopen(ext4): is ext4 available?");
  if (fsconfig(fs.get(), FSCONFIG_SET_STRING, "source", dev.c_str(), 0) != 0 ||
      fsconfig(fs.get(), FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) != 0) {
    int err = errno;
    return absl::ErrnoToStatus(err, absl::StrCat(
        "mounting ", dev, " ('", paths.image, "') as ext4 (", FsLog(fs.get()),
        "); the image may be damaged: run e2fsck on it or create the partition again"));
  }
  Fd mnt(fsmount(fs.get(), FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV));
  if (!mnt.valid() || move_mount(mnt.get(), "", mnt_fd, "",
                                 MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("mounting ", dev, " on '",
                                                   paths.mount_point, "'"));
  }
  return absl::OkStatus();
}

// Binds the image to a loop device and mounts it. The loop fd is closed on
// return: AUTOCLEAR frees the device when the mount goes, or at once when
// mounting failed (and the device is then renewed, see RenewLoopDevice).
absl::Status BindAndMount(int image_fd, int mnt_fd, const PartitionPaths& paths) {
  int index = -1;
  absl::StatusOr<Fd> loop = BindLoop(image_fd, paths.image, &index);
  if (!loop.ok()) return loop.status();
  absl::Status mounted = DisableDiscardAndMount(index, mnt_fd, paths);
  if (!mounted.ok()) {
    loop->Reset();
    RenewLoopDevice(index);
  }
  return mounted;
}

// Creates the directory `name` (0700) below `parent` when missing and opens
// it (O_PATH, never through a symlink).
absl::StatusOr<Fd> MakeAndOpenDir(int parent, const char* name, const std::string& full) {
  if (mkdirat(parent, name, 0700) != 0 && errno != EEXIST) {
    return absl::ErrnoToStatus(errno, absl::StrCat("creating '", full, "'"));
  }
  return OpenNoFollow(parent, name, full, O_PATH | O_DIRECTORY);
}

absl::Status MakeAndMount(const PartitionPaths& paths, uint64_t size_bytes) {
  std::string root_path, name;
  if (absl::Status s = SplitDir(paths, &root_path, &name); !s.ok()) return s;
  Fd root(open(root_path.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root.valid()) {
    return absl::ErrnoToStatus(errno, absl::StrCat(
        "opening fast root '", root_path, "'; create it or fix the configured fast root"));
  }
  absl::StatusOr<Fd> dir = MakeAndOpenDir(root.get(), name.c_str(), paths.dir);
  if (!dir.ok()) return dir.status();
  absl::StatusOr<Fd> mnt = MakeAndOpenDir(dir->get(), kMountName, paths.mount_point);
  if (!mnt.ok()) return mnt.status();
  Fd image(openat(dir->get(), kImageName,
                  O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!image.valid()) {
    return absl::ErrnoToStatus(errno, absl::StrCat("creating '", paths.image, "'"));
  }
  if (fallocate(image.get(), 0, 0, static_cast<off_t>(size_bytes)) != 0) {
    int err = errno;
    if (err == ENOSPC) {
      absl::StatusOr<SpaceUsage> fast = FilesystemUsage(root_path);
      return absl::ResourceExhaustedError(absl::StrCat(
          "the fast tier at '", root_path, "' lacks room for a ", size_bytes,
          "-byte partition for '", paths.dir, "' (",
          fast.ok() ? absl::StrCat(fast->available_bytes) : "unknown",
          " bytes available); free space there or ask for a smaller partition"));
    }
    if (err == EFBIG) {
      return absl::InvalidArgumentError(absl::StrCat(
          "a ", size_bytes, "-byte partition for '", paths.dir, "' is larger than the fast "
          "tier's filesystem allows for one file; ask for a smaller partition"));
    }
    if (err == EOPNOTSUPP) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the filesystem of fast root '", root_path, "' cannot preallocate '",
          paths.image, "' (no fallocate); put the fast tier on ext4 or xfs"));
    }
    return absl::ErrnoToStatus(err, absl::StrCat("preallocating '", paths.image, "'"));
  }
  if (absl::Status s = MakeExt4(image.get(), paths.image); !s.ok()) return s;
  return BindAndMount(image.get(), mnt->get(), paths);
}

}  // namespace

absl::StatusOr<PartitionPaths> PlanPartition(absl::string_view fast_root,
                                             absl::string_view container_id) {
  if (fast_root.empty() || fast_root[0] != '/') {
    return absl::InvalidArgumentError(absl::StrCat(
        "fast root '", fast_root, "' is not an absolute path; configure it as '/...'"));
  }
  for (char c : fast_root) {
    if (c == ':' || c == ',' || c == '\0' || absl::ascii_isspace(c)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "fast root '", fast_root, "' contains ':', ',', a NUL or whitespace, which "
          "overlay mount options cannot carry; choose a path without them"));
    }
  }
  if (absl::Status s = ValidateTierKey(container_id); !s.ok()) return s;
  while (fast_root.size() > 1 && fast_root.back() == '/') fast_root.remove_suffix(1);
  PartitionPaths paths;
  paths.dir = absl::StrCat(fast_root == "/" ? "" : fast_root, "/", container_id);
  paths.image = absl::StrCat(paths.dir, "/", kImageName);
  paths.mount_point = absl::StrCat(paths.dir, "/", kMountName);
  if (paths.image.size() >= PATH_MAX) {
    return absl::InvalidArgumentError(absl::StrCat(
        "fast root '", fast_root, "' is too long for PATH_MAX; choose a shorter one"));
  }
  return paths;
}

absl::Status CreatePartition(const PartitionPaths& paths, uint64_t size_bytes) {
  if (size_bytes < kMinPartitionBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "partition size ", size_bytes, " bytes for '", paths.dir,
        "' is below the minimum; ask for at least ", kMinPartitionBytes, " bytes (16 MiB)"));
  }
  if (absl::Status s = ReleasePartition(paths); !s.ok()) return s;
  absl::Status made = MakeAndMount(paths, size_bytes);
  if (!made.ok()) ReleasePartition(paths).IgnoreError();  // leave nothing behind
  return made;
}

absl::Status AttachPartition(const PartitionPaths& paths) {
  absl::StatusOr<Layout> l = OpenLayout(paths);
  if (!l.ok()) return l.status();
  if (!l->has_image) {
    return absl::NotFoundError(absl::StrCat(
        "no partition image at '", paths.image, "'; create the partition instead"));
  }
  if (!l->mnt.valid()) {
    absl::StatusOr<Fd> mnt = MakeAndOpenDir(l->dir.get(), kMountName, paths.mount_point);
    if (!mnt.ok()) return mnt.status();
    l->mnt = *std::move(mnt);
  }
  MountState state = StateAt(*l);
  if (state == MountState::kOurs) return absl::OkStatus();
  if (state == MountState::kForeign) {
    return absl::FailedPreconditionError(absl::StrCat(
        "something other than '", paths.image, "' is mounted on '", paths.mount_point,
        "'; unmount it, then attach again"));
  }
  if (std::vector<int> loops = LoopsBackedBy(*l); !loops.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "'", paths.image, "' is still attached to ", LoopNames(loops),
        " (mounted elsewhere?); unmount or detach it, then attach again"));
  }
  absl::StatusOr<Fd> image = OpenNoFollow(l->dir.get(), kImageName, paths.image, O_RDWR);
  if (!image.ok()) return image.status();
  return BindAndMount(image->get(), l->mnt.get(), paths);
}

absl::StatusOr<bool> PartitionMounted(const PartitionPaths& paths) {
  absl::StatusOr<Layout> l = OpenLayout(paths);
  if (!l.ok()) return l.status();
  return l->has_image && l->mnt.valid() && StateAt(*l) == MountState::kOurs;
}

absl::Status ReleasePartition(const PartitionPaths& paths, PartitionRelease* what) {
  PartitionRelease done;
  if (what == nullptr) what = &done;
  *what = PartitionRelease{};
  absl::StatusOr<Layout> l = OpenLayout(paths);
  if (!l.ok()) return l.status();
  if (!l->dir.valid()) return absl::OkStatus();
  dev_t dev = 0;
  int index = -1;
  MountState state = l->mnt.valid() ? StateAt(*l, &dev, &index) : MountState::kNone;
  if (state == MountState::kForeign) {
    return absl::FailedPreconditionError(absl::StrCat(
        "'", paths.mount_point, "' holds a mount that is not '", paths.image,
        "'; unmount it by hand, then release again"));
  }
  if (state == MountState::kOurs) {
    l->mnt.Reset();  // an open fd on the mount would make it busy
    if (umount2(paths.mount_point.c_str(), UMOUNT_NOFOLLOW) != 0) {
      int err = errno;
      if (err == EBUSY) {
        return absl::FailedPreconditionError(absl::StrCat(
            "partition '", paths.mount_point, "' is busy (",
            DescribeHolders(dev, paths.mount_point),
            "); stop those users, then release again"));
      }
      return absl::ErrnoToStatus(err, absl::StrCat("unmounting '", paths.mount_point, "'"));
    }
    what->unmounted = true;
    what->loop_index = index;
  }
  if (l->has_image) {
    // AUTOCLEAR frees the loop device on its last close; give that a moment.
    std::vector<int> loops = LoopsBackedBy(*l);
    for (int i = 0; i < 200 && !loops.empty(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      loops = LoopsBackedBy(*l);
    }
    if (!loops.empty()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "'", paths.image, "' is still held by ", LoopNames(loops),
          " (an overlay using the partition, another mount of it or an open fd); "
          "remove those users, then release again"));
    }
    if (index >= 0) RenewLoopDevice(index);
    if (unlinkat(l->dir.get(), kImageName, 0) != 0 && errno != ENOENT) {
      return absl::ErrnoToStatus(errno, absl::StrCat("removing '", paths.image, "'"));
    }
    what->image_removed = true;
  }
  // Only empty directories go; anything else there is left alone.
  unlinkat(l->dir.get(), kMountName, AT_REMOVEDIR);
  l->dir.Reset();
  what->dir_removed = unlinkat(l->root.get(), l->name.c_str(), AT_REMOVEDIR) == 0 || errno == ENOENT;
  return absl::OkStatus();
}

absl::StatusOr<std::optional<AsidePartition>> SetPartitionAside(const PartitionPaths& paths) {
  absl::StatusOr<Layout> l = OpenLayout(paths);
  if (!l.ok()) return l.status();
  if (!l->dir.valid()) return std::nullopt;
  if (l->mnt.valid() && StateAt(*l) == MountState::kForeign) {
    return absl::FailedPreconditionError(absl::StrCat(
        "'", paths.mount_point, "' holds a mount that is not '", paths.image,
        "'; unmount it by hand, then release again"));
  }
  // Only gputier's own two entries move: anything else in the directory
  // stays where its owner put it (ReleasePartition leaves it alone).
  Fd list(openat(l->dir.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  DIR* d = list.valid() ? fdopendir(list.get()) : nullptr;
  if (d == nullptr) {
    return absl::ErrnoToStatus(errno, absl::StrCat("listing '", paths.dir, "'"));
  }
  (void)list.Release();  // closedir closes it
  std::string other;
  while (struct dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (name == "." || name == ".." || name == kImageName || name == kMountName) continue;
    other = name;
    break;
  }
  closedir(d);
  if (!other.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "'", paths.dir, "' holds '", other, "', which is not part of the partition; "
        "it is released in place instead"));
  }
  AsidePartition aside;
  aside.image_bytes = l->has_image ? static_cast<uint64_t>(l->image.st_blocks) * 512 : 0;
  static std::atomic<uint64_t> next{1};
  for (int attempt = 0; attempt < 1000; ++attempt) {
    const std::string name = absl::StrCat(kAsidePrefix, next.fetch_add(1));
    if (renameat2(l->root.get(), l->name.c_str(), l->root.get(), name.c_str(),
                  RENAME_NOREPLACE) == 0) {
      absl::StatusOr<PartitionPaths> moved = PlanPartition(l->root_path, name);
      if (!moved.ok()) return moved.status();
      aside.paths = *std::move(moved);
      return aside;
    }
    if (errno != EEXIST) {
      return absl::ErrnoToStatus(errno, absl::StrCat("renaming '", paths.dir, "' to '",
                                                     l->root_path, "/", name, "'"));
    }
  }
  return absl::ResourceExhaustedError(absl::StrCat(
      "no free '", kAsidePrefix, "<n>' name in '", l->root_path,
      "' after 1000 tries; remove the partitions set aside there"));
}

absl::StatusOr<std::vector<AsidePartition>> PartitionsSetAside(absl::string_view fast_root) {
  std::vector<AsidePartition> out;
  absl::StatusOr<PartitionPaths> probe = PlanPartition(fast_root, "probe");
  if (!probe.ok()) return probe.status();
  const std::string root = probe->dir.substr(0, probe->dir.rfind('/'));
  DIR* d = opendir(root.empty() ? "/" : root.c_str());
  if (d == nullptr) {
    if (errno == ENOENT) return out;
    return absl::ErrnoToStatus(errno, absl::StrCat("listing fast root '", fast_root, "'"));
  }
  std::vector<std::string> names;
  while (struct dirent* e = readdir(d)) {
    if (absl::StartsWith(e->d_name, kAsidePrefix)) names.push_back(e->d_name);
  }
  closedir(d);
  std::sort(names.begin(), names.end());
  for (const std::string& name : names) {
    absl::StatusOr<PartitionPaths> paths = PlanPartition(fast_root, name);
    if (!paths.ok()) continue;  // not a name SetPartitionAside makes
    absl::StatusOr<Layout> l = OpenLayout(*paths);
    if (!l.ok() || !l->dir.valid()) continue;  // not a directory: not ours
    AsidePartition aside;
    aside.paths = *std::move(paths);
    aside.image_bytes = l->has_image ? static_cast<uint64_t>(l->image.st_blocks) * 512 : 0;
    out.push_back(std::move(aside));
  }
  return out;
}

absl::StatusOr<SpaceUsage> PartitionUsage(const PartitionPaths& paths) {
  absl::StatusOr<Layout> l = OpenLayout(paths);
  if (!l.ok()) return l.status();
  if (!l->has_image || !l->mnt.valid() || StateAt(*l) != MountState::kOurs) {
    return absl::FailedPreconditionError(absl::StrCat(
        "partition '", paths.mount_point, "' is not mounted; attach or create it first"));
  }
  return FilesystemUsage(absl::StrCat("/proc/self/fd/", l->mnt.get()));
}

absl::StatusOr<SpaceUsage> FilesystemUsage(const std::string& dir) {
  struct statvfs vfs;
  if (statvfs(dir.c_str(), &vfs) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat(
        "statvfs of '", dir, "'; check that the directory exists"));
  }
  SpaceUsage usage;
  usage.total_bytes = static_cast<uint64_t>(vfs.f_blocks) * vfs.f_frsize;
  usage.used_bytes = static_cast<uint64_t>(vfs.f_blocks - vfs.f_bfree) * vfs.f_frsize;
  usage.available_bytes = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
  return usage;
}

}  // namespace gputier
