// SPDX-License-Identifier: GPL-2.0
/*
 * LSM mode only: the fast-tier guard and the tamper watch.
 *
 * Guard:   opening a file for write (O_TMPFILE included), creating, making a
 *          directory/node/symlink, hard-linking or renaming into a fast-tier
 *          filesystem (its dev_t is in gt_guard_fs) from a cgroup whose
 *          verdict is neither GPU nor MIXED. Hooks: lsm/file_open,
 *          lsm/inode_create, inode_mkdir, inode_mknod, inode_symlink,
 *          inode_link, inode_rename.
 * Tamper:  another process asking for a write-capable fd to one of gputier's
 *          maps (lsm/bpf_map), or for an fd to one of its links, the handle
 *          that detaches a program (lsm/bpf, BPF_LINK_GET_FD_BY_ID).
 * Action:  per gt_guard_cfg.mode: off: nothing; audit: record (gt_audit_log,
 *          gt_guard_cg, a gt_events record) and allow; enforce: record and
 *          deny (EACCES for the guard, EPERM for tampering).
 * Exempt:  gputierd itself (gt_guard_cfg.agent_tgid) and its direct
 *          children, kernel threads; from the guard also the cgroups in
 *          gt_guard_exempt (configured host cgroups, and containers the tier
 *          manager has on the fast tier whatever their verdict), and
 *          their descendants.
 * Scope:   fail-open everywhere else: every hook returns 0 unless the
 *          operation is in scope, and a missing map entry means "allow".
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "maps.bpf.h"

char LICENSE[] SEC("license") = "GPL";

#define GT_EPERM 1
#define GT_EACCES 13
#define GT_FMODE_WRITE 0x2
#define GT_PF_KTHREAD 0x00200000
/* enum bpf_cmd, stable uapi numbers. */
#define GT_BPF_LINK_GET_FD_BY_ID 30

static __always_inline struct gt_guard_cfg *gt_cfg(void)
{
	__u32 zero = 0;
	struct gt_guard_cfg *cfg = bpf_map_lookup_elem(&gt_guard_cfg, &zero);

	return cfg && cfg->mode != GT_ENFORCE_OFF ? cfg : NULL;
}

/*
 * gputierd, the helpers it forks (mount work in a container's namespace,
 * mkfs of a fast partition) and kernel threads are never recorded or denied.
 */
static __always_inline int gt_exempt_task(const struct gt_guard_cfg *cfg)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();

	if ((bpf_get_current_pid_tgid() >> 32) == cfg->agent_tgid)
		return 1;
	if (BPF_CORE_READ(task, real_parent, tgid) == cfg->agent_tgid)
		return 1;
	return (BPF_CORE_READ(task, flags) & GT_PF_KTHREAD) != 0;
}

/*
 * Whether the current cgroup or one of its ancestors is in gt_guard_exempt
 * (an exempt service's child cgroups are exempt too). Walks at most
 * GT_EXEMPT_DEPTH levels through cgroup.self.parent, which every kernel of
 * the matrix has (struct cgroup starts with its css, `self`).
 */
#define GT_EXEMPT_DEPTH 16
static __always_inline int gt_exempt_cgroup(void)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct cgroup *cgrp = BPF_CORE_READ(task, cgroups, dfl_cgrp);
	int i;

	for (i = 0; i < GT_EXEMPT_DEPTH && cgrp; i++) {
		__u64 id = BPF_CORE_READ(cgrp, kn, id);

		if (bpf_map_lookup_elem(&gt_guard_exempt, &id))
			return 1;
		cgrp = (struct cgroup *)BPF_CORE_READ(cgrp, self.parent);
	}
	return 0;
}

/* Appends to this CPU's ring in gt_audit_log, counts per cgroup, tells gputierd. */
static __always_inline void gt_record(__u32 kind, __u32 op, __u64 cgid, __u32 target,
				      __u32 verdict, __u32 denied)
{
	struct gt_audit_record rec = {};
	struct gt_audit_record *slot_rec;
	struct gt_audit_event *e;
	struct gt_guard_stats *st;
	__u32 zero = 0;
	__u64 *head;

	rec.ts_ns = bpf_ktime_get_ns();
	rec.cgroup_id = cgid;
	rec.kind = kind;
	rec.op = op;
	rec.pid = bpf_get_current_pid_tgid() >> 32;
	rec.uid = (__u32)bpf_get_current_uid_gid();
	rec.target = target;
	rec.verdict = verdict;
	rec.denied = denied;
	bpf_get_current_comm(rec.comm, sizeof(rec.comm));

	head = bpf_map_lookup_elem(&gt_audit_head, &zero);
	if (head) {
		/*
		 * Per-CPU: programs run with migration disabled. On a preemptible
		 * kernel two programs on one CPU may interleave here; at worst one
		 * record overwrites another.
		 */
		__u32 slot = (__u32)(*head % GT_AUDIT_SLOTS);

		*head += 1;
		slot_rec = bpf_map_lookup_elem(&gt_audit_log, &slot);
		if (slot_rec)
			*slot_rec = rec;
	}

	st = bpf_map_lookup_elem(&gt_guard_cg, &cgid);
	if (!st) {
		struct gt_guard_stats init = {};

		bpf_map_update_elem(&gt_guard_cg, &cgid, &init, BPF_NOEXIST);
		st = bpf_map_lookup_elem(&gt_guard_cg, &cgid);
	}
	if (st) {
		if (kind == GT_AUDIT_TAMPER)
			__sync_fetch_and_add(&st->tamper_events, 1);
		else if (denied)
			__sync_fetch_and_add(&st->guard_denied, 1);
		else
			__sync_fetch_and_add(&st->guard_audited, 1);
		st->last_ns = rec.ts_ns;
	} else {
		__u32 reason = GT_DROP_CGROUP_MAP_FULL;
		__u64 *n = bpf_map_lookup_elem(&gt_drops, &reason);

		if (n)
			*n += 1;
	}

	e = bpf_ringbuf_reserve(&gt_events, sizeof(*e), 0);
	if (!e) {
		__u32 reason = GT_DROP_RINGBUF_FULL;
		__u64 *n = bpf_map_lookup_elem(&gt_drops, &reason);

		if (n)
			*n += 1;
		return;
	}
	e->type = GT_EV_AUDIT;
	e->reserved = 0;
	e->rec = rec;
	bpf_ringbuf_submit(e, 0);
}

/* The guard's decision for an operation on the filesystem `sb`. */
static __always_inline int gt_guard(__u32 op, struct super_block *sb)
{
	struct gt_guard_cfg *cfg = gt_cfg();
	struct gt_verdict *v;
	__u32 dev, verdict;
	__u64 cgid;
	int deny;

	if (!cfg)
		return 0;
	dev = sb->s_dev;
	if (!bpf_map_lookup_elem(&gt_guard_fs, &dev))
		return 0;
	if (gt_exempt_task(cfg))
		return 0;
	cgid = bpf_get_current_cgroup_id();
	if (gt_exempt_cgroup())
		return 0;
	v = bpf_map_lookup_elem(&gt_verdicts, &cgid);
	verdict = v ? v->verdict : GT_VERDICT_UNKNOWN;
	if (verdict == GT_VERDICT_GPU || verdict == GT_VERDICT_MIXED)
		return 0;
	deny = cfg->mode == GT_ENFORCE_DENY;
	gt_record(GT_AUDIT_GUARD, op, cgid, dev, verdict, deny);
	return deny ? -GT_EACCES : 0;
}

/* The tamper watch's decision for a process reaching one of our objects. */
static __always_inline int gt_tamper(__u32 op, __u32 kind, __u32 id)
{
	struct gt_guard_cfg *cfg = gt_cfg();
	struct gt_obj_key key = { .kind = kind, .id = id };
	struct gt_verdict *v;
	__u64 cgid;
	int deny;

	if (!cfg || !bpf_map_lookup_elem(&gt_own_objs, &key))
		return 0;
	if (gt_exempt_task(cfg))
		return 0;
	cgid = bpf_get_current_cgroup_id();
	v = bpf_map_lookup_elem(&gt_verdicts, &cgid);
	deny = cfg->mode == GT_ENFORCE_DENY;
	gt_record(GT_AUDIT_TAMPER, op, cgid, id, v ? v->verdict : GT_VERDICT_UNKNOWN, deny);
	return deny ? -GT_EPERM : 0;
}

SEC("lsm/file_open")
int BPF_PROG(gt_guard_file_open, struct file *file)
{
	if (!(file->f_mode & GT_FMODE_WRITE))
		return 0;
	return gt_guard(GT_OP_OPEN_WRITE, file->f_inode->i_sb);
}

SEC("lsm/inode_create")
int BPF_PROG(gt_guard_inode_create, struct inode *dir, struct dentry *dentry, umode_t mode)
{
	return gt_guard(GT_OP_CREATE, dir->i_sb);
}

SEC("lsm/inode_mkdir")
int BPF_PROG(gt_guard_inode_mkdir, struct inode *dir, struct dentry *dentry, umode_t mode)
{
	return gt_guard(GT_OP_MKDIR, dir->i_sb);
}

SEC("lsm/inode_mknod")
int BPF_PROG(gt_guard_inode_mknod, struct inode *dir, struct dentry *dentry, umode_t mode,
	     dev_t dev)
{
	return gt_guard(GT_OP_MKNOD, dir->i_sb);
}

SEC("lsm/inode_symlink")
int BPF_PROG(gt_guard_inode_symlink, struct inode *dir, struct dentry *dentry, const char *old_name)
{
	return gt_guard(GT_OP_SYMLINK, dir->i_sb);
}

SEC("lsm/inode_link")
int BPF_PROG(gt_guard_inode_link, struct dentry *old_dentry, struct inode *dir,
	     struct dentry *new_dentry)
{
	return gt_guard(GT_OP_LINK, dir->i_sb);
}

SEC("lsm/inode_rename")
int BPF_PROG(gt_guard_inode_rename, struct inode *old_dir, struct dentry *old_dentry,
	     struct inode *new_dir, struct dentry *new_dentry)
{
	return gt_guard(GT_OP_RENAME, new_dir->i_sb);
}

SEC("lsm/bpf_map")
int BPF_PROG(gt_tamper_bpf_map, struct bpf_map *map, fmode_t fmode)
{
	if (!(fmode & GT_FMODE_WRITE))
		return 0;
	return gt_tamper(GT_OP_MAP_WRITE_FD, GT_OBJ_MAP, map->id);
}

SEC("lsm/bpf")
int BPF_PROG(gt_tamper_bpf, int cmd, union bpf_attr *attr, unsigned int size)
{
	if (cmd != GT_BPF_LINK_GET_FD_BY_ID)
		return 0;
	return gt_tamper(GT_OP_LINK_FD, GT_OBJ_LINK, attr->link_id);
}
