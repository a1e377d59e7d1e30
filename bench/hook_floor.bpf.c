// SPDX-License-Identifier: GPL-2.0
/*
 * The floor ladder (bench/hook_floor.cc): programs that each do a little more
 * of what counting an open takes, so the kernel's accounting of each
 * (BPF_ENABLE_STATS: run_time_ns / run_cnt) shows what every step costs on
 * this machine. The benchmark attaches one at a time. Each rung repeats the
 * rung it builds on (the one before it, but for rung_ext_class_hash, which
 * replaces rung_ext_class's step) and adds one step; `gt_bench_sink` keeps the
 * compiler from dropping what a rung reads.
 *
 * Rungs on tracepoint/syscalls/sys_exit_openat run once per openat; the
 * tp_btf/sys_exit rung runs at every syscall exit (open and close), as
 * gputier's tracepoint mode does.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#define GT_HAVE_RDONLY_CAST
#include "count.bpf.h"
#include "fd_file.bpf.h"

char LICENSE[] SEC("license") = "GPL";

__u64 gt_bench_sink;

/* The record of syscalls/sys_exit_* (its format file): the return at 16. */
struct gt_bench_sys_exit {
	__u64 common;
	long nr;
	long ret;
};

SEC("tp_btf/sys_exit")
int BPF_PROG(rung_empty_sys_exit, struct pt_regs *regs, long ret)
{
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_openat")
int rung_empty_openat_exit(struct gt_bench_sys_exit *ctx)
{
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_openat")
int rung_current_task(struct gt_bench_sys_exit *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();

	gt_bench_sink += task->pid;
	return 0;
}

/* The opened struct file and its inode's mode: what any counter needs first. */
static __always_inline struct file *gt_bench_opened_file(struct gt_bench_sys_exit *ctx,
							 struct task_struct *task, __u32 *mode)
{
	struct file *file = gt_fd_file_btf(task, ctx->ret);

	if (!file)
		return NULL;
	*mode = file->f_inode->i_mode;
	return file;
}

SEC("tracepoint/syscalls/sys_exit_openat")
int rung_opened_file(struct gt_bench_sys_exit *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u32 mode = 0;

	gt_bench_opened_file(ctx, task, &mode);
	gt_bench_sink += mode;
	return 0;
}

/* + the name's extension (tail read and parse) and the cgroup id. */
static __always_inline int gt_bench_ext_and_cgroup(struct gt_bench_sys_exit *ctx,
						   struct task_struct *task, struct gt_ext_key *key,
						   __u64 *cgid)
{
	__u32 mode = 0;
	struct file *file = gt_bench_opened_file(ctx, task, &mode);

	if (!file || (mode & GT_S_IFMT) != GT_S_IFREG)
		return 0;
	*cgid = gt_current_cgroup_id(task);
	return gt_file_ext(file, GT_READ_BTF_CAST, key);
}

SEC("tracepoint/syscalls/sys_exit_openat")
int rung_ext_and_cgroup(struct gt_bench_sys_exit *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct gt_ext_key key __attribute__((aligned(8)));
	__u64 cgid = 0;
	int has = gt_bench_ext_and_cgroup(ctx, task, &key, &cgid);

	/* Both words of the key: the parse is not dropped as unused. */
	if (has)
		gt_bench_sink += gt_load_word(key.ext) + gt_load_word(key.ext + 8);
	gt_bench_sink += cgid;
	return 0;
}

/* + the extension's class (gt_ext_index, an inlined array lookup). */
SEC("tracepoint/syscalls/sys_exit_openat")
int rung_ext_class(struct gt_bench_sys_exit *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct gt_ext_key key __attribute__((aligned(8)));
	__u64 cgid = 0;

	if (gt_bench_ext_and_cgroup(ctx, task, &key, &cgid))
		gt_bench_sink += gt_ext_class_of(&key);
	gt_bench_sink += cgid;
	return 0;
}

/* Instead of the step above: the class from gt_ext_class, a hash-map lookup
 * (how the programs found it before gt_ext_index). */
SEC("tracepoint/syscalls/sys_exit_openat")
int rung_ext_class_hash(struct gt_bench_sys_exit *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct gt_ext_key key __attribute__((aligned(8)));
	__u64 cgid = 0;

	if (gt_bench_ext_and_cgroup(ctx, task, &key, &cgid)) {
		__u32 *cls = bpf_map_lookup_elem(&gt_ext_class, &key);

		gt_bench_sink += cls ? *cls : GT_CLASS_OTHER;
	}
	gt_bench_sink += cgid;
	return 0;
}

/* + the cgroup's counters (one hash-map lookup) and one atomic add. */
SEC("tracepoint/syscalls/sys_exit_openat")
int rung_counters_lookup(struct gt_bench_sys_exit *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct gt_ext_key key __attribute__((aligned(8)));
	struct gt_cgroup_stats *s;
	__u64 cgid = 0;
	__u32 c = GT_CLASS_OTHER;

	if (!gt_bench_ext_and_cgroup(ctx, task, &key, &cgid))
		return 0;
	c = gt_ext_class_of(&key);
	s = bpf_map_lookup_elem(&gt_cg_stats, &cgid);
	if (!s) {
		struct gt_cgroup_stats init = {};

		bpf_map_update_elem(&gt_cg_stats, &cgid, &init, BPF_NOEXIST);
		return 0;
	}
	if (c < GT_CLASS_MAX)
		__sync_fetch_and_add(&s->opens_by_class[c], 1);
	return 0;
}

/* gputier's own counting of an open (count.bpf.h), once per openat. */
SEC("tracepoint/syscalls/sys_exit_openat")
int rung_gputier_count_open(struct gt_bench_sys_exit *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct file *file = gt_fd_file_btf(task, ctx->ret);

	if (file)
		gt_count_open(file, GT_READ_BTF_CAST, task);
	return 0;
}
