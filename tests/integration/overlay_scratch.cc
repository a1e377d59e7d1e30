#include "tests/integration/overlay_scratch.h"

#include <dirent.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <map>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "loader/tier/fs/tier_writeback.h"

namespace gputier::testing {
namespace {

constexpr char kScratchParent[] = "/var/tmp";

uint64_t Fnv(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

std::string ReadAll(int fd) {
  std::string out;
  char buf[65536];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) out.append(buf, n);
  return out;
}

class TreeWalk {
 public:
  void Describe(int dirfd, const std::string& name, const std::string& path,
                const struct stat& st, const std::string& proc_path) {
    std::string line = absl::StrFormat("%s mode=%o uid=%d gid=%d", absl::CEscape(path),
                                       st.st_mode, st.st_uid, st.st_gid);
    if (S_ISREG(st.st_mode)) {
      int fd = openat(dirfd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NOATIME | O_CLOEXEC);
      absl::StrAppend(&line, " size=", st.st_size, " data=", absl::Hex(Fnv(ReadAll(fd))));
      close(fd);
      if (st.st_nlink > 1) inodes_[st.st_ino].push_back(path);
    } else if (S_ISLNK(st.st_mode)) {
      char buf[4096];
      ssize_t n = readlinkat(dirfd, name.c_str(), buf, sizeof(buf));
      absl::StrAppend(&line, " -> ", absl::CEscape(std::string(buf, n > 0 ? n : 0)));
    } else if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
      absl::StrAppend(&line, " rdev=", major(st.st_rdev), ":", minor(st.st_rdev));
    }
    absl::StrAppend(&line, " atime=", st.st_atim.tv_sec, ".", st.st_atim.tv_nsec,
                    " mtime=", st.st_mtim.tv_sec, ".", st.st_mtim.tv_nsec);
    char names[65536];
    ssize_t n = llistxattr(proc_path.c_str(), names, sizeof(names));
    std::vector<std::string> xattrs;
    for (ssize_t i = 0; i < n; i += std::strlen(names + i) + 1) {
      char value[65536];
      ssize_t v = lgetxattr(proc_path.c_str(), names + i, value, sizeof(value));
      xattrs.push_back(absl::StrCat(names + i, "=",
                                    absl::BytesToHexString(std::string(value, v > 0 ? v : 0))));
    }
    std::sort(xattrs.begin(), xattrs.end());
    if (!xattrs.empty()) absl::StrAppend(&line, " xattrs: ", absl::StrJoin(xattrs, " "));
    lines_.push_back(line);
  }

  void Walk(int dirfd, const std::string& rel) {
    DIR* d = fdopendir(openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (d == nullptr) {
      ADD_FAILURE() << "opendir " << rel << ": " << std::strerror(errno);
      return;
    }
    std::vector<std::string> names;
    while (struct dirent* e = readdir(d)) {
      if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) {
        names.push_back(e->d_name);
      }
    }
    closedir(d);
    std::sort(names.begin(), names.end());
    for (const std::string& name : names) {
      std::string path = rel.empty() ? name : absl::StrCat(rel, "/", name);
      struct stat st;
      if (fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        ADD_FAILURE() << "lstat " << path << ": " << std::strerror(errno);
        continue;
      }
      Describe(dirfd, name, path, st, absl::StrCat("/proc/self/fd/", dirfd, "/", name));
      if (S_ISDIR(st.st_mode)) {
        int sub = openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        Walk(sub, path);
        close(sub);
      }
    }
  }

  std::vector<std::string> Finish() {
    for (const auto& [ino, paths] : inodes_) {
      if (paths.size() > 1) {
        lines_.push_back(absl::StrCat("links: ", absl::CEscape(absl::StrJoin(paths, " = "))));
      }
    }
    std::sort(lines_.begin(), lines_.end());
    return std::move(lines_);
  }

 private:
  std::vector<std::string> lines_;
  std::map<ino_t, std::vector<std::string>> inodes_;
};

}  // namespace

Scratch::Scratch() {
  std::string tmpl = absl::StrCat(kScratchParent, "/gputier-wb-XXXXXX");
  if (mkdtemp(tmpl.data()) == nullptr) return;
  path_ = tmpl;
  if (mount(path_.c_str(), path_.c_str(), nullptr, MS_BIND, nullptr) != 0) return;
  bound_ = true;
  ok_ = mount(nullptr, path_.c_str(), nullptr, MS_REMOUNT | MS_BIND | MS_NOATIME, nullptr) == 0 &&
        mount(nullptr, path_.c_str(), nullptr, MS_PRIVATE, nullptr) == 0;
}

Scratch::~Scratch() {
  for (auto it = mounts_.rbegin(); it != mounts_.rend(); ++it) umount2(it->c_str(), MNT_DETACH);
  if (bound_) umount2(path_.c_str(), MNT_DETACH);
  if (path_.empty()) return;
  int parent = open(kScratchParent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  absl::Status s = RemoveTree(parent, path_.substr(std::strlen(kScratchParent) + 1));
  close(parent);
  if (!s.ok()) ADD_FAILURE() << "cleaning up " << path_ << ": " << s;
}

std::string Scratch::Dir(const std::string& name) {
  std::string p = absl::StrCat(path_, "/", name);
  EXPECT_SYS_OK(mkdir(p.c_str(), 0755));
  return p;
}

void Scratch::MountOverlay(const std::string& target, const std::string& lowers,
                           const std::string& upper, const std::string& work) {
  std::string opts = absl::StrCat("lowerdir=", lowers, ",upperdir=", upper, ",workdir=", work,
                                  ",index=off,redirect_dir=off,metacopy=off,xino=off");
  EXPECT_SYS_OK(mount("overlay", target.c_str(), "overlay", MS_NOATIME, opts.c_str()));
  mounts_.push_back(target);
}

void Scratch::Bind(const std::string& from, const std::string& target) {
  EXPECT_SYS_OK(mount(from.c_str(), target.c_str(), nullptr, MS_BIND, nullptr));
  mounts_.push_back(target);
}

void Scratch::Unmount(const std::string& target) {
  EXPECT_SYS_OK(umount2(target.c_str(), 0));
  auto it = std::find(mounts_.begin(), mounts_.end(), target);
  if (it != mounts_.end()) mounts_.erase(it);
}

void WriteFile(const std::string& path, const std::string& data, int extra_flags) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | extra_flags, 0644);
  if (fd < 0) {
    ADD_FAILURE() << "open " << path << ": " << std::strerror(errno);
    return;
  }
  if (write(fd, data.data(), data.size()) != static_cast<ssize_t>(data.size())) {
    ADD_FAILURE() << "write " << path << ": " << std::strerror(errno);
  }
  close(fd);
}

std::string Pattern(size_t size, uint32_t seed) {
  std::string s(size, '\0');
  uint32_t x = seed * 2654435761u + 1;
  for (char& c : s) {
    x = x * 1664525u + 1013904223u;
    c = static_cast<char>(x >> 24);
  }
  return s;
}

std::vector<std::string> SnapshotTree(const std::string& root) {
  int fd = open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    ADD_FAILURE() << "open " << root << ": " << std::strerror(errno);
    return {};
  }
  TreeWalk walk;
  struct stat st;
  if (fstat(fd, &st) == 0) walk.Describe(fd, "", ".", st, absl::StrCat("/proc/self/fd/", fd));
  walk.Walk(fd, "");
  close(fd);
  return walk.Finish();
}

std::string DiffSnapshots(const std::vector<std::string>& a, const std::vector<std::string>& b) {
  std::string out;
  for (const std::string& l : a) {
    if (!std::binary_search(b.begin(), b.end(), l)) absl::StrAppend(&out, "- ", l, "\n");
  }
  for (const std::string& l : b) {
    if (!std::binary_search(a.begin(), a.end(), l)) absl::StrAppend(&out, "+ ", l, "\n");
  }
  return out;
}

}  // namespace gputier::testing
