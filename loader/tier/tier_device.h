// What a tier root sits on: its filesystem, its block device and that
// device's transport as the kernel reports it (NVMe, SATA, SCSI/SAS, virtio,
// loop, device-mapper, memory), whether it is rotational, and a short write
// probe. The patent tells a fast tier from a slow one by its transfer
// protocol; gputierd says at start what each configured tier really is, so
// that a typo or an NVMe that failed to mount cannot silently put the "fast"
// tier on the slow disk.
#ifndef GPUTIER_LOADER_TIER_TIER_DEVICE_H_
#define GPUTIER_LOADER_TIER_TIER_DEVICE_H_

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace gputier {

struct TierDevice {
  std::string root;
  dev_t fs_dev = 0;         // st_dev of the root: equal means the same filesystem
  std::string fs_type;      // "ext4", "xfs", "tmpfs", ...
  std::string mount_point;  // the mount the root is on
  std::string block;        // "nvme0n1p2", or empty when none backs it
  std::string disk;         // the whole disk of `block` ("nvme0n1")
  std::string transport;    // "NVMe", "SATA", "virtio", "loop", ... or "memory"
  std::optional<bool> rotational;
  std::string backing;      // a loop device's backing file
};

// The transport of a block device from its resolved sysfs path
// (realpath of /sys/dev/block/MAJ:MIN): pure, tested without a kernel.
std::string TransportFromSysfsPath(absl::string_view sysfs_path);

// Describes the filesystem and block device under `root` (which must exist).
absl::StatusOr<TierDevice> DescribeTierDevice(const std::string& root);

// One line: "ext4 on /dev/nvme0n1p2 (NVMe, non-rotational), mounted on /mnt/nvme".
std::string FormatTierDevice(const TierDevice& device);

struct WriteProbe {
  double mib_per_s = 0;
  uint64_t bytes = 0;
  bool direct = false;  // O_DIRECT (false: the filesystem refused it, buffered + fsync)
};

// Writes `bytes` (1 MiB writes, O_DIRECT where the filesystem allows it) to
// an unnamed temporary file in `root`, fsyncs it, and times it. Leaves
// nothing behind.
absl::StatusOr<WriteProbe> ProbeWriteSpeed(const std::string& root, uint64_t bytes);

// The warnings a pair of tiers deserves: the same filesystem, a rotational
// fast tier, a fast tier slower than the slow one by the probe. Pure.
std::vector<std::string> TierPairWarnings(const TierDevice& fast, const TierDevice& slow,
                                          const std::optional<WriteProbe>& fast_probe,
                                          const std::optional<WriteProbe>& slow_probe);

}  // namespace gputier

#endif  // GPUTIER_LOADER_TIER_TIER_DEVICE_H_
