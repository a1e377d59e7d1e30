// The opening and closing that a promotion and a demotion share: look up
// the container's process and what its directory shows now; record the
// step and the freeze about to happen in one write, then freeze; at the
// end record the outcome, clear the step and thaw. Whatever path a step
// takes, its container ends thawed, or its record keeps `froze` set and the
// next cycle recovers (and thaws) it.
#include <string>
#include <utility>

#include "loader/cgroup/cgroup_freezer.h"
#include "loader/tier/tier_manager.h"

namespace gputier {

absl::StatusOr<TierManager::Found> TierManager::LookUp(const TierRecord& record, const std::string& path) {
  absl::StatusOr<pid_t> pid = PidOf(record);
  if (!pid.ok()) return pid.status();
  Found found;
  found.pid = *pid;
  absl::StatusOr<Observed> seen = Observe(found.pid, record, path, &found.mount_id);
  if (!seen.ok()) return seen.status();
  found.seen = *seen;
  return found;
}

absl::Status TierManager::RecordTier(TierRecord& record, const std::string& path, Tier tier) {
  record.paths[path] = tier;
  return Save(record);
}

absl::Status TierManager::BeginStep(TierRecord& record, TierOp op, const std::string& path) {
  record.op = op;
  record.op_path = path;
  record.froze = true;
  return Save(record);
}

absl::StatusOr<ScopedFreeze> TierManager::Freeze(TierRecord& record) {
  absl::StatusOr<ScopedFreeze> freeze = ScopedFreeze::Freeze(CgroupDir(record), options_.freeze_timeout);
  if (!freeze.ok()) return AbandonStep(record, freeze.status());
  return freeze;
}

absl::Status TierManager::AbandonStep(TierRecord& record, absl::Status why) {
  record.froze = false;  // not frozen: a freeze that fails thaws again
  record.op = TierOp::kNone;
  record.op_path.clear();
  (void)Save(record);
  (void)FreePartitionIfUnused(record);
  return why;
}

absl::Status TierManager::EndStep(TierRecord& record, const std::string& path, Tier reached,
                                  ScopedFreeze& freeze, absl::Status result) {
  if (result.ok()) record.paths[path] = reached;
  record.op = TierOp::kNone;
  record.op_path.clear();
  if (absl::Status s = Save(record); !s.ok() && result.ok()) result = s;
  if (absl::Status s = Thaw(record, freeze); !s.ok() && result.ok()) result = s;
  return result;
}

absl::Status TierManager::Thaw(TierRecord& record, ScopedFreeze& freeze) {
  if (absl::Status s = freeze.Thaw(); !s.ok()) return s;
  record.froze = false;
  return Save(record);
}

}  // namespace gputier
