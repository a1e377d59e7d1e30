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
 * Cheap:   a syscall tracepoint puts every thread on the syscall slow path and
 *          runs the program at every syscall exit; one sys_exit program (no
 *          sys_enter program) pays that once. Other syscalls leave after one
 *          register load and a few compares. The struct file is found through
 *          current->files->fdt->fd[fd]; native x86_64 syscall numbers only.
 * Compat:  a 32-bit syscall (int 0x80, sysenter; TS_COMPAT set for its
 *          duration) has ia32 numbers and arguments in other registers:
 *          its ia32 getpid (20) is the native writev's number, its lchown
 *          (16) the native ioctl's. Such syscalls are skipped, not misread.
 *
 * The sys_exit program comes in two builds; the loader loads exactly one:
 *   gt_tp_sys_exit         Linux 6.2+ (needs the bpf_rdonly_cast kfunc): the
 *                          fd table, the struct file and the name are read
 *                          with plain typed loads; the helper calls left on
 *                          the path of an open are bpf_get_current_task_btf
 *                          and the counters' hash lookup (the extension
 *                          table and bpf_jiffies64 are inlined).
 *   gt_tp_sys_exit_compat  every supported kernel (5.10+): the same logic
 *                          with a bpf_probe_read_kernel per field.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#define GT_HAVE_RDONLY_CAST
#include "count.bpf.h"
#include "fd_file.bpf.h"

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

/* arch/x86/include/asm/thread_info.h: a 32-bit syscall is running. */
#define GT_TS_COMPAT 0x0002

/* True while the current task runs a 32-bit (compat) syscall. Read only
 * for the syscall numbers counted, so other syscalls stay as cheap. */
static __always_inline bool gt_in_compat_syscall(enum gt_read how, struct task_struct **task)
{
	if (how == GT_READ_PROBE) {
		struct task_struct *t = (struct task_struct *)bpf_get_current_task();

		return BPF_CORE_READ(t, thread_info.status) & GT_TS_COMPAT;
	}
	*task = bpf_get_current_task_btf();
	return (*task)->thread_info.status & GT_TS_COMPAT;
}

/* Both builds: `how` is a compile-time constant, so each gets its own code. */
static __always_inline int gt_sys_exit(struct pt_regs *regs, long ret, enum gt_read how)
{
	long nr = regs->orig_ax;
	struct task_struct *task = NULL;
	struct file *file;
	long fd;

	switch (nr) {
	case GT_NR_open:
	case GT_NR_openat:
	case GT_NR_openat2:
		if (ret < 0)
			return 0;
		fd = ret;
		break;
	case GT_NR_ioctl:
	case GT_NR_write:
	case GT_NR_pwrite64:
	case GT_NR_writev:
	case GT_NR_pwritev:
	case GT_NR_pwritev2:
		if (nr != GT_NR_ioctl && ret <= 0)
			return 0;
		fd = (int)regs->di;
		break;
	default:
		return 0;
	}
	if (gt_in_compat_syscall(how, &task))
		return 0;

	if (how == GT_READ_PROBE)
		file = gt_fd_file_probe(fd);
	else
		file = gt_fd_file_btf(task, fd);
	if (!file)
		return 0;

	if (nr == GT_NR_open || nr == GT_NR_openat || nr == GT_NR_openat2)
		gt_count_open(file, how, task);
	else if (nr == GT_NR_ioctl)
		gt_count_ioctl(file, how, task);
	else
		gt_count_write(file, ret, how, task);
	return 0;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(gt_tp_sys_exit, struct pt_regs *regs, long ret)
{
	return gt_sys_exit(regs, ret, GT_READ_BTF_CAST);
}

SEC("tp_btf/sys_exit")
int BPF_PROG(gt_tp_sys_exit_compat, struct pt_regs *regs, long ret)
{
	return gt_sys_exit(regs, ret, GT_READ_PROBE);
}

SEC("tp_btf/cgroup_rmdir")
int BPF_PROG(gt_tp_cgroup_rmdir, struct cgroup *cgrp, const char *path)
{
	gt_forget_cgroup(cgrp);
	return 0;
}
