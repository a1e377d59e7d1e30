// SPDX-License-Identifier: GPL-2.0
/*
 * The counting logic's self-test: what the hooks count, run in the kernel
 * without a hook, so the verifier's acceptance and the in-kernel counting can
 * be checked on any node, tracepoints or BPF LSM or neither.
 *
 * Hooks:   none. gt_selftest_sys_exit is a SEC("syscall") program that
 *          tests/integration/count_selftest_test.cc runs with
 *          bpf_prog_test_run_opts, once per crafted syscall exit (struct
 *          gt_selftest_exit, count_selftest.h, as ctx_in).
 *          It runs in the test's own task: the fds it names are the test's
 *          (real files, a real char device), its cgroup is the test's.
 * Counts:  through the very functions the hook programs call (gt_sys_exit for
 *          the tracepoint programs, gt_count_* for the LSM ones, in
 *          count.bpf.h and sys_exit.bpf.h), into this object's own maps:
 *          GT_MAPS_UNPINNED, so they are created at load, filled and read by
 *          the test, and gone with it, never touching the agent's pins.
 * Denies:  nothing.
 * Cheap:   never attached; gputierd does not load it.
 * Needs:   Linux 6.2+ (the bpf_rdonly_cast kfunc, as gt_tp_sys_exit does).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#define GT_HAVE_RDONLY_CAST
#define GT_MAPS_UNPINNED
#include "count.bpf.h"
#include "count_selftest.h"
#include "sys_exit.bpf.h"

char LICENSE[] SEC("license") = "GPL";

/* What gt_lsm_file_open, gt_lsm_file_ioctl and gt_fexit_vfs_write do with
 * the file they are handed: gt_count_open, gt_count_ioctl or gt_count_write
 * with typed loads and no task. */
static __always_inline int gt_selftest_lsm(long nr, long ret, unsigned long arg0)
{
	enum gt_count_op op = gt_sys_exit_op(nr, ret);
	struct file *file;

	if (op == GT_COUNT_NONE)
		return 0;
	file = gt_fd_file_btf(bpf_get_current_task_btf(), gt_sys_exit_fd(op, ret, arg0));
	if (!file)
		return 0;
	gt_count_op(op, file, ret, GT_READ_BTF, NULL);
	return 0;
}

SEC("syscall")
int gt_selftest_sys_exit(struct gt_selftest_exit *exit)
{
	struct pt_regs regs = {};
	long ret = exit->ret;

	regs.orig_ax = exit->nr;
	regs.di = exit->arg0;
	switch (exit->hook) {
	case GT_SELFTEST_TP:
		return gt_sys_exit(&regs, ret, GT_READ_BTF_CAST);
	case GT_SELFTEST_TP_COMPAT:
		return gt_sys_exit(&regs, ret, GT_READ_PROBE);
	case GT_SELFTEST_LSM:
		return gt_selftest_lsm(regs.orig_ax, ret, regs.di);
	default:
		return -1;
	}
}
