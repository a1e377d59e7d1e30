#include "loader/enforce/guard.h"

#include <bpf/libbpf.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "bpf/guard_lsm.skel.h"
#include "loader/enforce/guard_maps.h"
#include "loader/base/log.h"
#include "loader/base/mount_refs.h"
#include "loader/observe/observer.h"
#include "loader/base/read_file.h"
#include "loader/observe/skeleton.h"

namespace gputier {

GT_SKELETON_OPS(guard_lsm);

namespace {

int MapFd(bpf_object* obj, const char* name) {
  bpf_map* map = bpf_object__find_map_by_name(obj, name);
  return map == nullptr ? -1 : bpf_map__fd(map);
}

uint32_t ModeValue(Enforcement mode) {
  switch (mode) {
    case Enforcement::kOff: return GT_ENFORCE_OFF;
    case Enforcement::kAudit: return GT_ENFORCE_AUDIT;
    case Enforcement::kEnforce: return GT_ENFORCE_DENY;
  }
  return GT_ENFORCE_OFF;
}

class GuardImpl : public Guard {
 public:
  explicit GuardImpl(Skeleton<guard_lsm_bpf> skel) : skel_(std::move(skel)) {}
  ~GuardImpl() override {
    // The links close with the skeleton anyway; a cleared mode also tells
    // readers of the pins that no guard runs.
    gt_guard_cfg off = {GT_ENFORCE_OFF, 0};
    (void)WriteGuardCfg(fd(GT_MAP_GUARD_CFG), off);
  }

  absl::Status SetFilesystems(const std::vector<uint32_t>& devs) override {
    return ReplaceGuardFs(fd(GT_MAP_GUARD_FS), devs);
  }
  absl::Status SetExempt(const absl::flat_hash_map<uint64_t, uint32_t>& exempt) override {
    return ReplaceExempt(fd(GT_MAP_GUARD_EXEMPT), exempt);
  }

  int fd(const char* name) const { return MapFd(skel_.object(), name); }
  Skeleton<guard_lsm_bpf>& skel() { return skel_; }
  void set_mode(Enforcement m) { mode_ = m; }

 private:
  Skeleton<guard_lsm_bpf> skel_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Guard>> Guard::Start(const GuardOptions& options,
                                                    const std::vector<uint32_t>& fast_devs,
                                                    const absl::flat_hash_map<uint64_t, uint32_t>& exempt) {
  absl::StatusOr<Skeleton<guard_lsm_bpf>> skel = Skeleton<guard_lsm_bpf>::Open(options.pin_dir);
  if (!skel.ok()) return skel.status();
  if (absl::Status s = PreparePinnedMaps(skel->object(), options.pin_dir, options.max_cgroups); !s.ok()) {
    return s;
  }
  if (absl::Status s = skel->Load(); !s.ok()) return s;
  auto guard = std::make_unique<GuardImpl>(std::move(*skel));
  guard->set_mode(options.mode);
  // Off until everything below is in place.
  if (absl::Status s = WriteGuardCfg(guard->fd(GT_MAP_GUARD_CFG), {GT_ENFORCE_OFF, 0}); !s.ok()) return s;
  if (absl::Status s = guard->SetFilesystems(fast_devs); !s.ok()) return s;
  if (absl::Status s = guard->SetExempt(exempt); !s.ok()) return s;
  if (absl::Status s = guard->skel().Attach(); !s.ok()) return s;

  std::vector<gt_obj_key> own;
  auto add = [&own](uint32_t kind, const std::vector<uint32_t>& ids) {
    for (uint32_t id : ids) {
      gt_obj_key k = {kind, id};
      if (std::none_of(own.begin(), own.end(),
                       [&](const gt_obj_key& o) { return o.kind == k.kind && o.id == k.id; })) {
        own.push_back(k);
      }
    }
  };
  add(GT_OBJ_MAP, options.own_map_ids);
  add(GT_OBJ_MAP, guard->skel().MapIds());
  add(GT_OBJ_LINK, options.own_link_ids);
  add(GT_OBJ_LINK, guard->skel().LinkIds());
  if (own.size() > GT_MAX_OWN_OBJS) {
    return absl::InternalError(absl::StrCat(own.size(), " maps and links exceed ", GT_MAP_OWN_OBJS));
  }
  if (absl::Status s = ReplaceOwnObjects(guard->fd(GT_MAP_OWN_OBJS), own); !s.ok()) return s;

  gt_guard_cfg cfg = {ModeValue(options.mode), static_cast<uint32_t>(getpid())};
  if (absl::Status s = WriteGuardCfg(guard->fd(GT_MAP_GUARD_CFG), cfg); !s.ok()) return s;
  return std::unique_ptr<Guard>(std::move(guard));
}

absl::Status ProbeGuardLoad() {
  ScopedQuietLibbpf quiet;  // the caller reports the outcome
  absl::StatusOr<Skeleton<guard_lsm_bpf>> skel = Skeleton<guard_lsm_bpf>::Open("");
  if (!skel.ok()) return skel.status();
  if (absl::Status s = PreparePinnedMaps(skel->object(), "", GT_DEFAULT_MAX_CGROUPS); !s.ok()) return s;
  return skel->Load();
}

uint32_t KernelDev(dev_t dev) { return (major(dev) << 20) | minor(dev); }

absl::StatusOr<std::vector<uint32_t>> FilesystemsUnder(const std::string& root) {
  char real[PATH_MAX];
  if (realpath(root.c_str(), real) == nullptr) {
    return absl::ErrnoToStatus(errno, absl::StrCat("resolving the fast tier root ", root));
  }
  const std::string base = real;
  if (base == "/") return absl::InvalidArgumentError("the fast tier root is /; give it its own directory");
  // A mount whose filesystem is also its parent's (a directory of the root
  // filesystem, or a bind mount of one) is not the fast tier's own: guarding
  // its device would guard every file of that filesystem on the node.
  const std::string parent = base.substr(0, std::max<size_t>(base.find_last_of('/'), 1));
  struct stat st;
  if (stat(parent.c_str(), &st) != 0) return absl::ErrnoToStatus(errno, absl::StrCat("stat ", parent));
  const uint32_t shared = KernelDev(st.st_dev);
  std::vector<uint32_t> devs;
  absl::StatusOr<std::string> text = ReadFile("/proc/self/mountinfo");
  if (!text.ok()) return text.status();
  absl::StatusOr<std::vector<MountinfoEntry>> mounts = ParseMountinfo(*text);
  if (!mounts.ok()) return mounts.status();
  const std::string prefix = base + "/";
  for (const MountinfoEntry& m : *mounts) {
    if (m.mount_point != base && !absl::StartsWith(m.mount_point, prefix)) continue;
    // A mount that goes away meanwhile is simply not guarded.
    if (stat(m.mount_point.c_str(), &st) != 0) continue;
    uint32_t d = KernelDev(st.st_dev);
    if (d != shared && std::find(devs.begin(), devs.end(), d) == devs.end()) devs.push_back(d);
  }
  return devs;
}

}  // namespace gputier
