// Reading one entry of an overlay upper layer the way overlayfs reads it:
// whiteouts, opaque directories, which xattrs describe the view and which are
// the layer's own bookkeeping, and markers of features gputier never enables.
// Used by the write-back (tier_writeback.h). Never follows a symlink, never
// changes an atime (O_NOATIME where the caller may use it).
#ifndef GPUTIER_LOADER_TIER_FS_UPPER_LAYER_H_
#define GPUTIER_LOADER_TIER_FS_UPPER_LAYER_H_

#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "loader/base/fd.h"
#include "loader/tier/fs/layer_entries.h"
#include "loader/tier/fs/xattrs.h"

namespace gputier {

inline constexpr char kOverlayOpaqueXattr[] = "trusted.overlay.opaque";
inline constexpr char kOverlayOriginXattr[] = "trusted.overlay.origin";

// trusted.overlay.* bookkeeping of a layer (origin, impure, nlink, opaque,
// redirect...), as opposed to what the overlay shows: escaped
// trusted.overlay.overlay.* (user data) and trusted.overlay.protattr (the
// immutable/append-only flags the overlay reports) are not private.
bool IsOverlayPrivate(const std::string& name);

struct UpperEntry {
  EntryFacts facts;
  Fd fd;                      // open read-only for regular files and directories
  std::vector<Xattr> xattrs;  // those that are not IsOverlayPrivate
  bool whiteout = false;      // char device 0:0, or an xattr whiteout
  bool opaque = false;        // a directory with trusted.overlay.opaque = "y"
};

// Looks at `entry` (d_type a hint) below `dirfd`, which lies on the mount of
// `root`. `shown()` names the entry in errors ("src layer: 'a/b'"; called only then). Refuses
// (FailedPrecondition) a mount point and an entry with
// trusted.overlay.redirect or trusted.overlay.metacopy (a layer written with
// redirect_dir or metacopy on).
absl::StatusOr<UpperEntry> ReadUpperEntry(int dirfd, const DirEntry& entry,
                                          const EntryFacts& root,
                                          absl::FunctionRef<std::string()> shown);

// Fills in `e->xattrs`, `e->opaque` and `e->whiteout` from the xattrs of
// `target`, whose facts `e->facts` holds; the same refusals.
absl::Status ReadUpperXattrs(const XattrTarget& target, absl::FunctionRef<std::string()> shown,
                             UpperEntry* e);

}  // namespace gputier

#endif  // GPUTIER_LOADER_TIER_FS_UPPER_LAYER_H_
