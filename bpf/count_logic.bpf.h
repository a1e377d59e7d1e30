/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The decisions of the per-open counting (count.bpf.h) that touch no map, no
 * helper and no kernel object: what a syscall exit counts and on which fd,
 * what an inode's mode counts as, a device number's map key, how much of a
 * name is read, and how a cgroup's counters and first-GPU flags move.
 * count.bpf.h reads the kernel and the maps and hands the values to these
 * functions. Three levels test them (docs/ARCHITECTURE.md, "How the BPF
 * logic is tested"): tests/count_logic_test.cc compiles this header as C++;
 * count_selftest.bpf.c runs them in the kernel through count.bpf.h, without
 * a hook; the integration tests count what real processes do.
 *
 * Every function is __always_inline code on its arguments: the programs pay
 * no call for the split.
 */
#ifndef GPUTIER_COUNT_LOGIC_BPF_H
#define GPUTIER_COUNT_LOGIC_BPF_H

#include "gputier/abi.h"
#include "ext_class.bpf.h" /* also __always_inline outside BPF */

#define GT_S_IFMT 00170000
#define GT_S_IFREG 0100000
#define GT_S_IFCHR 0020000
#define GT_MINORBITS 20
#define GT_MINORMASK ((1u << GT_MINORBITS) - 1)

/* x86_64 syscall numbers (arch/x86/entry/syscalls/syscall_64.tbl). */
#define GT_NR_write 1
#define GT_NR_open 2
#define GT_NR_ioctl 16
#define GT_NR_pwrite64 18
#define GT_NR_writev 20
#define GT_NR_openat 257
#define GT_NR_pwritev 296
#define GT_NR_pwritev2 328
#define GT_NR_openat2 437

/* Which counting a syscall exit (tracepoint mode) leads to. */
enum gt_count_op {
	GT_COUNT_NONE = 0,  /* not counted: other syscalls, failed opens, empty writes */
	GT_COUNT_OPEN = 1,  /* gt_count_open on the fd it returned */
	GT_COUNT_IOCTL = 2, /* gt_count_ioctl on its fd argument, whatever it returned */
	GT_COUNT_WRITE = 3, /* gt_count_write of `ret` bytes on its fd argument */
};

/*
 * What the exit of syscall `nr` (native x86_64 number) that returned `ret`
 * counts. Opens count when they returned an fd, writes when they wrote a
 * byte or more, ioctls always (the driver may refuse the command: the LSM
 * hook sees the ioctl before the driver does, and so does this count).
 */
static __always_inline enum gt_count_op gt_sys_exit_op(long nr, long ret)
{
	switch (nr) {
	case GT_NR_open:
	case GT_NR_openat:
	case GT_NR_openat2:
		return ret < 0 ? GT_COUNT_NONE : GT_COUNT_OPEN;
	case GT_NR_ioctl:
		return GT_COUNT_IOCTL;
	case GT_NR_write:
	case GT_NR_pwrite64:
	case GT_NR_writev:
	case GT_NR_pwritev:
	case GT_NR_pwritev2:
		return ret <= 0 ? GT_COUNT_NONE : GT_COUNT_WRITE;
	default:
		return GT_COUNT_NONE;
	}
}

/*
 * The fd an op (not GT_COUNT_NONE) counts: the one an open returned, else the
 * syscall's first argument, an int (its upper half is not the fd's).
 */
static __always_inline long gt_sys_exit_fd(enum gt_count_op op, long ret, unsigned long arg0)
{
	return op == GT_COUNT_OPEN ? ret : (int)arg0;
}

/*
 * What a file counts as, by its inode's mode: a regular file's opens count by
 * extension class and its writes by bytes; a char device's opens and ioctls
 * count when it is a selected GPU device; nothing else counts (directories,
 * pipes, sockets, block devices, symlinks).
 */
static __always_inline int gt_mode_is_regular(__u32 mode)
{
	return (mode & GT_S_IFMT) == GT_S_IFREG;
}

static __always_inline int gt_mode_is_char_dev(__u32 mode)
{
	return (mode & GT_S_IFMT) == GT_S_IFCHR;
}

/* The gt_gpu_devs key of a char device number (the kernel's dev_t encoding). */
static __always_inline void gt_dev_key_of(__u32 rdev, struct gt_dev_key *key)
{
	key->major = rdev >> GT_MINORBITS;
	key->minor = rdev & GT_MINORMASK;
}

/*
 * How many of a `len`-byte name's last bytes the programs read for its
 * extension (gt_ext_from_tail's `len`), and whether they are the whole name
 * (its `whole`).
 */
static __always_inline __u32 gt_name_tail_len(__u32 len)
{
	return len < GT_NAME_TAIL ? len : GT_NAME_TAIL;
}

static __always_inline int gt_name_tail_is_whole(__u32 len)
{
	return len <= GT_NAME_TAIL;
}

/*
 * The counters of a cgroup move with atomic adds (another CPU may count the
 * same cgroup); the result is not used, so BPF compiles each to a plain
 * atomic add, which every supported kernel has.
 */

/*
 * A regular file was opened: one more open, and one more of its extension
 * class `cls` (its gt_ext_index class), or of names without an extension.
 */
static __always_inline void gt_stats_count_open(struct gt_cgroup_stats *s, int has_ext, __u32 cls)
{
	__sync_fetch_and_add(&s->opens_total, 1);
	if (!has_ext)
		__sync_fetch_and_add(&s->opens_noext, 1);
	else if (cls < GT_CLASS_MAX)
		__sync_fetch_and_add(&s->opens_by_class[cls], 1);
}

/* A selected GPU device was opened (is_ioctl == 0) or ioctl'ed. */
static __always_inline void gt_stats_count_gpu(struct gt_cgroup_stats *s, int is_ioctl)
{
	if (is_ioctl)
		__sync_fetch_and_add(&s->gpu_ioctls, 1);
	else
		__sync_fetch_and_add(&s->gpu_opens, 1);
}

/* A write of `bytes` (> 0) bytes to a regular file. */
static __always_inline void gt_stats_count_write(struct gt_cgroup_stats *s, long bytes)
{
	__sync_fetch_and_add(&s->bytes_written, bytes);
	__sync_fetch_and_add(&s->writes, 1);
}

/*
 * A GPU device of `kind` was opened or ioctl'ed: its kind's bit in gpu_kinds.
 * Then gt_stats_first_gpu_access, and for an ioctl gt_stats_first_gpu_ioctl,
 * say whether this is the cgroup's first (and flag it): each first raises one
 * ring-buffer event, an access first when both. An open alone is not yet GPU
 * use, the first ioctl is.
 *
 * Plain stores, not atomics: BPF atomics with fetch need 5.12 and the matrix
 * includes 5.10. Two CPUs racing on a cgroup's very first GPU access may both
 * see it as the first; readers treat the events as idempotent.
 */
static __always_inline void gt_stats_note_gpu_kind(struct gt_cgroup_stats *s, __u32 kind)
{
	if (!(s->gpu_kinds & (1u << (kind & 31))))
		s->gpu_kinds |= 1u << (kind & 31);
}

/* 1 on the cgroup's first GPU access (GT_CG_GPU_SEEN, gpu_first_ns = now). */
static __always_inline int gt_stats_first_gpu_access(struct gt_cgroup_stats *s, __u64 now)
{
	if (s->flags & GT_CG_GPU_SEEN)
		return 0;
	s->flags |= GT_CG_GPU_SEEN;
	s->gpu_first_ns = now;
	return 1;
}

/* 1 on the cgroup's first GPU ioctl (GT_CG_GPU_IOCTL_SEEN). */
static __always_inline int gt_stats_first_gpu_ioctl(struct gt_cgroup_stats *s)
{
	if (s->flags & GT_CG_GPU_IOCTL_SEEN)
		return 0;
	s->flags |= GT_CG_GPU_IOCTL_SEEN;
	return 1;
}

#endif /* GPUTIER_COUNT_LOGIC_BPF_H */
