/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The counting logic, one source of truth for both hook modes: the LSM/fentry
 * object hands these functions the struct file the kernel gave the hook; the
 * tracepoint object first finds the struct file behind a syscall's fd. Every
 * function is observe-only: it never fails the operation it watches.
 *
 * How the struct file is read is the caller's choice (enum gt_read):
 *   GT_READ_PROBE     `file` is a plain address (found with
 *                     bpf_probe_read_kernel): every field is read with
 *                     BPF_CORE_READ, one helper call per field.
 *   GT_READ_BTF       `file` is a pointer the verifier knows the type of (an
 *                     LSM/fexit argument, or a bpf_rdonly_cast result): fields
 *                     are plain loads, which the JIT makes fault-safe. Only
 *                     the name tail still takes a bpf_probe_read_kernel.
 *   GT_READ_BTF_CAST  as GT_READ_BTF, and the name tail is read with typed
 *                     loads too, through bpf_rdonly_cast (Linux 6.2+). Only for
 *                     objects that define GT_HAVE_RDONLY_CAST and only in
 *                     programs the loader loads where the kfunc exists.
 * `task`, when not NULL, is the current task as a typed pointer
 * (bpf_get_current_task_btf()): the cgroup id is then read from it with plain
 * loads instead of a bpf_get_current_cgroup_id() call.
 *
 * Cost per regular-file open (GT_READ_BTF_CAST): a handful of plain loads,
 * the extension parse (straight-line, ext_class.bpf.h), the extension's
 * gt_ext_index bucket (an array lookup the verifier inlines), one hash lookup
 * (the cgroup's counters) and two atomic adds. No clock read: see gt_now(). No
 * bpf_d_path, no string loops, no per-open ring-buffer traffic.
 *
 * What is decided from the values read (which syscall counts, what a mode
 * counts as, how the counters and first-GPU flags move) lives in
 * count_logic.bpf.h, which the unit tests compile as C++; this file reads the
 * kernel and the maps. count_selftest.bpf.c runs these functions in the
 * kernel without a hook.
 */
#ifndef GPUTIER_COUNT_BPF_H
#define GPUTIER_COUNT_BPF_H

#include "gputier/abi.h"
#include "count_logic.bpf.h"
#include "ext_class.bpf.h"
#include "maps.bpf.h"

enum gt_read {
	GT_READ_PROBE = 0,
	GT_READ_BTF = 1,
	GT_READ_BTF_CAST = 2,
};

/*
 * One field of a kernel object: a plain (fault-safe) load when the pointer is
 * typed, BPF_CORE_READ otherwise. `how` is a compile-time constant in every
 * caller, so only one side is compiled in.
 */
#define GT_READ(how, ptr, field) ((how) != GT_READ_PROBE ? (ptr)->field : BPF_CORE_READ(ptr, field))

#ifdef GT_HAVE_RDONLY_CAST
/* Linux 6.2+. The verifier turns the call into a register move. */
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym __weak;
#endif

static __always_inline void gt_drop(__u32 reason)
{
	__u64 *n = bpf_map_lookup_elem(&gt_drops, &reason);

	if (n)
		*n += 1; /* per-CPU slot: no atomic needed */
}

/*
 * CLOCK_MONOTONIC nanoseconds at tick resolution, for first/last-seen times.
 * bpf_ktime_get_ns() reads the clocksource on every call (tens of ns on every
 * counted syscall); jiffies is one load. The first caller in each tick reads
 * the clock and leaves it here; later callers in the same tick reuse it, so a
 * time is at most about one tick (1-10 ms) early. Two CPUs racing on a new
 * tick may store in either order: the result is still a time of that tick
 * or the one before.
 */
struct {
	__u64 jiffies;
	__u64 ns;
} gt_clock;

static __always_inline __u64 gt_now(void)
{
	__u64 j = bpf_jiffies64();
	__u64 ns;

	if (j == gt_clock.jiffies && gt_clock.ns)
		return gt_clock.ns;
	ns = bpf_ktime_get_ns();
	gt_clock.ns = ns;
	gt_clock.jiffies = j;
	return ns;
}

/* The cgroup v2 id of the current task (see `task` above). */
static __always_inline __u64 gt_current_cgroup_id(struct task_struct *task)
{
	if (task)
		return task->cgroups->dfl_cgrp->kn->id;
	return bpf_get_current_cgroup_id();
}

/* The current task's cgroup counters, created on first sight. */
static __always_inline struct gt_cgroup_stats *gt_current_stats(__u64 now, struct task_struct *task)
{
	__u64 cgid = gt_current_cgroup_id(task);
	struct gt_cgroup_stats *s;

	s = bpf_map_lookup_elem(&gt_cg_stats, &cgid);
	if (!s) {
		struct gt_cgroup_stats init = {};

		init.first_seen_ns = now;
		/* EEXIST means another CPU won the race: fine, look it up. */
		bpf_map_update_elem(&gt_cg_stats, &cgid, &init, BPF_NOEXIST);
		s = bpf_map_lookup_elem(&gt_cg_stats, &cgid);
		if (!s) {
			gt_drop(GT_DROP_CGROUP_MAP_FULL);
			return NULL;
		}
	}
	s->last_seen_ns = now;
	return s;
}

/* GPU kind of a char device number, GT_GPU_NONE if not selected. */
static __always_inline __u32 gt_gpu_kind(__u32 rdev, struct gt_dev_key *key)
{
	struct gt_dev_val *v;

	gt_dev_key_of(rdev, key);
	v = bpf_map_lookup_elem(&gt_gpu_devs, key);
	if (!v) {
		struct gt_dev_key any = { .major = key->major, .minor = GT_MINOR_ANY };

		v = bpf_map_lookup_elem(&gt_gpu_devs, &any);
	}
	return v ? v->kind : GT_GPU_NONE;
}

/* First GPU access of a cgroup: flag it and tell userspace once. */
static __always_inline void gt_emit_gpu_event(__u32 type, __u32 kind, const struct gt_dev_key *dev,
					      __u64 now, __u64 cgid)
{
	struct gt_event *e = bpf_ringbuf_reserve(&gt_events, sizeof(*e), 0);

	if (!e) {
		gt_drop(GT_DROP_RINGBUF_FULL);
		return;
	}
	e->type = type;
	e->gpu_kind = kind;
	e->cgroup_id = cgid;
	e->ts_ns = now;
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->dev_major = dev->major;
	e->dev_minor = dev->minor;
	e->reserved = 0;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	bpf_ringbuf_submit(e, 0);
}

/*
 * A GPU device was opened (is_ioctl == 0) or ioctl'ed: count it if selected.
 * A cgroup's first GPU access, and its first GPU ioctl, each raise one
 * ring-buffer event, so the agent decides within milliseconds instead of at
 * its next tick.
 */
static __always_inline void gt_count_gpu(__u32 rdev, int is_ioctl, struct task_struct *task)
{
	struct gt_cgroup_stats *s;
	struct gt_dev_key dev;
	__u32 kind = gt_gpu_kind(rdev, &dev);
	__u64 now;

	if (kind == GT_GPU_NONE)
		return;
	now = gt_now();
	s = gt_current_stats(now, task);
	if (!s)
		return;
	gt_stats_count_gpu(s, is_ioctl);
	gt_stats_note_gpu_kind(s, kind);
	if (gt_stats_first_gpu_access(s, now))
		gt_emit_gpu_event(GT_EV_FIRST_GPU_ACCESS, kind, &dev, now, gt_current_cgroup_id(task));
	if (is_ioctl && gt_stats_first_gpu_ioctl(s))
		gt_emit_gpu_event(GT_EV_FIRST_GPU_IOCTL, kind, &dev, now, gt_current_cgroup_id(task));
}

/*
 * The last min(len, GT_NAME_TAIL) bytes of a name into tail[0..GT_NAME_TAIL)
 * (the bytes after them are whatever follows in memory). Returns 0 on success.
 */
static __always_inline int gt_read_name_tail(char *tail, const unsigned char *name, __u32 len,
					     __u32 n, enum gt_read how)
{
	const unsigned char *start = name + len - n;

#ifdef GT_HAVE_RDONLY_CAST
	if (how == GT_READ_BTF_CAST) {
		/*
		 * A typed, read-only view of the 16 bytes: any kernel struct that
		 * starts with a char array of at least GT_NAME_TAIL bytes serves
		 * (new_utsname: char sysname[65], a userspace ABI). The loads are
		 * fault-safe; a fault would read zeros (no dot: no extension).
		 */
		const __u64 *w = bpf_rdonly_cast(start, bpf_core_type_id_kernel(struct new_utsname));

		((__u64 *)tail)[0] = w[0];
		((__u64 *)tail)[1] = w[1];
		return 0;
	}
#endif
	return bpf_probe_read_kernel(tail, GT_NAME_TAIL, start);
}

/*
 * The class id of an extension: its gt_ext_index bucket (an inlined array
 * lookup), and gt_ext_class only when the bucket overflowed.
 */
static __always_inline __u32 gt_ext_class_of(const struct gt_ext_key *key)
{
	__u32 b = gt_ext_bucket_of(key);
	struct gt_ext_bucket *bucket = bpf_map_lookup_elem(&gt_ext_index, &b);
	__u32 c;
	__u32 *cls;

	if (!bucket)
		return GT_CLASS_OTHER;
	if (gt_ext_bucket_class(bucket, key, &c))
		return c;
	cls = bpf_map_lookup_elem(&gt_ext_class, key);
	return cls ? *cls : GT_CLASS_OTHER;
}

/*
 * The extension key of an opened file's name (its dentry's last
 * GT_NAME_TAIL bytes): 1 and *key set, or 0 when the name has none or could
 * not be read (counted in gt_drops).
 */
static __always_inline int gt_file_ext(struct file *file, enum gt_read how, struct gt_ext_key *key)
{
	struct dentry *dentry = GT_READ(how, file, f_path.dentry);
	const unsigned char *name = GT_READ(how, dentry, d_name.name);
	__u32 len = GT_READ(how, dentry, d_name.len);
	char tail[GT_NAME_TAIL] __attribute__((aligned(8)));
	__u32 n = gt_name_tail_len(len);

	if (gt_read_name_tail(tail, name, len, n, how) != 0) {
		gt_drop(GT_DROP_NAME_READ);
		return 0;
	}
	return gt_ext_from_tail(tail, n, gt_name_tail_is_whole(len), key);
}

/*
 * A file was opened. Regular files count by extension class; selected char
 * devices count as GPU opens.
 */
static __always_inline void gt_count_open(struct file *file, enum gt_read how,
					  struct task_struct *task)
{
	struct inode *inode = GT_READ(how, file, f_inode);
	__u32 mode = GT_READ(how, inode, i_mode);
	struct gt_cgroup_stats *s;
	struct gt_ext_key key __attribute__((aligned(8)));
	int has_ext;

	if (gt_mode_is_char_dev(mode)) {
		gt_count_gpu(GT_READ(how, inode, i_rdev), 0, task);
		return;
	}
	if (!gt_mode_is_regular(mode))
		return;
	has_ext = gt_file_ext(file, how, &key);
	s = gt_current_stats(gt_now(), task);
	if (!s)
		return;
	gt_stats_count_open(s, has_ext, has_ext ? gt_ext_class_of(&key) : GT_CLASS_OTHER);
}

/* An ioctl on a file: counted when the file is a selected GPU device. */
static __always_inline void gt_count_ioctl(struct file *file, enum gt_read how,
					   struct task_struct *task)
{
	struct inode *inode = GT_READ(how, file, f_inode);

	if (!gt_mode_is_char_dev(GT_READ(how, inode, i_mode)))
		return;
	gt_count_gpu(GT_READ(how, inode, i_rdev), 1, task);
}

/* A write of `bytes` (> 0) bytes completed on a file: counted for regular files. */
static __always_inline void gt_count_write(struct file *file, long bytes, enum gt_read how,
					   struct task_struct *task)
{
	struct gt_cgroup_stats *s;
	struct inode *inode;

	if (bytes <= 0)
		return;
	inode = GT_READ(how, file, f_inode);
	if (!gt_mode_is_regular(GT_READ(how, inode, i_mode)))
		return;
	s = gt_current_stats(gt_now(), task);
	if (!s)
		return;
	gt_stats_count_write(s, bytes);
}

/* A cgroup was removed: its counters go with it. */
static __always_inline void gt_forget_cgroup(struct cgroup *cgrp)
{
	__u64 id = BPF_CORE_READ(cgrp, kn, id);

	bpf_map_delete_elem(&gt_cg_stats, &id);
	bpf_map_delete_elem(&gt_guard_cg, &id);
}

#endif /* GPUTIER_COUNT_BPF_H */
