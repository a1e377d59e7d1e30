#include "loader/base/node_facts.h"

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace gputier {
namespace {

bool IsOctalDigit(char c) { return c >= '0' && c <= '7'; }

// Decodes the \ooo escapes the kernel writes for ' ', '\t', '\n' and '\\' in
// mountinfo fields (fs/proc_namespace.c: mangle()). Anything else is kept.
std::string DecodeOctalEscapes(absl::string_view field) {
  std::string decoded;
  decoded.reserve(field.size());
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size() &&
        IsOctalDigit(field[i + 1]) && IsOctalDigit(field[i + 2]) &&
        IsOctalDigit(field[i + 3])) {
      const int value = (field[i + 1] - '0') * 64 + (field[i + 2] - '0') * 8 +
                        (field[i + 3] - '0');
      if (value <= 0xff) {
        decoded.push_back(static_cast<char>(value));
        i += 3;
        continue;
      }
    }
    decoded.push_back(field[i]);
  }
  return decoded;
}

bool IsNumber(absl::string_view text) {
  if (text.empty()) return false;
  for (char c : text) {
    if (!absl::ascii_isdigit(c)) return false;
  }
  return true;
}

// "major:minor" with decimal numbers.
bool IsDeviceNumber(absl::string_view text) {
  const size_t colon = text.find(':');
  if (colon == absl::string_view::npos) return false;
  return IsNumber(text.substr(0, colon)) && IsNumber(text.substr(colon + 1));
}

// Parses one line:
//   36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root
//   rw,errors=continue (1)(2) (3)  (4)   (5)     (6)      (7..)  sep (8)   (9)
//   (10)
// Optional fields (7..) end at the lone "-".
bool ParseMountLine(absl::string_view line, MountEntry& entry) {
  const std::vector<absl::string_view> fields =
      absl::StrSplit(line, ' ', absl::SkipEmpty());
  constexpr size_t kFixedFields = 6;
  if (fields.size() < kFixedFields + 3) return false;
  if (!IsNumber(fields[0]) || !IsNumber(fields[1]) ||
      !IsDeviceNumber(fields[2])) {
    return false;
  }
  size_t separator = kFixedFields;
  while (separator < fields.size() && fields[separator] != "-") ++separator;
  if (separator + 2 >= fields.size()) {
    return false;  // no separator, or no fs type and source after it
  }
  entry.device = std::string(fields[2]);
  entry.mount_point = DecodeOctalEscapes(fields[4]);
  entry.options = std::string(fields[5]);
  entry.fs_type = std::string(fields[separator + 1]);
  entry.source = DecodeOctalEscapes(fields[separator + 2]);
  return true;
}

std::string MountHint(absl::string_view fs_type) {
  if (fs_type == "cgroup2") return "mount -t cgroup2 none /sys/fs/cgroup";
  if (fs_type == "bpf") return "mount -t bpf bpf /sys/fs/bpf";
  if (fs_type == "tracefs")
    return "mount -t tracefs tracefs /sys/kernel/tracing";
  if (fs_type == "debugfs") return "mount -t debugfs debugfs /sys/kernel/debug";
  return absl::StrCat("mount -t ", fs_type, " ", fs_type, " <directory>");
}

}  // namespace

std::vector<MountEntry> ParseMountInfo(absl::string_view mountinfo_text) {
  std::vector<MountEntry> mounts;
  for (absl::string_view line : absl::StrSplit(mountinfo_text, '\n')) {
    MountEntry entry;
    if (ParseMountLine(line, entry)) mounts.push_back(std::move(entry));
  }
  return mounts;
}

absl::StatusOr<std::string> FindMountPoint(absl::string_view mountinfo_text,
                                           absl::string_view fs_type) {
  for (MountEntry& mount : ParseMountInfo(mountinfo_text)) {
    if (mount.fs_type == fs_type) return std::move(mount.mount_point);
  }
  return absl::NotFoundError(absl::StrCat(
      "no ", fs_type,
      " filesystem is mounted (not in /proc/self/mountinfo); mount one, e.g. "
      "\"",
      MountHint(fs_type), "\""));
}

std::vector<CharDevice> ParseCharDevices(absl::string_view proc_devices_text) {
  std::vector<CharDevice> devices;
  bool in_section = false;
  for (absl::string_view line : absl::StrSplit(proc_devices_text, '\n')) {
    const absl::string_view trimmed = absl::StripAsciiWhitespace(line);
    if (trimmed == "Character devices:") {
      in_section = true;
      continue;
    }
    if (trimmed == "Block devices:") break;
    if (!in_section || trimmed.empty()) continue;

    // " 195 nvidia-frontend": the major, then the driver's name.
    const size_t space = trimmed.find_first_of(" \t");
    if (space == absl::string_view::npos) continue;
    CharDevice device;
    if (!absl::SimpleAtoi(trimmed.substr(0, space), &device.major)) continue;
    const absl::string_view name =
        absl::StripLeadingAsciiWhitespace(trimmed.substr(space));
    if (name.empty()) continue;
    device.name = std::string(name);
    devices.push_back(std::move(device));
  }
  return devices;
}

}  // namespace gputier
