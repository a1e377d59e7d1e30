// Typed access to gputier's maps by fd, and the pinned-layout contract.
//
// Used by gputierd (fds from its skeleton) and by gputierctl (fds from the
// pins, no daemon needed). A pin directory is only trusted when its gt_meta
// record carries this build's GT_ABI_MAGIC and GT_ABI_VERSION: an agent never
// reinterprets the bytes of another layout.
#ifndef GPUTIER_LOADER_OBSERVE_MAPS_H_
#define GPUTIER_LOADER_OBSERVE_MAPS_H_

#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gputier/abi.h"
#include "loader/base/fd.h"

namespace gputier {

using CgroupCounters = std::vector<std::pair<uint64_t, gt_cgroup_stats>>;
using ClassNames = std::array<std::string, GT_CLASS_MAX>;

absl::StatusOr<CgroupCounters> ReadCgroupCounters(int stats_fd);
absl::StatusOr<gt_cgroup_stats> ReadCgroupCounter(int stats_fd, uint64_t cgroup_id);
absl::Status DeleteCgroupCounter(int stats_fd, uint64_t cgroup_id);
absl::StatusOr<ClassNames> ReadClassNames(int names_fd);
absl::StatusOr<std::vector<std::pair<uint64_t, gt_verdict>>> ReadVerdicts(int verdicts_fd);
absl::Status WriteVerdict(int verdicts_fd, uint64_t cgroup_id, const gt_verdict& verdict);
absl::Status DeleteVerdict(int verdicts_fd, uint64_t cgroup_id);
absl::StatusOr<gt_meta> ReadMeta(int meta_fd);
absl::Status WriteMeta(int meta_fd, const gt_meta& meta);
// Sums the per-CPU slots of gt_drops.
absl::StatusOr<std::array<uint64_t, GT_DROP_MAX>> ReadDrops(int drops_fd);

// What a pin directory holds.
enum class PinState {
  kEmpty,    // no gputier pins: a fresh start
  kCurrent,  // gt_meta matches this build
};

// Inspects `pin_dir` without changing it. An older or unknown layout is an
// error that names the directory and the fix (`gputierctl unpin`).
absl::StatusOr<PinState> CheckPinnedLayout(const std::string& pin_dir);

// Opens one pinned map of `pin_dir` read-only.
absl::StatusOr<Fd> OpenPinnedMap(const std::string& pin_dir, const char* name);

// The pinned maps gputierctl reads, after CheckPinnedLayout.
struct PinnedMaps {
  Fd cg_stats;
  Fd class_names;
  Fd gpu_devs;
  Fd meta;
  Fd drops;
  Fd verdicts;
  Fd guard_cfg;
  Fd guard_cg;
  Fd audit_log;
};
absl::StatusOr<PinnedMaps> OpenPinnedMaps(const std::string& pin_dir);

// Names of every gputier map, for unpinning.
std::vector<std::string> AllMapNames();

// Removes gputier's pins from `pin_dir` (only the gt_* names it owns); the
// paths of the pins that were there go to `removed` when given.
absl::Status Unpin(const std::string& pin_dir, std::vector<std::string>* removed = nullptr);

}  // namespace gputier

#endif  // GPUTIER_LOADER_OBSERVE_MAPS_H_
