// Puts a directory of a running container on a storage tier, live.
//
// MountTier(request) turns the container's "/data" into an overlay whose
// bottom lower layer is what "/data" held until now and whose upper layer is
// a directory on the host, normally under a tier root (PlanTierLayout):
//
//   <tier_root>/<tier key>/<escaped path>/upper   new and changed files
//   <tier_root>/<tier key>/<escaped path>/work    overlayfs work dir
//
// (the tier key is "<container id>-<cgroup inode>", TierKeyFor)
//
// Host directories given as `extra_lowers` are stacked between the upper and
// the original content (top first). The tier manager stacks layers that way:
//
//   slow tier:  upper = slow upper, lowers = [original]
//   fast tier:  upper = fast upper, lowers = [slow upper, original]
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
//      API only: fsopen("overlay"), every layer handed over as an fd
//      (fsconfig FSCONFIG_SET_FD "lowerdir+" per lower, top first, then
//      "upperdir" and "workdir"), the options index=off, redirect_dir=off,
//      metacopy=off and xino=off, FSCONFIG_CMD_CREATE, fsmount: a detached
//      mount. With those options no layer ever holds redirects or metacopy
//      files (each stays a plain directory tree another overlay can reuse),
//      and a layer still in use by another overlay is only warned about by
//      the kernel, not refused.
//   4. A second forked child enters the container's mount namespace and
//      move_mount()s the overlay onto the fd from step 1.
//
// Only forked children ever call setns: the agent's own mount namespace,
// root and cwd never change. No mount(8), no path string is resolved inside
// the container after step 1, and no host layer is named to the kernel by a
// string: each is opened first (O_NOFOLLOW) and passed as that fd.
//
// Kernel: step 3 uses a detached mount as an overlay layer and
// FSCONFIG_SET_FD layers (6.13+); 6.18 accepts both, kernels before ~6.15
// (untested) refuse the detached mount with EINVAL, reported as such
// (docs/TIERING.md).
//
// In /proc/<pid>/mountinfo such an overlay shows each layer by the host path
// the kernel computed from its fd when it was mounted ("lowerdir+=/fast/..."),
// with symlinks of the host path resolved; the container's original content
// shows as "/" (a detached clone has no host path).
//
// UnmountTier reverses it (umount2(MNT_DETACH) inside the namespace). The
// files written on the tier stay in `upper`: copying them back (demotion) is
// later work (docs/TIERING.md).
#ifndef GPUTIER_LOADER_TIER_FS_TIER_MOUNT_H_
#define GPUTIER_LOADER_TIER_FS_TIER_MOUNT_H_

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "loader/config/container_path.h"

namespace gputier {

// Where one tiered path of one container lives on a tier (pure).
struct TierLayout {
  std::string dir;    // <tier_root>/<tier key>/<escaped path>
  std::string upper;  // dir + "/upper"
  std::string work;   // dir + "/work"
  // The tier root. MountTier creates the missing directories between it and
  // upper/work, never the root itself. Empty for a layout built by hand: then
  // only `upper` and `work` themselves are created, in existing parents.
  std::string root;
};

// Plans the layout; refuses a relative tier root or a key that cannot be a
// directory name (ValidateTierKey). No syscalls.
absl::StatusOr<TierLayout> PlanTierLayout(absl::string_view tier_root,
                                          absl::string_view key,
                                          const ContainerPath& path);

struct TierMountRequest {
  pid_t pid = 0;       // a process of the container (its init)
  ContainerPath path;  // the directory inside the container
  TierLayout layout;   // upper/work on the host (created 0700 when missing)
  // Host directories stacked above the container's original content, top
  // first: absolute, existing, not symlinks, free of ':', ',' and '\\'.
  std::vector<std::string> extra_lowers;
  // The container's root as a path in the filesystem view of `pid`
  // (/proc/<pid>/root), for a container whose process has not yet switched
  // to its own root (an OCI createRuntime hook: its mount namespace is made,
  // pivot_root not done). Resolved like `path` (RESOLVE_IN_ROOT, no
  // symlinks), then `path` inside it. Empty: the process's own root.
  std::string root_path;
};

struct TierMount {
  TierLayout layout;
  uint64_t mount_id = 0;  // the overlay's mount id (statx STATX_MNT_ID)
};

// Mounts the overlay as described above. Creates the layout directories
// (mode 0700) when missing; `upper` takes the owner and mode of the directory
// it covers. Refuses a path that is already the root of an overlay mount
// (tiered twice), and layout or extra lower paths that are not absolute,
// contain ':', ',' or '\\', or (extra lowers) are not existing directories.
absl::StatusOr<TierMount> MountTier(const TierMountRequest& request);

// Detaches the overlay at `path` in the container of `pid`. With
// `expected_mount_id` != 0 the mount there must be that one; with 0 it must
// be the root of some overlay mount. Anything else is refused untouched.
absl::Status UnmountTier(pid_t pid, const ContainerPath& path,
                         uint64_t expected_mount_id);

// What is mounted at a container path, seen from the host (the path is
// resolved safely as in MountTier; the mount is looked up by its id in
// /proc/<pid>/mountinfo).
struct PathMount {
  uint64_t mount_id = 0;       // STATX_MNT_ID numbering
  bool is_mount_root = false;  // the path is the root of that mount
  std::string fstype;          // "overlay", "ext4", ...
  std::string upperdir;        // overlay upperdir=, unescaped; empty otherwise
  // Overlay lower layers, top first: lowerdir= split on ':' or one per
  // lowerdir+= (then datadir+=), unescaped; empty for other filesystems.
  std::vector<std::string> lowerdirs;
};
absl::StatusOr<PathMount> InspectContainerPath(pid_t pid, const ContainerPath& path);

// The overlay layers of a mount's super options (pure): fills `upperdir` and
// `lowerdirs` of `out` from "upperdir=", "lowerdir=" (split on unescaped
// ':', '\\' escapes removed), "lowerdir+=" and "datadir+=".
void ReadOverlayLayers(const std::vector<std::string>& super_options, PathMount* out);

}  // namespace gputier

#endif  // GPUTIER_LOADER_TIER_FS_TIER_MOUNT_H_
