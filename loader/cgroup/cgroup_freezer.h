// Stopping a container while its mounts change: the cgroup v2 freezer.
//
// Writing "1" to <cgroup>/cgroup.freeze asks the kernel to stop every task
// of the cgroup and of all cgroups below it; the cgroup counts as frozen when
// cgroup.events says "frozen 1" (a task in uninterruptible sleep, e.g. D-state
// I/O, delays that). FreezeCgroup waits for that with poll(POLLPRI) on
// cgroup.events, the kernel's change notification for that file, and gives up
// after `timeout`: then it thaws the cgroup again and fails, so a failed
// freeze never leaves a container stopped. Writing "0" thaws.
//
// `dir` is the absolute directory of the cgroup in the cgroup2 hierarchy
// (Cgroup2Root() + the "0::" path of /proc/<pid>/cgroup), e.g.
// /sys/fs/cgroup/<id> on a cgroup v2 host or /sys/fs/cgroup/unified/<id> on a
// hybrid one. The v1 freezer controller is never used. The directory is
// opened with O_NOFOLLOW and must be on cgroup2; its files are opened
// relative to it with O_NOFOLLOW. Errors name the cgroup and the fix.
#ifndef GPUTIER_LOADER_CGROUP_CGROUP_FREEZER_H_
#define GPUTIER_LOADER_CGROUP_CGROUP_FREEZER_H_

#include <sys/types.h>

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace gputier {

// Freezes the cgroup `dir` and waits until the kernel reports it frozen. On
// timeout thaws it and returns DeadlineExceeded naming the cgroup; a cgroup
// whose cgroup.freeze was "1" already (`runc pause`) is left as it was. A
// missing cgroup is NotFound; a directory that is not a cgroup2 cgroup (or
// the root cgroup, which cannot be frozen) is FailedPrecondition.
absl::Status FreezeCgroup(const std::string& dir, absl::Duration timeout);

// Thaws the cgroup `dir` (does not wait). A cgroup that no longer exists
// needs no thawing: success.
absl::Status ThawCgroup(const std::string& dir);

// Whether cgroup.events says "frozen 1" (frozen by itself or by an ancestor).
absl::StatusOr<bool> CgroupFrozen(const std::string& dir);

// The processes of `dir` and of every cgroup below it (cgroup.procs of each),
// sorted, without duplicates. A child cgroup removed while it is read is
// skipped.
absl::StatusOr<std::vector<pid_t>> CgroupProcs(const std::string& dir);

// The mount point of the cgroup2 hierarchy, from /proc/self/mountinfo (the
// first cgroup2 mount); NotFound when there is none.
absl::StatusOr<std::string> Cgroup2Root();

// A frozen cgroup that is thawed again when this goes out of scope, unless
// Keep() was called. A cgroup that was frozen before Freeze() (`runc pause`)
// is never thawed by it. Movable; a moved-from object thaws nothing.
class ScopedFreeze {
 public:
  static absl::StatusOr<ScopedFreeze> Freeze(const std::string& dir,
                                             absl::Duration timeout);

  ScopedFreeze(ScopedFreeze&& other) noexcept;
  ScopedFreeze& operator=(ScopedFreeze&& other) noexcept;
  ScopedFreeze(const ScopedFreeze&) = delete;
  ScopedFreeze& operator=(const ScopedFreeze&) = delete;
  ~ScopedFreeze();  // thaws, ignoring errors; call Thaw() to see them

  // Leaves the cgroup frozen when this object goes away.
  void Keep();
  // Thaws now and reports the outcome; the destructor then does nothing.
  absl::Status Thaw();

  const std::string& dir() const { return dir_; }

 private:
  explicit ScopedFreeze(std::string dir) : dir_(std::move(dir)), armed_(true) {}
  std::string dir_;
  bool armed_ = false;
};

}  // namespace gputier

#endif  // GPUTIER_LOADER_CGROUP_CGROUP_FREEZER_H_
