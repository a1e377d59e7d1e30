/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The struct file behind a syscall's fd in the current task, for programs on
 * syscall tracepoints (which see the fd, not the file): tracepoint mode's
 * sys_exit program and the benchmark's floor ladder (bench/hook_floor.bpf.c).
 * Needs vmlinux.h, bpf_helpers.h and bpf_core_read.h; gt_fd_file_btf also
 * needs the bpf_rdonly_cast kfunc declared (count.bpf.h, GT_HAVE_RDONLY_CAST).
 */
#ifndef GPUTIER_FD_FILE_BPF_H
#define GPUTIER_FD_FILE_BPF_H

/* The struct file behind `fd` in the current task, NULL if none (a plain address). */
static __always_inline struct file *gt_fd_file_probe(long fd)
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

/*
 * The same as a typed pointer, with plain loads. A NULL files or fdt (an
 * exiting task) reads as zeros: max_fds 0, so NULL. The fd array holds plain
 * addresses, so the slot fds[fd] is read through bpf_rdonly_cast, viewed as
 * the first fd_array slot of a files_struct: the load yields a typed (read-only,
 * untrusted) struct file pointer.
 */
static __always_inline struct file *gt_fd_file_btf(struct task_struct *task, long fd)
{
	struct files_struct *slot;
	struct fdtable *fdt;
	struct file **fds;

	if (fd < 0)
		return NULL;
	fdt = task->files->fdt;
	if ((unsigned long)fd >= fdt->max_fds)
		return NULL;
	fds = fdt->fd;
	slot = bpf_rdonly_cast((void *)(fds + fd) - bpf_core_field_offset(struct files_struct, fd_array),
			       bpf_core_type_id_kernel(struct files_struct));
	return slot->fd_array[0];
}

#endif /* GPUTIER_FD_FILE_BPF_H */
