// The fast-tier guard and the tamper watch (bpf/guard_lsm.bpf.c), LSM mode
// only: loaded beside the observer, sharing its pinned maps.
//
//   guard         writes into the fast tier's filesystems from a cgroup whose
//                 verdict is neither GPU nor MIXED (and that the tier manager
//                 has not put on the fast tier) are recorded (audit) or also
//                 denied with EACCES (enforce).
//   tamper watch  any process but gputierd asking for a write-capable fd to
//                 gputier's maps, or for an fd to its links, is recorded
//                 (audit) or refused with EPERM (enforce).
//
// gputierd owns the settings: which filesystems are the fast tier (every
// filesystem mounted at or under the fast root), which cgroups are exempt,
// and which map and link ids are gputier's. When gputierd stops, its links
// close and the guard stops with them (fail-open).
#ifndef GPUTIER_LOADER_ENFORCE_GUARD_H_
#define GPUTIER_LOADER_ENFORCE_GUARD_H_

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "gputier/abi.h"
#include "loader/config/config.h"

struct bpf_object;

namespace gputier {

struct GuardOptions {
  Enforcement mode = Enforcement::kAudit;
  std::string pin_dir;  // empty: unpinned (verifier probes)
  uint32_t max_cgroups = GT_DEFAULT_MAX_CGROUPS;
  // The observer's maps and links, watched with the guard's own.
  std::vector<uint32_t> own_map_ids;
  std::vector<uint32_t> own_link_ids;
};

class Guard {
 public:
  // Loads and attaches the guard programs and writes the mode last, so the
  // guard starts with its filesystems and exemptions already in place.
  static absl::StatusOr<std::unique_ptr<Guard>> Start(const GuardOptions& options,
                                                      const std::vector<uint32_t>& fast_devs,
                                                      const absl::flat_hash_map<uint64_t, uint32_t>& exempt);
  virtual ~Guard() = default;

  Enforcement mode() const { return mode_; }

  // Replace the guarded filesystems (kernel dev_t encoding) and the exempt
  // cgroups (id -> enum gt_exempt_reason).
  virtual absl::Status SetFilesystems(const std::vector<uint32_t>& devs) = 0;
  virtual absl::Status SetExempt(const absl::flat_hash_map<uint64_t, uint32_t>& exempt) = 0;

 protected:
  Guard() = default;
  Enforcement mode_ = Enforcement::kAudit;
};

// Loads (never attaches, never pins) every program of the guard object, to
// prove the verifier accepts it on this kernel.
absl::Status ProbeGuardLoad();

// The kernel's encoding of a dev_t (major << 20 | minor), as the programs
// read it from super_block.s_dev.
uint32_t KernelDev(dev_t dev);

// The filesystems mounted at `root` and below it in this mount namespace
// (a dedicated fast-tier filesystem, the tier manager's fast partitions), in
// kernel encoding. A mount that shares its filesystem with `root`'s parent
// directory is left out: guarding it would guard that whole filesystem. So
// a fast root that is a plain directory (the built-in default on the local
// disk) contributes only its partitions.
absl::StatusOr<std::vector<uint32_t>> FilesystemsUnder(const std::string& root);

}  // namespace gputier

#endif  // GPUTIER_LOADER_ENFORCE_GUARD_H_
