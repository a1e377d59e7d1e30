#include "loader/config/container_path.h"

#include <limits.h>

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "loader/base/utf8.h"

namespace gputier {


absl::StatusOr<ContainerPath> ParseContainerPath(absl::string_view path) {
  if (path.empty() || path[0] != '/') {
    return absl::InvalidArgumentError(absl::StrCat(
        "container path '", path, "' is not absolute; write it as '/",
        path, "'"));
  }
  if (path.find('\0') != absl::string_view::npos) {
    return absl::InvalidArgumentError("container path contains a NUL byte");
  }
  // Recorded in JSON and shown in logs: printable UTF-8 only.
  bool printable = IsValidUtf8(path);
  for (char c : path) printable = printable && static_cast<unsigned char>(c) >= 0x20 && c != 0x7f;
  if (!printable) {
    return absl::InvalidArgumentError(absl::StrCat(
        "container path '", EscapeControlAndInvalid(path),
        "' holds a control character or bytes that are not UTF-8; give a printable UTF-8 path"));
  }
  if (path.size() >= PATH_MAX) {
    return absl::InvalidArgumentError(absl::StrCat(
        "container path is ", path.size(), " bytes; the limit is ",
        PATH_MAX - 1));
  }
  std::vector<absl::string_view> parts;
  for (absl::string_view part : absl::StrSplit(path, '/', absl::SkipEmpty())) {
    if (part == ".") continue;
    if (part == "..") {
      return absl::InvalidArgumentError(absl::StrCat(
          "container path '", path,
          "' contains '..'; give the directory without '..'"));
    }
    parts.push_back(part);
  }
  if (parts.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "container path '", path,
        "' is the container's root; only a directory below it can be tiered"));
  }
  return ContainerPath{absl::StrCat("/", absl::StrJoin(parts, "/"))};
}

std::string EscapeContainerPath(const ContainerPath& path) {
  std::string out;
  for (char c : absl::string_view(path.path).substr(1)) {
    if (c == '%') {
      out += "%25";
    } else if (c == '/') {
      out += "%2F";
    } else {
      out += c;
    }
  }
  return out;
}

namespace {

bool IsDirectoryName(absl::string_view id, size_t max_bytes) {
  bool ok = !id.empty() && id.size() <= max_bytes && id != "." && id != "..";
  for (char c : id) {
    bool allowed = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                   (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
    ok = ok && allowed;
  }
  return ok;
}

}  // namespace

std::string TierKeyFor(absl::string_view container_id, uint64_t cgroup_inode) {
  return absl::StrCat(container_id, "-", cgroup_inode);
}

absl::Status ValidateTierKey(absl::string_view key) {
  if (IsDirectoryName(key, kMaxTierKeyBytes)) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "tier key '", key, "' cannot name a tier directory; it is 1-", kMaxTierKeyBytes,
      " bytes of [A-Za-z0-9_.-], not '.' or '..'"));
}

absl::Status ValidateContainerId(absl::string_view id) {
  if (IsDirectoryName(id, 128)) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "container id '", id,
      "' cannot name a tier directory; use 1-128 bytes of [A-Za-z0-9_.-], "
      "not '.' or '..'"));
}

}  // namespace gputier
