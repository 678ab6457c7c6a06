/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * What every program shares: the load-time constants user space writes
 * before load (`const volatile`: the verifier sees them as constants), and
 * the maps (created once, by the main object; every other instance of the
 * object reuses them), with the per-CPU counters.
 */
#ifndef __REFLEX_STATE_H
#define __REFLEX_STATE_H

/* Load-time configuration, set by user space before load. */
const volatile __u32 reflex_tgid = 0; /* never signal ourselves */
const volatile __u32 helper_tgid = 0; /* nor reflex's guardian */
const volatile __u32 scope_ppid = 0;  /* 0: every parent; else only its children */
const volatile __u32 scope_tree = 0;  /* 0: every process; else only its descendants */
/* Besides the first record into an empty buffer, wake the reader only once
 * this many bytes wait in the ring buffer (0: at every event). Fewer wake-ups
 * cost the watched call less and do not put the reader between a signalled
 * process and its death; a reader that has read records looks at the buffer
 * again on a short timer, so no event waits long, and one that found none
 * sleeps until the next first record. */
const volatile __u64 wake_at = 0;
/* What the evaluator must handle: the selector dimensions (bits of enum
 * reflex_dim) and the features (enum reflex_use) of the rule sets it serves.
 * The verifier knows these constants and skips the code of anything left
 * out, so an evaluator for a simple rule set verifies in a fraction of the
 * time. Every bit set (the default): everything. */
const volatile __u32 eval_dims = ~0U;
const volatile __u32 eval_uses = ~0U;
/* Tracing programs may call bpf_get_current_ancestor_cgroup_id (not on 5.10:
 * then the ancestors are read from the task's cgroup). Set by user space. */
const volatile bool ancestor_helper = true;
/* The kernel has the task kfuncs (6.13+: set by user space): events name a
 * kill or ptrace syscall's target, and the tracepoint evaluator may use them. */
const volatile bool task_kfuncs = false;
/* Events name the process, its lineage and what the call was about (false
 * only in the benchmark, to measure what that costs). */
const volatile bool describe = true;

/* Looking up and signalling another task: kfuncs of 6.13+, resolved to
 * nothing where the kernel lacks them (calls guarded by constants). */
extern struct task_struct *bpf_task_from_pid(s32 pid) __ksym __weak;
extern void bpf_task_release(struct task_struct *p) __ksym __weak;
extern int bpf_send_signal_task(struct task_struct *task, int sig, enum pid_type type,
				u64 value) __ksym __weak;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1024 * 1024);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct reflex_stats);
} stats SEC(".maps");

/* An event is built here and copied to the ring buffer with only the bytes
 * it uses (a reserved record has a fixed size: ~4.6 KB with room for every
 * string). One slot per level of nesting on a CPU: a program runs in a
 * task, and another may interrupt it from an interrupt or an NMI (the
 * sampler); each takes the first free slot, and finishes before the one it
 * interrupted goes on, so the deepest busy slot is always the current one. */
#define SCRATCH_SLOTS 3

struct reflex_scratch {
	__u32 busy;
	__u32 target_pid; /* a syscall's target pid (kill, ptrace) */
	/* What the call is about, by address (identity.h: struct call_info),
	 * for reflex_describe(), which reads them from here. */
	__u64 file, target, path, saved_path, argv;
	struct reflex_event e;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SCRATCH_SLOTS);
	__type(key, __u32);
	__type(value, struct reflex_scratch);
} scratch SEC(".maps");

/* A free slot, taken; NULL when all are busy. */
static __always_inline struct reflex_scratch *take_scratch(void)
{
	for (__u32 i = 0; i < SCRATCH_SLOTS; i++) {
		__u32 key = i;
		struct reflex_scratch *s = bpf_map_lookup_elem(&scratch, &key);

		if (s && !s->busy) {
			s->busy = 1;
			return s;
		}
	}
	return NULL;
}

/* The slot the running program took: the deepest busy one. */
static __always_inline struct reflex_scratch *current_scratch(void)
{
	for (__u32 i = SCRATCH_SLOTS; i > 0; i--) {
		__u32 key = i - 1;
		struct reflex_scratch *s = bpf_map_lookup_elem(&scratch, &key);

		if (s && s->busy)
			return s;
	}
	return NULL;
}

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct reflex_state);
} state SEC(".maps");

/* Index: set * REFLEX_MAX_SYSCALLS + syscall number. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, REFLEX_SETS *REFLEX_MAX_SYSCALLS);
	__type(key, __u32);
	__type(value, struct reflex_syscall);
} syscalls SEC(".maps");

/* Index: set * REFLEX_MAX_RULES + rule index. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, REFLEX_SETS *REFLEX_MAX_RULES);
	__type(key, __u32);
	__type(value, struct reflex_rule);
} rules SEC(".maps");

/*
 * Read by no program: updating `grace` makes the kernel wait for an RCU grace
 * period, so for every program already running to finish (it does so before
 * any map-in-map update returns). User space does this after switching rule
 * sets, so that a set switched away from is no longer being read when it is
 * rewritten, even by a program that was preempted while reading it.
 */
struct grace_inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} grace_inner SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__array(values, struct grace_inner);
} grace SEC(".maps");

/* A tracepoint call handed from a per-arity stub to reflex_tp_eval by tail
 * call (per CPU: syscall tracepoints run their BPF programs with preemption
 * disabled, so nothing else on the CPU writes it in between). */
struct reflex_call {
	__s64 nr;
	__u32 set; /* read once, by the stub: the call is answered by one set */
	__u32 _pad;
	__u64 args[6];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct reflex_call);
} calls SEC(".maps");

/* Slot 0: reflex_tp_eval, set by user space after load. */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} tp_eval SEC(".maps");

/* Slot 0: the fentry evaluator, for the fentry stubs of syscall functions
 * with the evaluator's prototype (user space makes one more such map per
 * prototype: the kernel tail-calls only between programs attached to
 * functions of one prototype). */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} fentry_eval SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, REFLEX_MAX_MATCHES);
	__type(key, struct reflex_match_key);
	__type(value, struct reflex_match);
} matches SEC(".maps");

/* Threads in a timed syscall: when it started. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, REFLEX_MAX_TIMED);
	__type(key, __u32);
	__type(value, struct reflex_start);
} starts SEC(".maps");

/* A timed syscall's path argument, read at its entry for its exit's event. */
struct timed_path {
	char path[REFLEX_STRING_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, REFLEX_MAX_TIMED_PATHS);
	__type(key, __u32);
	__type(value, struct timed_path);
} timed_paths SEC(".maps");

/* Rate conditions: calls per (install's rule, group) in the current window. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, REFLEX_MAX_RATES);
	__type(key, struct reflex_rate_key);
	__type(value, struct reflex_rate);
} rates SEC(".maps");

/* Paused processes: when user space is to send SIGCONT. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, REFLEX_MAX_PAUSED);
	__type(key, __u32);
	__type(value, struct reflex_pause);
} paused SEC(".maps");

/* Thread group ids no rule may signal (besides pid 1 and reflex), with why. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, REFLEX_MAX_PROTECTED);
	__type(key, __u32);
	__type(value, __u8);
} protected SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, REFLEX_MAX_PROTECT_OBJECTS);
	__type(key, struct reflex_file_key);
	__type(value, __u8);
} protected_exes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, REFLEX_MAX_PROTECT_OBJECTS);
	__type(key, __u64);
	__type(value, __u8);
} protected_cgroups SEC(".maps");

/* Decisions per rule and action; index: set * REFLEX_MAX_RULES + rule. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, REFLEX_SETS *REFLEX_MAX_RULES);
	__type(key, __u32);
	__type(value, struct reflex_rule_stats);
} rule_stats SEC(".maps");

/* Circuit breakers: per install's rule, and what each has acted on. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, REFLEX_MAX_RULES);
	__type(key, struct reflex_disarm_key);
	__type(value, struct reflex_disarm);
} disarms SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, REFLEX_MAX_DISARM_SEEN);
	__type(key, struct reflex_disarm_seen_key);
	__type(value, __u64);
} disarm_seen SEC(".maps");

/* Matcher test only: the call reflex_test_match evaluates. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct reflex_test_call);
} test_calls SEC(".maps");

static __always_inline void count(enum reflex_stat which)
{
	__u32 zero = 0;
	struct reflex_stats *s = bpf_map_lookup_elem(&stats, &zero);

	if (s && which < REFLEX_STAT_MAX)
		s->count[which]++;
}

#endif /* __REFLEX_STATE_H */
