/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Tracepoint mode's counting of one syscall exit (see observe_tp.bpf.c),
 * shared by its tp_btf/sys_exit programs and the self-test
 * (count_selftest.bpf.c), which hands it crafted saved registers. Needs
 * vmlinux.h, bpf_helpers.h, bpf_core_read.h and count.bpf.h (with
 * GT_HAVE_RDONLY_CAST for the typed build).
 */
#ifndef GPUTIER_SYS_EXIT_BPF_H
#define GPUTIER_SYS_EXIT_BPF_H

#include "count.bpf.h"
#include "count_logic.bpf.h"
#include "fd_file.bpf.h"

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

/* Counts `op` (not GT_COUNT_NONE) on `file`; `ret` is a write's bytes. */
static __always_inline void gt_count_op(enum gt_count_op op, struct file *file, long ret,
					enum gt_read how, struct task_struct *task)
{
	if (op == GT_COUNT_OPEN)
		gt_count_open(file, how, task);
	else if (op == GT_COUNT_IOCTL)
		gt_count_ioctl(file, how, task);
	else
		gt_count_write(file, ret, how, task);
}

/*
 * Counts the exit of the syscall whose saved registers are `regs` and that
 * returned `ret`. `how` is a compile-time constant in every caller, so each
 * build gets its own code; GT_READ_BTF_CAST finds the file with typed loads,
 * GT_READ_PROBE with bpf_probe_read_kernel.
 */
static __always_inline int gt_sys_exit(struct pt_regs *regs, long ret, enum gt_read how)
{
	enum gt_count_op op = gt_sys_exit_op(regs->orig_ax, ret);
	struct task_struct *task = NULL;
	struct file *file;
	long fd;

	if (op == GT_COUNT_NONE)
		return 0;
	fd = gt_sys_exit_fd(op, ret, regs->di);
	if (gt_in_compat_syscall(how, &task))
		return 0;

	if (how == GT_READ_PROBE)
		file = gt_fd_file_probe(fd);
	else
		file = gt_fd_file_btf(task, fd);
	if (!file)
		return 0;
	gt_count_op(op, file, ret, how, task);
	return 0;
}

#endif /* GPUTIER_SYS_EXIT_BPF_H */
