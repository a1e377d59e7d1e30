// The kernel filesystems gputier's programs need from the node (bpffs,
// securityfs, cgroup2, tracefs), where each is mounted, and mounting the one
// that is missing. A freshly booted node mounts bpffs and cgroup2 but often
// neither tracefs nor securityfs; nothing here relies on a mount made by hand.
#ifndef GPUTIER_LOADER_OBSERVE_NODE_MOUNTS_H_
#define GPUTIER_LOADER_OBSERVE_NODE_MOUNTS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace gputier {

struct NodeFilesystem {
  const char* fs_type;      // as in /proc/self/mountinfo
  const char* mount_point;  // where the project mounts it when it is missing
  const char* needed_by;    // who needs it, for doctor and errors
};

// bpffs, securityfs, cgroup2 and tracefs, in that order.
const std::vector<NodeFilesystem>& NodeFilesystems();

struct NodeFilesystemState {
  NodeFilesystem fs;
  bool mounted = false;
  std::string where;  // the mount point in use, or empty
  std::string fix;    // the command that mounts it, when it is not mounted
};

// Where each of NodeFilesystems() is mounted in this mount namespace.
std::vector<NodeFilesystemState> InspectNodeFilesystems();

// Makes tracefs reachable where libbpf looks for it (debugfs's tracing/ or
// /sys/kernel/tracing), which attaching a classic `tracepoint/...` program
// needs. When it is missing, this process moves to a mount namespace of its
// own (so that nothing stays mounted on the node after it exits) and mounts
// tracefs on /sys/kernel/tracing there; a multi-threaded caller cannot move,
// and gets tracefs mounted on the node instead. Returns a sentence saying
// what it found or did, or an error naming the fix.
absl::StatusOr<std::string> EnsureTracefs();

}  // namespace gputier

#endif  // GPUTIER_LOADER_OBSERVE_NODE_MOUNTS_H_
