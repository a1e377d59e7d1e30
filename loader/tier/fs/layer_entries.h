// Reading the entries of a layer directory: fd-relative, never
// following a symlink, never crossing into another mount. Used by the
// write-back (tier_writeback.h).
#ifndef GPUTIER_LOADER_TIER_FS_LAYER_ENTRIES_H_
#define GPUTIER_LOADER_TIER_FS_LAYER_ENTRIES_H_

#include <sys/types.h>
#include <time.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace gputier {

// What statx says about one entry (the entry itself, never a symlink's
// target).
struct EntryFacts {
  mode_t mode = 0;
  uid_t uid = 0;
  gid_t gid = 0;
  uint64_t size = 0;
  uint64_t blocks = 0;  // 512-byte units
  uint64_t ino = 0;
  uint64_t nlink = 0;
  dev_t dev = 0;   // the filesystem it lives on
  dev_t rdev = 0;  // devices only
  struct timespec atime = {};
  struct timespec mtime = {};
  uint64_t mnt_id = 0;  // 0 when the kernel does not report it (< 5.8)
};

// statx of `name` below `dirfd` (AT_SYMLINK_NOFOLLOW, AT_NO_AUTOMOUNT), or of
// `dirfd` itself when `name` is empty. Returns 0 or the errno.
int StatEntry(int dirfd, const std::string& name, EntryFacts* facts);

// True when both entries are on the same mount (mount id where the kernel
// reports it, and the same st_dev).
bool SameMount(const EntryFacts& a, const EntryFacts& b);

// An overlayfs whiteout in its classic form: a character device 0:0.
bool IsWhiteoutDevice(const EntryFacts& facts);

struct DirEntry {
  std::string name;
  unsigned char type = 0;  // DT_* from getdents64; DT_UNKNOWN when not known
};

// All entries of the directory `dirfd` except "." and "..", sorted by name.
// Reads from offset 0; moves the fd's position.
absl::StatusOr<std::vector<DirEntry>> ReadDirectory(int dirfd);

// True when directory `fd` is the directory `ancestor` or lies below it
// (walking ".." up to "/").
absl::StatusOr<bool> IsAtOrBelow(int fd, const EntryFacts& ancestor);

}  // namespace gputier

#endif  // GPUTIER_LOADER_TIER_FS_LAYER_ENTRIES_H_
