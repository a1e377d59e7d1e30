#include "loader/tier/fs/tier_writeback.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <optional>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "loader/base/fd.h"
#include "loader/tier/fs/file_copy.h"
#include "loader/tier/fs/layer_entries.h"
#include "loader/tier/fs/upper_layer.h"
#include "loader/tier/fs/xattrs.h"

namespace gputier {
namespace {

std::string Join(const std::string& dir, const std::string& name) {
  return dir.empty() ? name : absl::StrCat(dir, "/", name);
}

// FNV-1a: stable across runs, as the temporary name of an entry must be.
uint64_t StableHash(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

// The temporary name of `name` in its destination directory: the same in
// every run, and never a name that the source directory itself holds.
std::string TempName(const std::string& name,
                     const absl::flat_hash_set<std::string>* src_names) {
  std::string base = absl::StrFormat("%s%016x", kWriteBackTempPrefix, StableHash(name));
  if (src_names == nullptr) return base;
  std::string candidate = base;
  for (int i = 1; src_names->contains(candidate); ++i) {
    candidate = absl::StrCat(base, ".", i);
  }
  return candidate;
}

using SrcEntry = UpperEntry;

class Merger {
 public:
  Merger(std::string src_label, std::string dst_label)
      : src_label_(std::move(src_label)), dst_label_(std::move(dst_label)) {}

  absl::Status Run(int src_root, int dst_root);
  const WriteBackStats& stats() const { return stats_; }

 private:
  // A directory being merged. `fresh`: this run created the dst side, so it
  // held nothing before (entries are then written in place, no temp names).
  struct DirPair {
    int src;
    int dst;
    std::string rel;
    bool fresh;
    std::optional<bool> opaque;  // of the dst side, read when first needed
    bool whiteouts_shown = false;  // dst marked as a directory with whiteouts
  };
  // Where the first copy of a hard-linked source inode went.
  struct LinkTarget {
    std::string parent_rel;
    std::string name;
    uint64_t ino;
  };

  absl::Status MergeDir(DirPair dir);
  absl::Status MergeEntry(DirPair& dir, const DirEntry& entry, const std::string& temp);
  absl::StatusOr<std::optional<EntryFacts>> ReadDst(const DirPair& dir, const std::string& name);

  absl::Status PutWhiteout(DirPair& dir, const std::string& name, const std::string& temp,
                           const std::optional<EntryFacts>& old);
  absl::Status PutFile(const DirPair& dir, const std::string& name, const std::string& temp,
                       const std::optional<EntryFacts>& old, const SrcEntry& src);
  absl::Status PutHardlink(const DirPair& dir, const std::string& name, const std::string& temp,
                           const std::optional<EntryFacts>& old, const LinkTarget& target);
  absl::Status PutSymlink(const DirPair& dir, const std::string& name, const std::string& temp,
                          const std::optional<EntryFacts>& old, const SrcEntry& src);
  absl::Status PutSpecial(const DirPair& dir, const std::string& name, const std::string& temp,
                          const std::optional<EntryFacts>& old, const SrcEntry& src);
  absl::Status PutDir(const DirPair& dir, const std::string& name, const std::string& temp,
                      const std::optional<EntryFacts>& old, const SrcEntry& src);

  // Where a new entry for `name` is created: in place in a fresh directory,
  // else at `temp` (after removing a crashed run's leftover there).
  absl::StatusOr<std::string> Stage(const DirPair& dir, const std::string& name,
                                    const std::string& temp);
  // Moves a staged entry onto `name`: rename, or RENAME_EXCHANGE and removal
  // of what was there when a directory is involved, so `name` never vanishes.
  absl::Status Install(const DirPair& dir, const std::string& staged, const std::string& name,
                       const std::optional<EntryFacts>& old, bool new_is_dir);
  absl::Status RemoveDst(const DirPair& dir, const std::string& name);

  absl::Status SetFdAttrs(int fd, const SrcEntry& src, const std::string& rel);
  absl::Status SetEntryAttrs(int dirfd, const std::string& name, const SrcEntry& src,
                             const std::string& rel);
  absl::Status ApplyXattrs(const XattrTarget& target, const std::vector<Xattr>& wanted,
                           const std::string& rel);

  absl::Status SrcErrno(const std::string& rel, int err, absl::string_view what) const {
    return absl::ErrnoToStatus(err, absl::StrCat(src_label_, ": '", Shown(rel), "': ", what));
  }
  absl::Status DstErrno(const std::string& rel, int err, absl::string_view what) const {
    return absl::ErrnoToStatus(err, absl::StrCat(dst_label_, ": '", Shown(rel), "': ", what));
  }
  absl::Status Annotate(const std::string& label, const std::string& rel,
                        const absl::Status& s) const {
    return absl::Status(s.code(), absl::StrCat(label, ": '", Shown(rel), "': ", s.message()));
  }
  absl::Status MountPoint(const std::string& label, const std::string& rel) const {
    return absl::FailedPreconditionError(absl::StrCat(
        label, ": '", Shown(rel), "' is a mount point; write-back never crosses mounts"));
  }
  static std::string Shown(const std::string& rel) { return rel.empty() ? "." : rel; }
  static std::string Where(const std::string& label, const std::string& rel) {
    return absl::StrCat(label, ": '", Shown(rel), "'");
  }

  std::string src_label_;
  std::string dst_label_;
  EntryFacts src_root_;
  EntryFacts dst_root_;
  int dst_root_fd_ = -1;
  absl::flat_hash_map<std::pair<dev_t, uint64_t>, LinkTarget> links_;
  WriteBackStats stats_;
};

absl::Status Merger::Run(int src_root, int dst_root) {
  if (int err = StatEntry(src_root, "", &src_root_); err != 0) return SrcErrno("", err, "statx");
  if (int err = StatEntry(dst_root, "", &dst_root_); err != 0) return DstErrno("", err, "statx");
  if (!S_ISDIR(src_root_.mode) || !S_ISDIR(dst_root_.mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat(src_label_, " and ", dst_label_, " must both be directories"));
  }
  dst_root_fd_ = dst_root;
  // A private fd with O_NOATIME: listing the root must not touch the source.
  Fd src(openat(src_root, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOATIME));
  if (!src.valid()) src.Reset(openat(src_root, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!src.valid()) return SrcErrno("", errno, "reopening the root");
  SrcEntry root;
  root.facts = src_root_;
  if (absl::Status s = ReadUpperXattrs(XattrTarget::OfFd(src.get()), Where(src_label_, ""), &root); !s.ok()) return s;
  if (absl::Status s = MergeDir(DirPair{src.get(), dst_root, "", false}); !s.ok()) return s;
  return SetFdAttrs(dst_root, root, "");
}

absl::Status Merger::MergeDir(DirPair dir) {
  absl::StatusOr<std::vector<DirEntry>> entries = ReadDirectory(dir.src);
  if (!entries.ok()) return Annotate(src_label_, dir.rel, entries.status());
  absl::flat_hash_set<std::string> names;
  bool clash = std::any_of(entries->begin(), entries->end(), [](const DirEntry& e) {
    return absl::StartsWith(e.name, kWriteBackTempPrefix);
  });
  if (clash) {
    for (const DirEntry& e : *entries) names.insert(e.name);
  }
  for (const DirEntry& e : *entries) {
    if (absl::Status s = MergeEntry(dir, e, TempName(e.name, clash ? &names : nullptr)); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status Merger::MergeEntry(DirPair& dir, const DirEntry& entry,
                                const std::string& temp) {
  absl::StatusOr<SrcEntry> src =
      ReadUpperEntry(dir.src, entry, src_root_, Where(src_label_, Join(dir.rel, entry.name)));
  if (!src.ok()) return src.status();
  std::optional<EntryFacts> old;
  if (!dir.fresh) {
    absl::StatusOr<std::optional<EntryFacts>> d = ReadDst(dir, entry.name);
    if (!d.ok()) return d.status();
    old = *d;
  }
  const std::string& name = entry.name;
  const mode_t mode = src->facts.mode;
  if (src->whiteout) return PutWhiteout(dir, name, temp, old);
  if (S_ISDIR(mode)) return PutDir(dir, name, temp, old, *src);
  if (S_ISLNK(mode)) return PutSymlink(dir, name, temp, old, *src);
  if (!S_ISREG(mode)) return PutSpecial(dir, name, temp, old, *src);
  if (src->facts.nlink > 1) {
    auto it = links_.find(std::make_pair(src->facts.dev, src->facts.ino));
    if (it != links_.end()) return PutHardlink(dir, name, temp, old, it->second);
  }
  return PutFile(dir, name, temp, old, *src);
}

absl::StatusOr<std::optional<EntryFacts>> Merger::ReadDst(const DirPair& dir,
                                                           const std::string& name) {
  EntryFacts facts;
  int err = StatEntry(dir.dst, name, &facts);
  if (err == ENOENT) return std::optional<EntryFacts>();
  if (err != 0) return DstErrno(Join(dir.rel, name), err, "statx");
  if (!SameMount(facts, dst_root_)) return MountPoint(dst_label_, Join(dir.rel, name));
  return std::optional<EntryFacts>(facts);
}

absl::StatusOr<std::string> Merger::Stage(const DirPair& dir, const std::string& name,
                                          const std::string& temp) {
  if (dir.fresh) return name;
  if (absl::Status s = RemoveDst(dir, temp); !s.ok()) return s;
  return temp;
}

absl::Status Merger::Install(const DirPair& dir, const std::string& staged,
                             const std::string& name, const std::optional<EntryFacts>& old,
                             bool new_is_dir) {
  if (staged == name) return absl::OkStatus();
  const std::string rel = Join(dir.rel, name);
  if (!old.has_value() || !(new_is_dir || S_ISDIR(old->mode))) {
    if (renameat(dir.dst, staged.c_str(), dir.dst, name.c_str()) != 0) {
      return DstErrno(rel, errno, absl::StrCat("renaming ", staged, " onto it"));
    }
    return absl::OkStatus();
  }
  if (renameat2(dir.dst, staged.c_str(), dir.dst, name.c_str(), RENAME_EXCHANGE) != 0) {
    return DstErrno(rel, errno,
                    absl::StrCat("renameat2(RENAME_EXCHANGE) with ", staged,
                                 " (write-back needs a filesystem that supports it)"));
  }
  return RemoveDst(dir, staged);  // what was at `name` before
}

absl::Status Merger::RemoveDst(const DirPair& dir, const std::string& name) {
  absl::Status s = RemoveTreeNamed(dir.dst, name, Join(dir.rel, name));
  if (!s.ok()) return absl::Status(s.code(), absl::StrCat(dst_label_, ": ", s.message()));
  return s;
}

// Overlayfs lists a directory that has no lower counterpart and no origin
// xattr straight from the upper layer, whiteouts included (it never puts
// whiteouts there itself). A whiteout from F can land in such a directory of
// S (one that L may lack), so the directory gets an empty
// trusted.overlay.origin first: overlayfs's own mark for "copied up, origin
// unknown", which makes it filter whiteouts there. In an opaque directory a
// whiteout hides nothing: only the entry at the name is removed.
absl::Status Merger::PutWhiteout(DirPair& dir, const std::string& name,
                                 const std::string& temp, const std::optional<EntryFacts>& old) {
  XattrTarget dst_dir = XattrTarget::OfFd(dir.dst);
  if (!dir.opaque.has_value()) {
    absl::StatusOr<std::optional<std::string>> v = GetXattr(dst_dir, kOverlayOpaqueXattr);
    if (!v.ok()) return Annotate(dst_label_, dir.rel, v.status());
    dir.opaque = v->has_value() && **v == "y";
  }
  if (*dir.opaque && !dir.rel.empty()) return RemoveDst(dir, name);
  if (!dir.whiteouts_shown && !dir.rel.empty()) {
    absl::StatusOr<std::optional<std::string>> origin = GetXattr(dst_dir, kOverlayOriginXattr);
    if (!origin.ok()) return Annotate(dst_label_, dir.rel, origin.status());
    if (!origin->has_value()) {
      absl::Status s = SetXattr(dst_dir, kOverlayOriginXattr, "");
      if (!s.ok()) return Annotate(dst_label_, dir.rel, s);
    }
    dir.whiteouts_shown = true;
  }
  ++stats_.whiteouts;
  if (old.has_value() && IsWhiteoutDevice(*old)) return absl::OkStatus();
  absl::StatusOr<std::string> staged = Stage(dir, name, temp);
  if (!staged.ok()) return staged.status();
  if (mknodat(dir.dst, staged->c_str(), S_IFCHR | 0, makedev(0, 0)) != 0) {
    return DstErrno(Join(dir.rel, *staged), errno, "mknod of a whiteout");
  }
  return Install(dir, *staged, name, old, false);
}

absl::Status Merger::PutFile(const DirPair& dir, const std::string& name, const std::string& temp,
                             const std::optional<EntryFacts>& old, const SrcEntry& src) {
  const std::string rel = Join(dir.rel, name);
  absl::StatusOr<std::string> staged = Stage(dir, name, temp);
  if (!staged.ok()) return staged.status();
  Fd out(openat(dir.dst, staged->c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                0600));
  if (!out.valid()) return DstErrno(Join(dir.rel, *staged), errno, "create");
  absl::Status copied = CopyFileData(src.fd.get(), out.get(), src.facts.size, src.facts.blocks,
                                     &stats_.bytes);
  if (!copied.ok()) return Annotate(dst_label_, rel, copied);
  if (absl::Status s = SetFdAttrs(out.get(), src, rel); !s.ok()) return s;
  if (src.facts.nlink > 1) {
    EntryFacts made;
    if (int err = StatEntry(out.get(), "", &made); err != 0) return DstErrno(rel, err, "statx");
    links_[std::make_pair(src.facts.dev, src.facts.ino)] = LinkTarget{dir.rel, name, made.ino};
  }
  out.Reset();
  if (absl::Status s = Install(dir, *staged, name, old, false); !s.ok()) return s;
  ++stats_.files;
  return absl::OkStatus();
}

absl::Status Merger::PutHardlink(const DirPair& dir, const std::string& name,
                                 const std::string& temp, const std::optional<EntryFacts>& old,
                                 const LinkTarget& target) {
  const std::string rel = Join(dir.rel, name);
  const std::string first = Join(target.parent_rel, target.name);
  struct open_how how = {};
  how.flags = O_PATH | O_DIRECTORY | O_CLOEXEC;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;
  const std::string parent_path = target.parent_rel.empty() ? "." : target.parent_rel;
  Fd parent(static_cast<int>(
      syscall(SYS_openat2, dst_root_fd_, parent_path.c_str(), &how, sizeof(how))));
  if (!parent.valid()) return DstErrno(first, errno, "opening the directory of a hard link");
  EntryFacts facts;
  if (int err = StatEntry(parent.get(), target.name, &facts); err != 0 || facts.ino != target.ino) {
    return absl::AbortedError(absl::StrCat(dst_label_, ": '", first,
                                           "' changed while being written back"));
  }
  absl::StatusOr<std::string> staged = Stage(dir, name, temp);
  if (!staged.ok()) return staged.status();
  if (linkat(parent.get(), target.name.c_str(), dir.dst, staged->c_str(), 0) != 0) {
    return DstErrno(rel, errno, absl::StrCat("link to '", first, "'"));
  }
  if (absl::Status s = Install(dir, *staged, name, old, false); !s.ok()) return s;
  // Renaming a link onto another link of the same inode does nothing.
  if (*staged != name && unlinkat(dir.dst, staged->c_str(), 0) != 0 && errno != ENOENT) {
    return DstErrno(Join(dir.rel, *staged), errno, "unlink");
  }
  ++stats_.hardlinks;
  return absl::OkStatus();
}

absl::Status Merger::PutSymlink(const DirPair& dir, const std::string& name,
                                const std::string& temp, const std::optional<EntryFacts>& old,
                                const SrcEntry& src) {
  const std::string rel = Join(dir.rel, name);
  std::string target(src.facts.size + 1, '\0');
  while (true) {
    ssize_t n = readlinkat(dir.src, name.c_str(), target.data(), target.size());
    if (n < 0) return SrcErrno(rel, errno, "readlink");
    if (static_cast<size_t>(n) < target.size()) {
      target.resize(static_cast<size_t>(n));
      break;
    }
    target.resize(target.size() * 2);
  }
  absl::StatusOr<std::string> staged = Stage(dir, name, temp);
  if (!staged.ok()) return staged.status();
  if (symlinkat(target.c_str(), dir.dst, staged->c_str()) != 0) {
    return DstErrno(Join(dir.rel, *staged), errno, "symlink");
  }
  if (absl::Status s = SetEntryAttrs(dir.dst, *staged, src, rel); !s.ok()) return s;
  if (absl::Status s = Install(dir, *staged, name, old, false); !s.ok()) return s;
  ++stats_.symlinks;
  return absl::OkStatus();
}

absl::Status Merger::PutSpecial(const DirPair& dir, const std::string& name,
                                const std::string& temp, const std::optional<EntryFacts>& old,
                                const SrcEntry& src) {
  const std::string rel = Join(dir.rel, name);
  absl::StatusOr<std::string> staged = Stage(dir, name, temp);
  if (!staged.ok()) return staged.status();
  if (mknodat(dir.dst, staged->c_str(), src.facts.mode, src.facts.rdev) != 0) {
    return DstErrno(Join(dir.rel, *staged), errno, "mknod");
  }
  if (absl::Status s = SetEntryAttrs(dir.dst, *staged, src, rel); !s.ok()) return s;
  if (absl::Status s = Install(dir, *staged, name, old, false); !s.ok()) return s;
  ++stats_.specials;
  return absl::OkStatus();
}

absl::Status Merger::PutDir(const DirPair& dir, const std::string& name, const std::string& temp,
                            const std::optional<EntryFacts>& old, const SrcEntry& src) {
  const std::string rel = Join(dir.rel, name);
  // Over a whiteout or a non-directory of dst the lower layer was hidden in
  // the stacked view: the directory has to be opaque.
  const bool opaque = src.opaque || (old.has_value() && !S_ISDIR(old->mode));
  const int open_flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
  Fd sub;
  bool fresh = true;
  if (opaque) {
    absl::StatusOr<std::string> staged = Stage(dir, name, temp);
    if (!staged.ok()) return staged.status();
    if (mkdirat(dir.dst, staged->c_str(), 0700) != 0) {
      return DstErrno(Join(dir.rel, *staged), errno, "mkdir");
    }
    sub.Reset(openat(dir.dst, staged->c_str(), open_flags));
    if (!sub.valid()) return DstErrno(Join(dir.rel, *staged), errno, "open");
    absl::Status s = SetXattr(XattrTarget::OfFd(sub.get()), kOverlayOpaqueXattr, "y");
    if (!s.ok()) return Annotate(dst_label_, Join(dir.rel, *staged), s);
    if (absl::Status s = Install(dir, *staged, name, old, true); !s.ok()) return s;
    ++stats_.opaque_dirs;
  } else if (!old.has_value()) {
    if (mkdirat(dir.dst, name.c_str(), 0700) != 0) return DstErrno(rel, errno, "mkdir");
    sub.Reset(openat(dir.dst, name.c_str(), open_flags));
    if (!sub.valid()) return DstErrno(rel, errno, "open");
  } else {
    fresh = false;
    sub.Reset(openat(dir.dst, name.c_str(), open_flags));
    if (!sub.valid()) return DstErrno(rel, errno, "open");
    EntryFacts facts;
    if (int err = StatEntry(sub.get(), "", &facts); err != 0) return DstErrno(rel, err, "statx");
    if (!SameMount(facts, dst_root_)) return MountPoint(dst_label_, rel);
    if (facts.ino != old->ino) {
      return absl::AbortedError(
          absl::StrCat(dst_label_, ": '", rel, "' changed while being written back"));
    }
  }
  DirPair child{src.fd.get(), sub.get(), rel, fresh};
  if (fresh) child.opaque = opaque;
  if (absl::Status s = MergeDir(std::move(child)); !s.ok()) return s;
  if (absl::Status s = SetFdAttrs(sub.get(), src, rel); !s.ok()) return s;
  ++stats_.dirs;
  return absl::OkStatus();
}

// Makes the entry's xattrs (overlay bookkeeping aside) exactly `wanted`:
// also for a new entry, which may have inherited a default ACL of its
// directory in dst.
absl::Status Merger::ApplyXattrs(const XattrTarget& target, const std::vector<Xattr>& wanted,
                                 const std::string& rel) {
  absl::StatusOr<std::vector<std::string>> names = ListXattrNames(target);
  if (!names.ok()) return Annotate(dst_label_, rel, names.status());
  for (const std::string& n : *names) {
    if (IsOverlayPrivate(n)) continue;
    bool keep = std::any_of(wanted.begin(), wanted.end(),
                            [&](const Xattr& x) { return x.name == n; });
    if (keep) continue;
    absl::Status s = RemoveXattr(target, n);
    if (!s.ok()) return Annotate(dst_label_, rel, s);
  }
  for (const Xattr& x : wanted) {
    absl::Status s = SetXattr(target, x.name, x.value);
    if (!s.ok()) return Annotate(dst_label_, rel, s);
  }
  return absl::OkStatus();
}

// Owner first (chown drops setuid bits and security.capability), then xattrs
// (an ACL rewrites group mode bits), then the mode, then the times.
absl::Status Merger::SetFdAttrs(int fd, const SrcEntry& src, const std::string& rel) {
  const EntryFacts& f = src.facts;
  if (fchown(fd, f.uid, f.gid) != 0) return DstErrno(rel, errno, "chown");
  if (absl::Status s = ApplyXattrs(XattrTarget::OfFd(fd), src.xattrs, rel); !s.ok()) return s;
  if (fchmod(fd, f.mode & 07777) != 0) return DstErrno(rel, errno, "chmod");
  const struct timespec times[2] = {f.atime, f.mtime};
  if (futimens(fd, times) != 0) return DstErrno(rel, errno, "setting times");
  return absl::OkStatus();
}

absl::Status Merger::SetEntryAttrs(int dirfd, const std::string& name, const SrcEntry& src,
                                   const std::string& rel) {
  const EntryFacts& f = src.facts;
  if (fchownat(dirfd, name.c_str(), f.uid, f.gid, AT_SYMLINK_NOFOLLOW) != 0) {
    return DstErrno(rel, errno, "chown");
  }
  if (absl::Status s = ApplyXattrs(XattrTarget::OfEntry(dirfd, name), src.xattrs, rel); !s.ok()) return s;
  if (!S_ISLNK(f.mode) &&
      fchmodat(dirfd, name.c_str(), f.mode & 07777, AT_SYMLINK_NOFOLLOW) != 0) {
    return DstErrno(rel, errno, "chmod");
  }
  const struct timespec times[2] = {f.atime, f.mtime};
  if (utimensat(dirfd, name.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0) {
    return DstErrno(rel, errno, "setting times");
  }
  return absl::OkStatus();
}

absl::StatusOr<WriteBackStats> Merge(int src, int dst, const std::string& src_label,
                                     const std::string& dst_label) {
  EntryFacts src_facts, dst_facts;
  if (int err = StatEntry(src, "", &src_facts); err != 0) {
    return absl::ErrnoToStatus(err, absl::StrCat("statx of ", src_label));
  }
  if (int err = StatEntry(dst, "", &dst_facts); err != 0) {
    return absl::ErrnoToStatus(err, absl::StrCat("statx of ", dst_label));
  }
  absl::StatusOr<bool> dst_in_src = IsAtOrBelow(dst, src_facts);
  absl::StatusOr<bool> src_in_dst = IsAtOrBelow(src, dst_facts);
  if (!dst_in_src.ok()) return dst_in_src.status();
  if (!src_in_dst.ok()) return src_in_dst.status();
  if (*dst_in_src || *src_in_dst) {
    return absl::InvalidArgumentError(absl::StrCat(
        src_label, " and ", dst_label, " overlap (the same directory, or one inside the other)"));
  }
  Merger merger(src_label, dst_label);
  absl::Status s = merger.Run(src, dst);
  if (!s.ok()) return s;
  if (syncfs(dst) != 0) return absl::ErrnoToStatus(errno, absl::StrCat("syncfs of ", dst_label));
  return merger.stats();
}

}  // namespace

absl::StatusOr<WriteBackStats> MergeUpperLayer(int src_dirfd, int dst_dirfd) {
  return Merge(src_dirfd, dst_dirfd, "src layer", "dst layer");
}

absl::StatusOr<WriteBackStats> MergeUpperLayer(const std::string& src, const std::string& dst) {
  const int flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
  Fd src_fd(open(src.c_str(), flags));
  if (!src_fd.valid()) {
    return absl::ErrnoToStatus(errno, absl::StrCat("opening src layer '", src, "'"));
  }
  Fd dst_fd(open(dst.c_str(), flags));
  if (!dst_fd.valid()) {
    return absl::ErrnoToStatus(errno, absl::StrCat("opening dst layer '", dst, "'"));
  }
  return Merge(src_fd.get(), dst_fd.get(), absl::StrCat("src layer '", src, "'"),
               absl::StrCat("dst layer '", dst, "'"));
}

absl::Status RemoveTree(int dirfd, const std::string& name) {
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "RemoveTree: '", name, "' is not a single name below the directory"));
  }
  return RemoveTreeNamed(dirfd, name, name);
}

}  // namespace gputier
