// Fuzzes the /proc/self/mountinfo parser. Mount points and sources are
// chosen by whoever mounts (inside a container too), escaped by the kernel.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "loader/base/node_facts.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  const std::vector<gputier::MountEntry> mounts = gputier::ParseMountInfo(text);
  for (const gputier::MountEntry& m : mounts) {
    // Fields come from one line each; decoding never makes them longer.
    if (m.fs_type.empty() || m.mount_point.size() > size || m.source.size() > size) std::abort();
  }
  absl::StatusOr<std::string> cgroup2 = gputier::FindMountPoint(text, "cgroup2");
  if (!cgroup2.ok() && cgroup2.status().message().empty()) std::abort();
  return 0;
}
