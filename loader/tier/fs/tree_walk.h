// Iterative tree walks over container-controlled directories with a bounded
// number of open file descriptors.
//
// A container decides how deep its trees are. A walk that recursed, or kept
// one fd per level of depth, ran out of fds (EMFILE at ~500 levels under the
// usual limit of 1024) and then failed for ever. DirChain holds the
// directories from a walk's root down to where the walk is, but keeps at most
// kWalkOpenDirs of them open (the deepest ones); a directory whose fd was
// closed is reopened through ".." of its child when the walk climbs back to
// it, and must still be the same inode (dev and ino), or the walk stops with
// an error ("changed while being walked"). So a walk needs a fixed number of
// fds and no stack, whatever the depth; what grows with depth is one
// DirChain::Level (name, dev, ino) per level plus what the walker keeps for
// it, all bounded by the number of directories the filesystem holds.
//
// Walkers never follow symlinks (O_NOFOLLOW on every open, statx with
// AT_SYMLINK_NOFOLLOW) and never enter another mount (each directory entered
// is checked against the walk root's mount).
#ifndef GPUTIER_LOADER_TIER_FS_TREE_WALK_H_
#define GPUTIER_LOADER_TIER_FS_TREE_WALK_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "loader/base/fd.h"
#include "loader/tier/fs/layer_entries.h"

namespace gputier {

// Open directory fds one DirChain holds at most (besides its root, which the
// caller owns). A merge walks two chains (source and destination) and may
// remove a replaced tree with a third at the same time.
inline constexpr size_t kWalkOpenDirs = 32;

class DirChain {
 public:
  // `root` stays the caller's and must outlive the chain. `open_flags` are
  // used to reopen a directory (O_DIRECTORY|O_NOFOLLOW|O_CLOEXEC are added);
  // O_NOATIME is dropped when the kernel refuses it (EPERM).
  DirChain(int root, int open_flags, size_t max_open = kWalkOpenDirs);

  // Levels below the root (0 at the root).
  size_t depth() const { return levels_.size(); }
  // The deepest directory: always open.
  int top() const { return levels_.empty() ? root_ : levels_.back().fd.get(); }
  // Descends into `dir`, an open child directory of top() named `name`.
  // Closes the fd of the shallowest open level when more than max_open
  // would be open.
  absl::Status Push(Fd dir, const std::string& name);
  // Climbs back to the parent of top(), reopening it through ".." when its fd
  // was closed. Returns the name the left directory has in its parent.
  absl::StatusOr<std::string> Pop();
  // Path of top() relative to the root ("" at the root), built on demand.
  std::string Path() const;
  // Fds this chain holds open now, its root excluded (for tests).
  size_t open_fds() const { return open_; }

 private:
  struct Level {
    Fd fd;  // invalid while closed to stay within the budget
    std::string name;
    dev_t dev;
    uint64_t ino;
  };

  int root_;
  int open_flags_;
  size_t max_open_;
  size_t open_ = 0;
  size_t first_open_ = 0;  // levels below this index have their fd closed
  std::vector<Level> levels_;
};

// Removes `name` below `dirfd` whatever it is (RemoveTree in
// tier_writeback.h), walking a directory with a DirChain: any depth, at most
// kWalkOpenDirs fds. `shown` names `name` in errors. ENOENT is success; a
// mount point anywhere below is refused (FailedPrecondition naming it).
absl::Status RemoveTreeNamed(int dirfd, const std::string& name, const std::string& shown);

// Bytes allocated to the regular files below `dir` (st_blocks * 512), walked
// with a DirChain: never following symlinks, never entering another mount.
// 0 when `dir` does not exist.
absl::StatusOr<uint64_t> TreeAllocatedBytes(const std::string& dir);

}  // namespace gputier

#endif  // GPUTIER_LOADER_TIER_FS_TREE_WALK_H_
