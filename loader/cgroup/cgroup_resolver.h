// Adapter: cgroup v2 ids <-> paths on this node, and the container behind each.
//
// The cgroup2 mount is found in /proc/self/mountinfo (never hard-coded: it is
// /sys/fs/cgroup on most nodes, /sys/fs/cgroup/unified on hybrid ones). An id
// is turned into a path with open_by_handle_at(2) on a kernfs file handle,
// which is exact and O(1); a removed cgroup answers NotFound.
#ifndef GPUTIER_LOADER_CGROUP_CGROUP_RESOLVER_H_
#define GPUTIER_LOADER_CGROUP_CGROUP_RESOLVER_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "loader/cgroup/cgroup_path.h"
#include "loader/base/fd.h"

namespace gputier {

class CgroupResolver {
 public:
  // Finds the cgroup2 mount; an error names what to mount.
  static absl::StatusOr<CgroupResolver> Create();

  const std::string& mount_point() const { return mount_point_; }

  // "/kubepods.slice/..." relative to the mount; NotFound if the cgroup is gone.
  absl::StatusOr<std::string> PathOf(uint64_t cgroup_id) const;

  // The id of a cgroup path relative to the mount (its directory inode).
  absl::StatusOr<uint64_t> IdOf(const std::string& relative_path) const;

  // The cgroup v2 id of the calling process.
  absl::StatusOr<uint64_t> SelfId() const;

  // Container ids known to runc (its state directory, /run/runc by default).
  static absl::flat_hash_set<std::string> RuncIds(const std::string& state_dir = "/run/runc");

 private:
  CgroupResolver(std::string mount_point, Fd mount_fd)
      : mount_point_(std::move(mount_point)), mount_fd_(std::move(mount_fd)) {}

  std::string mount_point_;
  Fd mount_fd_;
};

}  // namespace gputier

#endif  // GPUTIER_LOADER_CGROUP_CGROUP_RESOLVER_H_
