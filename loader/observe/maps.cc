#include "loader/observe/maps.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace gputier {

namespace {

absl::Status MapError(int err, absl::string_view what) {
  return absl::ErrnoToStatus(err, what);
}

std::string PinPath(const std::string& dir, absl::string_view name) {
  return absl::StrCat(dir, "/", name);
}

bool Exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

}  // namespace

namespace {

// Every entry of a map keyed by cgroup id, one at a time (two syscalls each).
template <typename Value>
absl::StatusOr<std::vector<std::pair<uint64_t, Value>>> ReadByCgroupId(int fd, const char* name) {
  std::vector<std::pair<uint64_t, Value>> out;
  uint64_t key = 0, next = 0;
  const uint64_t* prev = nullptr;
  while (bpf_map_get_next_key(fd, prev, &next) == 0) {
    Value value;
    // An entry deleted between get_next_key and lookup is simply skipped.
    if (bpf_map_lookup_elem(fd, &next, &value) == 0) out.emplace_back(next, value);
    key = next;
    prev = &key;
  }
  if (errno != ENOENT) return MapError(errno, absl::StrCat("iterating ", name));
  return out;
}

}  // namespace

absl::StatusOr<CgroupCounters> ReadCgroupCounters(int stats_fd) {
  // BPF_MAP_LOOKUP_BATCH (Linux 5.6+): a thousand cgroups per syscall, which
  // keeps a tick over 10,000 cgroups cheap.
  constexpr uint32_t kBatch = 1024;
  CgroupCounters out;
  std::vector<uint64_t> keys(kBatch);
  std::vector<gt_cgroup_stats> values(kBatch);
  uint64_t token = 0;
  bool first = true;
  LIBBPF_OPTS(bpf_map_batch_opts, opts);
  while (true) {
    uint32_t count = kBatch;
    int err = bpf_map_lookup_batch(stats_fd, first ? nullptr : &token, &token, keys.data(), values.data(),
                                   &count, &opts);
    int saved = errno;
    for (uint32_t i = 0; i < count && (err == 0 || saved == ENOENT); ++i) out.emplace_back(keys[i], values[i]);
    if (err == 0) {
      first = false;
      continue;
    }
    if (saved == ENOENT) return out;
    if (first && (saved == EINVAL || saved == ENOTSUP || saved == EOPNOTSUPP || saved == 524 /* ENOTSUPP */)) {
      return ReadByCgroupId<gt_cgroup_stats>(stats_fd, GT_MAP_CG_STATS);
    }
    if (saved == ENOSPC) return MapError(saved, "batch-reading gt_cg_stats (a bucket exceeds the batch)");
    return MapError(saved, "batch-reading gt_cg_stats");
  }
}

absl::StatusOr<gt_cgroup_stats> ReadCgroupCounter(int stats_fd, uint64_t cgroup_id) {
  gt_cgroup_stats value;
  if (bpf_map_lookup_elem(stats_fd, &cgroup_id, &value) != 0) {
    if (errno == ENOENT) {
      return absl::NotFoundError(absl::StrCat("cgroup ", cgroup_id, " has no counters"));
    }
    return MapError(errno, "reading gt_cg_stats");
  }
  return value;
}

absl::Status DeleteCgroupCounter(int stats_fd, uint64_t cgroup_id) {
  if (bpf_map_delete_elem(stats_fd, &cgroup_id) != 0 && errno != ENOENT) {
    return MapError(errno, absl::StrCat("deleting cgroup ", cgroup_id, " from gt_cg_stats"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::pair<uint64_t, gt_verdict>>> ReadVerdicts(int verdicts_fd) {
  return ReadByCgroupId<gt_verdict>(verdicts_fd, GT_MAP_VERDICTS);
}

absl::Status WriteVerdict(int verdicts_fd, uint64_t cgroup_id, const gt_verdict& verdict) {
  if (bpf_map_update_elem(verdicts_fd, &cgroup_id, &verdict, BPF_ANY) != 0) {
    return MapError(errno, absl::StrCat("writing the verdict of cgroup ", cgroup_id, " to gt_verdicts"));
  }
  return absl::OkStatus();
}

absl::Status DeleteVerdict(int verdicts_fd, uint64_t cgroup_id) {
  if (bpf_map_delete_elem(verdicts_fd, &cgroup_id) != 0 && errno != ENOENT) {
    return MapError(errno, absl::StrCat("deleting cgroup ", cgroup_id, " from gt_verdicts"));
  }
  return absl::OkStatus();
}

absl::StatusOr<ClassNames> ReadClassNames(int names_fd) {
  ClassNames names;
  for (uint32_t i = 0; i < GT_CLASS_MAX; ++i) {
    gt_class_name v;
    if (bpf_map_lookup_elem(names_fd, &i, &v) != 0) return MapError(errno, "reading gt_class_names");
    names[i] = std::string(v.name, strnlen(v.name, sizeof(v.name)));
  }
  if (names[GT_CLASS_OTHER].empty()) names[GT_CLASS_OTHER] = "other";
  return names;
}

absl::StatusOr<gt_meta> ReadMeta(int meta_fd) {
  uint32_t zero = 0;
  gt_meta meta;
  if (bpf_map_lookup_elem(meta_fd, &zero, &meta) != 0) return MapError(errno, "reading gt_meta");
  return meta;
}

absl::Status WriteMeta(int meta_fd, const gt_meta& meta) {
  uint32_t zero = 0;
  if (bpf_map_update_elem(meta_fd, &zero, &meta, BPF_ANY) != 0) {
    return MapError(errno, "writing gt_meta");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::array<uint64_t, GT_DROP_MAX>> ReadDrops(int drops_fd) {
  int ncpu = libbpf_num_possible_cpus();
  if (ncpu <= 0) return MapError(-ncpu, "counting possible CPUs");
  std::array<uint64_t, GT_DROP_MAX> sums{};
  std::vector<uint64_t> slots(ncpu);
  for (uint32_t i = 0; i < GT_DROP_MAX; ++i) {
    if (bpf_map_lookup_elem(drops_fd, &i, slots.data()) != 0) return MapError(errno, "reading gt_drops");
    for (uint64_t v : slots) sums[i] += v;
  }
  return sums;
}

std::vector<std::string> AllMapNames() {
  return {GT_MAP_CG_STATS, GT_MAP_EXT_CLASS, GT_MAP_EXT_INDEX, GT_MAP_CLASS_NAMES,
          GT_MAP_GPU_DEVS, GT_MAP_EVENTS,    GT_MAP_META,      GT_MAP_DROPS,       GT_MAP_VERDICTS,
          GT_MAP_GUARD_CFG, GT_MAP_GUARD_FS, GT_MAP_GUARD_EXEMPT, GT_MAP_GUARD_CG,
          GT_MAP_OWN_OBJS,  GT_MAP_AUDIT_LOG, GT_MAP_AUDIT_HEAD};
}

absl::StatusOr<PinState> CheckPinnedLayout(const std::string& pin_dir) {
  const std::string meta_path = PinPath(pin_dir, GT_MAP_META);
  if (!Exists(meta_path)) {
    for (const std::string& name : AllMapNames()) {
      if (Exists(PinPath(pin_dir, name))) {
        return absl::FailedPreconditionError(absl::StrFormat(
            "%s holds gputier pins (%s) but no %s record, so their layout is unknown; "
            "remove them with `gputierctl unpin --pin-dir %s` (counters are lost) or "
            "choose another --pin-dir",
            pin_dir, name, GT_MAP_META, pin_dir));
      }
    }
    return PinState::kEmpty;
  }
  // Read-only: readers of the pins never ask for a write-capable fd, which
  // the tamper watch would record.
  LIBBPF_OPTS(bpf_obj_get_opts, opts, .file_flags = BPF_F_RDONLY);
  int fd = bpf_obj_get_opts(meta_path.c_str(), &opts);
  if (fd < 0) return MapError(errno, absl::StrCat("opening pinned ", meta_path));
  Fd meta_fd(fd);
  struct bpf_map_info info = {};
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(meta_fd.get(), &info, &len) != 0) {
    return MapError(errno, absl::StrCat("reading map info of ", meta_path));
  }
  // The first two fields of gt_meta (magic, abi_version) never move, so any
  // gputier version can read them; everything else is only trusted on match.
  uint32_t head[2] = {0, 0};
  std::vector<uint8_t> buf(info.value_size >= sizeof(head) ? info.value_size : sizeof(head));
  uint32_t zero = 0;
  if (info.type != BPF_MAP_TYPE_ARRAY || info.key_size != sizeof(uint32_t) ||
      info.value_size < sizeof(head) ||
      bpf_map_lookup_elem(meta_fd.get(), &zero, buf.data()) != 0) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s is not a gputier layout record; remove the pins with `gputierctl unpin --pin-dir %s` "
        "or choose another --pin-dir",
        meta_path, pin_dir));
  }
  memcpy(head, buf.data(), sizeof(head));
  if (head[0] != GT_ABI_MAGIC || head[1] != GT_ABI_VERSION ||
      info.value_size != sizeof(gt_meta)) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "the pins in %s have map layout version %u (magic 0x%08x) but this gputier uses version "
        "%u; they are left untouched: stop the agent that made them and run `gputierctl unpin "
        "--pin-dir %s` (it removes only gputier's pin names, of any version; counters are lost), or "
        "choose another --pin-dir",
        pin_dir, head[1], head[0], GT_ABI_VERSION, pin_dir));
  }
  return PinState::kCurrent;
}

absl::StatusOr<Fd> OpenPinnedMap(const std::string& pin_dir, const char* name) {
  const std::string path = PinPath(pin_dir, name);
  LIBBPF_OPTS(bpf_obj_get_opts, opts, .file_flags = BPF_F_RDONLY);
  int fd = bpf_obj_get_opts(path.c_str(), &opts);
  if (fd < 0) {
    int err = errno;
    if (err == ENOENT) {
      return absl::NotFoundError(absl::StrFormat(
          "%s does not exist: no gputierd has pinned its maps in %s yet; start gputierd "
          "(or pass the --pin-dir it uses)",
          path, pin_dir));
    }
    return MapError(err, absl::StrCat("opening pinned map ", path));
  }
  return Fd(fd);
}

absl::StatusOr<PinnedMaps> OpenPinnedMaps(const std::string& pin_dir) {
  absl::StatusOr<PinState> state = CheckPinnedLayout(pin_dir);
  if (!state.ok()) return state.status();
  if (*state == PinState::kEmpty) {
    return absl::NotFoundError(absl::StrFormat(
        "no gputier maps are pinned in %s; start gputierd (or pass the --pin-dir it uses)",
        pin_dir));
  }
  PinnedMaps maps;
  struct Slot {
    Fd* fd;
    const char* name;
  } slots[] = {{&maps.cg_stats, GT_MAP_CG_STATS},
               {&maps.class_names, GT_MAP_CLASS_NAMES},
               {&maps.gpu_devs, GT_MAP_GPU_DEVS},
               {&maps.meta, GT_MAP_META},
               {&maps.drops, GT_MAP_DROPS},
               {&maps.verdicts, GT_MAP_VERDICTS},
               {&maps.guard_cfg, GT_MAP_GUARD_CFG},
               {&maps.guard_cg, GT_MAP_GUARD_CG},
               {&maps.audit_log, GT_MAP_AUDIT_LOG}};
  for (Slot& s : slots) {
    absl::StatusOr<Fd> fd = OpenPinnedMap(pin_dir, s.name);
    if (!fd.ok()) return fd.status();
    *s.fd = std::move(*fd);
  }
  return maps;
}

absl::Status Unpin(const std::string& pin_dir, std::vector<std::string>* removed) {
  for (const std::string& name : AllMapNames()) {
    const std::string path = PinPath(pin_dir, name);
    if (unlink(path.c_str()) != 0) {
      if (errno == ENOENT) continue;
      return MapError(errno, absl::StrCat("removing pin ", path));
    }
    if (removed != nullptr) removed->push_back(path);
  }
  return absl::OkStatus();
}

}  // namespace gputier
