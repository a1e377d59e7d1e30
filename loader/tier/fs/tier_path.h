// Where a tiered directory of a running container is, resolved safely.
//
// A container path ("/data") names a directory inside the container's root
// filesystem. The container controls that filesystem, so it may replace
// "/data" with a symlink to "/" or "../../.." or "/proc/1/root/etc" at any
// moment, hoping the agent (root in the host namespace) will mount over, or
// write to, a host directory instead. The rules, in one place:
//
//   - The path is checked as a string first (ParseContainerPath, pure): it
//     must be absolute, free of "..", NUL and empty; "." and repeated
//     slashes are normalised away; "/" itself can never be tiered.
//   - It is then opened relative to the container's root (an O_PATH fd of
//     /proc/<pid>/root) with openat2(RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS |
//     RESOLVE_NO_MAGICLINKS) and O_PATH | O_DIRECTORY | O_NOFOLLOW: no
//     component may be a symlink (not even one that would stay inside the
//     root), and the last one must be a directory. Anything else is refused
//     with a Status naming the container path.
//   - Mount points inside the container are crossed (no RESOLVE_NO_XDEV): a
//     volume mounted at /data is a legitimate target.
//
// Everything after resolution works on the returned fd, never on the path
// string again.
#ifndef GPUTIER_LOADER_TIER_FS_TIER_PATH_H_
#define GPUTIER_LOADER_TIER_FS_TIER_PATH_H_

#include <sys/types.h>

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "loader/config/container_path.h"
#include "loader/base/fd.h"

namespace gputier {

// Opens /proc/<pid>/root as an O_PATH directory fd: the root of that
// process's filesystem view, in its own mount namespace.
absl::StatusOr<Fd> OpenContainerRoot(pid_t pid);

// Opens `path` inside the root `root_fd` by the rules above and returns an
// O_PATH fd of the directory.
absl::StatusOr<Fd> OpenContainerDirectory(int root_fd,
                                                const ContainerPath& path);

}  // namespace gputier

#endif  // GPUTIER_LOADER_TIER_FS_TIER_PATH_H_
