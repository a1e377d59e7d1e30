#include "loader/cgroup/cgroup_resolver.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "loader/base/node_facts.h"

namespace gputier {
namespace {

// Linux's FILEID_KERNFS: kernfs (cgroupfs) file handles carry the node id.
constexpr int kFileIdKernfs = 0xfe;

absl::StatusOr<std::string> ReadText(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::ErrnoToStatus(errno, absl::StrCat("reading ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

absl::StatusOr<CgroupResolver> CgroupResolver::Create() {
  absl::StatusOr<std::string> mountinfo = ReadText("/proc/self/mountinfo");
  if (!mountinfo.ok()) return mountinfo.status();
  absl::StatusOr<std::string> mount = FindMountPoint(*mountinfo, "cgroup2");
  if (!mount.ok()) return mount.status();
  int fd = open(mount->c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return absl::ErrnoToStatus(errno, absl::StrCat("opening cgroup2 mount ", *mount));
  return CgroupResolver(*mount, Fd(fd));
}

absl::StatusOr<std::string> CgroupResolver::PathOf(uint64_t cgroup_id) const {
  struct {
    struct file_handle fh;
    uint64_t id;
  } handle;
  handle.fh.handle_bytes = sizeof(uint64_t);
  handle.fh.handle_type = kFileIdKernfs;
  memcpy(handle.fh.f_handle, &cgroup_id, sizeof(cgroup_id));
  int fd = open_by_handle_at(mount_fd_.get(), &handle.fh, O_RDONLY | O_PATH | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ESTALE || errno == ENOENT) {
      return absl::NotFoundError(absl::StrCat("cgroup ", cgroup_id, " no longer exists"));
    }
    return absl::ErrnoToStatus(errno, absl::StrCat("resolving cgroup id ", cgroup_id));
  }
  Fd owned(fd);
  char link[PATH_MAX];
  std::string proc = absl::StrCat("/proc/self/fd/", fd);
  ssize_t n = readlink(proc.c_str(), link, sizeof(link) - 1);
  if (n < 0) return absl::ErrnoToStatus(errno, absl::StrCat("reading ", proc));
  std::string path(link, n);
  if (!absl::StartsWith(path, mount_point_)) return path;  // outside our view (another cgroupns)
  std::string rel = path.substr(mount_point_.size());
  return rel.empty() ? "/" : rel;
}

absl::StatusOr<uint64_t> CgroupResolver::IdOf(const std::string& relative_path) const {
  std::string full = absl::StrCat(mount_point_, relative_path == "/" ? "" : relative_path);
  struct stat st;
  if (stat(full.c_str(), &st) != 0) return absl::ErrnoToStatus(errno, absl::StrCat("stat ", full));
  return static_cast<uint64_t>(st.st_ino);
}

absl::StatusOr<uint64_t> CgroupResolver::SelfId() const {
  absl::StatusOr<std::string> text = ReadText("/proc/self/cgroup");
  if (!text.ok()) return text.status();
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    if (absl::StartsWith(line, "0::")) return IdOf(std::string(line.substr(3)));
  }
  return absl::NotFoundError("/proc/self/cgroup has no cgroup v2 (0::) line");
}

absl::flat_hash_set<std::string> CgroupResolver::RuncIds(const std::string& state_dir) {
  absl::flat_hash_set<std::string> ids;
  DIR* dir = opendir(state_dir.c_str());
  if (dir == nullptr) return ids;
  while (struct dirent* e = readdir(dir)) {
    if (e->d_name[0] == '.') continue;
    ids.insert(e->d_name);
  }
  closedir(dir);
  return ids;
}

}  // namespace gputier
