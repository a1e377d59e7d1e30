/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The maps shared by every gputier BPF object. Each is pinned by name under
 * the agent's pin directory (LIBBPF_PIN_BY_NAME + pin_root_path; see
 * GT_MAPS_UNPINNED below for the exception), so the LSM
 * and tracepoint objects, a restarted agent and `gputierctl audit` all see the
 * same counters. Keys and values come from include/gputier/abi.h and carry BTF,
 * so `bpftool map dump pinned ...` prints field names.
 *
 * max_entries below are defaults; gputierd may resize the per-cgroup maps
 * before load. Maps the programs only read carry BPF_F_RDONLY_PROG: the
 * verifier refuses any program store into them, so only gputierd (through a
 * map fd, which the tamper watch guards in LSM mode) can change them.
 */
#ifndef GPUTIER_MAPS_BPF_H
#define GPUTIER_MAPS_BPF_H

#include "gputier/abi.h"

/*
 * An object that defines GT_MAPS_UNPINNED before including this file gets the
 * same maps unpinned: its own, created at its load and gone with it, never
 * meeting the agent's pins (the self-test, count_selftest.bpf.c).
 */
#ifdef GT_MAPS_UNPINNED
#define GT_MAP_PINNING
#else
#define GT_MAP_PINNING __uint(pinning, LIBBPF_PIN_BY_NAME);
#endif

/* cgroup v2 id -> counters. Written by the programs, read by the agent. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, GT_DEFAULT_MAX_CGROUPS);
	__type(key, __u64);
	__type(value, struct gt_cgroup_stats);
	GT_MAP_PINNING
} gt_cg_stats SEC(".maps");

/* lower-cased extension -> class id. Filled by the agent from config; the
 * table auditors read. The programs read gt_ext_index, and this map only for
 * an extension of an overflowing bucket. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, GT_MAX_EXTENSIONS);
	__type(key, struct gt_ext_key);
	__type(value, __u32);
	__uint(map_flags, BPF_F_RDONLY_PROG);
	GT_MAP_PINNING
} gt_ext_class SEC(".maps");

/* bucket -> up to GT_EXT_WAYS (extension, class id): the programs' inlined
 * copy of gt_ext_class (abi.h). Written by the agent at start, before any of
 * its programs is attached; a deterministic function of the config. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, GT_EXT_BUCKETS);
	__type(key, __u32);
	__type(value, struct gt_ext_bucket);
	__uint(map_flags, BPF_F_RDONLY_PROG);
	GT_MAP_PINNING
} gt_ext_index SEC(".maps");

/* class id -> class name, for readers of the pins (the programs never read it). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, GT_CLASS_MAX);
	__type(key, __u32);
	__type(value, struct gt_class_name);
	__uint(map_flags, BPF_F_RDONLY_PROG);
	GT_MAP_PINNING
} gt_class_names SEC(".maps");

/* (major, minor or GT_MINOR_ANY) -> GPU kind. Filled by the agent. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, GT_MAX_GPU_DEVS);
	__type(key, struct gt_dev_key);
	__type(value, struct gt_dev_val);
	__uint(map_flags, BPF_F_RDONLY_PROG);
	GT_MAP_PINNING
} gt_gpu_devs SEC(".maps");

/* One record per cgroup on its first GPU device access. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, GT_EVENTS_BYTES);
	GT_MAP_PINNING
} gt_events SEC(".maps");

/* ABI version and attach record, written by the agent; see struct gt_meta. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gt_meta);
	__uint(map_flags, BPF_F_RDONLY_PROG);
	GT_MAP_PINNING
} gt_meta SEC(".maps");

/* Events the programs had to drop, per enum gt_drop_reason. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, GT_DROP_MAX);
	__type(key, __u32);
	__type(value, __u64);
	GT_MAP_PINNING
} gt_drops SEC(".maps");

/* cgroup v2 id -> verdict. Written by the agent on a verdict change. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, GT_DEFAULT_MAX_CGROUPS);
	__type(key, __u64);
	__type(value, struct gt_verdict);
	__uint(map_flags, BPF_F_RDONLY_PROG);
	GT_MAP_PINNING
} gt_verdicts SEC(".maps");

/* ---- Fast-tier guard and tamper watch (LSM mode; see guard_lsm.bpf.c) ---- */

/* [0]: enforcement mode and gputierd's tgid. Written by the agent. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gt_guard_cfg);
	__uint(map_flags, BPF_F_RDONLY_PROG);
	GT_MAP_PINNING
} gt_guard_cfg SEC(".maps");

/* dev_t (kernel encoding) of each fast-tier filesystem -> 1. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, GT_MAX_GUARD_FS);
	__type(key, __u32);
	__type(value, __u32);
	__uint(map_flags, BPF_F_RDONLY_PROG);
	GT_MAP_PINNING
} gt_guard_fs SEC(".maps");

/* cgroup v2 id of each exempt host cgroup -> 1. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, GT_MAX_EXEMPT);
	__type(key, __u64);
	__type(value, __u32);
	__uint(map_flags, BPF_F_RDONLY_PROG);
	GT_MAP_PINNING
} gt_guard_exempt SEC(".maps");

/* cgroup v2 id -> guard and tamper counters. Written by the programs. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, GT_DEFAULT_MAX_CGROUPS);
	__type(key, __u64);
	__type(value, struct gt_guard_stats);
	GT_MAP_PINNING
} gt_guard_cg SEC(".maps");

/* gputier's own maps and links (kind, id) -> 1, for the tamper watch. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, GT_MAX_OWN_OBJS);
	__type(key, struct gt_obj_key);
	__type(value, __u32);
	__uint(map_flags, BPF_F_RDONLY_PROG);
	GT_MAP_PINNING
} gt_own_objs SEC(".maps");

/* The newest GT_AUDIT_SLOTS guard/tamper records of each CPU (a ring per
 * CPU: no lock, no atomics), for `gputierctl audit` without a daemon. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, GT_AUDIT_SLOTS);
	__type(key, __u32);
	__type(value, struct gt_audit_record);
	GT_MAP_PINNING
} gt_audit_log SEC(".maps");

/* [0]: records written so far on each CPU (the next slot is this mod
 * GT_AUDIT_SLOTS). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
	GT_MAP_PINNING
} gt_audit_head SEC(".maps");

#endif /* GPUTIER_MAPS_BPF_H */
