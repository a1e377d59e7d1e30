#include "loader/tier/fs/xattrs.h"

#include <sys/xattr.h>

#include <cerrno>

#include "absl/strings/str_cat.h"

namespace gputier {
namespace {

ssize_t List(const XattrTarget& t, char* buf, size_t size) {
  if (t.proc_path().empty()) return flistxattr(t.fd(), buf, size);
  return llistxattr(t.proc_path().c_str(), buf, size);
}

ssize_t Get(const XattrTarget& t, const std::string& name, void* buf,
            size_t size) {
  if (t.proc_path().empty()) return fgetxattr(t.fd(), name.c_str(), buf, size);
  return lgetxattr(t.proc_path().c_str(), name.c_str(), buf, size);
}

}  // namespace

XattrTarget XattrTarget::OfEntry(int dirfd, const std::string& name) {
  return XattrTarget(-1, absl::StrCat("/proc/self/fd/", dirfd, "/", name));
}

absl::StatusOr<std::vector<std::string>> ListXattrNames(const XattrTarget& target) {
  std::string buf(256, '\0');
  ssize_t n;
  while (true) {
    n = List(target, buf.data(), buf.size());
    if (n >= 0) break;
    if (errno == ENOTSUP) return std::vector<std::string>{};
    if (errno != ERANGE) return absl::ErrnoToStatus(errno, "listxattr");
    ssize_t need = List(target, nullptr, 0);
    if (need < 0) return absl::ErrnoToStatus(errno, "listxattr");
    buf.resize(static_cast<size_t>(need) + 64);
  }
  std::vector<std::string> names;
  size_t start = 0;
  for (size_t i = 0; i < static_cast<size_t>(n); ++i) {
    if (buf[i] != '\0') continue;
    if (i > start) names.emplace_back(buf.data() + start, i - start);
    start = i + 1;
  }
  return names;
}

absl::StatusOr<std::optional<std::string>> GetXattr(const XattrTarget& target,
                                                    const std::string& name) {
  std::string value(64, '\0');
  while (true) {
    ssize_t n = Get(target, name, value.data(), value.size());
    if (n >= 0) {
      value.resize(static_cast<size_t>(n));
      return std::optional<std::string>(std::move(value));
    }
    if (errno == ENODATA) return std::optional<std::string>();
    if (errno != ERANGE) {
      return absl::ErrnoToStatus(errno, absl::StrCat("getxattr ", name));
    }
    ssize_t need = Get(target, name, nullptr, 0);
    if (need < 0) {
      if (errno == ENODATA) return std::optional<std::string>();
      return absl::ErrnoToStatus(errno, absl::StrCat("getxattr ", name));
    }
    value.resize(static_cast<size_t>(need) + 64);
  }
}

absl::StatusOr<std::vector<Xattr>> ReadXattrs(const XattrTarget& target) {
  absl::StatusOr<std::vector<std::string>> names = ListXattrNames(target);
  if (!names.ok()) return names.status();
  std::vector<Xattr> out;
  out.reserve(names->size());
  for (std::string& name : *names) {
    absl::StatusOr<std::optional<std::string>> value = GetXattr(target, name);
    if (!value.ok()) return value.status();
    if (!value->has_value()) continue;
    out.push_back(Xattr{std::move(name), std::move(**value)});
  }
  return out;
}

absl::Status SetXattr(const XattrTarget& target, const std::string& name,
                      const std::string& value) {
  int rc = target.proc_path().empty()
               ? fsetxattr(target.fd(), name.c_str(), value.data(), value.size(), 0)
               : lsetxattr(target.proc_path().c_str(), name.c_str(), value.data(),
                           value.size(), 0);
  if (rc != 0) return absl::ErrnoToStatus(errno, absl::StrCat("setxattr ", name));
  return absl::OkStatus();
}

absl::Status RemoveXattr(const XattrTarget& target, const std::string& name) {
  int rc = target.proc_path().empty()
               ? fremovexattr(target.fd(), name.c_str())
               : lremovexattr(target.proc_path().c_str(), name.c_str());
  if (rc != 0 && errno != ENODATA) {
    return absl::ErrnoToStatus(errno, absl::StrCat("removexattr ", name));
  }
  return absl::OkStatus();
}

}  // namespace gputier
