// RAII ownership of a bpftool-generated skeleton.
//
// Error policy (the whole loader follows it): every libbpf failure becomes an
// absl::Status carrying the errno and what was being done; nothing throws;
// destruction detaches programs and closes map fds but never unpins, so
// pinned counters outlive the agent.
//
// Load order is fixed: Open() -> (set pin root, resize maps, pick programs on
// object()) -> Load() -> Attach().
#ifndef GPUTIER_LOADER_OBSERVE_SKELETON_H_
#define GPUTIER_LOADER_OBSERVE_SKELETON_H_

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <cerrno>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace gputier {

// Specialised once per skeleton with GT_SKELETON_OPS(name).
template <typename Skel>
struct SkeletonOps;

#define GT_SKELETON_OPS(name)                                                   \
  template <>                                                                   \
  struct SkeletonOps<name##_bpf> {                                              \
    static constexpr const char* kName = #name;                                 \
    static name##_bpf* Open(const bpf_object_open_opts* opts) {                 \
      return name##_bpf__open_opts(opts);                                       \
    }                                                                           \
    static int Load(name##_bpf* s) { return name##_bpf__load(s); }            \
    static int Attach(name##_bpf* s) { return name##_bpf__attach(s); }        \
    static void Destroy(name##_bpf* s) { name##_bpf__destroy(s); }            \
  }

template <typename Skel>
class Skeleton {
 public:
  using Ops = SkeletonOps<Skel>;

  // Opens the embedded object. `pin_root` (may be empty) is where maps
  // declared LIBBPF_PIN_BY_NAME are pinned or reused.
  static absl::StatusOr<Skeleton> Open(const std::string& pin_root) {
    LIBBPF_OPTS(bpf_object_open_opts, opts);
    if (!pin_root.empty()) opts.pin_root_path = pin_root.c_str();
    errno = 0;
    Skel* skel = Ops::Open(&opts);
    if (skel == nullptr) {
      int err = errno ? errno : EINVAL;
      return absl::ErrnoToStatus(err, absl::StrCat("opening BPF object ", Ops::kName));
    }
    return Skeleton(skel);
  }

  Skeleton(Skeleton&& other) noexcept : skel_(std::exchange(other.skel_, nullptr)) {}
  Skeleton& operator=(Skeleton&& other) noexcept {
    if (this != &other) {
      Reset();
      skel_ = std::exchange(other.skel_, nullptr);
    }
    return *this;
  }
  Skeleton(const Skeleton&) = delete;
  Skeleton& operator=(const Skeleton&) = delete;
  ~Skeleton() { Reset(); }

  absl::Status Load() {
    int err = Ops::Load(skel_);
    if (err) return absl::ErrnoToStatus(-err, absl::StrCat("loading BPF object ", Ops::kName));
    return absl::OkStatus();
  }
  absl::Status Attach() {
    int err = Ops::Attach(skel_);
    if (err) return absl::ErrnoToStatus(-err, absl::StrCat("attaching BPF object ", Ops::kName));
    return absl::OkStatus();
  }

  // Kernel ids of the object's maps, and of the links Attach() made (for the
  // tamper watch, which must know gputier's own objects).
  std::vector<uint32_t> MapIds() const {
    std::vector<uint32_t> ids;
    bpf_map* map;
    bpf_object__for_each_map(map, object()) {
      bpf_map_info info = {};
      uint32_t len = sizeof(info);
      if (bpf_map__fd(map) >= 0 && bpf_obj_get_info_by_fd(bpf_map__fd(map), &info, &len) == 0) {
        ids.push_back(info.id);
      }
    }
    return ids;
  }
  std::vector<uint32_t> LinkIds() const {
    std::vector<uint32_t> ids;
    const bpf_object_skeleton* s = skel_->skeleton;
    for (int i = 0; i < s->prog_cnt; ++i) {
      bpf_link* link = *s->progs[i].link;
      if (link == nullptr || bpf_link__fd(link) < 0) continue;
      bpf_link_info info = {};
      uint32_t len = sizeof(info);
      if (bpf_obj_get_info_by_fd(bpf_link__fd(link), &info, &len) == 0) ids.push_back(info.id);
    }
    return ids;
  }

  Skel* get() const { return skel_; }
  Skel* operator->() const { return skel_; }
  bpf_object* object() const { return skel_->obj; }

 private:
  explicit Skeleton(Skel* skel) : skel_(skel) {}
  void Reset() {
    if (skel_ != nullptr) Ops::Destroy(skel_);
    skel_ = nullptr;
  }

  Skel* skel_ = nullptr;
};

}  // namespace gputier

#endif  // GPUTIER_LOADER_OBSERVE_SKELETON_H_
