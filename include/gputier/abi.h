/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gputier ABI: the one definition of everything shared by the BPF programs
 * (bpf/) and userspace (loader/, policy/, tests/).
 *
 * Rules for changing this file:
 *  - Every struct here is the key or value of a pinned map. Pins outlive the
 *    agent, so a changed layout must bump GT_ABI_VERSION; gputierd refuses to
 *    reuse pins whose gt_meta record carries another version (it never
 *    reinterprets old bytes).
 *  - Fixed-width types only, explicit padding, no pointers.
 *  - tests/abi_layout_test.cc pins sizes and offsets with static_asserts.
 */
#ifndef GPUTIER_ABI_H
#define GPUTIER_ABI_H

#ifdef __BPF__
/* vmlinux.h provides __u8.. __u64 for BPF objects. */
#else
#include <linux/types.h>
#endif

/* 2: maps the programs only read carry BPF_F_RDONLY_PROG; guard and audit maps.
 * 3: gt_ext_index, the programs' bucketed copy of gt_ext_class. */
#define GT_ABI_VERSION 3
#define GT_ABI_MAGIC 0x67707574u /* "gput" */

/* ---- Extension classes ------------------------------------------------ */
/*
 * Opens of regular files are counted per class of their last extension.
 * Class ids 1..4 are the built-in classes; ids 5..7 are free for classes
 * named in the config. GT_CLASS_OTHER counts files whose extension is in no
 * class; files without an extension are counted in opens_noext instead.
 */
enum gt_ext_class {
	GT_CLASS_OTHER = 0,
	GT_CLASS_IMAGE = 1,
	GT_CLASS_VIDEO = 2,
	GT_CLASS_TENSOR = 3,   /* models, checkpoints, arrays */
	GT_CLASS_GRAPHICS = 4, /* 3D models, shaders */
	GT_CLASS_FIRST_CUSTOM = 5,
	GT_CLASS_MAX = 8,
};

/*
 * Longest extension recognised, in bytes, without the dot. The BPF side reads
 * only the last GT_NAME_TAIL bytes of a file name, so an extension longer than
 * GT_EXT_MAX counts as "no extension" (documented in docs/ARCHITECTURE.md).
 */
#define GT_EXT_MAX 15
#define GT_NAME_TAIL 16
#define GT_CLASS_NAME_LEN 16

/* Key of gt_ext_class: the lower-cased extension, NUL padded. */
struct gt_ext_key {
	char ext[GT_EXT_MAX + 1];
};

/*
 * gt_ext_index: the programs' copy of gt_ext_class, so that the lookup on
 * every counted open is one array element (a lookup the verifier inlines, no
 * call) instead of a hash-map lookup (calls; 6-9 ns against 59-85 ns per open
 * in bench/hook_floor on the CI machine).
 * An extension lives in bucket gt_ext_bucket_of() (bpf/ext_class.bpf.h), in
 * one of GT_EXT_WAYS ways; unused ways are all zero, which no extension is.
 * When more than GT_EXT_WAYS configured extensions share a bucket, the bucket
 * keeps the first GT_EXT_WAYS in byte order and sets `overflow`, and the
 * programs look an extension they did not find there up in gt_ext_class.
 * gt_ext_class stays the table to read; gt_ext_index is derived from it.
 */
#define GT_EXT_BUCKET_BITS 10
#define GT_EXT_BUCKETS (1u << GT_EXT_BUCKET_BITS)
#define GT_EXT_WAYS 4

struct gt_ext_bucket {
	struct gt_ext_key ext[GT_EXT_WAYS];
	__u32 class_id[GT_EXT_WAYS];
	__u32 overflow; /* 1: more extensions hash here; see gt_ext_class */
	__u32 reserved;
} __attribute__((aligned(8))); /* ext[i] read as two 64-bit words */

/* Value of gt_class_names[class id]: the class's name, NUL padded. */
struct gt_class_name {
	char name[GT_CLASS_NAME_LEN];
};

/* ---- GPU devices -------------------------------------------------------- */
enum gt_gpu_kind {
	GT_GPU_NONE = 0,
	GT_GPU_NVIDIA = 1,
	GT_GPU_DRM = 2,
	GT_GPU_KFD = 3,
	GT_GPU_ACCEL = 4,
	GT_GPU_CONFIGURED = 5, /* named by the operator's config */
	GT_GPU_KIND_MAX = 6,
};

/* Minor number meaning "every minor of this major". */
#define GT_MINOR_ANY 0xffffffffu

/* Key of gt_gpu_devs. */
struct gt_dev_key {
	__u32 major;
	__u32 minor; /* or GT_MINOR_ANY */
};

/* Value of gt_gpu_devs. */
struct gt_dev_val {
	__u32 kind; /* enum gt_gpu_kind */
	__u32 reserved;
};

/* ---- Per-cgroup counters ------------------------------------------------ */
enum gt_cgroup_flags {
	GT_CG_GPU_SEEN = 1u << 0,       /* a GPU device was opened or ioctl'ed */
	GT_CG_GPU_IOCTL_SEEN = 1u << 1, /* a GPU device was ioctl'ed */
};

/* Value of gt_cg_stats, keyed by the cgroup v2 id (__u64). */
struct gt_cgroup_stats {
	__u64 opens_total; /* opens of regular files */
	__u64 opens_noext; /* ... whose name has no extension */
	__u64 opens_by_class[GT_CLASS_MAX];
	__u64 gpu_opens;   /* opens of a selected GPU device */
	__u64 gpu_ioctls;  /* ioctls on a selected GPU device */
	__u64 bytes_written; /* bytes written to regular files */
	__u64 writes;        /* write calls to regular files */
	/* CLOCK_MONOTONIC ns at tick resolution: up to one tick (1-10 ms) early,
	 * never late (the programs read the clock once per tick). */
	__u64 first_seen_ns;
	__u64 last_seen_ns;
	__u64 gpu_first_ns; /* first GPU device access, 0 if none */
	__u32 flags;        /* enum gt_cgroup_flags */
	__u32 gpu_kinds;    /* bit (1 << enum gt_gpu_kind) per kind seen */
};

/* ---- Verdicts ----------------------------------------------------------- */
enum gt_verdict_kind {
	GT_VERDICT_UNKNOWN = 0,
	GT_VERDICT_CPU = 1,
	GT_VERDICT_GPU = 2,
	GT_VERDICT_MIXED = 3,
};

enum gt_verdict_source {
	GT_SOURCE_NONE = 0,
	GT_SOURCE_RULE = 1,
	GT_SOURCE_MODEL = 2,
	GT_SOURCE_OPERATOR = 3,
};

/* Value of gt_verdicts, keyed by the cgroup v2 id (__u64). Written by
 * gputierd only when a cgroup's verdict changes; read by the programs. */
struct gt_verdict {
	__u32 verdict;             /* enum gt_verdict_kind */
	__u32 confidence_permille; /* 0..1000 */
	__u32 model_version;       /* 0: decided by the rule */
	__u32 source;              /* enum gt_verdict_source */
	__u64 decided_at_ns;       /* CLOCK_REALTIME, Unix ns */
};

/* ---- Ring-buffer events ------------------------------------------------- */
enum gt_event_type {
	GT_EV_FIRST_GPU_ACCESS = 1, /* first open or ioctl of a GPU device */
	GT_EV_FIRST_GPU_IOCTL = 2,  /* first ioctl: GPU use, decide now */
	GT_EV_AUDIT = 3,            /* a guard or tamper record: struct gt_audit_event */
};

struct gt_event {
	__u32 type; /* enum gt_event_type */
	__u32 gpu_kind;
	__u64 cgroup_id;
	__u64 ts_ns;
	__u32 pid; /* tgid of the process that touched the device */
	__u32 dev_major;
	__u32 dev_minor;
	__u32 reserved;
	char comm[16];
};

/* ---- Agent-wide state --------------------------------------------------- */
/* Value of gt_meta[0]: written by gputierd when it creates the pins. */
struct gt_meta {
	__u32 magic;       /* GT_ABI_MAGIC */
	__u32 abi_version; /* GT_ABI_VERSION */
	__u32 mode;        /* enum gt_mode of the last agent that attached */
	__u32 reserved;
	__u64 attached_ns; /* bpf_ktime_get_ns()-compatible, CLOCK_MONOTONIC */
};

enum gt_mode {
	GT_MODE_NONE = 0,
	GT_MODE_LSM = 1,
	GT_MODE_TRACEPOINT = 2,
};

/* Indexes of gt_drops (a per-CPU array of __u64). */
enum gt_drop_reason {
	GT_DROP_CGROUP_MAP_FULL = 0, /* new cgroup, gt_cg_stats full */
	GT_DROP_RINGBUF_FULL = 1,    /* event lost */
	GT_DROP_NAME_READ = 2,       /* file name could not be read */
	GT_DROP_MAX = 4,
};

/* ---- Fast-tier guard and tamper watch (LSM mode only) ------------------ */
/*
 * `enforcement:` in the config. The guard covers the fast tier's
 * filesystems (gt_guard_fs); the tamper watch covers gputier's own maps and
 * links (gt_own_objs). Both record in audit mode and also deny in enforce
 * mode. Tracepoint mode has neither (tracepoints cannot deny).
 */
enum gt_enforcement {
	GT_ENFORCE_OFF = 0,
	GT_ENFORCE_AUDIT = 1,
	GT_ENFORCE_DENY = 2, /* `enforce` */
};

/* Value of gt_guard_cfg[0]: written by gputierd after it attaches. */
struct gt_guard_cfg {
	__u32 mode;       /* enum gt_enforcement */
	__u32 agent_tgid; /* gputierd itself: exempt from guard and tamper watch */
};

/* Value of gt_guard_exempt: why a cgroup is exempt from the guard. */
enum gt_exempt_reason {
	GT_EXEMPT_CONFIGURED = 1,   /* enforcement_exempt_cgroups */
	GT_EXEMPT_ON_FAST_TIER = 2, /* the tier manager put it there (an
				     * operator override, or a demotion under
				     * way after its verdict changed) */
};

/* What a recorded operation was (gt_audit_record.op). */
enum gt_audit_op {
	/* Guard: an operation on a fast-tier filesystem. */
	GT_OP_OPEN_WRITE = 1, /* open for write, O_TMPFILE included */
	GT_OP_CREATE = 2,
	GT_OP_MKDIR = 3,
	GT_OP_MKNOD = 4,
	GT_OP_SYMLINK = 5,
	GT_OP_LINK = 6,   /* hard link into the fast tier */
	GT_OP_RENAME = 7, /* rename into (or within) the fast tier */
	/* Tamper watch: another process reaching for gputier's BPF objects. */
	GT_OP_MAP_WRITE_FD = 16, /* a write-capable fd to a gputier map */
	GT_OP_LINK_FD = 17,      /* an fd to a gputier link (to detach it) */
};

enum gt_audit_kind {
	GT_AUDIT_GUARD = 1,
	GT_AUDIT_TAMPER = 2,
};

/*
 * One recorded guard or tamper event. Kept in gt_audit_log (the newest
 * GT_AUDIT_SLOTS per CPU, readable from the pins without a daemon) and sent
 * on gt_events inside a struct gt_audit_event.
 */
struct gt_audit_record {
	__u64 ts_ns;     /* CLOCK_MONOTONIC (bpf_ktime_get_ns) */
	__u64 cgroup_id; /* cgroup v2 id of the process */
	__u32 kind;      /* enum gt_audit_kind */
	__u32 op;        /* enum gt_audit_op */
	__u32 pid;       /* tgid */
	__u32 uid;
	__u32 target;    /* guard: the filesystem's dev_t (kernel encoding:
			  * major << 20 | minor); tamper: the map or link id */
	__u32 verdict;   /* enum gt_verdict_kind of the cgroup at the time */
	__u32 denied;    /* 1: refused (enforce), 0: recorded only (audit) */
	__u32 reserved;
	char comm[16];
};

/* A gt_events record of type GT_EV_AUDIT. */
struct gt_audit_event {
	__u32 type; /* GT_EV_AUDIT */
	__u32 reserved;
	struct gt_audit_record rec;
};

/* Value of gt_guard_cg, keyed by the cgroup v2 id (__u64). */
struct gt_guard_stats {
	__u64 guard_audited; /* fast-tier writes recorded and allowed (audit) */
	__u64 guard_denied;  /* fast-tier writes refused (enforce) */
	__u64 tamper_events; /* tamper attempts by processes of this cgroup */
	__u64 last_ns;       /* CLOCK_MONOTONIC of the latest */
};

/* Key of gt_own_objs: one of gputier's own BPF objects. */
enum gt_obj_kind {
	GT_OBJ_MAP = 1,
	GT_OBJ_LINK = 2,
};
struct gt_obj_key {
	__u32 kind; /* enum gt_obj_kind */
	__u32 id;   /* the kernel's map or link id */
};

#define GT_AUDIT_SLOTS 64 /* per CPU */
#define GT_MAX_GUARD_FS 1024
#define GT_MAX_EXEMPT 256
#define GT_MAX_OWN_OBJS 256

/* Pinned map names (also the names inside the BPF objects). */
#define GT_MAP_CG_STATS "gt_cg_stats"
#define GT_MAP_EXT_CLASS "gt_ext_class"
#define GT_MAP_EXT_INDEX "gt_ext_index"
#define GT_MAP_CLASS_NAMES "gt_class_names"
#define GT_MAP_GPU_DEVS "gt_gpu_devs"
#define GT_MAP_EVENTS "gt_events"
#define GT_MAP_META "gt_meta"
#define GT_MAP_DROPS "gt_drops"
#define GT_MAP_VERDICTS "gt_verdicts"
#define GT_MAP_GUARD_CFG "gt_guard_cfg"
#define GT_MAP_GUARD_FS "gt_guard_fs"
#define GT_MAP_GUARD_EXEMPT "gt_guard_exempt"
#define GT_MAP_GUARD_CG "gt_guard_cg"
#define GT_MAP_OWN_OBJS "gt_own_objs"
#define GT_MAP_AUDIT_LOG "gt_audit_log"
#define GT_MAP_AUDIT_HEAD "gt_audit_head"

/* Default capacities; gputierd may override before load. */
#define GT_DEFAULT_MAX_CGROUPS 16384
#define GT_MAX_EXTENSIONS 1024
#define GT_MAX_GPU_DEVS 256
#define GT_EVENTS_BYTES (256 * 1024)

#endif /* GPUTIER_ABI_H */
