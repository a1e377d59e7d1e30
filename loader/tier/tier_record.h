// The persisted state of one tiered container: which tier each of its
// directories is on, the operation in flight, and whether gputierd froze it.
//
// One JSON file per container, <state-dir>/tier/<container id>.json,
// replaced atomically before and after every step of a transition, so a
// gputierd killed at any point finds, on restart, the step it was in
// (docs/TIERING.md, "Crash safety"). A file of another layout version, or one
// that does not parse, is never guessed at: that container is left alone and
// reported.
//
// Layout versions: 2 (written now) stores `key`, the name of the container's
// tier directories (TierKeyFor: "<id>-<cgroup inode>"). A version 1 record
// (written before keys) is read with key = container id: its directories
// were named by the id alone, and that container is served with them until
// it exits.
#ifndef GPUTIER_LOADER_TIER_TIER_RECORD_H_
#define GPUTIER_LOADER_TIER_TIER_RECORD_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "loader/tier/tier_plan.h"

namespace gputier {

inline constexpr int kTierRecordVersion = 2;

enum class TierOp { kNone, kPromote, kDemote };
absl::string_view TierOpName(TierOp op);  // "none", "promote", "demote"

struct TierRecord {
  std::string container_id;
  // Names its slow layer <slow_root>/<key> and fast partition <fast_root>/<key>:
  // TierKeyFor(id, cgroup inode), or the id alone for a version 1 record.
  std::string key;
  std::string cgroup;       // cgroup2 path, "/..."
  uint64_t mnt_ns = 0;      // inode of the container's mount namespace
  TierOverride override_tier = TierOverride::kAuto;
  std::map<std::string, Tier> paths;  // managed path -> tier of its overlay
  TierOp op = TierOp::kNone;          // in flight on op_path
  std::string op_path;
  bool froze = false;      // gputierd froze the cgroup and has not thawed it
  bool partition = false;  // a fast partition exists (or is being made)
  // The container's own lists from its OCI annotations gputier.io/tiered-paths
  // and gputier.io/gpu-data-paths, read once at adoption (unset: the
  // config's), so that a restarted gputierd tiers it the same (PathsFor).
  std::optional<std::vector<std::string>> tiered_paths;
  std::optional<std::vector<std::string>> gpu_data_paths;

  bool AnyFast() const;
};

std::string TierRecordToJson(const TierRecord& record);
// `source` names the file in errors.
absl::StatusOr<TierRecord> TierRecordFromJson(absl::string_view json, absl::string_view source);

// <state-dir>/tier/: one file per container.
class TierRecordStore {
 public:
  explicit TierRecordStore(std::string dir) : dir_(std::move(dir)) {}
  absl::Status Init() const;  // creates the directory (0700)
  const std::string& dir() const { return dir_; }

  struct Loaded {
    std::vector<TierRecord> records;
    std::vector<std::string> refused;  // one sentence per unreadable file
  };
  Loaded LoadAll() const;
  absl::Status Save(const TierRecord& record) const;
  absl::Status Remove(const std::string& container_id) const;

 private:
  std::string dir_;
};

}  // namespace gputier

#endif  // GPUTIER_LOADER_TIER_TIER_RECORD_H_
