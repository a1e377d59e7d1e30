// SPDX-License-Identifier: GPL-2.0
/*
 * Tracepoint mode: the fallback where BPF LSM or trampolines are unavailable.
 * Observe only: tracepoints cannot deny anything, and gputierd says so.
 *
 * Hooks:   tp_btf/sys_exit (one program for every counted syscall),
 *          tp_btf/cgroup_rmdir.
 * Counts:  the same counters as LSM mode, through the same count.bpf.h:
 *            open/openat/openat2 exits returning an fd -> gt_count_open
 *            ioctl exits (arguments read from the saved registers, so the
 *              ioctl is counted whether or not the driver accepted it, as
 *              the LSM hook does)                   -> gt_count_ioctl
 *            write/pwrite64/writev/pwritev/pwritev2 exits with ret > 0
 *                                                   -> gt_count_write
 * Denies:  nothing.
 * Cheap:   a syscall tracepoint puts every thread on the syscall slow path;
 *          one sys_exit program (no sys_enter program) pays that once. Other
 *          syscalls leave after one register load and a compare. The struct
 *          file is found through current->files->fdt->fd[fd]; native x86_64
 *          syscall numbers only (32-bit compat syscalls are not counted).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "count.bpf.h"

char LICENSE[] SEC("license") = "GPL";

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

/* The struct file behind `fd` in the current task, NULL if none. */
static __always_inline struct file *gt_fd_file(long fd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	struct file **fds;
	struct file *file = NULL;
	unsigned int max_fds;

	if (fd < 0)
		return NULL;
	max_fds = BPF_CORE_READ(fdt, max_fds);
	if ((unsigned long)fd >= max_fds)
		return NULL;
	fds = BPF_CORE_READ(fdt, fd);
	bpf_probe_read_kernel(&file, sizeof(file), fds + fd);
	return file;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(gt_tp_sys_exit, struct pt_regs *regs, long ret)
{
	long nr = regs->orig_ax;
	struct file *file;

	switch (nr) {
	case GT_NR_open:
	case GT_NR_openat:
	case GT_NR_openat2:
		if (ret < 0)
			return 0;
		file = gt_fd_file(ret);
		if (file)
			gt_count_open(file);
		return 0;
	case GT_NR_ioctl:
		file = gt_fd_file((int)regs->di);
		if (file)
			gt_count_ioctl(file);
		return 0;
	case GT_NR_write:
	case GT_NR_pwrite64:
	case GT_NR_writev:
	case GT_NR_pwritev:
	case GT_NR_pwritev2:
		if (ret <= 0)
			return 0;
		file = gt_fd_file((int)regs->di);
		if (file)
			gt_count_write(file, ret);
		return 0;
	default:
		return 0;
	}
}

SEC("tp_btf/cgroup_rmdir")
int BPF_PROG(gt_tp_cgroup_rmdir, struct cgroup *cgrp, const char *path)
{
	gt_forget_cgroup(cgrp);
	return 0;
}
