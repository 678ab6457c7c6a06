// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * reflex kernel side: answer a watched syscall with a signal, in the kernel,
 * before the caller runs another user-space instruction.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "reflex.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define PF_KTHREAD 0x00200000

/* Load-time configuration, set by user space before load. */
const volatile __u32 target_ppid = 0; /* 0: any parent */
const volatile __s32 signal_nr = 9;   /* SIGKILL */
const volatile __u8 target = REFLEX_TARGET_PROCESS;
const volatile bool dry_run = false;
const volatile __u32 reflex_tgid = 0; /* never signal ourselves */

/* Force the boundary types into BTF so the skeleton exports them. */
struct reflex_event _reflex_event = {};
struct reflex_stats _reflex_stats = {};
enum reflex_action _reflex_action = 0;
enum reflex_skip _reflex_skip = 0;
enum reflex_target _reflex_target = 0;
enum reflex_stat _reflex_stat = 0;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct reflex_stats);
} stats SEC(".maps");

/* Thread group ids that no rule may signal, besides pid 1 and reflex. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u8);
} protected_pids SEC(".maps");

static __always_inline void count(enum reflex_stat which)
{
	__u32 zero = 0;
	struct reflex_stats *s = bpf_map_lookup_elem(&stats, &zero);

	if (s && which < REFLEX_STAT_MAX)
		s->count[which]++;
}

static __always_inline enum reflex_skip safety_check(struct task_struct *task, __u32 tgid)
{
	if (tgid == 1)
		return REFLEX_SKIP_INIT;
	if (BPF_CORE_READ(task, flags) & PF_KTHREAD)
		return REFLEX_SKIP_KTHREAD;
	if (tgid == reflex_tgid)
		return REFLEX_SKIP_SELF;
	if (bpf_map_lookup_elem(&protected_pids, &tgid))
		return REFLEX_SKIP_PROTECTED;
	return REFLEX_SKIP_NONE;
}

static __always_inline int respond(__s32 syscall_nr)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tgid = pid_tgid >> 32;
	__u32 ppid = BPF_CORE_READ(task, real_parent, tgid);
	enum reflex_skip skip;
	enum reflex_action action;
	long ret = 0;

	if (target_ppid && ppid != target_ppid)
		return 0;
	count(REFLEX_STAT_MATCHED);

	/* Safety first: nothing below may signal what must not be signalled. */
	skip = safety_check(task, tgid);
	if (skip != REFLEX_SKIP_NONE) {
		action = REFLEX_ACTION_SKIPPED;
		count(REFLEX_STAT_SKIPPED);
	} else if (dry_run) {
		action = REFLEX_ACTION_WOULD_SIGNAL;
		count(REFLEX_STAT_WOULD_SIGNAL);
	} else {
		if (target == REFLEX_TARGET_THREAD)
			ret = bpf_send_signal_thread(signal_nr);
		else
			ret = bpf_send_signal(signal_nr);
		action = ret ? REFLEX_ACTION_FAILED : REFLEX_ACTION_SIGNALLED;
		count(ret ? REFLEX_STAT_FAILED : REFLEX_STAT_SIGNALLED);
	}

	struct reflex_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(REFLEX_STAT_DROPPED);
		return 0;
	}
	__u64 uid_gid = bpf_get_current_uid_gid();

	e->boot_ns = bpf_ktime_get_boot_ns();
	e->pid = tgid;
	e->tid = (__u32)pid_tgid;
	e->ppid = ppid;
	e->uid = (__u32)uid_gid;
	e->gid = uid_gid >> 32;
	e->syscall_nr = syscall_nr;
	e->signal = signal_nr;
	e->result = ret;
	e->action = action;
	e->skip = skip;
	e->target = target;
	e->_pad = 0;
	bpf_get_current_comm(&e->comm, sizeof(e->comm));
	bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("tp/syscalls/sys_enter_ptrace")
int reflex_sys_enter_ptrace(struct trace_event_raw_sys_enter *ctx)
{
	return respond((__s32)ctx->id);
}
