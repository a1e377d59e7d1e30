// Mounts as /proc shows them, and what keeps one of them busy.
//
// Before the tier manager detaches an overlay (or reuses its upper layer in
// another stack) it has to know whether any process of the container still
// holds something inside it. FindMountReferences lists, for the given
// processes, everything that pins a mount:
//
//   - open fds:      /proc/<pid>/fdinfo/<n>, its "mnt_id:" line
//   - cwd and root:  statx(STATX_MNT_ID) of /proc/<pid>/cwd and /root
//   - mapped files:  statx(STATX_MNT_ID) of /proc/<pid>/map_files/<range>
//                    (an mmap of an overlay file reports the overlay's mount,
//                    not the layer's)
//
// Mount ids are the STATX_MNT_ID numbering, the first field of
// /proc/<pid>/mountinfo (not STATX_MNT_ID_UNIQUE). A process that exits while
// it is read is skipped, as is an fd or mapping that goes away; anything else
// that cannot be read (map_files needs CAP_SYS_ADMIN) is an error naming the
// process. Not covered: per-thread cwd/fd tables (CLONE_FS/CLONE_FILES not
// shared), bind mounts of a subdirectory elsewhere, and mounts stacked on or
// below the mount itself.
//
// ParseMountinfo reads /proc/<pid>/mountinfo text (pure, no syscalls).
#ifndef GPUTIER_LOADER_BASE_MOUNT_REFS_H_
#define GPUTIER_LOADER_BASE_MOUNT_REFS_H_

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace gputier {

// One line of /proc/<pid>/mountinfo, with every path-like field unescaped
// (the kernel writes space, tab, newline, '\\', ',' and '=' as \ooo).
struct MountinfoEntry {
  uint64_t mount_id = 0;
  uint64_t parent_id = 0;
  std::string root;         // the directory of the filesystem that is mounted
  std::string mount_point;  // relative to the reading process's root
  std::string fstype;       // "ext4", "overlay", "cgroup2"
  std::string source;
  std::vector<std::string> super_options;  // "upperdir=/x", "rw", one each
};

// Undoes the kernel's octal escapes (\040 -> ' '); anything else is kept.
std::string UnescapeMountinfo(absl::string_view field);

// Parses one mountinfo line; refuses a line without the " - " separator or
// with too few fields.
absl::StatusOr<MountinfoEntry> ParseMountinfoLine(absl::string_view line);

// Parses every non-empty line of a mountinfo file.
absl::StatusOr<std::vector<MountinfoEntry>> ParseMountinfo(absl::string_view text);

struct MountReference {
  pid_t pid = 0;
  std::string kind;    // "fd", "cwd", "root" or "map"
  std::string detail;  // "fd 5 -> /data/x", "cwd /data", "7f..-7f.. /data/y"
};

// Every reference that the processes `pids` hold into the mount `mount_id`,
// in the order of `pids`. Vanished processes are skipped.
absl::StatusOr<std::vector<MountReference>> FindMountReferences(
    const std::vector<pid_t>& pids, uint64_t mount_id);

}  // namespace gputier

#endif  // GPUTIER_LOADER_BASE_MOUNT_REFS_H_
