#include "loader/tier/fs/upper_layer.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <cerrno>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace gputier {
namespace {

constexpr char kWhiteoutXattr[] = "trusted.overlay.whiteout";
constexpr char kRedirectXattr[] = "trusted.overlay.redirect";
constexpr char kMetacopyXattr[] = "trusted.overlay.metacopy";

}  // namespace

bool IsOverlayPrivate(const std::string& name) {
  return absl::StartsWith(name, "trusted.overlay.") &&
         !absl::StartsWith(name, "trusted.overlay.overlay.") &&
         name != "trusted.overlay.protattr";
}

absl::Status ReadUpperXattrs(const XattrTarget& target, absl::FunctionRef<std::string()> shown,
                             UpperEntry* e) {
  absl::StatusOr<std::vector<Xattr>> all = ReadXattrs(target);
  if (!all.ok()) {
    return absl::Status(all.status().code(), absl::StrCat(shown(), ": ", all.status().message()));
  }
  bool whiteout_xattr = false;
  for (Xattr& x : *all) {
    if (x.name == kRedirectXattr || x.name == kMetacopyXattr) {
      return absl::FailedPreconditionError(absl::StrCat(
          shown(), " has ", x.name,
          ": a layer written with redirect_dir or metacopy on, which gputier never "
          "mounts; refusing to write back a foreign layer"));
    }
    if (x.name == kOverlayOpaqueXattr) e->opaque = x.value == "y";
    if (x.name == kWhiteoutXattr) whiteout_xattr = true;
    if (!IsOverlayPrivate(x.name)) e->xattrs.push_back(std::move(x));
  }
  e->whiteout = IsWhiteoutDevice(e->facts) ||
                (S_ISREG(e->facts.mode) && e->facts.size == 0 && whiteout_xattr);
  return absl::OkStatus();
}

absl::StatusOr<UpperEntry> ReadUpperEntry(int dirfd, const DirEntry& entry,
                                          const EntryFacts& root,
                                          absl::FunctionRef<std::string()> shown) {
  UpperEntry e;
  // Regular files and directories are opened first and looked at through the
  // fd; everything else is looked at by name and never opened.
  const bool opened_first = entry.type == DT_REG || entry.type == DT_DIR;
  if (!opened_first) {
    if (int err = StatEntry(dirfd, entry.name, &e.facts); err != 0) {
      return absl::ErrnoToStatus(err, absl::StrCat(shown(), ": statx"));
    }
  }
  if (opened_first || S_ISREG(e.facts.mode) || S_ISDIR(e.facts.mode)) {
    const bool want_dir = opened_first ? entry.type == DT_DIR : S_ISDIR(e.facts.mode);
    const int flags = O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC |
                      (want_dir ? O_DIRECTORY : 0);
    e.fd.Reset(openat(dirfd, entry.name.c_str(), flags | O_NOATIME));
    if (!e.fd.valid() && errno == EPERM) e.fd.Reset(openat(dirfd, entry.name.c_str(), flags));
    if (!e.fd.valid()) return absl::ErrnoToStatus(errno, absl::StrCat(shown(), ": open"));
    const uint64_t seen_ino = e.facts.ino;
    if (int err = StatEntry(e.fd.get(), "", &e.facts); err != 0) {
      return absl::ErrnoToStatus(err, absl::StrCat(shown(), ": statx"));
    }
    if ((!opened_first && e.facts.ino != seen_ino) || S_ISDIR(e.facts.mode) != want_dir ||
        !(S_ISREG(e.facts.mode) || S_ISDIR(e.facts.mode))) {
      return absl::AbortedError(absl::StrCat(shown(), " changed while being written back"));
    }
  }
  if (!SameMount(e.facts, root)) {
    return absl::FailedPreconditionError(
        absl::StrCat(shown(), " is a mount point; write-back never crosses mounts"));
  }
  if (IsWhiteoutDevice(e.facts)) {
    e.whiteout = true;  // its xattrs do not matter
    return e;
  }
  XattrTarget target = e.fd.valid() ? XattrTarget::OfFd(e.fd.get())
                                    : XattrTarget::OfEntry(dirfd, entry.name);
  absl::Status s = ReadUpperXattrs(target, shown, &e);
  if (!s.ok()) return s;
  return e;
}

}  // namespace gputier
