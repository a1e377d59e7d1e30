// gputierd's side of enforcement: decides at start whether the fast-tier
// guard and tamper watch can run (LSM mode only), starts them, keeps their
// settings current (fast-tier filesystems, exempt cgroups) and reports.
//
//   enforcement   observer mode   result
//   off           any             nothing loaded
//   audit         lsm             guard loaded, records only
//   audit         tracepoint      unavailable, said in the log and status
//   enforce       lsm             guard loaded, records and denies; a load
//                                 failure stops gputierd
//   enforce       tracepoint      startup error, unless
//                                 `enforcement_if_unavailable: off`
#ifndef GPUTIER_LOADER_ENFORCE_ENFORCEMENT_H_
#define GPUTIER_LOADER_ENFORCE_ENFORCEMENT_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "loader/config/config.h"
#include "loader/enforce/guard.h"
#include "loader/observe/observer.h"

namespace gputier {

class CgroupResolver;

class EnforcementService {
 public:
  struct Options {
    EnforcementConfig config;
    std::string fast_root;
    std::string pin_dir;
    uint32_t max_cgroups = GT_DEFAULT_MAX_CGROUPS;
  };

  // A startup error (enforce without LSM mode, or a guard that would not
  // load in enforce mode) is returned; anything else is an answer.
  static absl::StatusOr<std::unique_ptr<EnforcementService>> Start(const Options& options,
                                                                   const Observer& observer,
                                                                   const CgroupResolver& resolver);

  // Refreshes the guarded filesystems and the exempt cgroups: the configured
  // ones plus `on_fast_tier` (cgroups the tier manager has on the fast tier).
  void Refresh(const std::vector<uint64_t>& on_fast_tier);

  bool active() const { return guard_ != nullptr; }
  // {"requested", "active", "mode", "reason", "filesystems", "exempt"}
  nlohmann::json StatusJson() const;
  const std::string& reason() const { return reason_; }

 private:
  EnforcementService(Options options, const CgroupResolver& resolver)
      : options_(std::move(options)), resolver_(resolver) {}
  absl::flat_hash_map<uint64_t, uint32_t> ExemptSet(const std::vector<uint64_t>& on_fast_tier);

  Options options_;
  const CgroupResolver& resolver_;
  std::unique_ptr<Guard> guard_;
  std::string reason_;
  std::vector<uint32_t> devs_;
  absl::flat_hash_map<uint64_t, uint32_t> exempt_;
  std::vector<std::string> missing_exempt_;  // configured, not (yet) present
};

// One log line for a guard or tamper record from gt_events.
std::string DescribeAuditRecord(const gt_audit_record& r, const std::string& cgroup_path);

}  // namespace gputier

#endif  // GPUTIER_LOADER_ENFORCE_ENFORCEMENT_H_
