/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Carrying a rule out: the safety checks, rates, the signal (to the caller
 * or another task), pauses, a hook's refusal, and the event that reports
 * it.
 */
#ifndef __REFLEX_ACT_H
#define __REFLEX_ACT_H

static __always_inline enum reflex_skip safety_check(struct task_struct *task, __u32 tgid)
{
	if (tgid == 1)
		return REFLEX_SKIP_INIT;
	if (BPF_CORE_READ(task, flags) & PF_KTHREAD)
		return REFLEX_SKIP_KTHREAD;
	if (tgid == reflex_tgid || (helper_tgid && tgid == helper_tgid))
		return REFLEX_SKIP_SELF;
	if (bpf_map_lookup_elem(&protected, &tgid))
		return REFLEX_SKIP_PROTECTED;
	return REFLEX_SKIP_NONE;
}

/*
 * Why the task a `to:` rule would signal (pid `pid`: a process, or a thread
 * of one) must not be, if it must not: the same safety as for callers.
 * `kfuncs` (a constant): the program can look the task up, so a thread's
 * process and kernel threads are recognised too.
 */
static __always_inline enum reflex_skip target_check(__u32 pid, bool kfuncs)
{
	__u32 tgid = pid;

	if (kfuncs && bpf_ksym_exists(bpf_task_from_pid)) {
		struct task_struct *t = bpf_task_from_pid(pid);
		unsigned int flags;

		if (t) {
			tgid = BPF_CORE_READ(t, tgid);
			flags = BPF_CORE_READ(t, flags);
			bpf_task_release(t);
			if (flags & PF_KTHREAD)
				return REFLEX_SKIP_TARGET_KTHREAD;
		}
	}
	if (tgid == 1)
		return REFLEX_SKIP_TARGET_INIT;
	if (tgid == reflex_tgid || (helper_tgid && tgid == helper_tgid))
		return REFLEX_SKIP_TARGET_SELF;
	if (bpf_map_lookup_elem(&protected, &tgid))
		return REFLEX_SKIP_TARGET_PROTECTED;
	return REFLEX_SKIP_NONE;
}

/*
 * The rule's circuit breaker: whether it is open (the rule audits instead
 * of acting). Acting on one more distinct executable, cgroup or process
 * than the rule allows within its window opens it, until the next install.
 */
static __always_inline bool disarmed(const struct reflex_rule *rule, struct task_struct *task,
				     __u32 tgid)
{
	struct reflex_disarm_key key = {.rule = rule->id, .generation = rule->generation};
	struct reflex_disarm_seen_key seen_key = {.rule = rule->id, .generation = rule->generation};
	struct reflex_disarm *d;
	__u64 now = bpf_ktime_get_ns(), *seen;

	if (!rule->disarm_distinct)
		return false;
	d = bpf_map_lookup_elem(&disarms, &key);
	if (!d) {
		struct reflex_disarm first = {.window_start = now};

		bpf_map_update_elem(&disarms, &key, &first, BPF_NOEXIST);
		d = bpf_map_lookup_elem(&disarms, &key);
		if (!d)
			return false;
	}
	if (d->open)
		return true;
	if (now - d->window_start >= rule->disarm_window_ns) {
		d->window_start = now;
		d->distinct = 0;
	}
	switch (rule->disarm_by) {
	case REFLEX_DISARM_CGROUP:
		seen_key.what[0] = bpf_get_current_cgroup_id();
		break;
	case REFLEX_DISARM_PROCESS:
		seen_key.what[0] = tgid;
		break;
	default:
		file_key(BPF_CORE_READ(task, mm, exe_file), seen_key.what);
	}
	seen = bpf_map_lookup_elem(&disarm_seen, &seen_key);
	if (seen && *seen >= d->window_start)
		return false; /* acted on already in this window: not one more */
	bpf_map_update_elem(&disarm_seen, &seen_key, &now, BPF_ANY);
	/* The result is not used: the plain atomic add 5.10 has. */
	__sync_fetch_and_add(&d->distinct, 1);
	if (d->distinct <= rule->disarm_distinct)
		return false;
	d->open = 1;
	return true;
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

/* One more `action` by rule `id` of set `set`. */
static __always_inline void count_decision(__u32 set, __u32 id, enum reflex_action action)
{
	__u32 idx = (set & 1) * REFLEX_MAX_RULES + (id % REFLEX_MAX_RULES);
	struct reflex_rule_stats *rs = bpf_map_lookup_elem(&rule_stats, &idx);

	if (rs && action < REFLEX_ACTION_MAX)
		rs->count[action]++;
}

#define SIGSTOP 19
#define SIGTSTP 20
#define SIGTTIN 21
#define SIGTTOU 22

/* Signals whose default action stops the process. */
static __always_inline bool stops(int sig)
{
	return sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU;
}

/*
 * Lists `pid` as stopped by `rule`, its SIGCONT due after the rule's pause,
 * or (no pause) only when reflex stops. A later resume already listed is
 * kept. 0, or -errno when the list is full: then nothing may be stopped.
 */
static __always_inline long record_stop(__u32 pid, const struct reflex_rule *rule)
{
	struct reflex_pause p = {
		.resume_at = rule->pause_ns ? bpf_ktime_get_boot_ns() + rule->pause_ns : ~0ULL,
		.rule = rule->id,
		.generation = rule->generation,
	};
	struct reflex_pause *old = bpf_map_lookup_elem(&paused, &pid);

	if (old && old->resume_at > p.resume_at)
		p.resume_at = old->resume_at;
	return bpf_map_update_elem(&paused, &pid, &p, BPF_ANY);
}

/*
 * Carries out `rule` for the current task and reports it. Returns what a
 * security hook must return: -errno to refuse, 0 to allow. `kfuncs`: the
 * calling program may use bpf_send_signal_task (a constant: the code is
 * left out of the others).
 */
static __always_inline int act(const struct reflex_rule *rule, __u32 set, long nr,
			       const __u64 *values, const struct call_info *ci,
			       struct task_struct *task, __u64 pid_tgid, __u32 ppid, bool kfuncs)
{
	__u32 tgid = pid_tgid >> 32;
	enum reflex_skip skip = REFLEX_SKIP_NONE;
	enum reflex_action action;
	bool deny = rule->verdict == REFLEX_VERDICT_DENY;
	__u32 to_pid = 0;
	__u64 rated = 0;
	int verdict = 0;
	long ret = 0;

	if ((eval_uses & REFLEX_USE_RATE) && rule->rate_window_ns) {
		rated = rate_count(rule, task, tgid, ppid);
		if (rated <= rule->rate_over)
			return 0; /* under the rate: not an event */
	}
	if (!(eval_uses & REFLEX_USE_TO))
		; /* every rule signals the caller */
	else if (rule->to == REFLEX_TO_PARENT)
		to_pid = ppid;
	else if (rule->to == REFLEX_TO_PID)
		to_pid = rule->to_pid;

	count(REFLEX_STAT_MATCHED);
	if (rule->verdict == REFLEX_VERDICT_AUDIT) {
		action = REFLEX_ACTION_AUDITED;
		count(REFLEX_STAT_AUDITED);
	} else if ((skip = safety_check(task, tgid)) != REFLEX_SKIP_NONE ||
		   (to_pid && (skip = target_check(to_pid, kfuncs)) != REFLEX_SKIP_NONE)) {
		/* Safety first: nothing below may touch what must not be
		 * touched, caller or target. */
		action = REFLEX_ACTION_SKIPPED;
		count(REFLEX_STAT_SKIPPED);
	} else if ((eval_uses & REFLEX_USE_DISARM) && !rule->monitor &&
		   disarmed(rule, task, tgid)) {
		action = REFLEX_ACTION_DISARMED;
		count(REFLEX_STAT_DISARMED);
	} else if (rule->monitor) {
		action = deny ? REFLEX_ACTION_WOULD_DENY : REFLEX_ACTION_WOULD_SIGNAL;
		count(deny ? REFLEX_STAT_WOULD_DENY : REFLEX_STAT_WOULD_SIGNAL);
	} else {
		if (rule->signal) {
			__u32 whom = to_pid ?: tgid;
			bool stop = (eval_uses & REFLEX_USE_STOP) && stops(rule->signal);

			/* A stop is recorded before it is sent, with when its
			 * SIGCONT is due: after the pause, or else when reflex
			 * stops. A process is never stopped without its resume
			 * listed, and user space works from the map, not the
			 * event, so a dropped event loses no resume. */
			if (stop)
				ret = record_stop(whom, rule);
			if (!ret) {
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
				/* A failed send leaves its entry: a stop sent
				 * earlier may still be on its way (from a perf
				 * event's NMI, bpf_send_signal defers to an
				 * irq_work, and a second send finds it busy). A
				 * resume too many is harmless; one too few is not. */
				if (stop && !ret)
					count(REFLEX_STAT_PAUSED);
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

	count_decision(set, rule->id, action);

	struct reflex_scratch *slot = take_scratch();
	struct reflex_event *e;

	if (!slot) {
		count(REFLEX_STAT_DROPPED);
		return verdict;
	}
	e = &slot->e;
	__u64 uid_gid = bpf_get_current_uid_gid();

	__builtin_memset(e, 0, offsetof(struct reflex_event, strings));
	e->boot_ns = bpf_ktime_get_boot_ns();
	e->cgroup_id = bpf_get_current_cgroup_id();
	for (int i = 0; i < 6; i++)
		e->args[i] = values[i];
	if (ci->exit) {
		e->exit = 1;
		e->ret = values[REFLEX_VALUE_RET];
		e->duration_ns = values[REFLEX_VALUE_DURATION];
	}
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

	/* Who, what, where (identity.h). */
	if (describe) {
		slot->file = (__u64)ci->file;
		slot->target = (__u64)ci->target;
		slot->path = (__u64)ci->path;
		slot->saved_path = (__u64)ci->saved_path;
		slot->argv = (__u64)ci->argv;
		slot->target_pid = ci->target_pid;
		reflex_describe();
	} else {
		e->target_pid = ci->target_pid;
	}

	/* The header and the strings in use (`end` is at most REFLEX_STR_MAX *
	 * REFLEX_STRING_MAX; the mask says so). */
	__u64 size = offsetof(struct reflex_event, strings) + (e->end & (REFLEX_STRINGS_AREA - 1));
	/* The first record into an empty buffer wakes the reader (asleep with no
	 * timer when nothing happens); after that, only a buffer an eighth full
	 * does: the reader, once woken, looks again on a short timer while
	 * records keep coming (wake_at in state.h). */
	__u64 waiting = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);
	__u64 wake = waiting == 0 || waiting >= wake_at ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;

	if (bpf_ringbuf_output(&events, e, size, wake))
		count(REFLEX_STAT_DROPPED);
	slot->busy = 0;
	return verdict;
}

#endif /* __REFLEX_ACT_H */
