// Typed access to the guard's and tamper watch's maps (see
// bpf/guard_lsm.bpf.c): its settings, written by gputierd, and its records,
// read by gputierd and by `gputierctl audit` straight from the pins.
#ifndef GPUTIER_LOADER_ENFORCE_GUARD_MAPS_H_
#define GPUTIER_LOADER_ENFORCE_GUARD_MAPS_H_

#include <cstdint>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gputier/abi.h"

namespace gputier {

absl::StatusOr<gt_guard_cfg> ReadGuardCfg(int cfg_fd);
absl::Status WriteGuardCfg(int cfg_fd, const gt_guard_cfg& cfg);

// Makes the map hold exactly `entries` (key -> value): writes them, then
// deletes every other key. Used for gt_guard_fs (dev -> 1), gt_guard_exempt
// (cgroup id -> enum gt_exempt_reason) and gt_own_objs.
absl::Status ReplaceGuardFs(int fd, const std::vector<uint32_t>& devs);
absl::Status ReplaceExempt(int fd, const absl::flat_hash_map<uint64_t, uint32_t>& cgroups);
absl::Status ReplaceOwnObjects(int fd, const std::vector<gt_obj_key>& objects);
absl::StatusOr<std::vector<uint32_t>> ReadGuardFs(int fd);
absl::StatusOr<absl::flat_hash_map<uint64_t, uint32_t>> ReadExempt(int fd);

// Every cgroup's guard and tamper counters.
absl::StatusOr<std::vector<std::pair<uint64_t, gt_guard_stats>>> ReadGuardStats(int stats_fd);

// The records of every CPU's ring in gt_audit_log, oldest first.
absl::StatusOr<std::vector<gt_audit_record>> ReadAuditLog(int log_fd);

// "open-write", "create", ..., "map-write-fd", "link-fd".
const char* AuditOpName(uint32_t op);

}  // namespace gputier

#endif  // GPUTIER_LOADER_ENFORCE_GUARD_MAPS_H_
