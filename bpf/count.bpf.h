/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The counting logic, one source of truth for both hook modes: the LSM/fentry
 * object hands these functions the struct file the kernel gave the hook; the
 * tracepoint object first finds the struct file behind a syscall's fd. Every
 * function is observe-only: it never fails the operation it watches.
 *
 * Cost per regular-file open: ~5 bounded kernel reads (inode, mode, dentry,
 * name length/pointer, the last GT_NAME_TAIL bytes of the name), two hash
 * lookups (extension, cgroup) and a few atomic adds. No bpf_d_path, no string
 * loops beyond GT_NAME_TAIL bytes, no per-open ring-buffer traffic.
 */
#ifndef GPUTIER_COUNT_BPF_H
#define GPUTIER_COUNT_BPF_H

#include "gputier/abi.h"
#include "ext_class.bpf.h"
#include "maps.bpf.h"

#define GT_S_IFMT 00170000
#define GT_S_IFREG 0100000
#define GT_S_IFCHR 0020000
#define GT_MINORBITS 20
#define GT_MINORMASK ((1u << GT_MINORBITS) - 1)

static __always_inline void gt_drop(__u32 reason)
{
	__u64 *n = bpf_map_lookup_elem(&gt_drops, &reason);

	if (n)
		*n += 1; /* per-CPU slot: no atomic needed */
}

/* The current task's cgroup counters, created on first sight. */
static __always_inline struct gt_cgroup_stats *gt_current_stats(__u64 now)
{
	__u64 cgid = bpf_get_current_cgroup_id();
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

	key->major = rdev >> GT_MINORBITS;
	key->minor = rdev & GT_MINORMASK;
	v = bpf_map_lookup_elem(&gt_gpu_devs, key);
	if (!v) {
		struct gt_dev_key any = { .major = key->major, .minor = GT_MINOR_ANY };

		v = bpf_map_lookup_elem(&gt_gpu_devs, &any);
	}
	return v ? v->kind : GT_GPU_NONE;
}

/* First GPU access of a cgroup: flag it and tell userspace once. */
static __always_inline void gt_note_gpu(struct gt_cgroup_stats *s, __u32 kind,
					const struct gt_dev_key *dev, __u64 now)
{
	struct gt_event *e;

	if (!(s->gpu_kinds & (1u << (kind & 31))))
		s->gpu_kinds |= 1u << (kind & 31);
	if (s->flags & GT_CG_GPU_SEEN)
		return;
	/*
	 * Plain store, not an atomic: BPF atomics with fetch need 5.12 and the
	 * matrix includes 5.10. Two CPUs racing on a cgroup's very first GPU
	 * access may both emit; readers treat the event as idempotent.
	 */
	s->flags |= GT_CG_GPU_SEEN;
	s->gpu_first_ns = now;

	e = bpf_ringbuf_reserve(&gt_events, sizeof(*e), 0);
	if (!e) {
		gt_drop(GT_DROP_RINGBUF_FULL);
		return;
	}
	e->type = GT_EV_FIRST_GPU_ACCESS;
	e->gpu_kind = kind;
	e->cgroup_id = bpf_get_current_cgroup_id();
	e->ts_ns = now;
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->dev_major = dev->major;
	e->dev_minor = dev->minor;
	e->reserved = 0;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	bpf_ringbuf_submit(e, 0);
}

/* A file was opened. Regular files count by extension class; selected char devices count as GPU opens. */
static __always_inline void gt_count_open(struct file *file)
{
	struct inode *inode = BPF_CORE_READ(file, f_inode);
	__u32 mode = BPF_CORE_READ(inode, i_mode);
	struct gt_cgroup_stats *s;
	struct gt_ext_key key;
	__u64 now;

	if ((mode & GT_S_IFMT) == GT_S_IFCHR) {
		struct gt_dev_key dev;
		__u32 kind = gt_gpu_kind(BPF_CORE_READ(inode, i_rdev), &dev);

		if (kind == GT_GPU_NONE)
			return;
		now = bpf_ktime_get_ns();
		s = gt_current_stats(now);
		if (!s)
			return;
		__sync_fetch_and_add(&s->gpu_opens, 1);
		gt_note_gpu(s, kind, &dev, now);
		return;
	}
	if ((mode & GT_S_IFMT) != GT_S_IFREG)
		return;

	{
		struct dentry *dentry = BPF_CORE_READ(file, f_path.dentry);
		const unsigned char *name = BPF_CORE_READ(dentry, d_name.name);
		__u32 len = BPF_CORE_READ(dentry, d_name.len);
		char tail[GT_NAME_TAIL];
		__u32 n = len < GT_NAME_TAIL ? len : GT_NAME_TAIL;
		int has_ext = 0;

		if (bpf_probe_read_kernel(tail, GT_NAME_TAIL, name + len - n) == 0)
			has_ext = gt_ext_from_tail(tail, n, len <= GT_NAME_TAIL, &key);
		else
			gt_drop(GT_DROP_NAME_READ);

		now = bpf_ktime_get_ns();
		s = gt_current_stats(now);
		if (!s)
			return;
		__sync_fetch_and_add(&s->opens_total, 1);
		if (!has_ext) {
			__sync_fetch_and_add(&s->opens_noext, 1);
		} else {
			__u32 *cls = bpf_map_lookup_elem(&gt_ext_class, &key);
			__u32 c = cls ? *cls : GT_CLASS_OTHER;

			if (c < GT_CLASS_MAX)
				__sync_fetch_and_add(&s->opens_by_class[c], 1);
		}
	}
}

/* An ioctl on a file: counted when the file is a selected GPU device. */
static __always_inline void gt_count_ioctl(struct file *file)
{
	struct inode *inode = BPF_CORE_READ(file, f_inode);
	__u32 mode = BPF_CORE_READ(inode, i_mode);
	struct gt_cgroup_stats *s;
	struct gt_dev_key dev;
	__u32 kind;
	__u64 now;

	if ((mode & GT_S_IFMT) != GT_S_IFCHR)
		return;
	kind = gt_gpu_kind(BPF_CORE_READ(inode, i_rdev), &dev);
	if (kind == GT_GPU_NONE)
		return;
	now = bpf_ktime_get_ns();
	s = gt_current_stats(now);
	if (!s)
		return;
	__sync_fetch_and_add(&s->gpu_ioctls, 1);
	gt_note_gpu(s, kind, &dev, now);
}

/* A write of `bytes` (> 0) bytes completed on a file: counted for regular files. */
static __always_inline void gt_count_write(struct file *file, long bytes)
{
	struct gt_cgroup_stats *s;
	__u32 mode;

	if (bytes <= 0)
		return;
	mode = BPF_CORE_READ(file, f_inode, i_mode);
	if ((mode & GT_S_IFMT) != GT_S_IFREG)
		return;
	s = gt_current_stats(bpf_ktime_get_ns());
	if (!s)
		return;
	__sync_fetch_and_add(&s->bytes_written, bytes);
	__sync_fetch_and_add(&s->writes, 1);
}

/* A cgroup was removed: its counters go with it. */
static __always_inline void gt_forget_cgroup(struct cgroup *cgrp)
{
	__u64 id = BPF_CORE_READ(cgrp, kn, id);

	bpf_map_delete_elem(&gt_cg_stats, &id);
}

#endif /* GPUTIER_COUNT_BPF_H */
