// The two storage tiers of the headline benchmark, made on the host: each an
// ext4 filesystem on a loop device whose backing file is in RAM (/dev/shm),
// the slow one throttled with blk-throttle (cgroup v1 blkio). v1 throttling
// is flat: a rule holds only for bios charged to its own cgroup. So the rule
// is set twice: in the root cgroup (background writeback, the journal) and in
// one throttle group that the benchmark's jobs are moved into (Join), so that
// both containers share one budget, as two jobs share one disk.
// Everything made is undone by the destructor, in reverse order.
#ifndef GPUTIER_BENCH_HEADLINE_EMULATED_TIERS_H_
#define GPUTIER_BENCH_HEADLINE_EMULATED_TIERS_H_

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace gputier::bench {

// blk-throttle limits for one device (0: no limit on that axis).
struct DeviceLimits {
  std::string name;  // "sata", "hdd"
  uint64_t read_bps = 0, write_bps = 0, read_iops = 0, write_iops = 0;
};

// The named settings of the slow tier, from published datasheet figures
// (docs/BENCHMARKS.md says which): "sata", "hdd".
absl::StatusOr<DeviceLimits> SlowTierLimits(const std::string& name);

// Why the tiers cannot be made here (not root, no blkio throttle, no
// losetup or mkfs.ext4), or empty.
std::string EmulatedTiersCannotRunBecause();

class EmulatedTiers {
 public:
  // Two `size_mib` ext4 filesystems mounted at <dir>/fast and <dir>/slow.
  static absl::StatusOr<std::unique_ptr<EmulatedTiers>> Make(uint64_t size_mib);
  ~EmulatedTiers();
  EmulatedTiers(const EmulatedTiers&) = delete;
  EmulatedTiers& operator=(const EmulatedTiers&) = delete;

  // Sets (replacing) the slow tier's limits; the fast tier has none.
  absl::Status Throttle(const DeviceLimits& limits);
  // Moves `pid` into the throttle group (its blkio cgroup only: its other
  // cgroups, the v2 one gputier classifies included, stay).
  absl::Status Join(pid_t pid);
  // Empties both filesystems (keeps lost+found) and syncs.
  absl::Status Empty();

  std::string fast() const { return mount_dir_ + "/fast"; }
  std::string slow() const { return mount_dir_ + "/slow"; }
  // "major:minor" of each tier's loop device.
  const std::string& fast_device() const { return devices_[0]; }
  const std::string& slow_device() const { return devices_[1]; }

 private:
  EmulatedTiers() = default;
  void ClearThrottle();

  std::string image_dir_;  // in /dev/shm
  std::string mount_dir_;  // in /tmp
  std::vector<std::string> loops_;    // /dev/loopN: fast, slow
  std::vector<std::string> devices_;  // major:minor: fast, slow
  std::vector<std::string> mounted_;
  std::string group_;  // the throttle group's blkio cgroup directory
  bool throttled_ = false;
};

}  // namespace gputier::bench

#endif  // GPUTIER_BENCH_HEADLINE_EMULATED_TIERS_H_
