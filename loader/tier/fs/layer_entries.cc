#include "loader/tier/fs/layer_entries.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "loader/base/fd.h"

namespace gputier {
namespace {

// The record getdents64 fills in (linux_dirent64).
struct LinuxDirent64 {
  uint64_t d_ino;
  int64_t d_off;
  unsigned short d_reclen;
  unsigned char d_type;
  char d_name[];
};

}  // namespace

int StatEntry(int dirfd, const std::string& name, EntryFacts* facts) {
  struct statx stx;
  int flags = AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT | AT_STATX_SYNC_AS_STAT;
  if (name.empty()) flags |= AT_EMPTY_PATH;
  if (statx(dirfd, name.c_str(), flags, STATX_BASIC_STATS | STATX_MNT_ID, &stx) != 0) {
    return errno;
  }
  facts->mode = stx.stx_mode;
  facts->uid = stx.stx_uid;
  facts->gid = stx.stx_gid;
  facts->size = stx.stx_size;
  facts->blocks = stx.stx_blocks;
  facts->ino = stx.stx_ino;
  facts->nlink = stx.stx_nlink;
  facts->dev = makedev(stx.stx_dev_major, stx.stx_dev_minor);
  facts->rdev = makedev(stx.stx_rdev_major, stx.stx_rdev_minor);
  facts->atime = {static_cast<time_t>(stx.stx_atime.tv_sec),
                  static_cast<long>(stx.stx_atime.tv_nsec)};
  facts->mtime = {static_cast<time_t>(stx.stx_mtime.tv_sec),
                  static_cast<long>(stx.stx_mtime.tv_nsec)};
  facts->mnt_id = (stx.stx_mask & STATX_MNT_ID) ? stx.stx_mnt_id : 0;
  return 0;
}

bool SameMount(const EntryFacts& a, const EntryFacts& b) {
  if (a.dev != b.dev) return false;
  return a.mnt_id == 0 || b.mnt_id == 0 || a.mnt_id == b.mnt_id;
}

bool IsWhiteoutDevice(const EntryFacts& facts) {
  return S_ISCHR(facts.mode) && facts.rdev == makedev(0, 0);
}

absl::StatusOr<std::vector<DirEntry>> ReadDirectory(int dirfd) {
  if (lseek(dirfd, 0, SEEK_SET) < 0) return absl::ErrnoToStatus(errno, "rewinding directory");
  std::vector<DirEntry> entries;
  alignas(LinuxDirent64) char buf[32768];
  while (true) {
    long n = syscall(SYS_getdents64, dirfd, buf, sizeof(buf));
    if (n < 0) return absl::ErrnoToStatus(errno, "getdents64");
    if (n == 0) break;
    for (long off = 0; off < n;) {
      auto* d = reinterpret_cast<LinuxDirent64*>(buf + off);
      off += d->d_reclen;
      if (std::strcmp(d->d_name, ".") == 0 || std::strcmp(d->d_name, "..") == 0) continue;
      entries.push_back(DirEntry{d->d_name, d->d_type});
    }
  }
  std::sort(entries.begin(), entries.end(),
            [](const DirEntry& a, const DirEntry& b) { return a.name < b.name; });
  return entries;
}

// True when directory `fd` is `ancestor` or lies below it (walking "..").
absl::StatusOr<bool> IsAtOrBelow(int fd, const EntryFacts& ancestor) {
  Fd cur(openat(fd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!cur.valid()) return absl::ErrnoToStatus(errno, "open");
  for (int depth = 0; depth < 4096; ++depth) {
    EntryFacts f;
    if (int err = StatEntry(cur.get(), "", &f); err != 0) return absl::ErrnoToStatus(err, "statx");
    if (f.dev == ancestor.dev && f.ino == ancestor.ino) return true;
    Fd parent(openat(cur.get(), "..", O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!parent.valid()) return absl::ErrnoToStatus(errno, "open ..");
    EntryFacts p;
    if (int err = StatEntry(parent.get(), "", &p); err != 0) return absl::ErrnoToStatus(err, "statx");
    if (p.dev == f.dev && p.ino == f.ino) return false;  // reached "/"
    cur = std::move(parent);
  }
  return false;
}

}  // namespace gputier
