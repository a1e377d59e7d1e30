// Parsers for the kernel's text files the agent reads: /proc/self/mountinfo
// and /proc/devices. Pure: each takes the file's text (tested without root);
// callers read the files.
#ifndef GPUTIER_LOADER_BASE_NODE_FACTS_H_
#define GPUTIER_LOADER_BASE_NODE_FACTS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace gputier {

struct MountEntry {
  std::string device;       // "major:minor" of the mounted filesystem (field 3)
  std::string mount_point;  // octal escapes (\040 etc.) decoded
  std::string fs_type;      // e.g. "cgroup2", "bpf", "overlay"
  std::string source;
  std::string options;      // per-mount options (field 6)
};

// Every mount in a mountinfo text, in file order.
std::vector<MountEntry> ParseMountInfo(absl::string_view mountinfo_text);

// The first mount point of `fs_type`, or NotFound naming the type.
absl::StatusOr<std::string> FindMountPoint(absl::string_view mountinfo_text,
                                           absl::string_view fs_type);

struct CharDevice {
  uint32_t major = 0;
  std::string name;
};

// The "Character devices:" section of /proc/devices.
std::vector<CharDevice> ParseCharDevices(absl::string_view proc_devices_text);

}  // namespace gputier

#endif  // GPUTIER_LOADER_BASE_NODE_FACTS_H_
