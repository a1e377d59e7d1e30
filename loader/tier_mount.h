// Puts a directory of a running container on a storage tier, live.
//
// MountTier(request) turns the container's "/data" into an overlay whose
// lower layer is what "/data" held until now and whose upper layer is a
// directory under a tier root on the host:
//
//   <tier_root>/<container_id>/<escaped path>/upper   new and changed files
//   <tier_root>/<container_id>/<escaped path>/work    overlayfs work dir
//
// The path inside the container does not change; files already there stay
// readable; every new write lands in `upper`. How:
//
//   1. The container path is resolved safely (tier_path.h) from the host,
//      giving an O_PATH fd of the directory in the container's mount tree.
//   2. A forked child enters the container's mount namespace
//      (setns(/proc/<pid>/ns/mnt)) and clones that directory into a detached
//      mount (open_tree(OPEN_TREE_CLONE)), handed back over a socket.
//   3. The agent builds the overlay in its own namespace with the new mount
//      API only (fsopen("overlay"), fsconfig lowerdir/upperdir/workdir,
//      FSCONFIG_CMD_CREATE, fsmount): a detached mount.
//   4. A second forked child enters the container's mount namespace and
//      move_mount()s the overlay onto the fd from step 1.
//
// Only forked children ever call setns: the agent's own mount namespace,
// root and cwd never change. No mount(8), no path string is resolved inside
// the container after step 1.
//
// Kernel: step 3 uses a detached mount as an overlay layer; 6.18 accepts it,
// older kernels (before ~6.15, untested) refuse it with EINVAL, reported as
// such (docs/TIERING.md).
//
// UnmountTier reverses it (umount2(MNT_DETACH) inside the namespace). The
// files written on the tier stay in `upper`: copying them back (demotion) is
// later work (docs/TIERING.md).
#ifndef GPUTIER_LOADER_TIER_MOUNT_H_
#define GPUTIER_LOADER_TIER_MOUNT_H_

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "loader/tier_path.h"

namespace gputier {

// Where one tiered path of one container lives on a tier (pure).
struct TierLayout {
  std::string dir;    // <tier_root>/<container_id>/<escaped path>
  std::string upper;  // dir + "/upper"
  std::string work;   // dir + "/work"
};

// Plans the layout; refuses a relative tier root or an id that cannot be a
// directory name (ValidateContainerId). No syscalls.
absl::StatusOr<TierLayout> PlanTierLayout(absl::string_view tier_root,
                                          absl::string_view container_id,
                                          const ContainerPath& path);

struct TierMountRequest {
  pid_t pid = 0;             // a process of the container (its init)
  std::string container_id;  // names the tier directory
  ContainerPath path;        // the directory inside the container
  std::string tier_root;     // absolute host directory of the tier
};

struct TierMount {
  TierLayout layout;
  uint64_t mount_id = 0;  // the overlay's mount id (statx STATX_MNT_ID)
};

// Mounts the overlay as described above. Creates the layout directories
// (mode 0700) when missing. Refuses a path that is already the root of an
// overlay mount (tiered twice).
absl::StatusOr<TierMount> MountTier(const TierMountRequest& request);

// Detaches the overlay at `path` in the container of `pid`. With
// `expected_mount_id` != 0 the mount there must be that one; with 0 it must
// be the root of some overlay mount. Anything else is refused untouched.
absl::Status UnmountTier(pid_t pid, const ContainerPath& path,
                         uint64_t expected_mount_id);

}  // namespace gputier

#endif  // GPUTIER_LOADER_TIER_MOUNT_H_
