// Each container's bounded partition of the fast tier (patent claim 6).
//
// A container promoted to the fast tier writes into its own ext4 filesystem,
// held in a preallocated image file on the fast tier and mounted in the
// agent's (host) mount namespace. The overlay's upper and work directories
// later live inside that mount, so a container can fill its partition but
// never the fast tier itself:
//
//   <fast_root>/<tier key>/partition.img   the image (mode 0600)
//   <fast_root>/<tier key>/mnt/            its mount point (mode 0700)
//
// The capacity is really reserved, never sparse:
//   - the image is fallocate()d in full (ENOSPC here is the only point where
//     the fast tier can run out; it is reported as such);
//   - mkfs.ext4 runs with -E nodiscard (by default mke2fs "discards" a
//     regular file by punching holes, which makes the image sparse again),
//     and -m 0 (no root-reserved blocks: the capacity is all the container's);
//   - discard is switched off on the loop device before mounting
//     (/sys/block/loopN/queue/discard_max_bytes = 0): otherwise ext4's lazy
//     inode table init and any fstrim (systemd's fstrim.timer trims every
//     mounted filesystem) punch holes in the image through the loop driver.
//     The kernel cannot turn discard on again on that device, so release
//     replaces the freed loop device by a fresh one of the same number
//     (LOOP_CTL_REMOVE + LOOP_CTL_ADD) rather than hand it on with discard off.
//   A hole would have to be allocated again on the next write, and a full fast
//   tier would then turn it into an I/O error inside the partition.
//
// How a partition is made: fallocate -> mkfs.ext4 (fork + execvp, argv, no
// shell) -> LOOP_CTL_GET_FREE + LOOP_CONFIGURE (LO_FLAGS_AUTOCLEAR, direct I/O
// when the backing filesystem takes it) -> fsopen("ext4") / fsconfig /
// fsmount (nosuid, nodev) / move_mount onto an O_PATH fd of mnt/. The loop fd
// is closed once mounted, so unmounting frees the loop device (AUTOCLEAR);
// a crash before the mount frees it too (last close).
//
// Freeing a partition (unmount, loop device, the unlink of a large image) takes
// 100-500 ms. So that a caller never waits for it, SetPartitionAside first
// renames the container directory in one step to
// <fast_root>/.gputier-free-<n> (the mount moves with it); the caller then
// runs ReleasePartition on those paths when it suits it (the tier manager: on
// a thread of its own). The container's paths are free for a new partition at
// once, and a crash at any point leaves either the container directory or a
// .gputier-free-* one, which PartitionsSetAside lists for the next start.
//
// Safety: the container directory, mnt/ and the image are opened relative to
// their parent fd with O_NOFOLLOW; a symlink at any of them is refused and
// never followed. Nothing is ever deleted recursively: release unmounts,
// unlinks the image and rmdir()s the two directories when they are empty.
// The fast root itself is configuration and may be reached through symlinks.
#ifndef GPUTIER_LOADER_TIER_FS_TIER_PARTITION_H_
#define GPUTIER_LOADER_TIER_FS_TIER_PARTITION_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace gputier {

// The smallest partition CreatePartition makes (ext4 metadata and journal
// need a few MiB of it).
inline constexpr uint64_t kMinPartitionBytes = 16ull << 20;

struct PartitionPaths {
  std::string dir;          // <fast_root>/<tier key>
  std::string image;        // dir + "/partition.img"
  std::string mount_point;  // dir + "/mnt"
};

// Pure: validates the fast root (absolute, without ':' ',' or whitespace,
// since paths below it end up in overlay mount options) and the container's
// tier key (ValidateTierKey; TierKeyFor) and returns the three paths.
// Trailing slashes of the fast root are dropped.
absl::StatusOr<PartitionPaths> PlanPartition(absl::string_view fast_root,
                                             absl::string_view key);

// Makes a fresh, EMPTY partition of `size_bytes` (>= kMinPartitionBytes) and
// mounts it at mount_point. The fast root must exist; the container
// directory and mnt/ are created (0700) when missing. Any earlier partition
// at these paths is released first (ReleasePartition): a partition is only
// ever created empty. On failure nothing made by this call is left behind.
// ResourceExhausted when the fast tier lacks room for the image.
absl::Status CreatePartition(const PartitionPaths& paths, uint64_t size_bytes);

// Mounts an existing image again, with its data (after a node reboot or an
// agent crash left it unmounted); no mkfs. OK when it is already mounted at
// mount_point. Refused when another loop device still holds the image or
// something else is mounted on mount_point.
absl::Status AttachPartition(const PartitionPaths& paths);

// Whether mount_point is the root of an ext4 mount whose loop device is
// backed by this image (compared by device and inode, not by name). False
// when any of the paths is missing.
absl::StatusOr<bool> PartitionMounted(const PartitionPaths& paths);

// What ReleasePartition did (for callers that report it).
struct PartitionRelease {
  bool unmounted = false;      // the partition was mounted and is not any more
  int loop_index = -1;         // the loop device it was mounted from (freed), or -1
  bool image_removed = false;  // the image was unlinked
  bool dir_removed = false;    // the container directory is gone
};

// Unmounts (umount2 without MNT_DETACH: a busy partition is an error naming
// the processes or mounts that hold it), waits for the loop device to be
// freed, unlinks the image and removes mnt/ and the container directory when
// they are empty. Idempotent: nothing there is success. A foreign mount on
// mount_point is refused untouched. `what`, when given, says what was done.
absl::Status ReleasePartition(const PartitionPaths& paths, PartitionRelease* what = nullptr);

// The name a partition set aside to be freed takes in the fast root
// (followed by a number). Container ids never start with '.'.
inline constexpr char kAsidePrefix[] = ".gputier-free-";

struct AsidePartition {
  PartitionPaths paths;      // <fast_root>/.gputier-free-<n>/...
  uint64_t image_bytes = 0;  // blocks of its image, in use until it is released
};

// Moves the partition out of the container's way: renames paths.dir to a new
// <fast_root>/.gputier-free-<n> (never over an existing entry) and returns
// where it is now; ReleasePartition on those paths frees it. std::nullopt when
// there is no container directory. Refused, with nothing changed, when a
// foreign mount is on mount_point or the directory holds anything but the
// image and mnt/ (release those in place: ReleasePartition leaves other files
// alone).
absl::StatusOr<std::optional<AsidePartition>> SetPartitionAside(const PartitionPaths& paths);

// Every partition set aside under `fast_root` and not released yet (what a
// gputierd that stopped left behind), sorted by name.
absl::StatusOr<std::vector<AsidePartition>> PartitionsSetAside(absl::string_view fast_root);

struct SpaceUsage {
  uint64_t total_bytes = 0;
  uint64_t used_bytes = 0;
  uint64_t available_bytes = 0;  // what an unprivileged writer can still use
};

// statvfs of the mounted partition: what the container can still write.
// FailedPrecondition when the partition is not mounted.
absl::StatusOr<SpaceUsage> PartitionUsage(const PartitionPaths& paths);

// statvfs of any directory (the fast tier's filesystem, for watermarks).
absl::StatusOr<SpaceUsage> FilesystemUsage(const std::string& dir);

}  // namespace gputier

#endif  // GPUTIER_LOADER_TIER_FS_TIER_PARTITION_H_
