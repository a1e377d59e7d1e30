/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The context of one run of the counting self-test (count_selftest.bpf.c),
 * shared with the test that runs it (tests/integration/count_selftest_test.cc):
 * one crafted syscall exit, counted the way the hook named by `hook` counts
 * it.
 */
#ifndef GPUTIER_COUNT_SELFTEST_H
#define GPUTIER_COUNT_SELFTEST_H

#include "gputier/abi.h"

/* Which program's way of counting a run takes. */
enum gt_selftest_hook {
	/* gt_tp_sys_exit: the struct file found and read with typed loads. */
	GT_SELFTEST_TP = 0,
	/* gt_tp_sys_exit_compat: the same with bpf_probe_read_kernel. */
	GT_SELFTEST_TP_COMPAT = 1,
	/* The LSM and fexit programs: gt_count_* on the file as a typed pointer,
	 * no task (the cgroup id from the helper). The op is the syscall's. */
	GT_SELFTEST_LSM = 2,
};

struct gt_selftest_exit {
	__s64 nr;   /* native x86_64 syscall number */
	__s64 ret;  /* what it returned: an open's fd, a write's bytes */
	__u64 arg0; /* its first argument: an ioctl's or a write's fd */
	__u32 hook; /* enum gt_selftest_hook */
	__u32 reserved;
};

#endif /* GPUTIER_COUNT_SELFTEST_H */
