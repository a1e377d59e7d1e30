#include "loader/tier/fs/tier_mount.h"

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

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "loader/base/mount_refs.h"
#include "loader/base/read_file.h"
#include "loader/tier/fs/tier_path.h"

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

// The one message a child in the container's mount namespace sends back:
// an errno, and room for one fd passed with SCM_RIGHTS. Sent and received
// in place (it points into itself); no allocation, so the child may build it
// after fork.
struct ChildAnswer {
  int err;
  struct iovec iov;
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  struct msghdr msg;

  ChildAnswer(int initial_err, bool room_for_fd) : err(initial_err) {
    std::memset(control, 0, sizeof(control));
    std::memset(&msg, 0, sizeof(msg));
    iov = {&err, sizeof(err)};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (room_for_fd) {
      msg.msg_control = control;
      msg.msg_controllen = sizeof(control);
    }
  }
  ChildAnswer(const ChildAnswer&) = delete;
  ChildAnswer& operator=(const ChildAnswer&) = delete;
};

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
    ChildAnswer answer(err, /*room_for_fd=*/err == 0 && out_fd >= 0);
    if (answer.msg.msg_control != nullptr) {
      struct cmsghdr* cmsg = CMSG_FIRSTHDR(&answer.msg);
      cmsg->cmsg_level = SOL_SOCKET;
      cmsg->cmsg_type = SCM_RIGHTS;
      cmsg->cmsg_len = CMSG_LEN(sizeof(int));
      std::memcpy(CMSG_DATA(cmsg), &out_fd, sizeof(int));
    }
    _exit(sendmsg(child_end.get(), &answer.msg, MSG_NOSIGNAL) < 0 ? 1 : 0);
  }
  child_end.Reset();

  ChildAnswer answer(EPROTO, /*room_for_fd=*/true);
  ssize_t n;
  do {
    n = recvmsg(parent_end.get(), &answer.msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  int recv_errno = errno;
  int status = 0;
  while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  Fd fd;
  if (n == static_cast<ssize_t>(sizeof(answer.err))) {
    for (struct cmsghdr* cmsg = CMSG_FIRSTHDR(&answer.msg); cmsg != nullptr;
         cmsg = CMSG_NXTHDR(&answer.msg, cmsg)) {
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
  if (answer.err != 0) return absl::ErrnoToStatus(answer.err, what);
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

// Refuses a host layer path that overlay option lists or mountinfo could
// misread, before anything is opened or created.
absl::Status CheckLayerPath(const std::string& path, absl::string_view role) {
  if (path.empty() || path[0] != '/') {
    return absl::InvalidArgumentError(absl::StrCat(
        role, " '", path, "' is not an absolute host path; give it as /..."));
  }
  if (path.find_first_of(std::string(":,\\\0", 4)) != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        role, " '", path, "' contains ':', ',', '\\' or NUL, which overlay layer "
        "lists cannot carry unambiguously; use a directory name without them"));
  }
  for (absl::string_view part : absl::StrSplit(path, '/', absl::SkipEmpty())) {
    if (part == "." || part == "..") {
      return absl::InvalidArgumentError(absl::StrCat(
          role, " '", path, "' contains '.' or '..'; give it normalised"));
    }
  }
  return absl::OkStatus();
}

// Creates `path` (mode 0700) and its missing parents below `root`, which
// must exist; with an empty root only `path` itself, in an existing parent.
absl::Status MakeLayerDirectory(const std::string& path, std::string root) {
  if (root.empty()) return MakeDirectory(path, 0700);
  while (root.size() > 1 && root.back() == '/') root.pop_back();
  std::string prefix = root == "/" ? "" : root;
  if (!absl::StartsWith(path, absl::StrCat(prefix, "/")) || path.size() <= prefix.size() + 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tier directory ", path, " is not below the tier root ", root,
        "; plan the layout with PlanTierLayout"));
  }
  struct stat root_st;
  if (stat(root.c_str(), &root_st) != 0 || !S_ISDIR(root_st.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "tier root ", root, " is not an existing directory; create it"));
  }
  for (absl::string_view part :
       absl::StrSplit(absl::string_view(path).substr(prefix.size()), '/', absl::SkipEmpty())) {
    absl::StrAppend(&prefix, "/", part);
    if (absl::Status s = MakeDirectory(prefix, 0700); !s.ok()) return s;
  }
  return absl::OkStatus();
}

// Opens a host directory for the overlay without following a symlink at
// its end.
absl::StatusOr<Fd> OpenHostDirectory(const std::string& path, int flags,
                                     absl::string_view role) {
  Fd fd(open(path.c_str(), flags | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (fd.valid()) return fd;
  int err = errno;
  std::string why = std::strerror(err);
  if (err == ENOENT) why = "it does not exist";
  if (err == ENOTDIR || err == ELOOP) why = "it is a symlink or not a directory";
  return absl::ErrnoToStatus(err, absl::StrCat(role, " '", path, "' refused: ", why,
                                               "; give an existing host directory"));
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

absl::Status FsConfigFd(int fs_fd, const char* key, int fd, const std::string& name) {
  if (fsconfig(fs_fd, FSCONFIG_SET_FD, key, nullptr, fd) != 0) {
    int err = errno;
    return absl::ErrnoToStatus(
        err, absl::StrCat("overlay layer ", key, " ", name, " refused (",
                          DrainFsLog(fs_fd), ")"));
  }
  return absl::OkStatus();
}

// A container path opened inside the container's root, and what is mounted
// there.
struct OpenedPath {
  Fd fd;
  MountFacts facts;
};

absl::StatusOr<OpenedPath> OpenWithFacts(pid_t pid, const ContainerPath& path,
                                         const std::string& root_path = "") {
  absl::StatusOr<Fd> root = OpenContainerRoot(pid);
  if (!root.ok()) return root.status();
  if (!root_path.empty()) {
    absl::StatusOr<ContainerPath> in_view = ParseContainerPath(root_path);
    if (!in_view.ok()) return in_view.status();
    root = OpenContainerDirectory(root->get(), *in_view);
    if (!root.ok()) return root.status();
  }
  absl::StatusOr<Fd> target = OpenContainerDirectory(root->get(), path);
  if (!target.ok()) return target.status();
  absl::StatusOr<MountFacts> facts = FactsOf(target->get(), path.path);
  if (!facts.ok()) return facts.status();
  return OpenedPath{*std::move(target), *facts};
}

}  // namespace

absl::StatusOr<TierLayout> PlanTierLayout(absl::string_view tier_root,
                                          absl::string_view container_id,
                                          const ContainerPath& path) {
  if (tier_root.empty() || tier_root[0] != '/') {
    return absl::InvalidArgumentError(absl::StrCat(
        "tier root '", tier_root, "' is not an absolute host path"));
  }
  if (absl::Status s = ValidateTierKey(container_id); !s.ok()) return s;
  while (tier_root.size() > 1 && tier_root.back() == '/') {
    tier_root.remove_suffix(1);
  }
  TierLayout layout;
  layout.dir = absl::StrCat(tier_root == "/" ? "" : tier_root, "/",
                            container_id, "/", EscapeContainerPath(path));
  layout.upper = absl::StrCat(layout.dir, "/upper");
  layout.work = absl::StrCat(layout.dir, "/work");
  layout.root = std::string(tier_root);
  return layout;
}

namespace {

absl::Status CheckRequest(const TierMountRequest& request) {
  const TierLayout& layout = request.layout;
  const std::string& cpath = request.path.path;
  if (cpath.size() < 2 || cpath[0] != '/') {
    return absl::InvalidArgumentError(absl::StrCat(
        "container path '", cpath, "' was not validated; parse it with ParseContainerPath"));
  }
  if (absl::Status s = CheckLayerPath(layout.upper, "tier upper directory"); !s.ok()) return s;
  if (absl::Status s = CheckLayerPath(layout.work, "tier work directory"); !s.ok()) return s;
  if (!layout.root.empty()) {
    if (absl::Status s = CheckLayerPath(layout.root, "tier root"); !s.ok()) return s;
  }
  for (const std::string& lower : request.extra_lowers) {
    if (absl::Status s = CheckLayerPath(lower, "extra lower layer"); !s.ok()) return s;
  }
  return absl::OkStatus();
}

// The container path to tier, opened from the host, and the container's
// mount namespace.
struct MountTarget {
  Fd fd;
  struct stat st;  // its owner and mode, for the upper layer
  Fd mntns;
};

absl::StatusOr<MountTarget> OpenMountTarget(const TierMountRequest& request) {
  const std::string& cpath = request.path.path;
  absl::StatusOr<OpenedPath> opened = OpenWithFacts(request.pid, request.path, request.root_path);
  if (!opened.ok()) return opened.status();
  if (opened->facts.overlay && opened->facts.mount_root) {
    return absl::AlreadyExistsError(absl::StrCat(
        "container path '", cpath,
        "' is already the root of an overlay mount (tiered already?); "
        "unmount it first"));
  }
  MountTarget target;
  target.fd = std::move(opened->fd);
  if (fstat(target.fd.get(), &target.st) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("stat of container path '", cpath, "'"));
  }
  std::string ns_path = absl::StrCat("/proc/", request.pid, "/ns/mnt");
  target.mntns = Fd(open(ns_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!target.mntns.valid()) return absl::ErrnoToStatus(errno, absl::StrCat("opening ", ns_path));
  return target;
}

// The extra lowers: opened once, handed to the overlay as these fds.
absl::StatusOr<std::vector<Fd>> OpenExtraLowers(const TierMountRequest& request) {
  std::vector<Fd> lowers;
  for (const std::string& lower : request.extra_lowers) {
    absl::StatusOr<Fd> fd = OpenHostDirectory(lower, O_PATH, "extra lower layer");
    if (!fd.ok()) return fd.status();
    lowers.push_back(*std::move(fd));
  }
  return lowers;
}

struct TierLayers {
  Fd upper;
  Fd work;
};

// The tier directories, made and opened. `upper` becomes the overlay's root
// directory, so it takes the owner and mode of the directory it replaces.
absl::StatusOr<TierLayers> PrepareTierLayers(const TierLayout& layout, const struct stat& target_st,
                                             const std::string& cpath) {
  for (const std::string* dir : {&layout.upper, &layout.work}) {
    if (absl::Status s = MakeLayerDirectory(*dir, layout.root); !s.ok()) return s;
  }
  absl::StatusOr<Fd> upper = OpenHostDirectory(layout.upper, O_RDONLY, "tier upper directory");
  if (!upper.ok()) return upper.status();
  absl::StatusOr<Fd> work = OpenHostDirectory(layout.work, O_RDONLY, "tier work directory");
  if (!work.ok()) return work.status();
  if (fchown(upper->get(), target_st.st_uid, target_st.st_gid) != 0 ||
      fchmod(upper->get(), target_st.st_mode & 07777) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("copying owner and mode of '", cpath,
                                                   "' to ", layout.upper));
  }
  return TierLayers{*std::move(upper), *std::move(work)};
}

// The current content of the path, as a detached mount.
absl::StatusOr<Fd> CloneOriginal(const MountTarget& target, const std::string& cpath) {
  int target_fd = target.fd.get();
  Fd original;
  absl::Status cloned = RunInMountNamespace(
      target.mntns.get(),
      [target_fd](int* out_fd) {
        int fd = open_tree(target_fd, "",
                           OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH);
        if (fd < 0) return errno;
        *out_fd = fd;
        return 0;
      },
      &original, absl::StrCat("cloning container path '", cpath, "' (open_tree)"));
  if (!cloned.ok()) return cloned;
  return original;
}

// The overlay, built in the agent's namespace, every layer as an fd:
// [upper | lowers: the extra lowers, then the original content].
absl::StatusOr<Fd> BuildOverlay(const TierMountRequest& request, const std::vector<Fd>& lowers,
                                const Fd& original, const TierLayers& layers) {
  const TierLayout& layout = request.layout;
  const std::string& cpath = request.path.path;
  Fd fs(fsopen("overlay", FSOPEN_CLOEXEC));
  if (!fs.valid()) {
    return absl::ErrnoToStatus(errno, "fsopen(\"overlay\") (is overlayfs available?)");
  }
  for (size_t i = 0; i < lowers.size(); ++i) {
    if (absl::Status s = FsConfigFd(fs.get(), "lowerdir+", lowers[i].get(),
                                    request.extra_lowers[i]);
        !s.ok()) {
      return s;
    }
  }
  if (absl::Status s = FsConfigFd(fs.get(), "lowerdir+", original.get(),
                                  absl::StrCat("(container path '", cpath, "')"));
      !s.ok()) {
    return s;
  }
  if (absl::Status s = FsConfigFd(fs.get(), "upperdir", layers.upper.get(), layout.upper); !s.ok()) {
    return s;
  }
  if (absl::Status s = FsConfigFd(fs.get(), "workdir", layers.work.get(), layout.work); !s.ok()) {
    return s;
  }
  for (const char* option : {"index", "redirect_dir", "metacopy", "xino"}) {
    if (absl::Status s = FsConfigString(fs.get(), option, "off"); !s.ok()) return s;
  }
  if (fsconfig(fs.get(), FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) != 0) {
    int err = errno;
    return absl::ErrnoToStatus(err, absl::StrCat("creating the overlay for '", cpath, "' (",
                                                 DrainFsLog(fs.get()), ")"));
  }
  Fd overlay(fsmount(fs.get(), FSMOUNT_CLOEXEC, 0));
  if (!overlay.valid()) {
    return absl::ErrnoToStatus(errno, absl::StrCat("fsmount of the overlay for '", cpath, "'"));
  }
  return overlay;
}

// The overlay onto the container path, inside the container's namespace.
absl::Status MoveOntoTarget(const Fd& overlay, const MountTarget& target, const std::string& cpath) {
  int overlay_fd = overlay.get();
  int target_fd = target.fd.get();
  return RunInMountNamespace(
      target.mntns.get(),
      [overlay_fd, target_fd](int*) {
        if (move_mount(overlay_fd, "", target_fd, "",
                       MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) != 0) {
          return errno;
        }
        return 0;
      },
      nullptr, absl::StrCat("moving the overlay onto container path '", cpath, "'"));
}

}  // namespace

absl::StatusOr<TierMount> MountTier(const TierMountRequest& request) {
  const std::string& cpath = request.path.path;
  if (absl::Status s = CheckRequest(request); !s.ok()) return s;
  // 1. Resolve the container path from the host, safely; open the layers.
  absl::StatusOr<MountTarget> target = OpenMountTarget(request);
  if (!target.ok()) return target.status();
  absl::StatusOr<std::vector<Fd>> lowers = OpenExtraLowers(request);
  if (!lowers.ok()) return lowers.status();
  absl::StatusOr<TierLayers> layers = PrepareTierLayers(request.layout, target->st, cpath);
  if (!layers.ok()) return layers.status();
  // 2. The current content of the path, as a detached mount.
  absl::StatusOr<Fd> original = CloneOriginal(*target, cpath);
  if (!original.ok()) return original.status();
  // 3. The overlay, built in the agent's namespace.
  absl::StatusOr<Fd> overlay = BuildOverlay(request, *lowers, *original, *layers);
  if (!overlay.ok()) return overlay.status();
  absl::StatusOr<MountFacts> overlay_facts = FactsOf(overlay->get(), "the new overlay");
  if (!overlay_facts.ok()) return overlay_facts.status();
  // 4. Onto the container path, inside the container's namespace.
  if (absl::Status s = MoveOntoTarget(*overlay, *target, cpath); !s.ok()) return s;
  return TierMount{request.layout, overlay_facts->mount_id};
}

absl::Status UnmountTier(pid_t pid, const ContainerPath& path,
                         uint64_t expected_mount_id) {
  absl::StatusOr<OpenedPath> opened = OpenWithFacts(pid, path);
  if (!opened.ok()) return opened.status();
  const Fd& target = opened->fd;
  const MountFacts* facts = &opened->facts;
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
  int target_fd = target.get();
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

absl::StatusOr<PathMount> InspectContainerPath(pid_t pid, const ContainerPath& path) {
  absl::StatusOr<OpenedPath> opened = OpenWithFacts(pid, path);
  if (!opened.ok()) return opened.status();
  const MountFacts* facts = &opened->facts;
  std::string mountinfo_path = absl::StrCat("/proc/", pid, "/mountinfo");
  absl::StatusOr<std::string> text = ReadFile(mountinfo_path);
  if (!text.ok()) return text.status();
  absl::StatusOr<std::vector<MountinfoEntry>> mounts = ParseMountinfo(*text);
  if (!mounts.ok()) return mounts.status();
  for (const MountinfoEntry& mount : *mounts) {
    if (mount.mount_id != facts->mount_id) continue;
    PathMount out;
    out.mount_id = facts->mount_id;
    out.is_mount_root = facts->mount_root;
    out.fstype = mount.fstype;
    if (mount.fstype == "overlay") ReadOverlayLayers(mount.super_options, &out);
    return out;
  }
  return absl::NotFoundError(absl::StrCat(
      "the mount ", facts->mount_id, " under container path '", path.path,
      "' is not listed in ", mountinfo_path, " (did the mount table change meanwhile?); retry"));
}

void ReadOverlayLayers(const std::vector<std::string>& super_options, PathMount* out) {
  std::vector<std::string> data_layers;
  for (absl::string_view option : super_options) {
    if (absl::ConsumePrefix(&option, "upperdir=")) {
      out->upperdir = std::string(option);
    } else if (absl::ConsumePrefix(&option, "lowerdir+=")) {
      out->lowerdirs.emplace_back(option);
    } else if (absl::ConsumePrefix(&option, "datadir+=")) {
      data_layers.emplace_back(option);
    } else if (absl::ConsumePrefix(&option, "lowerdir=")) {
      // Layers separated by ':' ("::" before data-only layers); '\' escapes.
      std::string layer;
      for (size_t i = 0; i < option.size(); ++i) {
        if (option[i] == '\\' && i + 1 < option.size()) {
          layer += option[++i];
        } else if (option[i] == ':') {
          if (!layer.empty()) out->lowerdirs.push_back(std::move(layer));
          layer.clear();
        } else {
          layer += option[i];
        }
      }
      if (!layer.empty()) out->lowerdirs.push_back(std::move(layer));
    }
  }
  for (std::string& layer : data_layers) out->lowerdirs.push_back(std::move(layer));
}

}  // namespace gputier
