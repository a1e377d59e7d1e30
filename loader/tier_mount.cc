#include "loader/tier_mount.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <functional>

#include "absl/strings/str_cat.h"

namespace gputier {
namespace {

constexpr long kOverlayfsMagic = 0x794c7630;  // OVERLAYFS_SUPER_MAGIC

struct MountFacts {
  uint64_t mount_id = 0;
  bool mount_root = false;
  bool overlay = false;
};

absl::StatusOr<MountFacts> FactsOf(int fd, absl::string_view what) {
  struct statx stx;
  std::memset(&stx, 0, sizeof(stx));
  if (statx(fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS | STATX_MNT_ID, &stx) !=
      0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("statx of ", what));
  }
  MountFacts facts;
  if (stx.stx_mask & STATX_MNT_ID) facts.mount_id = stx.stx_mnt_id;
  facts.mount_root = (stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) &&
                     (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT);
  struct statfs sfs;
  if (fstatfs(fd, &sfs) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("statfs of ", what));
  }
  facts.overlay = sfs.f_type == kOverlayfsMagic;
  return facts;
}

// Runs `body` in a forked child that has entered the mount namespace
// `mntns_fd`. `body` returns 0 or an errno and may hand back one fd, which
// arrives in `*received` (may be null when no fd is expected). `body` runs
// after fork in a possibly multithreaded process: raw syscalls only.
absl::Status RunInMountNamespace(int mntns_fd,
                                 const std::function<int(int* out_fd)>& body,
                                 Fd* received, absl::string_view what) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat(what, ": socketpair"));
  }
  Fd parent_end(sv[0]);
  Fd child_end(sv[1]);
  pid_t child = fork();
  if (child < 0) return absl::ErrnoToStatus(errno, absl::StrCat(what, ": fork"));
  if (child == 0) {
    int err = 0;
    int out_fd = -1;
    if (setns(mntns_fd, CLONE_NEWNS) != 0) {
      err = errno;
    } else {
      err = body(&out_fd);
    }
    struct msghdr msg;
    std::memset(&msg, 0, sizeof(msg));
    struct iovec iov = {&err, sizeof(err)};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int))];
    if (err == 0 && out_fd >= 0) {
      std::memset(control, 0, sizeof(control));
      msg.msg_control = control;
      msg.msg_controllen = sizeof(control);
      struct cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
      cmsg->cmsg_level = SOL_SOCKET;
      cmsg->cmsg_type = SCM_RIGHTS;
      cmsg->cmsg_len = CMSG_LEN(sizeof(int));
      std::memcpy(CMSG_DATA(cmsg), &out_fd, sizeof(int));
    }
    _exit(sendmsg(child_end.get(), &msg, MSG_NOSIGNAL) < 0 ? 1 : 0);
  }
  child_end.Reset();

  int err = EPROTO;
  struct msghdr msg;
  std::memset(&msg, 0, sizeof(msg));
  struct iovec iov = {&err, sizeof(err)};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  ssize_t n;
  do {
    n = recvmsg(parent_end.get(), &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  int recv_errno = errno;
  int status = 0;
  while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  Fd fd;
  if (n == static_cast<ssize_t>(sizeof(err))) {
    for (struct cmsghdr* cmsg = CMSG_FIRSTHDR(&msg); cmsg != nullptr;
         cmsg = CMSG_NXTHDR(&msg, cmsg)) {
      if (cmsg->cmsg_level == SOL_SOCKET && cmsg->cmsg_type == SCM_RIGHTS) {
        int got;
        std::memcpy(&got, CMSG_DATA(cmsg), sizeof(int));
        fd.Reset(got);
      }
    }
  } else {
    return absl::ErrnoToStatus(n < 0 ? recv_errno : EPROTO,
                          absl::StrCat(what, ": no answer from the child in "
                                             "the container's namespace"));
  }
  if (err != 0) return absl::ErrnoToStatus(err, what);
  if (received != nullptr) {
    if (!fd.valid()) {
      return absl::ErrnoToStatus(EPROTO, absl::StrCat(what, ": no fd came back"));
    }
    *received = std::move(fd);
  }
  return absl::OkStatus();
}

absl::Status MakeDirectory(const std::string& path, mode_t mode) {
  if (mkdir(path.c_str(), mode) == 0 || errno == EEXIST) {
    struct stat st;
    if (lstat(path.c_str(), &st) != 0) {
      return absl::ErrnoToStatus(errno, absl::StrCat("stat of tier directory ", path));
    }
    if (!S_ISDIR(st.st_mode)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "tier directory ", path, " exists but is not a directory; remove it"));
    }
    return absl::OkStatus();
  }
  return absl::ErrnoToStatus(errno, absl::StrCat("creating tier directory ", path));
}

// The overlay's error log: fsconfig() failures explain themselves there.
std::string DrainFsLog(int fs_fd) {
  std::string log;
  char buf[512];
  for (int i = 0; i < 16; ++i) {
    ssize_t n = read(fs_fd, buf, sizeof(buf) - 1);
    if (n <= 0) break;
    buf[n] = '\0';
    absl::StrAppend(&log, log.empty() ? "" : "; ", buf);
  }
  return log;
}

absl::Status FsConfigString(int fs_fd, const char* key, const std::string& value) {
  if (fsconfig(fs_fd, FSCONFIG_SET_STRING, key, value.c_str(), 0) != 0) {
    int err = errno;
    return absl::ErrnoToStatus(
        err, absl::StrCat("overlay option ", key, "=", value, " refused (",
                          DrainFsLog(fs_fd), ")"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<TierLayout> PlanTierLayout(absl::string_view tier_root,
                                          absl::string_view container_id,
                                          const ContainerPath& path) {
  if (tier_root.empty() || tier_root[0] != '/') {
    return absl::InvalidArgumentError(absl::StrCat(
        "tier root '", tier_root, "' is not an absolute host path"));
  }
  if (absl::Status s = ValidateContainerId(container_id); !s.ok()) return s;
  while (tier_root.size() > 1 && tier_root.back() == '/') {
    tier_root.remove_suffix(1);
  }
  TierLayout layout;
  layout.dir = absl::StrCat(tier_root == "/" ? "" : tier_root, "/",
                            container_id, "/", EscapeContainerPath(path));
  layout.upper = absl::StrCat(layout.dir, "/upper");
  layout.work = absl::StrCat(layout.dir, "/work");
  return layout;
}

absl::StatusOr<TierMount> MountTier(const TierMountRequest& request) {
  absl::StatusOr<TierLayout> layout =
      PlanTierLayout(request.tier_root, request.container_id, request.path);
  if (!layout.ok()) return layout.status();
  const std::string& cpath = request.path.path;

  // 1. Resolve the container path from the host, safely.
  absl::StatusOr<Fd> root = OpenContainerRoot(request.pid);
  if (!root.ok()) return root.status();
  absl::StatusOr<Fd> target = OpenContainerDirectory(root->get(), request.path);
  if (!target.ok()) return target.status();
  absl::StatusOr<MountFacts> facts = FactsOf(target->get(), cpath);
  if (!facts.ok()) return facts.status();
  if (facts->overlay && facts->mount_root) {
    return absl::AlreadyExistsError(absl::StrCat(
        "container path '", cpath,
        "' is already the root of an overlay mount (tiered already?); "
        "unmount it first"));
  }
  struct stat target_st;
  if (fstat(target->get(), &target_st) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("stat of container path '", cpath, "'"));
  }
  std::string ns_path = absl::StrCat("/proc/", request.pid, "/ns/mnt");
  Fd mntns(open(ns_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!mntns.valid()) return absl::ErrnoToStatus(errno, absl::StrCat("opening ", ns_path));

  // The tier directories. `upper` becomes the overlay's root directory, so
  // it takes the owner and mode of the directory it replaces.
  struct stat root_st;
  if (stat(request.tier_root.c_str(), &root_st) != 0 || !S_ISDIR(root_st.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "tier root ", request.tier_root, " is not an existing directory; create it"));
  }
  std::string id_dir = absl::StrCat(request.tier_root, "/", request.container_id);
  for (const std::string* dir : {&id_dir, &layout->dir, &layout->upper, &layout->work}) {
    if (absl::Status s = MakeDirectory(*dir, 0700); !s.ok()) return s;
  }
  if (chown(layout->upper.c_str(), target_st.st_uid, target_st.st_gid) != 0 ||
      chmod(layout->upper.c_str(), target_st.st_mode & 07777) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("copying owner and mode of '", cpath,
                                              "' to ", layout->upper));
  }

  // 2. The current content of the path, as a detached mount.
  int target_fd = target->get();
  Fd lower;
  absl::Status cloned = RunInMountNamespace(
      mntns.get(),
      [target_fd](int* out_fd) {
        int fd = open_tree(target_fd, "",
                           OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH);
        if (fd < 0) return errno;
        *out_fd = fd;
        return 0;
      },
      &lower, absl::StrCat("cloning container path '", cpath, "' (open_tree)"));
  if (!cloned.ok()) return cloned;

  // 3. The overlay, built in the agent's namespace.
  Fd fs(fsopen("overlay", FSOPEN_CLOEXEC));
  if (!fs.valid()) {
    return absl::ErrnoToStatus(errno, "fsopen(\"overlay\") (is overlayfs available?)");
  }
  if (absl::Status s = FsConfigString(fs.get(), "lowerdir",
                                      absl::StrCat("/proc/self/fd/", lower.get()));
      !s.ok()) {
    return s;
  }
  if (absl::Status s = FsConfigString(fs.get(), "upperdir", layout->upper); !s.ok()) return s;
  if (absl::Status s = FsConfigString(fs.get(), "workdir", layout->work); !s.ok()) return s;
  if (fsconfig(fs.get(), FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) != 0) {
    int err = errno;
    return absl::ErrnoToStatus(err, absl::StrCat("creating the overlay for '", cpath, "' (",
                                            DrainFsLog(fs.get()), ")"));
  }
  Fd overlay(fsmount(fs.get(), FSMOUNT_CLOEXEC, 0));
  if (!overlay.valid()) {
    return absl::ErrnoToStatus(errno, absl::StrCat("fsmount of the overlay for '", cpath, "'"));
  }
  absl::StatusOr<MountFacts> overlay_facts = FactsOf(overlay.get(), "the new overlay");
  if (!overlay_facts.ok()) return overlay_facts.status();

  // 4. Onto the container path, inside the container's namespace.
  int overlay_fd = overlay.get();
  absl::Status moved = RunInMountNamespace(
      mntns.get(),
      [overlay_fd, target_fd](int*) {
        if (move_mount(overlay_fd, "", target_fd, "",
                       MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) != 0) {
          return errno;
        }
        return 0;
      },
      nullptr, absl::StrCat("moving the overlay onto container path '", cpath, "'"));
  if (!moved.ok()) return moved;
  return TierMount{*std::move(layout), overlay_facts->mount_id};
}

absl::Status UnmountTier(pid_t pid, const ContainerPath& path,
                         uint64_t expected_mount_id) {
  absl::StatusOr<Fd> root = OpenContainerRoot(pid);
  if (!root.ok()) return root.status();
  absl::StatusOr<Fd> target = OpenContainerDirectory(root->get(), path);
  if (!target.ok()) return target.status();
  absl::StatusOr<MountFacts> facts = FactsOf(target->get(), path.path);
  if (!facts.ok()) return facts.status();
  if (!facts->overlay || !facts->mount_root) {
    return absl::FailedPreconditionError(absl::StrCat(
        "container path '", path.path, "' is not an overlay mount; nothing to unmount"));
  }
  if (expected_mount_id != 0 && facts->mount_id != expected_mount_id) {
    return absl::FailedPreconditionError(absl::StrCat(
        "container path '", path.path, "' holds mount ", facts->mount_id,
        ", not the tier mount ", expected_mount_id, "; left untouched"));
  }
  std::string ns_path = absl::StrCat("/proc/", pid, "/ns/mnt");
  Fd mntns(open(ns_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!mntns.valid()) return absl::ErrnoToStatus(errno, absl::StrCat("opening ", ns_path));
  int target_fd = target->get();
  return RunInMountNamespace(
      mntns.get(),
      [target_fd](int*) {
        // setns() reset the cwd; stand on the overlay's root and detach it.
        if (fchdir(target_fd) != 0) return errno;
        if (umount2(".", MNT_DETACH) != 0) return errno;
        return 0;
      },
      nullptr, absl::StrCat("unmounting the tier at container path '", path.path, "'"));
}

}  // namespace gputier
