// Pins the layout of every struct in include/gputier/abi.h. These structs are
// keys and values of pinned maps, so a layout change must bump
// GT_ABI_VERSION; a failing static_assert here is the reminder.
#include <cstddef>
#include <type_traits>

#include "gputier/abi.h"
#include "gtest/gtest.h"
#include "loader/config/config.h"

namespace gputier {
namespace {

static_assert(GT_ABI_VERSION == 3,
              "a new ABI version: update the layouts pinned below");

// ---- Extension classes ------------------------------------------------------
static_assert(GT_CLASS_OTHER == 0 && GT_CLASS_IMAGE == 1 &&
                  GT_CLASS_VIDEO == 2 && GT_CLASS_TENSOR == 3 &&
                  GT_CLASS_GRAPHICS == 4 && GT_CLASS_FIRST_CUSTOM == 5 &&
                  GT_CLASS_MAX == 8,
              "class ids are stored in maps and counters");
static_assert(GT_NAME_TAIL == GT_EXT_MAX + 1,
              "the tail holds a dot and the longest extension");
static_assert((GT_NAME_TAIL & (GT_NAME_TAIL - 1)) == 0,
              "GT_NAME_TAIL is a power of two: the BPF side masks indexes "
              "with GT_NAME_TAIL - 1");

static_assert(sizeof(gt_ext_key) == 16);
static_assert(offsetof(gt_ext_key, ext) == 0);
static_assert(sizeof(gt_ext_key::ext) == GT_EXT_MAX + 1);

static_assert(GT_EXT_BUCKETS >= GT_MAX_EXTENSIONS,
              "gt_ext_index has at least one bucket per extension the config may list");
static_assert(sizeof(gt_ext_bucket) == 88);
static_assert(alignof(gt_ext_bucket) == 8, "the programs read each way as two 64-bit words");
static_assert(offsetof(gt_ext_bucket, ext) == 0);
static_assert(offsetof(gt_ext_bucket, class_id) == 16 * GT_EXT_WAYS);
static_assert(offsetof(gt_ext_bucket, overflow) == 20 * GT_EXT_WAYS);
static_assert(offsetof(gt_ext_bucket, reserved) == 20 * GT_EXT_WAYS + 4);

static_assert(sizeof(gt_class_name) == 16);
static_assert(sizeof(gt_class_name::name) == GT_CLASS_NAME_LEN);

// ---- GPU devices ------------------------------------------------------------
static_assert(sizeof(gt_dev_key) == 8);
static_assert(offsetof(gt_dev_key, major) == 0);
static_assert(offsetof(gt_dev_key, minor) == 4);
static_assert(sizeof(gt_dev_val) == 8);
static_assert(offsetof(gt_dev_val, kind) == 0);
static_assert(offsetof(gt_dev_val, reserved) == 4);
static_assert(GT_GPU_KIND_MAX <= 32, "gpu_kinds is a 32-bit mask of kinds");

// ---- Per-cgroup counters ----------------------------------------------------
static_assert(sizeof(gt_cgroup_stats) == 144);
static_assert(alignof(gt_cgroup_stats) == 8);
static_assert(offsetof(gt_cgroup_stats, opens_total) == 0);
static_assert(offsetof(gt_cgroup_stats, opens_noext) == 8);
static_assert(offsetof(gt_cgroup_stats, opens_by_class) == 16);
static_assert(sizeof(gt_cgroup_stats::opens_by_class) ==
                  GT_CLASS_MAX * sizeof(__u64),
              "one counter per class id");
static_assert(std::extent_v<decltype(gt_cgroup_stats::opens_by_class)> ==
              GT_CLASS_MAX);
static_assert(offsetof(gt_cgroup_stats, gpu_opens) == 80);
static_assert(offsetof(gt_cgroup_stats, gpu_ioctls) == 88);
static_assert(offsetof(gt_cgroup_stats, bytes_written) == 96);
static_assert(offsetof(gt_cgroup_stats, writes) == 104);
static_assert(offsetof(gt_cgroup_stats, first_seen_ns) == 112);
static_assert(offsetof(gt_cgroup_stats, last_seen_ns) == 120);
static_assert(offsetof(gt_cgroup_stats, gpu_first_ns) == 128);
static_assert(offsetof(gt_cgroup_stats, flags) == 136);
static_assert(offsetof(gt_cgroup_stats, gpu_kinds) == 140);
// Counters are updated with __sync_fetch_and_add: each needs 8-byte alignment.
static_assert(offsetof(gt_cgroup_stats, opens_total) % 8 == 0 &&
              offsetof(gt_cgroup_stats, opens_noext) % 8 == 0 &&
              offsetof(gt_cgroup_stats, opens_by_class) % 8 == 0 &&
              offsetof(gt_cgroup_stats, gpu_opens) % 8 == 0 &&
              offsetof(gt_cgroup_stats, gpu_ioctls) % 8 == 0 &&
              offsetof(gt_cgroup_stats, bytes_written) % 8 == 0 &&
              offsetof(gt_cgroup_stats, writes) % 8 == 0 &&
              offsetof(gt_cgroup_stats, first_seen_ns) % 8 == 0 &&
              offsetof(gt_cgroup_stats, last_seen_ns) % 8 == 0 &&
              offsetof(gt_cgroup_stats, gpu_first_ns) % 8 == 0);

// ---- Ring-buffer events -----------------------------------------------------
static_assert(sizeof(gt_event) == 56);
static_assert(alignof(gt_event) == 8);
static_assert(offsetof(gt_event, type) == 0);
static_assert(offsetof(gt_event, gpu_kind) == 4);
static_assert(offsetof(gt_event, cgroup_id) == 8);
static_assert(offsetof(gt_event, ts_ns) == 16);
static_assert(offsetof(gt_event, pid) == 24);
static_assert(offsetof(gt_event, dev_major) == 28);
static_assert(offsetof(gt_event, dev_minor) == 32);
static_assert(offsetof(gt_event, reserved) == 36);
static_assert(offsetof(gt_event, comm) == 40);
static_assert(sizeof(gt_event::comm) == 16, "TASK_COMM_LEN");

// ---- Verdicts ---------------------------------------------------------------
static_assert(sizeof(gt_verdict) == 24);
static_assert(alignof(gt_verdict) == 8);
static_assert(offsetof(gt_verdict, verdict) == 0);
static_assert(offsetof(gt_verdict, confidence_permille) == 4);
static_assert(offsetof(gt_verdict, model_version) == 8);
static_assert(offsetof(gt_verdict, source) == 12);
static_assert(offsetof(gt_verdict, decided_at_ns) == 16);
static_assert(GT_VERDICT_UNKNOWN == 0 && GT_VERDICT_CPU == 1 && GT_VERDICT_GPU == 2 &&
              GT_VERDICT_MIXED == 3, "verdict values are read by the audit tools");

// ---- Agent-wide state -------------------------------------------------------
static_assert(sizeof(gt_meta) == 24);
static_assert(alignof(gt_meta) == 8);
static_assert(offsetof(gt_meta, magic) == 0);
static_assert(offsetof(gt_meta, abi_version) == 4);
static_assert(offsetof(gt_meta, mode) == 8);
static_assert(offsetof(gt_meta, reserved) == 12);
static_assert(offsetof(gt_meta, attached_ns) == 16);
static_assert(GT_DROP_CGROUP_MAP_FULL < GT_DROP_MAX &&
              GT_DROP_RINGBUF_FULL < GT_DROP_MAX &&
              GT_DROP_NAME_READ < GT_DROP_MAX);

// ---- Guard and tamper watch -------------------------------------------------
static_assert(GT_ENFORCE_OFF == 0 && GT_ENFORCE_AUDIT == 1 && GT_ENFORCE_DENY == 2);
static_assert(sizeof(gt_guard_cfg) == 8);
static_assert(offsetof(gt_guard_cfg, mode) == 0);
static_assert(offsetof(gt_guard_cfg, agent_tgid) == 4);
static_assert(sizeof(gt_audit_record) == 64);
static_assert(alignof(gt_audit_record) == 8);
static_assert(offsetof(gt_audit_record, ts_ns) == 0);
static_assert(offsetof(gt_audit_record, cgroup_id) == 8);
static_assert(offsetof(gt_audit_record, kind) == 16);
static_assert(offsetof(gt_audit_record, op) == 20);
static_assert(offsetof(gt_audit_record, pid) == 24);
static_assert(offsetof(gt_audit_record, uid) == 28);
static_assert(offsetof(gt_audit_record, target) == 32);
static_assert(offsetof(gt_audit_record, verdict) == 36);
static_assert(offsetof(gt_audit_record, denied) == 40);
static_assert(offsetof(gt_audit_record, reserved) == 44);
static_assert(offsetof(gt_audit_record, comm) == 48);
static_assert(sizeof(gt_audit_event) == 72);
static_assert(offsetof(gt_audit_event, type) == 0, "same place as gt_event::type");
static_assert(offsetof(gt_audit_event, rec) == 8);
static_assert(sizeof(gt_guard_stats) == 32);
static_assert(offsetof(gt_guard_stats, guard_audited) == 0);
static_assert(offsetof(gt_guard_stats, guard_denied) == 8);
static_assert(offsetof(gt_guard_stats, tamper_events) == 16);
static_assert(offsetof(gt_guard_stats, last_ns) == 24);
static_assert(sizeof(gt_obj_key) == 8);
static_assert(offsetof(gt_obj_key, kind) == 0);
static_assert(offsetof(gt_obj_key, id) == 4);

// No implicit padding anywhere: every struct is the sum of its fields.
static_assert(std::has_unique_object_representations_v<gt_ext_key>);
static_assert(std::has_unique_object_representations_v<gt_ext_bucket>);
static_assert(std::has_unique_object_representations_v<gt_class_name>);
static_assert(std::has_unique_object_representations_v<gt_dev_key>);
static_assert(std::has_unique_object_representations_v<gt_dev_val>);
static_assert(std::has_unique_object_representations_v<gt_cgroup_stats>);
static_assert(std::has_unique_object_representations_v<gt_event>);
static_assert(std::has_unique_object_representations_v<gt_meta>);
static_assert(std::has_unique_object_representations_v<gt_verdict>);
static_assert(std::has_unique_object_representations_v<gt_guard_cfg>);
static_assert(std::has_unique_object_representations_v<gt_audit_record>);
static_assert(std::has_unique_object_representations_v<gt_audit_event>);
static_assert(std::has_unique_object_representations_v<gt_guard_stats>);
static_assert(std::has_unique_object_representations_v<gt_obj_key>);

TEST(AbiLayout, DefaultClassesFitTheKernelMaps) {
  const Config config = DefaultConfig();
  ASSERT_FALSE(config.classes.empty());
  for (const ExtensionClass& c : config.classes) {
    EXPECT_GT(c.id, static_cast<uint32_t>(GT_CLASS_OTHER)) << c.name;
    EXPECT_LT(c.id, static_cast<uint32_t>(GT_CLASS_MAX)) << c.name;
    EXPECT_LT(c.name.size(), sizeof(gt_class_name::name)) << c.name;
    for (const std::string& ext : c.extensions) {
      EXPECT_LE(ext.size(), static_cast<size_t>(GT_EXT_MAX))
          << ext << " in " << c.name;
    }
  }
  EXPECT_EQ(config.max_cgroups, static_cast<uint32_t>(GT_DEFAULT_MAX_CGROUPS));
}

}  // namespace
}  // namespace gputier
