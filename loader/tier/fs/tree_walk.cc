#include "loader/tier/fs/tree_walk.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/strings/str_cat.h"

namespace gputier {
namespace {

constexpr int kDirFlags = O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;

}  // namespace

DirChain::DirChain(int root, int open_flags, size_t max_open)
    : root_(root), open_flags_(open_flags | kDirFlags), max_open_(max_open < 1 ? 1 : max_open) {}

absl::Status DirChain::Push(Fd dir, const std::string& name) {
  EntryFacts facts;
  if (int err = StatEntry(dir.get(), "", &facts); err != 0) {
    return absl::ErrnoToStatus(err, absl::StrCat("statx of '", Path(), "/", name, "'"));
  }
  levels_.push_back(Level{std::move(dir), name, facts.dev, facts.ino});
  ++open_;
  while (open_ > max_open_) {
    levels_[first_open_].fd.Reset();
    ++first_open_;
    --open_;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> DirChain::Pop() {
  if (levels_.empty()) return absl::InternalError("DirChain::Pop at the root");
  const size_t child = levels_.size() - 1;
  std::string name = std::move(levels_[child].name);
  Fd up;
  if (child > 0 && !levels_[child - 1].fd.valid()) {
    const int from = levels_[child].fd.get();
    up.Reset(openat(from, "..", open_flags_));
    if (!up.valid() && errno == EPERM && (open_flags_ & O_NOATIME)) {
      up.Reset(openat(from, "..", open_flags_ & ~O_NOATIME));
    }
    if (!up.valid()) {
      int err = errno;
      levels_.pop_back();
      --open_;
      return absl::ErrnoToStatus(err, absl::StrCat("reopening '", Path(), "'"));
    }
  }
  levels_.pop_back();
  --open_;
  if (up.valid()) {
    Level& parent = levels_.back();
    EntryFacts facts;
    if (int err = StatEntry(up.get(), "", &facts); err != 0) {
      return absl::ErrnoToStatus(err, absl::StrCat("statx of '", Path(), "'"));
    }
    if (facts.dev != parent.dev || facts.ino != parent.ino) {
      return absl::AbortedError(absl::StrCat("'", Path(), "' changed while being walked"));
    }
    parent.fd = std::move(up);
    first_open_ = levels_.size() - 1;
    ++open_;
  }
  if (first_open_ > levels_.size()) first_open_ = levels_.size();
  return name;
}

std::string DirChain::Path() const {
  std::string path;
  for (const Level& l : levels_) {
    if (!path.empty()) path += '/';
    path += l.name;
  }
  return path;
}

namespace {

// What a walk keeps per level besides the DirChain's own: the entries still
// to look at (read whole, sorted, when the level is entered).
struct PendingEntries {
  std::vector<DirEntry> entries;
  size_t next = 0;
};

std::string Below(const std::string& shown, const std::string& rel) {
  return rel.empty() ? shown : absl::StrCat(shown, "/", rel);
}

// Walks the tree below the open directory `root` (named `shown` in errors),
// depth first. For each entry of the directory chain.top(), `visit` returns
// a directory to enter (open, a child of chain.top()) or an invalid Fd to go
// on with the next entry. After a directory's entries, `leave` gets the name
// of the directory left, chain.top() being its parent.
absl::Status WalkTree(
    int root, const std::string& shown,
    absl::FunctionRef<absl::StatusOr<Fd>(const DirChain&, const DirEntry&)> visit,
    absl::FunctionRef<absl::Status(const DirChain&, const std::string&)> leave) {
  DirChain chain(root, O_RDONLY);
  std::vector<PendingEntries> pending;
  auto list = [&](int fd, const std::string& name) -> absl::Status {
    absl::StatusOr<std::vector<DirEntry>> entries = ReadDirectory(fd);
    if (!entries.ok()) {
      return absl::Status(entries.status().code(),
                          absl::StrCat("listing '", Below(Below(shown, chain.Path()), name),
                                       "': ", entries.status().message()));
    }
    pending.push_back(PendingEntries{*std::move(entries)});
    return absl::OkStatus();
  };
  if (absl::Status s = list(root, ""); !s.ok()) return s;
  while (true) {
    PendingEntries& level = pending.back();
    if (level.next == level.entries.size()) {
      if (chain.depth() == 0) return absl::OkStatus();
      pending.pop_back();
      absl::StatusOr<std::string> left = chain.Pop();
      if (!left.ok()) {
        return absl::Status(left.status().code(),
                            absl::StrCat(shown, ": ", left.status().message()));
      }
      if (absl::Status s = leave(chain, *left); !s.ok()) return s;
      continue;
    }
    const DirEntry entry = level.entries[level.next++];  // `level` moves when `pending` grows
    absl::StatusOr<Fd> sub = visit(chain, entry);
    if (!sub.ok()) return sub.status();
    if (!sub->valid()) continue;
    if (absl::Status s = list(sub->get(), entry.name); !s.ok()) return s;
    if (absl::Status s = chain.Push(*std::move(sub), entry.name); !s.ok()) return s;
  }
}

absl::Status MountPointError(const std::string& shown) {
  return absl::FailedPreconditionError(
      absl::StrCat("'", shown, "' is a mount point; removal never crosses mounts"));
}

}  // namespace

absl::Status RemoveTreeNamed(int dirfd, const std::string& name, const std::string& shown) {
  if (unlinkat(dirfd, name.c_str(), 0) == 0 || errno == ENOENT) return absl::OkStatus();
  if (errno == EBUSY) return MountPointError(shown);
  if (errno != EISDIR) return absl::ErrnoToStatus(errno, absl::StrCat("removing '", shown, "'"));
  EntryFacts parent;
  if (int err = StatEntry(dirfd, "", &parent); err != 0) {
    return absl::ErrnoToStatus(err, absl::StrCat("statx of the directory holding '", shown, "'"));
  }
  Fd root(openat(dirfd, name.c_str(), O_RDONLY | kDirFlags));
  if (!root.valid()) {
    if (errno == ENOENT) return absl::OkStatus();
    return absl::ErrnoToStatus(errno, absl::StrCat("opening '", shown, "' to remove it"));
  }
  EntryFacts root_facts;
  if (int err = StatEntry(root.get(), "", &root_facts); err != 0) {
    return absl::ErrnoToStatus(err, absl::StrCat("statx of '", shown, "'"));
  }
  if (!SameMount(parent, root_facts)) return MountPointError(shown);

  // Entries are unlinked as they are met; a directory is entered, emptied,
  // and removed when left.
  auto visit = [&](const DirChain& chain, const DirEntry& entry) -> absl::StatusOr<Fd> {
    const int at = chain.top();
    if (unlinkat(at, entry.name.c_str(), 0) == 0 || errno == ENOENT) return Fd();
    auto here = [&] { return Below(Below(shown, chain.Path()), entry.name); };
    if (errno == EBUSY) return MountPointError(here());
    if (errno != EISDIR) return absl::ErrnoToStatus(errno, absl::StrCat("removing '", here(), "'"));
    Fd sub(openat(at, entry.name.c_str(), O_RDONLY | kDirFlags));
    if (!sub.valid()) {
      if (errno == ENOENT) return Fd();
      return absl::ErrnoToStatus(errno, absl::StrCat("opening '", here(), "' to remove it"));
    }
    EntryFacts facts;
    if (int err = StatEntry(sub.get(), "", &facts); err != 0) {
      return absl::ErrnoToStatus(err, absl::StrCat("statx of '", here(), "'"));
    }
    if (!SameMount(root_facts, facts)) return MountPointError(here());
    return sub;
  };
  auto leave = [&](const DirChain& chain, const std::string& left) -> absl::Status {
    if (unlinkat(chain.top(), left.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) {
      return absl::ErrnoToStatus(
          errno, absl::StrCat("removing directory '", Below(Below(shown, chain.Path()), left), "'"));
    }
    return absl::OkStatus();
  };
  if (absl::Status s = WalkTree(root.get(), shown, visit, leave); !s.ok()) return s;
  root.Reset();
  if (unlinkat(dirfd, name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) {
    return absl::ErrnoToStatus(errno, absl::StrCat("removing directory '", shown, "'"));
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> TreeAllocatedBytes(const std::string& dir) {
  Fd root(open(dir.c_str(), O_RDONLY | kDirFlags));
  if (!root.valid()) {
    if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP) return 0;
    return absl::ErrnoToStatus(errno, absl::StrCat("opening '", dir, "'"));
  }
  EntryFacts root_facts;
  if (int err = StatEntry(root.get(), "", &root_facts); err != 0) {
    return absl::ErrnoToStatus(err, absl::StrCat("statx of '", dir, "'"));
  }
  uint64_t bytes = 0;
  auto visit = [&](const DirChain& chain, const DirEntry& entry) -> absl::StatusOr<Fd> {
    EntryFacts facts;
    if (int err = StatEntry(chain.top(), entry.name, &facts); err != 0) {
      if (err == ENOENT) return Fd();  // gone since listed
      return absl::ErrnoToStatus(
          err, absl::StrCat("statx of '", Below(Below(dir, chain.Path()), entry.name), "'"));
    }
    if (S_ISREG(facts.mode)) bytes += facts.blocks * 512;
    if (!S_ISDIR(facts.mode)) return Fd();
    Fd sub(openat(chain.top(), entry.name.c_str(), O_RDONLY | kDirFlags));
    if (!sub.valid()) return Fd();  // gone or replaced since the statx
    if (StatEntry(sub.get(), "", &facts) != 0 || !SameMount(root_facts, facts)) return Fd();
    return sub;
  };
  auto leave = [](const DirChain&, const std::string&) { return absl::OkStatus(); };
  if (absl::Status s = WalkTree(root.get(), dir, visit, leave); !s.ok()) return s;
  return bytes;
}

}  // namespace gputier
