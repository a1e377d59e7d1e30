#include "loader/observe/observer.h"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "bpf/observe_lsm.skel.h"
#include "bpf/observe_tp.skel.h"
#include "loader/cgroup/cgroup_resolver.h"
#include "loader/base/clock.h"
#include "loader/observe/ext_index.h"
#include "loader/base/log.h"
#include "loader/observe/maps.h"
#include "loader/observe/skeleton.h"

namespace gputier {

GT_SKELETON_OPS(observe_lsm);
GT_SKELETON_OPS(observe_tp);

namespace {

constexpr const char* kSecurityFs = "/sys/kernel/security";

bool VmlinuxHasFunc(const char* name) {
  struct btf* btf = btf__load_vmlinux_btf();
  if (btf == nullptr) return false;
  bool found = btf__find_by_name_kind(btf, name, BTF_KIND_FUNC) > 0;
  btf__free(btf);
  return found;
}

// Sizes, unpins (for probes) and selects programs, before load.
absl::Status PrepareObject(bpf_object* obj, const ObserverOptions& opt) {
  if (absl::Status s = PreparePinnedMaps(obj, opt.pin_dir, opt.max_cgroups); !s.ok()) return s;
  bpf_program* prog;
  // The tracepoint object carries two builds of its sys_exit program (see
  // bpf/observe_tp.bpf.c): gt_tp_sys_exit needs the bpf_rdonly_cast kfunc
  // (Linux 6.2+), gt_tp_sys_exit_compat loads everywhere. Asking for either
  // name asks for "the sys_exit program"; exactly one of them is loaded.
  constexpr absl::string_view kSysExit = "gt_tp_sys_exit";
  constexpr absl::string_view kSysExitCompat = "gt_tp_sys_exit_compat";
  std::optional<bool> typed_sys_exit;  // probed once, when the object has it
  bpf_object__for_each_program(prog, obj) {
    const char* name = bpf_program__name(prog);
    bool wanted = opt.only_programs.empty();
    for (const std::string& p : opt.only_programs) wanted |= p == name;
    if (name == kSysExit || name == kSysExitCompat) {
      for (const std::string& p : opt.only_programs) wanted |= p == kSysExit || p == kSysExitCompat;
      if (!typed_sys_exit.has_value()) typed_sys_exit = VmlinuxHasFunc("bpf_rdonly_cast");
      wanted = wanted && (*typed_sys_exit ? name == kSysExit : name == kSysExitCompat);
    }
    if (strcmp(name, "gt_fexit_vfs_writev") == 0 && wanted && !VmlinuxHasFunc("vfs_writev")) {
      LogInfo("vfs_writev is not in this kernel's BTF: writev(2) bytes are not counted in LSM mode");
      wanted = false;
    }
    bpf_program__set_autoload(prog, wanted);
  }
  return absl::OkStatus();
}

int MapFd(bpf_object* obj, const char* name) {
  bpf_map* map = bpf_object__find_map_by_name(obj, name);
  return map == nullptr ? -1 : bpf_map__fd(map);
}

absl::Status FillGpuDevices(int fd, const std::vector<GpuDevice>& devices) {
  std::vector<gt_dev_key> old;
  gt_dev_key key, next;
  gt_dev_key* prev = nullptr;
  while (bpf_map_get_next_key(fd, prev, &next) == 0) {
    old.push_back(next);
    key = next;
    prev = &key;
  }
  absl::flat_hash_set<uint64_t> keep;
  for (const GpuDevice& d : devices) {
    gt_dev_key k = {d.major, d.minor};
    gt_dev_val v = {static_cast<uint32_t>(d.kind), 0};
    if (bpf_map_update_elem(fd, &k, &v, BPF_ANY) != 0) {
      return absl::ErrnoToStatus(errno, absl::StrCat("writing GPU device ", d.source));
    }
    keep.insert((uint64_t{d.major} << 32) | d.minor);
  }
  for (const gt_dev_key& k : old) {
    if (!keep.contains((uint64_t{k.major} << 32) | k.minor)) bpf_map_delete_elem(fd, &k);
  }
  return absl::OkStatus();
}

// Proves the attached hooks fire: the agent opens and writes a probe file and
// its own cgroup's counters must move.
absl::Status VerifyFiring(bpf_object* obj, const std::string& probe_dir) {
  absl::StatusOr<CgroupResolver> resolver = CgroupResolver::Create();
  if (!resolver.ok()) return resolver.status();
  absl::StatusOr<uint64_t> self = resolver->SelfId();
  if (!self.ok()) return self.status();
  int stats_fd = MapFd(obj, GT_MAP_CG_STATS);
  gt_cgroup_stats before = {};
  if (absl::StatusOr<gt_cgroup_stats> s = ReadCgroupCounter(stats_fd, *self); s.ok()) before = *s;

  // probe_dir may be shared (gputierctl doctor uses /tmp): the file goes in
  // a fresh private directory (mkdtemp, 0700) and is created exclusively,
  // never through a symlink someone else planted.
  std::string dir = absl::StrCat(probe_dir, "/gputier-probe-XXXXXX");
  if (mkdtemp(dir.data()) == nullptr) {
    return absl::ErrnoToStatus(errno, absl::StrCat("creating a probe directory in ", probe_dir));
  }
  const std::string path = absl::StrCat(dir, "/probe.gtprobe");
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) {
    const int err = errno;
    rmdir(dir.c_str());
    return absl::ErrnoToStatus(err, absl::StrCat("creating probe file ", path));
  }
  ssize_t w = write(fd, "x", 1);
  close(fd);
  unlink(path.c_str());
  rmdir(dir.c_str());
  if (w != 1) return absl::ErrnoToStatus(errno, absl::StrCat("writing probe file ", path));

  absl::StatusOr<gt_cgroup_stats> after = ReadCgroupCounter(stats_fd, *self);
  if (!after.ok() || after->opens_total <= before.opens_total) {
    return absl::UnavailableError("the programs attached but a probe open did not move the counters");
  }
  if (after->bytes_written <= before.bytes_written) {
    return absl::UnavailableError("the programs attached but a probe write did not move the counters");
  }
  return absl::OkStatus();
}

template <typename Skel>
class ObserverImpl : public Observer {
 public:
  static absl::StatusOr<std::unique_ptr<ObserverImpl>> Create(const ObserverOptions& opt,
                                                              ObserveMode mode) {
    absl::StatusOr<Skeleton<Skel>> skel = Skeleton<Skel>::Open(opt.pin_dir);
    if (!skel.ok()) return skel.status();
    if (absl::Status s = PrepareObject(skel->object(), opt); !s.ok()) return s;
    if (absl::Status s = skel->Load(); !s.ok()) return s;
    if (absl::Status s = FillClasses(skel->object(), opt.classes); !s.ok()) return s;
    if (absl::Status s = FillGpuDevices(MapFd(skel->object(), GT_MAP_GPU_DEVS), opt.gpu_devices);
        !s.ok()) {
      return s;
    }
    if (absl::Status s = skel->Attach(); !s.ok()) return s;
    if (absl::Status s = VerifyFiring(skel->object(), opt.probe_dir); !s.ok()) return s;
    auto self = std::unique_ptr<ObserverImpl>(new ObserverImpl(std::move(*skel)));
    self->mode_ = mode;
    gt_meta meta = {GT_ABI_MAGIC, GT_ABI_VERSION,
                    mode == ObserveMode::kLsm ? GT_MODE_LSM : GT_MODE_TRACEPOINT, 0, MonotonicNs()};
    if (absl::Status s = WriteMeta(self->map_fd(GT_MAP_META), meta); !s.ok()) return s;
    return self;
  }

 protected:
  bpf_object* object() const override { return skel_.object(); }
  std::vector<uint32_t> MapIds() const override { return skel_.MapIds(); }
  std::vector<uint32_t> LinkIds() const override { return skel_.LinkIds(); }

 private:
  explicit ObserverImpl(Skeleton<Skel> skel) : skel_(std::move(skel)) {}
  Skeleton<Skel> skel_;
};

}  // namespace

// Runs before Attach: no program of this agent reads the index while it is
// rewritten, and its contents are a deterministic function of the config (a
// reused pin or a second mode probe rewrites the same bytes).
absl::Status FillClasses(bpf_object* obj, const std::vector<ExtensionClass>& classes) {
  int ext_fd = MapFd(obj, GT_MAP_EXT_CLASS);
  int index_fd = MapFd(obj, GT_MAP_EXT_INDEX);
  int names_fd = MapFd(obj, GT_MAP_CLASS_NAMES);
  absl::flat_hash_set<std::string> wanted;
  for (const ExtensionClass& c : classes) {
    for (const std::string& e : c.extensions) wanted.insert(e);
  }
  // Drop entries of a previous config (a reused pin).
  std::vector<gt_ext_key> stale;
  gt_ext_key key, next;
  gt_ext_key* prev = nullptr;
  while (bpf_map_get_next_key(ext_fd, prev, &next) == 0) {
    std::string ext(next.ext, strnlen(next.ext, sizeof(next.ext)));
    if (!wanted.contains(ext)) stale.push_back(next);
    key = next;
    prev = &key;
  }
  for (const gt_ext_key& k : stale) bpf_map_delete_elem(ext_fd, &k);

  std::array<gt_class_name, GT_CLASS_MAX> names = {};
  snprintf(names[GT_CLASS_OTHER].name, GT_CLASS_NAME_LEN, "%s", "other");
  for (const ExtensionClass& c : classes) {
    if (c.id >= GT_CLASS_MAX) return absl::InvalidArgumentError(absl::StrCat("class id ", c.id));
    snprintf(names[c.id].name, GT_CLASS_NAME_LEN, "%s", c.name.c_str());
    for (const std::string& e : c.extensions) {
      gt_ext_key k = ExtKey(e);
      uint32_t id = c.id;
      if (bpf_map_update_elem(ext_fd, &k, &id, BPF_ANY) != 0) {
        return absl::ErrnoToStatus(errno, absl::StrCat("writing extension '", e, "' to gt_ext_class"));
      }
    }
  }
  for (uint32_t i = 0; i < GT_CLASS_MAX; ++i) {
    if (bpf_map_update_elem(names_fd, &i, &names[i], BPF_ANY) != 0) {
      return absl::ErrnoToStatus(errno, "writing gt_class_names");
    }
  }
  const std::vector<gt_ext_bucket> index = BuildExtIndex(classes);
  for (uint32_t b = 0; b < index.size(); ++b) {
    if (bpf_map_update_elem(index_fd, &b, &index[b], BPF_ANY) != 0) {
      return absl::ErrnoToStatus(errno, absl::StrCat("writing bucket ", b, " of gt_ext_index"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<ObserveMode> ParseObserveMode(absl::string_view text) {
  if (text == "auto") return ObserveMode::kAuto;
  if (text == "lsm") return ObserveMode::kLsm;
  if (text == "tracepoint") return ObserveMode::kTracepoint;
  return absl::InvalidArgumentError(
      absl::StrCat("--mode=", text, " is not a mode; use auto, lsm or tracepoint"));
}

std::string ObserveModeName(ObserveMode mode) {
  switch (mode) {
    case ObserveMode::kAuto: return "auto";
    case ObserveMode::kLsm: return "lsm";
    case ObserveMode::kTracepoint: return "tracepoint";
  }
  return "?";
}

KernelFacts ReadKernelFacts() {
  KernelFacts f;
  struct stat st;
  f.btf = stat("/sys/kernel/btf/vmlinux", &st) == 0;
  std::string lsm_path = absl::StrCat(kSecurityFs, "/lsm");
  if (stat(lsm_path.c_str(), &st) != 0) {
    // securityfs is not mounted on every node; mounting it changes nothing else.
    if (mount("securityfs", kSecurityFs, "securityfs", 0, nullptr) != 0 && errno != EBUSY) {
      f.lsm_error = absl::StrCat("cannot mount securityfs on ", kSecurityFs, ": ", strerror(errno));
    }
  }
  std::ifstream in(lsm_path);
  if (in) {
    std::getline(in, f.lsm_list);
    f.lsm_list = std::string(absl::StripAsciiWhitespace(f.lsm_list));
    for (absl::string_view l : absl::StrSplit(f.lsm_list, ',')) f.bpf_lsm_active |= l == "bpf";
  } else if (f.lsm_error.empty()) {
    f.lsm_error = absl::StrCat("cannot read ", lsm_path, ": ", strerror(errno));
  }
  return f;
}

int Observer::map_fd(const char* name) const { return MapFd(object(), name); }

std::vector<std::pair<std::string, uint32_t>> Observer::ProgramIds() const {
  std::vector<std::pair<std::string, uint32_t>> out;
  bpf_program* prog;
  bpf_object__for_each_program(prog, object()) {
    const int fd = bpf_program__fd(prog);
    if (fd < 0) continue;  // not loaded (autoload off)
    bpf_prog_info info = {};
    uint32_t len = sizeof(info);
    if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0) out.emplace_back(bpf_program__name(prog), info.id);
  }
  return out;
}

absl::Status Observer::SetGpuDevices(const std::vector<GpuDevice>& devices) {
  return FillGpuDevices(map_fd(GT_MAP_GPU_DEVS), devices);
}

absl::StatusOr<std::unique_ptr<Observer>> Observer::Start(const ObserverOptions& opt) {
  std::string why_not_lsm;
  if (opt.mode != ObserveMode::kTracepoint) {
    KernelFacts facts = ReadKernelFacts();
    if (!facts.btf) {
      why_not_lsm = "the kernel has no BTF (/sys/kernel/btf/vmlinux is missing)";
    } else if (!facts.bpf_lsm_active) {
      why_not_lsm = facts.lsm_list.empty()
                        ? absl::StrCat("the active LSM list is unknown (", facts.lsm_error, ")")
                        : absl::StrCat("'bpf' is not in the active LSM list (", facts.lsm_list,
                                       "); boot with lsm=", facts.lsm_list, ",bpf to enable it");
    } else {
      // In auto mode a refusal is an answer, not a problem: keep libbpf quiet.
      std::optional<ScopedQuietLibbpf> quiet;
      if (opt.mode == ObserveMode::kAuto) quiet.emplace();
      absl::StatusOr<std::unique_ptr<ObserverImpl<observe_lsm_bpf>>> lsm =
          ObserverImpl<observe_lsm_bpf>::Create(opt, ObserveMode::kLsm);
      if (lsm.ok()) {
        (*lsm)->reason_ = absl::StrCat(
            "BTF present, bpf in the active LSM list (", facts.lsm_list,
            "), LSM and fexit programs loaded and attached, and a probe open moved the counters");
        return std::unique_ptr<Observer>(std::move(*lsm));
      }
      why_not_lsm = absl::StrCat("BPF LSM/trampoline programs failed: ", lsm.status().message());
    }
    if (opt.mode == ObserveMode::kLsm) {
      return absl::FailedPreconditionError(absl::StrCat(
          "--mode=lsm cannot run on this kernel: ", why_not_lsm,
          "; use --mode=tracepoint (observe only) or --mode=auto"));
    }
  }
  absl::StatusOr<std::unique_ptr<ObserverImpl<observe_tp_bpf>>> tp =
      ObserverImpl<observe_tp_bpf>::Create(opt, ObserveMode::kTracepoint);
  if (!tp.ok()) {
    return absl::Status(tp.status().code(),
                        absl::StrCat("tracepoint mode failed: ", tp.status().message(),
                                     why_not_lsm.empty() ? "" : absl::StrCat("; LSM mode: ", why_not_lsm)));
  }
  (*tp)->reason_ =
      opt.mode == ObserveMode::kTracepoint
          ? "requested with --mode=tracepoint (observe only: tracepoints cannot enforce)"
          : absl::StrCat("LSM mode unavailable: ", why_not_lsm,
                         "; tracepoint programs attached and a probe open moved the counters "
                         "(observe only: tracepoints cannot enforce)");
  return std::unique_ptr<Observer>(std::move(*tp));
}

}  // namespace gputier

namespace gputier {

absl::Status PreparePinnedMaps(bpf_object* obj, const std::string& pin_dir, uint32_t max_cgroups) {
  bpf_map* map;
  bpf_object__for_each_map(map, obj) {
    if (pin_dir.empty() && bpf_map__pin_path(map) != nullptr) {
      int err = bpf_map__set_pin_path(map, nullptr);
      if (err) return absl::ErrnoToStatus(-err, "clearing pin path");
    }
  }
  // Per-cgroup maps hold max_cgroups entries; a pinned one is reused as it
  // is, so it keeps its capacity.
  for (const char* name : {GT_MAP_CG_STATS, GT_MAP_VERDICTS, GT_MAP_GUARD_CG}) {
    uint32_t capacity = max_cgroups;
    if (!pin_dir.empty()) {
      std::string pin = absl::StrCat(pin_dir, "/", name);
      LIBBPF_OPTS(bpf_obj_get_opts, get_opts, .file_flags = BPF_F_RDONLY);
      int fd = bpf_obj_get_opts(pin.c_str(), &get_opts);
      if (fd >= 0) {
        struct bpf_map_info info = {};
        uint32_t len = sizeof(info);
        if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0 && info.max_entries != capacity) {
          LogWarning("config asks for max_cgroups=%u but the pinned %s holds %u entries; keeping %u "
                     "(`gputierctl unpin` then restart to resize)",
                     capacity, pin, info.max_entries, info.max_entries);
          capacity = info.max_entries;
        }
        close(fd);
      }
    }
    bpf_map* m = bpf_object__find_map_by_name(obj, name);
    if (m == nullptr) return absl::InternalError(absl::StrCat("BPF object lacks ", name));
    if (int err = bpf_map__set_max_entries(m, capacity); err) {
      return absl::ErrnoToStatus(-err, absl::StrCat("sizing ", name));
    }
  }
  return absl::OkStatus();
}

absl::Status ProbeObjectLoad(absl::string_view object) {
  ScopedQuietLibbpf quiet;  // the caller reports the outcome
  ObserverOptions opt;      // no pin_dir, every program
  if (object == "observe_tp") {
    absl::StatusOr<Skeleton<observe_tp_bpf>> skel = Skeleton<observe_tp_bpf>::Open("");
    if (!skel.ok()) return skel.status();
    if (absl::Status s = PrepareObject(skel->object(), opt); !s.ok()) return s;
    return skel->Load();
  }
  if (object != "observe_lsm") return absl::InvalidArgumentError(absl::StrCat("no BPF object ", object));
  absl::StatusOr<Skeleton<observe_lsm_bpf>> skel = Skeleton<observe_lsm_bpf>::Open("");
  if (!skel.ok()) return skel.status();
  if (absl::Status s = PrepareObject(skel->object(), opt); !s.ok()) return s;
  return skel->Load();
}

absl::Status ProbeProgramLoad(absl::string_view kind) {
  ScopedQuietLibbpf quiet;  // the caller reports the outcome
  ObserverOptions opt;  // no pin_dir: nothing is pinned
  if (kind == "tracepoint") {
    opt.only_programs = {"gt_tp_sys_exit"};
    absl::StatusOr<Skeleton<observe_tp_bpf>> skel = Skeleton<observe_tp_bpf>::Open("");
    if (!skel.ok()) return skel.status();
    if (absl::Status s = PrepareObject(skel->object(), opt); !s.ok()) return s;
    return skel->Load();
  }
  opt.only_programs = {kind == "lsm" ? "gt_lsm_file_open" : "gt_fexit_vfs_write"};
  absl::StatusOr<Skeleton<observe_lsm_bpf>> skel = Skeleton<observe_lsm_bpf>::Open("");
  if (!skel.ok()) return skel.status();
  if (absl::Status s = PrepareObject(skel->object(), opt); !s.ok()) return s;
  return skel->Load();
}

}  // namespace gputier
