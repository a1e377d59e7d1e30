#include "loader/enforce/guard_maps.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <algorithm>
#include <cerrno>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"

namespace gputier {
namespace {

// Every key of a hash map (two syscalls per key would be needed for values;
// keys alone are one).
template <typename Key>
absl::StatusOr<std::vector<Key>> Keys(int fd, const char* name) {
  std::vector<Key> out;
  Key key{}, next{};
  const Key* prev = nullptr;
  while (bpf_map_get_next_key(fd, prev, &next) == 0) {
    out.push_back(next);
    key = next;
    prev = &key;
  }
  if (errno != ENOENT) return absl::ErrnoToStatus(errno, absl::StrCat("iterating ", name));
  return out;
}

// Deletes the keys that go before it writes the new set: a map at its
// max_entries (gt_guard_exempt: 256) that swaps some keys for others would
// otherwise refuse the new ones with E2BIG and stick. Kept keys are updated
// in place, never absent in between.
template <typename Key, typename Value, typename Hashable>
absl::Status Replace(int fd, const char* name, const std::vector<std::pair<Key, Value>>& entries,
                     Hashable hashable) {
  absl::flat_hash_set<uint64_t> keep;
  for (const auto& [k, v] : entries) keep.insert(hashable(k));
  absl::StatusOr<std::vector<Key>> old = Keys<Key>(fd, name);
  if (!old.ok()) return old.status();
  for (const Key& k : *old) {
    if (!keep.contains(hashable(k)) && bpf_map_delete_elem(fd, &k) != 0 && errno != ENOENT) {
      return absl::ErrnoToStatus(errno, absl::StrCat("deleting from ", name));
    }
  }
  for (const auto& [k, v] : entries) {
    if (bpf_map_update_elem(fd, &k, &v, BPF_ANY) != 0) {
      return absl::ErrnoToStatus(errno, absl::StrCat("writing ", name));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<gt_guard_cfg> ReadGuardCfg(int cfg_fd) {
  uint32_t zero = 0;
  gt_guard_cfg cfg;
  if (bpf_map_lookup_elem(cfg_fd, &zero, &cfg) != 0) {
    return absl::ErrnoToStatus(errno, "reading " GT_MAP_GUARD_CFG);
  }
  return cfg;
}

absl::Status WriteGuardCfg(int cfg_fd, const gt_guard_cfg& cfg) {
  uint32_t zero = 0;
  if (bpf_map_update_elem(cfg_fd, &zero, &cfg, BPF_ANY) != 0) {
    return absl::ErrnoToStatus(errno, "writing " GT_MAP_GUARD_CFG);
  }
  return absl::OkStatus();
}

absl::Status ReplaceGuardFs(int fd, const std::vector<uint32_t>& devs) {
  std::vector<std::pair<uint32_t, uint32_t>> entries;
  for (uint32_t d : devs) entries.emplace_back(d, 1);
  return Replace(fd, GT_MAP_GUARD_FS, entries, [](uint32_t k) { return uint64_t{k}; });
}

absl::Status ReplaceExempt(int fd, const absl::flat_hash_map<uint64_t, uint32_t>& cgroups) {
  std::vector<std::pair<uint64_t, uint32_t>> entries(cgroups.begin(), cgroups.end());
  return Replace(fd, GT_MAP_GUARD_EXEMPT, entries, [](uint64_t k) { return k; });
}

absl::Status ReplaceOwnObjects(int fd, const std::vector<gt_obj_key>& objects) {
  std::vector<std::pair<gt_obj_key, uint32_t>> entries;
  for (const gt_obj_key& o : objects) entries.emplace_back(o, 1);
  return Replace(fd, GT_MAP_OWN_OBJS, entries,
                 [](const gt_obj_key& k) { return (uint64_t{k.kind} << 32) | k.id; });
}

absl::StatusOr<std::vector<uint32_t>> ReadGuardFs(int fd) { return Keys<uint32_t>(fd, GT_MAP_GUARD_FS); }

absl::StatusOr<absl::flat_hash_map<uint64_t, uint32_t>> ReadExempt(int fd) {
  absl::StatusOr<std::vector<uint64_t>> keys = Keys<uint64_t>(fd, GT_MAP_GUARD_EXEMPT);
  if (!keys.ok()) return keys.status();
  absl::flat_hash_map<uint64_t, uint32_t> out;
  for (uint64_t k : *keys) {
    uint32_t v = 0;
    if (bpf_map_lookup_elem(fd, &k, &v) == 0) out[k] = v;
  }
  return out;
}

absl::StatusOr<std::vector<std::pair<uint64_t, gt_guard_stats>>> ReadGuardStats(int stats_fd) {
  absl::StatusOr<std::vector<uint64_t>> keys = Keys<uint64_t>(stats_fd, GT_MAP_GUARD_CG);
  if (!keys.ok()) return keys.status();
  std::vector<std::pair<uint64_t, gt_guard_stats>> out;
  for (uint64_t k : *keys) {
    gt_guard_stats v;
    // An entry deleted between the two calls (its cgroup went) is skipped.
    if (bpf_map_lookup_elem(stats_fd, &k, &v) == 0) out.emplace_back(k, v);
  }
  return out;
}

absl::StatusOr<std::vector<gt_audit_record>> ReadAuditLog(int log_fd) {
  int ncpu = libbpf_num_possible_cpus();
  if (ncpu <= 0) return absl::ErrnoToStatus(-ncpu, "counting possible CPUs");
  std::vector<gt_audit_record> slots(ncpu);
  std::vector<gt_audit_record> out;
  for (uint32_t i = 0; i < GT_AUDIT_SLOTS; ++i) {
    if (bpf_map_lookup_elem(log_fd, &i, slots.data()) != 0) {
      return absl::ErrnoToStatus(errno, "reading " GT_MAP_AUDIT_LOG);
    }
    for (const gt_audit_record& r : slots) {
      if (r.ts_ns != 0) out.push_back(r);
    }
  }
  std::sort(out.begin(), out.end(),
            [](const gt_audit_record& a, const gt_audit_record& b) { return a.ts_ns < b.ts_ns; });
  return out;
}

const char* AuditOpName(uint32_t op) {
  switch (op) {
    case GT_OP_OPEN_WRITE: return "open-write";
    case GT_OP_CREATE: return "create";
    case GT_OP_MKDIR: return "mkdir";
    case GT_OP_MKNOD: return "mknod";
    case GT_OP_SYMLINK: return "symlink";
    case GT_OP_LINK: return "link";
    case GT_OP_RENAME: return "rename";
    case GT_OP_MAP_WRITE_FD: return "map-write-fd";
    case GT_OP_LINK_FD: return "link-fd";
  }
  return "unknown";
}

}  // namespace gputier
