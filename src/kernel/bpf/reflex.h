/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Everything that crosses the kernel/user boundary, defined once.
 *
 * The BPF programs include this header; the Rust side gets the same
 * definitions from the skeleton that libbpf-cargo generates out of the
 * object's BTF (`skel::types`). Never copy these by hand into Rust.
 */
#ifndef __REFLEX_H
#define __REFLEX_H

#define REFLEX_COMM_LEN 16

/* What the kernel program did about a matched event. */
enum reflex_action {
	REFLEX_ACTION_SIGNALLED = 1,	/* helper returned 0 */
	REFLEX_ACTION_FAILED = 2,	/* helper returned -errno (in `result`) */
	REFLEX_ACTION_WOULD_SIGNAL = 3, /* dry run / monitor mode */
	REFLEX_ACTION_SKIPPED = 4,	/* safety rule refused; see `skip` */
};

/* Why a matched event was not acted upon. */
enum reflex_skip {
	REFLEX_SKIP_NONE = 0,
	REFLEX_SKIP_INIT = 1,	   /* the caller is pid 1 */
	REFLEX_SKIP_KTHREAD = 2,   /* the caller is a kernel thread */
	REFLEX_SKIP_SELF = 3,	   /* the caller is reflex itself */
	REFLEX_SKIP_PROTECTED = 4, /* the caller is in the protected list */
};

/* How the signal is aimed. */
enum reflex_target {
	REFLEX_TARGET_PROCESS = 0, /* bpf_send_signal: the whole thread group */
	REFLEX_TARGET_THREAD = 1,  /* bpf_send_signal_thread: the calling thread */
};

/* One decision, streamed through the `events` ring buffer. */
struct reflex_event {
	__u64 boot_ns; /* bpf_ktime_get_boot_ns() at the decision */
	__u32 pid;     /* thread group id, as user space sees it */
	__u32 tid;
	__u32 ppid; /* real_parent->tgid */
	__u32 uid;
	__u32 gid;
	__s32 syscall_nr;
	__s32 signal;
	__s32 result; /* 0, or -errno from the helper */
	__u8 action;  /* enum reflex_action */
	__u8 skip;    /* enum reflex_skip */
	__u8 target;  /* enum reflex_target */
	__u8 _pad;
	char comm[REFLEX_COMM_LEN];
};

/* Per-CPU counters kept by the kernel side; user space sums the CPUs. */
enum reflex_stat {
	REFLEX_STAT_MATCHED = 0,
	REFLEX_STAT_SIGNALLED,
	REFLEX_STAT_FAILED,
	REFLEX_STAT_WOULD_SIGNAL,
	REFLEX_STAT_SKIPPED,
	REFLEX_STAT_DROPPED, /* ring buffer reservation failed */
	REFLEX_STAT_MAX,
};

struct reflex_stats {
	__u64 count[REFLEX_STAT_MAX];
};

#endif /* __REFLEX_H */
