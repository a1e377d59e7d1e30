// SPDX-License-Identifier: GPL-2.0
/*
 * LSM mode: the preferred hooks, on kernels that run BPF LSM and trampolines.
 *
 * Hooks:   lsm/file_open, lsm/file_ioctl, fexit/vfs_write, fexit/vfs_writev,
 *          tp_btf/cgroup_rmdir.
 * Counts:  per cgroup v2 id, regular-file opens by extension class, opens and
 *          ioctls of selected GPU devices, bytes written to regular files (see
 *          count.bpf.h and include/gputier/abi.h).
 * Denies:  nothing; every LSM program returns 0 (allow).
 * Cheap:   the hooks receive the struct file directly (no fd lookup) as a
 *          typed pointer, so its fields are plain loads (GT_READ_BTF); only
 *          opens/ioctls/writes run it, and no syscall tracepoint is enabled, so
 *          other syscalls keep the fast path.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "count.bpf.h"

char LICENSE[] SEC("license") = "GPL";

SEC("lsm/file_open")
int BPF_PROG(gt_lsm_file_open, struct file *file)
{
	gt_count_open(file, GT_READ_BTF, NULL);
	return 0;
}

SEC("lsm/file_ioctl")
int BPF_PROG(gt_lsm_file_ioctl, struct file *file, unsigned int cmd, unsigned long arg)
{
	gt_count_ioctl(file, GT_READ_BTF, NULL);
	return 0;
}

SEC("fexit/vfs_write")
int BPF_PROG(gt_fexit_vfs_write, struct file *file, const char *buf, size_t count,
	     loff_t *pos, ssize_t ret)
{
	gt_count_write(file, ret, GT_READ_BTF, NULL);
	return 0;
}

/* Optional: the loader disables it where vfs_writev is absent from BTF. */
SEC("fexit/vfs_writev")
int BPF_PROG(gt_fexit_vfs_writev, struct file *file, const struct iovec *vec,
	     unsigned long vlen, loff_t *pos, rwf_t flags, ssize_t ret)
{
	gt_count_write(file, ret, GT_READ_BTF, NULL);
	return 0;
}

SEC("tp_btf/cgroup_rmdir")
int BPF_PROG(gt_lsm_cgroup_rmdir, struct cgroup *cgrp, const char *path)
{
	gt_forget_cgroup(cgrp);
	return 0;
}
