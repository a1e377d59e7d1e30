// Demotion write-back: folds an overlay upper layer into another layer,
// offline.
//
// A tiered directory on the slow tier is an overlay [upper S over lower L];
// promoted to the fast tier it is [upper F over lowers S, L]. Demotion folds F
// into S so that afterwards [S over L] shows exactly what [F over S over L]
// showed, for any L: contents, modes, owners, atime/mtime (ctime cannot be
// set), xattrs, hard links inside F, and deletions. No overlay may have F or S
// mounted while it runs.
//
// Overlay on-disk format handled (kernel Documentation/filesystems/overlayfs.rst):
//   - whiteout (char device 0:0, or a zero-size regular file with
//     trusted.overlay.whiteout): whatever S has at the name is removed and a
//     whiteout put there, since L may hold the name. Its directory in S gets
//     an empty trusted.overlay.origin ("copied up, origin unknown") unless it
//     has one: without it overlayfs lists a directory that L lacks straight
//     from S, whiteouts included. In an opaque directory of S the name is
//     only removed (nothing below shows through);
//   - opaque directory (trusted.overlay.opaque = "y"): S's entry is replaced by
//     a new opaque directory with F's content;
//   - a non-opaque directory of F merges into a directory of S (S's opacity is
//     kept); over a whiteout or a non-directory of S it becomes an opaque
//     directory (L was hidden there in the stacked view); over nothing it is a
//     plain directory;
//   - trusted.overlay.* xattrs are layer bookkeeping (origin, impure, nlink,
//     upper...) and are not copied, except trusted.overlay.protattr (the
//     immutable/append-only flags an overlay shows) and escaped
//     trusted.overlay.overlay.* (user data): both describe the view, and S is
//     an upper layer too. An entry with trusted.overlay.redirect or
//     trusted.overlay.metacopy is refused: gputier mounts with
//     redirect_dir=off,metacopy=off, so such a layer is foreign.
//
// Every name is written to a temporary name in the same S directory and
// renamed over the final one (renameat2(RENAME_EXCHANGE) where a directory is
// involved, so no name is ever missing), so re-running after a crash at any
// point converges to the same S; leftovers of a crashed run are removed by the
// next. Temporary names start with kWriteBackTempPrefix, which S reserves.
// Directory modes, owners, xattrs and times are set after their children.
// Before returning, S's filesystem is synced (syncfs), so the caller may then
// delete F.
//
// Safety: everything is fd-relative; no symlink is ever followed in F or S;
// a mount point inside F or S is refused (error naming it), as are F and S
// being the same directory or one inside the other. F is never modified, not
// even its atimes (O_NOATIME), except that reading a symlink may update the
// symlink's atime on a mount without noatime (readlink has no O_NOATIME); the
// atime copied is the one from before. Needs root (chown, trusted.* xattrs).
//
// Depth: the layers are container-controlled trees of any depth (deeper than
// PATH_MAX too). The walk is iterative (tree_walk.h): no recursion, at most
// kWalkOpenDirs directory fds per side (and as many more while a replaced
// tree is removed), whatever the depth; no depth limit. Memory grows with
// depth (one small record per level) and with the widest directories' names,
// both bounded by what the fast partition can hold.
#ifndef GPUTIER_LOADER_TIER_FS_TIER_WRITEBACK_H_
#define GPUTIER_LOADER_TIER_FS_TIER_WRITEBACK_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace gputier {

struct WriteBackStats {
  uint64_t files = 0, dirs = 0, symlinks = 0, specials = 0;  // copied entries
  uint64_t whiteouts = 0, opaque_dirs = 0, hardlinks = 0;     // applied
  uint64_t bytes = 0;                                          // file data copied
};

// Names below this prefix in a destination directory belong to the
// write-back (temporary copies of a run, removed by the next one).
inline constexpr char kWriteBackTempPrefix[] = ".gputier-wb.";

// Folds overlay upper layer `src` into layer `dst` (both directory fds, opened O_DIRECTORY|O_NOFOLLOW).
// src is never modified. Idempotent: re-running after a crash at any point converges to the same dst.
absl::StatusOr<WriteBackStats> MergeUpperLayer(int src_dirfd, int dst_dirfd);
// Same, opening the two host paths with O_DIRECTORY|O_NOFOLLOW (errors name the path).
absl::StatusOr<WriteBackStats> MergeUpperLayer(const std::string& src, const std::string& dst);
// Removes `name` below `dirfd` and everything below it (whatever type it is), iteratively with
// a bounded number of fds at any depth, never following symlinks, never crossing into another
// mount (refuse with an error naming the path). ENOENT is success.
absl::Status RemoveTree(int dirfd, const std::string& name);

}  // namespace gputier

#endif  // GPUTIER_LOADER_TIER_FS_TIER_WRITEBACK_H_
