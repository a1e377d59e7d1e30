// Extended attributes of one filesystem entry, read and written without ever
// following a symlink.
//
// An entry is reached either through an open fd (regular files and
// directories: the f*xattr calls) or, for entries that must not be opened
// (symlinks, fifos, sockets, devices), through "/proc/self/fd/<dirfd>/<name>"
// with the l*xattr calls: the directory fd's magic link is followed, the last
// component never is. That form needs /proc.
//
// Errors carry the errno and the call; callers add which entry it was.
#ifndef GPUTIER_LOADER_TIER_FS_XATTRS_H_
#define GPUTIER_LOADER_TIER_FS_XATTRS_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace gputier {

struct Xattr {
  std::string name;
  std::string value;
};

// Which entry the xattr calls act on: an fd, or a name below a directory fd.
class XattrTarget {
 public:
  static XattrTarget OfFd(int fd) { return XattrTarget(fd, ""); }
  static XattrTarget OfEntry(int dirfd, const std::string& name);

  int fd() const { return fd_; }
  // Empty for OfFd.
  const std::string& proc_path() const { return proc_path_; }

 private:
  XattrTarget(int fd, std::string proc_path)
      : fd_(fd), proc_path_(std::move(proc_path)) {}
  int fd_;
  std::string proc_path_;
};

// All names, in the order the filesystem lists them. A filesystem without
// xattr support (ENOTSUP) has none.
absl::StatusOr<std::vector<std::string>> ListXattrNames(const XattrTarget& target);

// Every xattr with its value. A name removed between listing and reading is
// left out.
absl::StatusOr<std::vector<Xattr>> ReadXattrs(const XattrTarget& target);

// The value, or nullopt when the entry does not have `name`.
absl::StatusOr<std::optional<std::string>> GetXattr(const XattrTarget& target,
                                                    const std::string& name);

// Creates or replaces `name`.
absl::Status SetXattr(const XattrTarget& target, const std::string& name,
                      const std::string& value);

// Removes `name`; an entry without it is success.
absl::Status RemoveXattr(const XattrTarget& target, const std::string& name);

}  // namespace gputier

#endif  // GPUTIER_LOADER_TIER_FS_XATTRS_H_
