// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * reflex kernel side: answer a watched syscall with a signal, in the kernel,
 * before the caller runs another user-space instruction.
 *
 * A call is evaluated in constant work per selector, whatever the number of
 * rules: for each selector some rule on this syscall uses, one hash lookup of
 * (syscall, selector, value) gives the rules it satisfies as a bit mask; the
 * masks are ANDed, and the lowest surviving bit is the rule that answers
 * (after its few mask/range checks, if it has any).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "reflex.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define PF_KTHREAD 0x00200000
#define EPERM	   1
#define MAX_ERRNO  4095

/* Load-time configuration, set by user space before load. */
const volatile __u32 reflex_tgid = 0; /* never signal ourselves */
const volatile __u32 scope_ppid = 0;  /* 0: every parent; else only its children */
/* Wake the reader only once this many bytes wait in the ring buffer (0: at
 * every event). Fewer wake-ups cost the watched call less and do not put the
 * reader between a signalled process and its death; the reader also looks
 * at the buffer on a short timer, so no event waits long. */
const volatile __u64 wake_at = 0;
/* Tracing programs may call bpf_get_current_ancestor_cgroup_id (not on 5.10:
 * then the ancestors are read from the task's cgroup). Set by user space. */
const volatile bool ancestor_helper = true;

/* struct cgroup before 6.0 listed its ancestors' ids, not the cgroups. */
struct cgroup___ids {
	int level;
	__u64 ancestor_ids[];
} __attribute__((preserve_access_index));

/* The id of the current task's cgroup v2 ancestor at `level` (0: the root),
 * or 0 when it is not that deep. */
static __always_inline __u64 ancestor_cgroup_id(int level)
{
	struct task_struct *task;
	struct cgroup *cg, *at;
	__u64 id = 0;

	if (ancestor_helper)
		return bpf_get_current_ancestor_cgroup_id(level);
	task = (struct task_struct *)bpf_get_current_task();
	cg = BPF_CORE_READ(task, cgroups, dfl_cgrp);
	if (!cg || level > BPF_CORE_READ(cg, level))
		return 0;
	if (bpf_core_field_exists(struct cgroup___ids, ancestor_ids)) {
		struct cgroup___ids *old = (void *)cg;

		bpf_core_read(&id, sizeof(id), &old->ancestor_ids[level]);
		return id;
	}
	bpf_core_read(&at, sizeof(at), &cg->ancestors[level]);
	return at ? BPF_CORE_READ(at, kn, id) : 0;
}

/* Force the boundary types into BTF so the skeleton exports them. */
struct reflex_event _reflex_event = {};
struct reflex_stats _reflex_stats = {};
enum reflex_action _reflex_action = 0;
enum reflex_skip _reflex_skip = 0;
enum reflex_target _reflex_target = 0;
enum reflex_stat _reflex_stat = 0;
enum reflex_verdict _reflex_verdict = 0;
enum reflex_handler _reflex_handler = 0;
enum reflex_dim _reflex_dim = 0;
enum reflex_check_op _reflex_check_op = 0;
enum reflex_protect _reflex_protect = 0;
enum reflex_limit _reflex_limit = 0;
enum reflex_hook _reflex_hook = 0;
enum reflex_rate_by _reflex_rate_by = 0;
enum reflex_to _reflex_to = 0;
enum reflex_value _reflex_value = 0;
struct reflex_start _reflex_start = {};
struct reflex_rate_key _reflex_rate_key = {};

/* Signalling another task: kfuncs of 6.13+, used only by reflex_raw_k and
 * resolved to nothing where the kernel lacks them. */
extern struct task_struct *bpf_task_from_pid(s32 pid) __ksym __weak;
extern void bpf_task_release(struct task_struct *p) __ksym __weak;
extern int bpf_send_signal_task(struct task_struct *task, int sig, enum pid_type type,
				u64 value) __ksym __weak;

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

/* A tracepoint call handed from a per-arity stub to reflex_tp_eval. */
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

static __always_inline void count(enum reflex_stat which)
{
	__u32 zero = 0;
	struct reflex_stats *s = bpf_map_lookup_elem(&stats, &zero);

	if (s && which < REFLEX_STAT_MAX)
		s->count[which]++;
}

/* The rules for `nr` in the active set, if `kind` is the program answering it. */
static __always_inline struct reflex_syscall *watched(long nr, __u8 kind, __u32 *set)
{
	__u32 zero = 0, idx;
	struct reflex_state *st;
	struct reflex_syscall *sc;

	if (nr < 0 || nr >= REFLEX_MAX_SYSCALLS)
		return NULL;
	st = bpf_map_lookup_elem(&state, &zero);
	if (!st)
		return NULL;
	*set = st->active & 1;
	idx = *set * REFLEX_MAX_SYSCALLS + (__u32)nr;
	sc = bpf_map_lookup_elem(&syscalls, &idx);
	if (!sc || sc->handler != kind || !(sc->rules || sc->timed))
		return NULL;
	return sc;
}

/* Rules satisfied by the value in `key`, for dim `d`. */
static __always_inline __u64 accept(const struct reflex_syscall *sc, int d,
				    const struct reflex_match_key *key)
{
	struct reflex_match *m = bpf_map_lookup_elem(&matches, key);
	__u64 pos = 0, neg = 0;

	if (m) {
		pos = m->pos;
		neg = m->neg;
	}
	return sc->free[d] | pos | (sc->negated[d] & ~neg);
}

static __always_inline void file_key(struct file *file, __u64 *value)
{
	value[0] = BPF_CORE_READ(file, f_inode, i_ino);
	value[1] = BPF_CORE_READ(file, f_inode, i_sb, s_dev);
}

/* Narrows `cand` by one selector dim; the value is computed only if used. */
#define NARROW(d, fill)                                                                            \
	do {                                                                                       \
		if (sc->dims & (1U << (d))) {                                                      \
			key.dim = (d);                                                             \
			key.value[0] = 0;                                                          \
			key.value[1] = 0;                                                          \
			fill;                                                                      \
			cand &= accept(sc, (d), &key);                                             \
			if (!cand)                                                                 \
				return 0;                                                          \
		}                                                                                  \
	} while (0)

/* Index of the lowest set bit, without branches (the verifier explores each
 * branch of each loop iteration): isolate it, multiply by a de Bruijn
 * sequence, look the top six bits up. */
static const __u8 debruijn64[64] = {
	0,  1,	2,  53, 3,  7,	54, 27, 4,  38, 41, 8,	34, 55, 48, 28, 62, 5,	39, 46, 44, 42,
	22, 9,	24, 35, 59, 56, 49, 18, 29, 11, 63, 52, 6,  26, 37, 40, 33, 47, 61, 45, 43, 21,
	23, 58, 17, 10, 51, 25, 36, 32, 60, 20, 57, 16, 50, 31, 19, 15, 30, 14, 13, 12,
};

static __always_inline __u32 lowest_bit(__u64 v)
{
	return debruijn64[((v & -v) * 0x022fdd63cc95386dULL) >> 58];
}

/* The rule in the lowest slot set in `slots`. */
static __always_inline struct reflex_rule *rule_at(const struct reflex_syscall *sc, __u32 set,
						   __u64 slots)
{
	__u64 slot = lowest_bit(slots);
	__u32 idx;

	/* The bound the verifier needs; in asm, as clang would drop it. */
	asm volatile("%[s] &= 63" : [s] "+r"(slot));
	idx = set * REFLEX_MAX_RULES + (sc->rule[slot] % REFLEX_MAX_RULES);
	return bpf_map_lookup_elem(&rules, &idx);
}

static __always_inline bool is_protected_pid(__u64 pid)
{
	__u32 key = (__u32)pid;

	if (pid == 0 || pid > 0xffffffffULL)
		return false;
	return pid == 1 || key == reflex_tgid || bpf_map_lookup_elem(&protected, &key);
}

static __always_inline bool checks_pass(const struct reflex_rule *rule, const __u64 *args)
{
	for (int i = 0; i < REFLEX_MAX_CHECKS; i++) {
		const struct reflex_check *c = &rule->checks[i];
		__u64 v;

		if (i >= rule->nchecks)
			break;
		if (c->arg >= 6)
			return false;
		v = args[c->arg];
		switch (c->op) {
		case REFLEX_CHECK_MASK_ANY:
			if (!(v & c->a))
				return false;
			break;
		case REFLEX_CHECK_MASK_ALL:
			if ((v & c->a) != c->a)
				return false;
			break;
		case REFLEX_CHECK_MASK_NONE:
			if (v & c->a)
				return false;
			break;
		case REFLEX_CHECK_RANGE:
			if (v < c->a || v > c->b)
				return false;
			break;
		case REFLEX_CHECK_NOT_RANGE:
			if (v >= c->a && v <= c->b)
				return false;
			break;
		case REFLEX_CHECK_PROTECTED:
			if (!is_protected_pid(v))
				return false;
			break;
		case REFLEX_CHECK_NOT_PROTECTED:
			if (is_protected_pid(v))
				return false;
			break;
		default:
			return false;
		}
	}
	return true;
}

static __always_inline enum reflex_skip safety_check(struct task_struct *task, __u32 tgid)
{
	if (tgid == 1)
		return REFLEX_SKIP_INIT;
	if (BPF_CORE_READ(task, flags) & PF_KTHREAD)
		return REFLEX_SKIP_KTHREAD;
	if (tgid == reflex_tgid)
		return REFLEX_SKIP_SELF;
	if (bpf_map_lookup_elem(&protected, &tgid))
		return REFLEX_SKIP_PROTECTED;
	return REFLEX_SKIP_NONE;
}

/* The group a rate condition counts in. */
static __always_inline __u64 rate_group(__u8 by, struct task_struct *task, __u32 tgid, __u32 ppid)
{
	switch (by) {
	case REFLEX_RATE_PARENT:
		return ppid;
	case REFLEX_RATE_SESSION:
		return BPF_CORE_READ(task, signal, pids[PIDTYPE_SID], numbers[0].nr);
	case REFLEX_RATE_CGROUP:
		return bpf_get_current_cgroup_id();
	default:
		return tgid;
	}
}

/* Counts this call against the rule's rate; the count so far in the window
 * (the rule acts only past `rate_over`). */
static __always_inline __u64 rate_count(const struct reflex_rule *rule, struct task_struct *task,
					__u32 tgid, __u32 ppid)
{
	struct reflex_rate_key key = {
		.rule = rule->id,
		.generation = rule->generation,
		.group = rate_group(rule->rate_by, task, tgid, ppid),
	};
	__u64 now = bpf_ktime_get_ns();
	struct reflex_rate *r = bpf_map_lookup_elem(&rates, &key);

	if (!r) {
		struct reflex_rate first = {.start = now, .count = 1};

		bpf_map_update_elem(&rates, &key, &first, BPF_ANY);
		return 1;
	}
	if (now - r->start >= rule->rate_window_ns) {
		r->start = now;
		r->count = 1;
		return 1;
	}
	/* The result is not used: clang emits the plain atomic add that 5.10
	 * has, not the fetching one (5.12+). Two callers may read the same
	 * count; neither misses the threshold for long. */
	__sync_fetch_and_add(&r->count, 1);
	return r->count;
}

/* Sends the rule's signal to another task (its parent, or a pid), with a
 * value: bpf_send_signal_task, where the kernel has it. */
static __always_inline long signal_other(const struct reflex_rule *rule, __u32 target, __u32 tgid)
{
	struct task_struct *t;
	long ret;

	if (!bpf_ksym_exists(bpf_send_signal_task) || !bpf_ksym_exists(bpf_task_from_pid))
		return -95; /* EOPNOTSUPP */
	t = bpf_task_from_pid(target);
	if (!t)
		return -3; /* ESRCH */
	ret = bpf_send_signal_task(t, rule->signal, PIDTYPE_TGID,
				   rule->value_kind == REFLEX_VALUE_CALLER_PID ? tgid
									       : rule->value);
	bpf_task_release(t);
	return ret;
}

/*
 * Carries out `rule` for the current task and reports it. Returns what a
 * security hook must return: -errno to refuse, 0 to allow. `kfuncs`: the
 * calling program may use bpf_send_signal_task (a constant: the code is
 * left out of the others).
 */
static __always_inline int act(const struct reflex_rule *rule, __u32 set, long nr,
			       const __u64 *args, struct task_struct *task, __u64 pid_tgid,
			       __u32 ppid, bool kfuncs)
{
	__u32 tgid = pid_tgid >> 32;
	enum reflex_skip skip = REFLEX_SKIP_NONE;
	enum reflex_action action;
	bool deny = rule->verdict == REFLEX_VERDICT_DENY;
	__u32 to_pid = 0;
	__u64 rated = 0;
	int verdict = 0;
	long ret = 0;

	if (rule->rate_window_ns) {
		rated = rate_count(rule, task, tgid, ppid);
		if (rated <= rule->rate_over)
			return 0; /* under the rate: not an event */
	}
	if (rule->to == REFLEX_TO_PARENT)
		to_pid = ppid;
	else if (rule->to == REFLEX_TO_PID)
		to_pid = rule->to_pid;

	count(REFLEX_STAT_MATCHED);
	if (rule->verdict == REFLEX_VERDICT_AUDIT) {
		action = REFLEX_ACTION_AUDITED;
		count(REFLEX_STAT_AUDITED);
	} else if ((skip = safety_check(task, tgid)) != REFLEX_SKIP_NONE) {
		/* Safety first: nothing below may touch what must not be touched. */
		action = REFLEX_ACTION_SKIPPED;
		count(REFLEX_STAT_SKIPPED);
	} else if (rule->monitor) {
		action = deny ? REFLEX_ACTION_WOULD_DENY : REFLEX_ACTION_WOULD_SIGNAL;
		count(deny ? REFLEX_STAT_WOULD_DENY : REFLEX_STAT_WOULD_SIGNAL);
	} else {
		if (rule->signal && rule->pause_ns) {
			/* The resume is recorded before the stop: a process is never
			 * stopped without its SIGCONT due. User space works from the
			 * map, not the event, so a dropped event loses no resume. */
			struct reflex_pause p = {
				.resume_at = bpf_ktime_get_boot_ns() + rule->pause_ns,
				.rule = rule->id,
				.generation = rule->generation,
			};

			ret = bpf_map_update_elem(&paused, &tgid, &p, BPF_ANY);
			if (!ret) {
				ret = bpf_send_signal(rule->signal);
				if (ret)
					bpf_map_delete_elem(&paused, &tgid);
				else
					count(REFLEX_STAT_PAUSED);
			}
			count(ret ? REFLEX_STAT_FAILED : REFLEX_STAT_SIGNALLED);
		} else if (rule->signal) {
			if (to_pid) {
				if (kfuncs)
					ret = signal_other(rule, to_pid, tgid);
				else
					ret = -95; /* EOPNOTSUPP: not from this program */
			} else if (rule->target == REFLEX_TARGET_THREAD) {
				ret = bpf_send_signal_thread(rule->signal);
			} else {
				ret = bpf_send_signal(rule->signal);
			}
			count(ret ? REFLEX_STAT_FAILED : REFLEX_STAT_SIGNALLED);
		}
		if (deny) {
			verdict = -rule->error;
			action = REFLEX_ACTION_DENIED;
			count(REFLEX_STAT_DENIED);
		} else {
			action = ret ? REFLEX_ACTION_FAILED : REFLEX_ACTION_SIGNALLED;
		}
	}

	struct reflex_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(REFLEX_STAT_DROPPED);
		return verdict;
	}
	__u64 uid_gid = bpf_get_current_uid_gid();

	e->boot_ns = bpf_ktime_get_boot_ns();
	e->cgroup_id = bpf_get_current_cgroup_id();
	for (int i = 0; i < 6; i++)
		e->args[i] = args[i];
	e->pid = tgid;
	e->tid = (__u32)pid_tgid;
	e->ppid = ppid;
	e->uid = (__u32)uid_gid;
	e->gid = uid_gid >> 32;
	e->syscall_nr = nr;
	e->signal = rule->signal;
	e->result = ret;
	e->error = deny ? rule->error : 0;
	e->to_pid = to_pid;
	e->count = rated;
	e->window_ns = rule->rate_window_ns;
	e->rule = rule->id;
	e->set = set;
	e->generation = rule->generation;
	e->action = action;
	e->skip = skip;
	e->target = rule->target;
	bpf_get_current_comm(&e->comm, sizeof(e->comm));
	bpf_ringbuf_submit(e, bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wake_at
				      ? BPF_RB_FORCE_WAKEUP
				      : BPF_RB_NO_WAKEUP);
	return verdict;
}

/*
 * Finds the rule of `sc` that answers this call, if any, and carries it out.
 * `file` is the hook's file ([inode, device]; zeros for syscalls). Returns
 * what a security hook must return.
 */
static __always_inline int evaluate(const struct reflex_syscall *sc, __u32 set, long nr,
				    const __u64 *args, const __u64 *file, bool kfuncs)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct reflex_match_key key = {.nr = (__u32)nr, .set = set};
	__u64 cand = sc->rules;
	__u32 ppid = 0; /* read when first needed */

	if (scope_ppid) {
		ppid = BPF_CORE_READ(task, real_parent, tgid);
		if (ppid != scope_ppid)
			return 0;
	}

	/* Cheapest values first: a mismatch stops before the costly reads. */
	NARROW(REFLEX_DIM_PID, key.value[0] = pid_tgid >> 32);
	NARROW(REFLEX_DIM_PPID,
	       key.value[0] = ppid = ppid ?: BPF_CORE_READ(task, real_parent, tgid));
	NARROW(REFLEX_DIM_UID, key.value[0] = (__u32)bpf_get_current_uid_gid());
	NARROW(REFLEX_DIM_GID, key.value[0] = bpf_get_current_uid_gid() >> 32);
	NARROW(REFLEX_DIM_ARG0, key.value[0] = args[0]);
	NARROW(REFLEX_DIM_ARG1, key.value[0] = args[1]);
	NARROW(REFLEX_DIM_ARG2, key.value[0] = args[2]);
	NARROW(REFLEX_DIM_ARG3, key.value[0] = args[3]);
	NARROW(REFLEX_DIM_ARG4, key.value[0] = args[4]);
	NARROW(REFLEX_DIM_ARG5, key.value[0] = args[5]);
	NARROW(REFLEX_DIM_FILE, key.value[0] = file[0]; key.value[1] = file[1]);
	NARROW(REFLEX_DIM_COMM, bpf_get_current_comm(&key.value, sizeof(key.value)));
	NARROW(REFLEX_DIM_EXE, file_key(BPF_CORE_READ(task, mm, exe_file), key.value));
	NARROW(REFLEX_DIM_PARENT_EXE,
	       file_key(BPF_CORE_READ(task, real_parent, mm, exe_file), key.value));

	if (sc->dims & (1U << REFLEX_DIM_CGROUP)) {
		/* In a cgroup means at it or below it: look up each ancestor
		 * level some selector names. */
		__u64 pos = 0, neg = 0;

		key.dim = REFLEX_DIM_CGROUP;
		key.value[1] = 0;
		for (int level = 0; level < REFLEX_CGROUP_LEVELS; level++) {
			struct reflex_match *m;

			if (!(sc->cgroup_levels & (1U << level)))
				continue;
			key.value[0] = ancestor_cgroup_id(level);
			m = bpf_map_lookup_elem(&matches, &key);
			if (m) {
				pos |= m->pos;
				neg |= m->neg;
			}
		}
		cand &= sc->free[REFLEX_DIM_CGROUP] | pos | (sc->negated[REFLEX_DIM_CGROUP] & ~neg);
		if (!cand)
			return 0;
	}

	/*
	 * Candidates in precedence order; the first whose checks pass answers.
	 * A rule without checks always passes, so only the rules with checks
	 * before the first such rule need a look (at most REFLEX_MAX_CHECKED).
	 */
	struct reflex_rule *winner = NULL;
	__u64 unchecked = cand & ~sc->checked;
	__u64 first = unchecked & -unchecked;
	__u64 todo = cand & sc->checked & (first ? first - 1 : ~0ULL);

	for (int i = 0; i < REFLEX_MAX_CHECKED && todo; i++) {
		struct reflex_rule *rule = rule_at(sc, set, todo);

		todo &= todo - 1;
		if (rule && checks_pass(rule, args)) {
			winner = rule;
			break;
		}
	}
	if (!winner && first)
		winner = rule_at(sc, set, first);
	if (!winner)
		return 0;
	return act(winner, set, nr, args, task, pid_tgid,
		   ppid ?: BPF_CORE_READ(task, real_parent, tgid), kfuncs);
}

static const __u64 no_file[2] = {};

/* Exit rules on this syscall: remember when this thread entered it. */
static __always_inline void time_entry(const struct reflex_syscall *sc, long nr, __u32 set)
{
	if (sc->timed) {
		__u32 tid = (__u32)bpf_get_current_pid_tgid();
		struct reflex_start start = {.ns = bpf_ktime_get_ns(), .nr = nr, .set = set};

		bpf_map_update_elem(&starts, &tid, &start, BPF_ANY);
	}
}

/* At a timed syscall's exit: the exit rules, with the return value as
 * argument 0 and the time since entry (ns) as argument 1. */
static __always_inline int on_exit(long nr, long retval, __u8 kind)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid(), idx;
	struct reflex_start *start = bpf_map_lookup_elem(&starts, &tid);
	const struct reflex_syscall *sc;
	__u64 args[6] = {}, took;
	__u32 set;

	if (!start)
		return 0;
	if (nr < 0)
		nr = start->nr; /* the raw hook does not know it */
	if (start->nr != nr || nr >= REFLEX_EXIT_BASE) {
		bpf_map_delete_elem(&starts, &tid);
		return 0;
	}
	took = bpf_ktime_get_ns() - start->ns;
	/* The set the call entered with answers it, as for entry rules. */
	set = start->set & 1;
	bpf_map_delete_elem(&starts, &tid);
	idx = set * REFLEX_MAX_SYSCALLS + REFLEX_EXIT_BASE + (__u32)nr;
	sc = bpf_map_lookup_elem(&syscalls, &idx);
	if (!sc || sc->handler != kind || !sc->rules)
		return 0;
	args[0] = retval;
	args[1] = took;
	evaluate(sc, set, REFLEX_EXIT_BASE + nr, args, no_file, false);
	return 0;
}

/*
 * Programs attached to each watched syscall's own tracepoint. A syscall
 * tracepoint's record holds only that syscall's arguments, and the kernel
 * refuses a program that reads past the record, so there is one small stub
 * per argument count (reflex_tpN reads N arguments); each hands the call to
 * reflex_tp_eval by tail call, so that the rule evaluation is verified once.
 */
static __always_inline int on_tracepoint(struct syscall_trace_enter *ctx, int nargs)
{
	/* The record's own layout: `nr` is an int, and a syscall without
	 * arguments has nothing after it. */
	long nr = ctx->nr;
	__u32 zero = 0, set;
	struct reflex_call *call;

	const struct reflex_syscall *sc = watched(nr, REFLEX_HANDLER_TRACEPOINT, &set);

	if (!sc)
		return 0;
	time_entry(sc, nr, set);
	if (!sc->rules)
		return 0;
	call = bpf_map_lookup_elem(&calls, &zero);
	if (!call)
		return 0;
	call->nr = nr;
	call->set = set;
	/* Spelled out: the verifier refuses context reads at computed offsets. */
	call->args[0] = nargs > 0 ? ctx->args[0] : 0;
	call->args[1] = nargs > 1 ? ctx->args[1] : 0;
	call->args[2] = nargs > 2 ? ctx->args[2] : 0;
	call->args[3] = nargs > 3 ? ctx->args[3] : 0;
	call->args[4] = nargs > 4 ? ctx->args[4] : 0;
	call->args[5] = nargs > 5 ? ctx->args[5] : 0;
	bpf_tail_call(ctx, &tp_eval, 0);
	return 0;
}

#define REFLEX_TP(n)                                                                               \
	SEC("tp")                                                                                  \
	int reflex_tp##n(struct syscall_trace_enter *ctx)                                          \
	{                                                                                          \
		return on_tracepoint(ctx, n);                                                      \
	}

REFLEX_TP(0)
REFLEX_TP(1)
REFLEX_TP(2)
REFLEX_TP(3)
REFLEX_TP(4)
REFLEX_TP(5)
REFLEX_TP(6)

SEC("tp")
int reflex_tp_eval(void *ctx)
{
	__u32 zero = 0, set, idx;
	struct reflex_call *call = bpf_map_lookup_elem(&calls, &zero);
	const struct reflex_syscall *sc;
	__u64 args[6];

	if (!call || call->nr < 0 || call->nr >= REFLEX_MAX_SYSCALLS)
		return 0;
	/* The set the stub saw, not the one active now: a switch in between
	 * must not make this call escape. */
	set = call->set & 1;
	idx = set * REFLEX_MAX_SYSCALLS + (__u32)call->nr;
	sc = bpf_map_lookup_elem(&syscalls, &idx);
	if (!sc)
		return 0;
	for (int i = 0; i < 6; i++)
		args[i] = call->args[i];
	evaluate(sc, set, call->nr, args, no_file, false);
	return 0;
}

/* One program on the raw sys_enter tracepoint: sees every syscall, so the
 * first thing it does is drop the unwatched ones. */
static __always_inline int on_raw(struct pt_regs *regs, long nr, bool kfuncs)
{
	__u64 args[6];
	__u32 set;
	const struct reflex_syscall *sc = watched(nr, REFLEX_HANDLER_RAW, &set);

	if (!sc)
		return 0;
	time_entry(sc, nr, set);
	if (!sc->rules)
		return 0;
	/* `regs` is a BTF pointer: plain loads, no helper calls. */
	args[0] = PT_REGS_PARM1_SYSCALL(regs);
	args[1] = PT_REGS_PARM2_SYSCALL(regs);
	args[2] = PT_REGS_PARM3_SYSCALL(regs);
	args[3] = PT_REGS_PARM4_SYSCALL(regs);
	args[4] = PT_REGS_PARM5_SYSCALL(regs);
	args[5] = PT_REGS_PARM6_SYSCALL(regs);
	/* Registers past the syscall's arguments hold leftovers: report zeros,
	 * as the per-syscall tracepoints do. */
	for (int i = 0; i < 6; i++)
		if (i >= sc->nargs)
			args[i] = 0;
	evaluate(sc, set, nr, args, no_file, kfuncs);
	return 0;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(reflex_raw, struct pt_regs *regs, long nr)
{
	return on_raw(regs, nr, false);
}

/* The same, able to signal other tasks (rules with `to:`; 6.13+). */
SEC("tp_btf/sys_enter")
int BPF_PROG(reflex_raw_k, struct pt_regs *regs, long nr)
{
	return on_raw(regs, nr, true);
}

/* Syscall exits, for exit rules (slow calls, return values). */
SEC("tp")
int reflex_tp_exit(struct syscall_trace_exit *ctx)
{
	return on_exit(ctx->nr, ctx->ret, REFLEX_HANDLER_TRACEPOINT);
}

SEC("tp_btf/sys_exit")
int BPF_PROG(reflex_raw_exit, struct pt_regs *regs, long ret)
{
	return on_exit(-1, ret, REFLEX_HANDLER_RAW);
}

/* CPU sampling: a software perf event on every CPU; the selected task that
 * is on the CPU gets the rule's signal (typically to its thread). */
SEC("perf_event")
int reflex_sample(struct bpf_perf_event_data *ctx)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__u64 args[6] = {};
	__u32 set;
	const struct reflex_syscall *sc = watched(REFLEX_HOOK_SAMPLE, REFLEX_HANDLER_PERF, &set);

	if (!sc || !sc->rules)
		return 0;
	/* The idle task and kernel threads are never sampled: no event. */
	if (!(bpf_get_current_pid_tgid() >> 32) || (BPF_CORE_READ(task, flags) & PF_KTHREAD))
		return 0;
	evaluate(sc, set, REFLEX_HOOK_SAMPLE, args, no_file, false);
	return 0;
}

/*
 * Security hooks (BPF-LSM): the same rules, with the power to refuse. Each
 * program first passes on a refusal by an earlier program on the hook.
 * Loaded only when a policy has hook rules and the kernel allows BPF-LSM.
 */
/*
 * An LSM program returns 0 or a negative errno, and since 6.12 the verifier
 * refuses one that could return anything else. The errno comes from a map
 * (user space only writes 1..4095), so bound it where the verifier sees it:
 * two checks, kept apart so that clang cannot merge them into one unsigned
 * compare of a copy.
 */
static __always_inline int lsm_return(int verdict)
{
	if (verdict > 0)
		verdict = 0;
	barrier_var(verdict);
	if (verdict < -MAX_ERRNO)
		verdict = -EPERM;
	return verdict;
}

static __always_inline int on_hook(long hook, __u64 a0, __u64 a1, struct file *file)
{
	__u64 args[6] = {a0, a1};
	__u64 f[2] = {};
	__u32 set;
	const struct reflex_syscall *sc = watched(hook, REFLEX_HANDLER_LSM, &set);

	if (!sc)
		return 0;
	if (file)
		file_key(file, f);
	return lsm_return(evaluate(sc, set, hook, args, f, false));
}

SEC("?lsm/ptrace_access_check")
int BPF_PROG(reflex_lsm_ptrace, struct task_struct *child, unsigned int mode, int ret)
{
	if (ret)
		return ret;
	return on_hook(REFLEX_HOOK_PTRACE, child->tgid, mode, NULL);
}

SEC("?lsm/bprm_check_security")
int BPF_PROG(reflex_lsm_exec, struct linux_binprm *bprm, int ret)
{
	if (ret)
		return ret;
	return on_hook(REFLEX_HOOK_EXEC, 0, 0, bprm->file);
}

SEC("?lsm/file_open")
int BPF_PROG(reflex_lsm_open, struct file *file, int ret)
{
	if (ret)
		return ret;
	return on_hook(REFLEX_HOOK_OPEN, 0, file->f_flags, file);
}

SEC("?lsm/task_kill")
int BPF_PROG(reflex_lsm_kill, struct task_struct *p, struct kernel_siginfo *info, int sig,
	     const struct cred *cred, int ret)
{
	if (ret)
		return ret;
	return on_hook(REFLEX_HOOK_KILL, p->tgid, sig, NULL);
}

SEC("?lsm/kernel_read_file")
int BPF_PROG(reflex_lsm_module_file, struct file *file, enum kernel_read_file_id id, bool contents,
	     int ret)
{
	if (ret)
		return ret;
	if (id != READING_MODULE)
		return 0;
	return on_hook(REFLEX_HOOK_MODULE, 0, 0, file);
}

/*
 * The bpf() syscall. Linux 6.15 added a `kernel` flag before `ret`, so there
 * are two programs and user space loads the one the kernel's BTF describes.
 * Commands the kernel issues itself (6.15+) and reflex's own (its map reads
 * and writes, which would otherwise each be a "skipped" event) are not
 * rules' business.
 */
static __always_inline int on_bpf(int cmd)
{
	if ((bpf_get_current_pid_tgid() >> 32) == reflex_tgid)
		return 0;
	return on_hook(REFLEX_HOOK_BPF, cmd, 0, NULL);
}

SEC("?lsm/bpf")
int BPF_PROG(reflex_lsm_bpf, int cmd, union bpf_attr *attr, unsigned int size, int ret)
{
	if (ret)
		return ret;
	return on_bpf(cmd);
}

SEC("?lsm/bpf")
int BPF_PROG(reflex_lsm_bpf_kernel_flag, int cmd, union bpf_attr *attr, unsigned int size,
	     bool kernel, int ret)
{
	if (ret)
		return ret;
	if (kernel)
		return 0;
	return on_bpf(cmd);
}

SEC("?lsm/kernel_load_data")
int BPF_PROG(reflex_lsm_module_data, enum kernel_load_data_id id, bool contents, int ret)
{
	if (ret)
		return ret;
	if (id != LOADING_MODULE)
		return 0;
	return on_hook(REFLEX_HOOK_MODULE, 0, 0, NULL);
}

/*
 * The protected set follows processes: children of a protected executable or
 * cgroup are protected from birth, an exec re-decides, an exit forgets.
 * Attached only when the policy protects executables or cgroups.
 */
static __always_inline __u8 cgroup_protection(void)
{
	__u32 zero = 0;
	struct reflex_state *st = bpf_map_lookup_elem(&state, &zero);

	if (!st || !st->protect_cgroup_levels)
		return 0;
	for (int level = 0; level < REFLEX_CGROUP_LEVELS; level++) {
		__u64 id;

		if (!(st->protect_cgroup_levels & (1U << level)))
			continue;
		id = ancestor_cgroup_id(level);
		if (bpf_map_lookup_elem(&protected_cgroups, &id))
			return REFLEX_PROTECT_CGROUP;
	}
	return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(reflex_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 ptgid = parent->tgid, ctgid = child->tgid;
	__u8 *flags, inherit;

	if (child->pid != ctgid)
		return 0; /* a new thread: its process is already decided */
	flags = bpf_map_lookup_elem(&protected, &ptgid);
	if (!flags)
		return 0;
	inherit = *flags & (REFLEX_PROTECT_EXE | REFLEX_PROTECT_CGROUP);
	if (inherit)
		bpf_map_update_elem(&protected, &ctgid, &inherit, BPF_ANY);
	return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(reflex_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	__u32 tgid = p->tgid;
	__u8 *old = bpf_map_lookup_elem(&protected, &tgid);
	__u8 now = old ? (*old & REFLEX_PROTECT_PID) : 0;
	struct reflex_file_key exe = {};
	__u64 value[2];

	file_key(bprm->file, value);
	exe.ino = value[0];
	exe.dev = (__u32)value[1];
	if (bpf_map_lookup_elem(&protected_exes, &exe))
		now |= REFLEX_PROTECT_EXE;
	now |= cgroup_protection();
	if (now)
		bpf_map_update_elem(&protected, &tgid, &now, BPF_ANY);
	else if (old)
		bpf_map_delete_elem(&protected, &tgid);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(reflex_exit, struct task_struct *p)
{
	__u32 tgid = p->tgid;

	/* Forget the process when its last thread exits. */
	if (BPF_CORE_READ(p, signal, live.counter) == 0)
		bpf_map_delete_elem(&protected, &tgid);
	return 0;
}
