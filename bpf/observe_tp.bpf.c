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
#include "sys_exit.bpf.h"

char LICENSE[] SEC("license") = "GPL";

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
