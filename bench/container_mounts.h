// What a container sees at /data, read from the host: shared by the
// benchmarks that wait for gputierd to move a container between tiers.
#ifndef GPUTIER_BENCH_CONTAINER_MOUNTS_H_
#define GPUTIER_BENCH_CONTAINER_MOUNTS_H_

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "loader/base/mount_refs.h"
#include "tests/integration/agent_harness.h"

namespace gputier::bench {

// Whether /data in the mount namespace of `pid` is an overlay whose upper
// directory is below `tier_root`.
inline bool DataOn(pid_t pid, const std::string& tier_root) {
  absl::StatusOr<std::vector<MountinfoEntry>> mounts =
      ParseMountinfo(testing::SlurpFile(absl::StrCat("/proc/", pid, "/mountinfo")));
  if (!mounts.ok()) return false;
  bool on = false;
  for (const MountinfoEntry& m : *mounts) {
    if (m.mount_point != "/data") continue;
    on = false;  // the last mount at /data is the visible one
    if (m.fstype != "overlay") continue;
    for (const std::string& o : m.super_options) {
      if (absl::StartsWith(o, absl::StrCat("upperdir=", tier_root, "/"))) on = true;
    }
  }
  return on;
}

}  // namespace gputier::bench

#endif  // GPUTIER_BENCH_CONTAINER_MOUNTS_H_
