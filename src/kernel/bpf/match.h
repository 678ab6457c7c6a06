/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The matcher: which rule, if any, answers a call. Constant work per
 * selector, whatever the number of rules.
 */
#ifndef __REFLEX_MATCH_H
#define __REFLEX_MATCH_H

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

/* Narrows `cand` by one selector dim; the value is computed only if used. */
#define NARROW(d, fill)                                                                            \
	do {                                                                                       \
		if ((eval_dims & (1U << (d))) && (sc->dims & (1U << (d)))) {                       \
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
	return pid == 1 || key == reflex_tgid || (helper_tgid && key == helper_tgid) ||
	       bpf_map_lookup_elem(&protected, &key);
}

static __always_inline bool checks_pass(const struct reflex_rule *rule, const __u64 *values)
{
	for (int i = 0; i < REFLEX_MAX_CHECKS; i++) {
		const struct reflex_check *c = &rule->checks[i];
		__u64 v;

		if (i >= rule->nchecks)
			break;
		if (c->arg >= REFLEX_VALUES)
			return false;
		v = values[c->arg];
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

/*
 * Some ancestor is, or runs, what a selector names: the rules of table entry
 * `sc` (point `nr` of set `set`) that its ancestor selectors leave, looking
 * each ancestor up, the parent first, up to REFLEX_ANCESTOR_DEPTH. `test`
 * as for find_rule().
 */
static __always_inline __u64 ancestor_mask(const struct reflex_syscall *sc, __u32 nr, __u32 set,
					   struct task_struct *task, const bool test,
					   const struct reflex_test_call *fake)
{
	struct reflex_match_key key = {.nr = nr, .set = set};
	__u64 pos_pid = 0, neg_pid = 0, pos_exe = 0, neg_exe = 0, cand = ~0ULL;
	struct task_struct *p = test ? NULL : BPF_CORE_READ(task, real_parent);

	for (int i = 0; i < REFLEX_ANCESTOR_DEPTH; i++) {
		__u32 tgid = test ? fake->ancestors[i] : (p ? BPF_CORE_READ(p, tgid) : 0);
		struct reflex_match *m;

		if (!tgid)
			break;
		if (sc->dims & (1U << REFLEX_DIM_ANCESTOR)) {
			key.dim = REFLEX_DIM_ANCESTOR;
			key.value[0] = tgid;
			key.value[1] = 0;
			m = bpf_map_lookup_elem(&matches, &key);
			if (m) {
				pos_pid |= m->pos;
				neg_pid |= m->neg;
			}
		}
		if (sc->dims & (1U << REFLEX_DIM_ANCESTOR_EXE)) {
			key.dim = REFLEX_DIM_ANCESTOR_EXE;
			if (test) {
				key.value[0] = fake->ancestor_exes[i][0];
				key.value[1] = fake->ancestor_exes[i][1];
			} else {
				file_key(BPF_CORE_READ(p, mm, exe_file), key.value);
			}
			m = bpf_map_lookup_elem(&matches, &key);
			if (m) {
				pos_exe |= m->pos;
				neg_exe |= m->neg;
			}
		}
		if (!test)
			p = BPF_CORE_READ(p, real_parent);
	}
	if (sc->dims & (1U << REFLEX_DIM_ANCESTOR))
		cand &= sc->free[REFLEX_DIM_ANCESTOR] | pos_pid |
			(sc->negated[REFLEX_DIM_ANCESTOR] & ~neg_pid);
	if (sc->dims & (1U << REFLEX_DIM_ANCESTOR_EXE))
		cand &= sc->free[REFLEX_DIM_ANCESTOR_EXE] | pos_exe |
			(sc->negated[REFLEX_DIM_ANCESTOR_EXE] & ~neg_exe);
	return cand;
}

/*
 * ancestor_mask() for the calling task, as a global function: the walk is
 * verified once per program, not along every path into the matcher (16
 * generations of lookups doubled the evaluator's verification).
 */
__attribute__((noinline)) __u64 reflex_ancestors(__u32 nr, __u32 set)
{
	__u32 idx = (set & 1) * REFLEX_MAX_SYSCALLS + (nr & (REFLEX_MAX_SYSCALLS - 1));
	const struct reflex_syscall *sc = bpf_map_lookup_elem(&syscalls, &idx);

	if (!sc)
		return 0;
	return ancestor_mask(sc, nr, set, (struct task_struct *)bpf_get_current_task(), false,
			     NULL);
}

/*
 * The rule of `sc` that answers this call, or NULL: for each selector some
 * rule on this table entry uses, one hash lookup of (entry, selector, value)
 * gives the rules it satisfies as a bit mask; the masks are ANDed, and the
 * lowest surviving bit is the rule that answers (after its few mask/range
 * checks, if it has any). `values` are the six arguments, then at a
 * syscall's exit what it returned and how long it took (REFLEX_VALUES).
 * `file` is a hook's file ([inode, device]; zeros elsewhere). `*ppid` is the
 * caller's parent once read (0 until then).
 *
 * `test` (a constant) makes the caller's identity come from `fake` instead
 * of the current task: the matcher test runs this very code on calls no
 * process makes. In every other program `test` is false and those branches
 * are compiled out.
 */
static __always_inline struct reflex_rule *find_rule(const struct reflex_syscall *sc, __u32 set,
						     long nr, const __u64 *values,
						     const __u64 *file, struct task_struct *task,
						     __u64 pid_tgid, __u32 *ppid, const bool test,
						     const struct reflex_test_call *fake)
{
	struct reflex_match_key key = {.nr = (__u32)nr, .set = set};
	__u64 cand = sc->rules;

	/* Cheapest values first: a mismatch stops before the costly reads. */
	NARROW(REFLEX_DIM_PID, key.value[0] = test ? fake->pid : pid_tgid >> 32);
	NARROW(REFLEX_DIM_PPID,
	       key.value[0] = test ? fake->ppid
				   : (*ppid = *ppid ?: BPF_CORE_READ(task, real_parent, tgid)));
	NARROW(REFLEX_DIM_UID, key.value[0] = test ? fake->uid : (__u32)bpf_get_current_uid_gid());
	NARROW(REFLEX_DIM_GID, key.value[0] = test ? fake->gid : bpf_get_current_uid_gid() >> 32);
	NARROW(REFLEX_DIM_ARG0, key.value[0] = values[0]);
	NARROW(REFLEX_DIM_ARG1, key.value[0] = values[1]);
	NARROW(REFLEX_DIM_ARG2, key.value[0] = values[2]);
	NARROW(REFLEX_DIM_ARG3, key.value[0] = values[3]);
	NARROW(REFLEX_DIM_ARG4, key.value[0] = values[4]);
	NARROW(REFLEX_DIM_ARG5, key.value[0] = values[5]);
	NARROW(REFLEX_DIM_RET, key.value[0] = values[REFLEX_VALUE_RET]);
	NARROW(REFLEX_DIM_FILE, key.value[0] = file[0]; key.value[1] = file[1]);
	NARROW(
		REFLEX_DIM_COMM, if (test) {
			key.value[0] = fake->comm[0];
			key.value[1] = fake->comm[1];
		} else bpf_get_current_comm(&key.value, sizeof(key.value)));
	NARROW(
		REFLEX_DIM_EXE, if (test) {
			key.value[0] = fake->exe[0];
			key.value[1] = fake->exe[1];
		} else file_key(BPF_CORE_READ(task, mm, exe_file), key.value));
	NARROW(
		REFLEX_DIM_PARENT_EXE, if (test) {
			key.value[0] = fake->parent_exe[0];
			key.value[1] = fake->parent_exe[1];
		} else file_key(BPF_CORE_READ(task, real_parent, mm, exe_file), key.value));

	if (eval_dims & sc->dims &
	    ((1U << REFLEX_DIM_ANCESTOR) | (1U << REFLEX_DIM_ANCESTOR_EXE))) {
		cand &= test ? ancestor_mask(sc, key.nr, set, task, true, fake)
			     : reflex_ancestors(key.nr, set);
		if (!cand)
			return 0;
	}

	if (eval_dims & sc->dims & (1U << REFLEX_DIM_CGROUP)) {
		/* In a cgroup means at it or below it: look up each ancestor
		 * level some selector names. */
		__u64 pos = 0, neg = 0;

		key.dim = REFLEX_DIM_CGROUP;
		key.value[1] = 0;
		for (int level = 0; level < REFLEX_CGROUP_LEVELS; level++) {
			struct reflex_match *m;

			if (!(sc->cgroup_levels & (1U << level)))
				continue;
			key.value[0] = test ? fake->cgroups[level] : ancestor_cgroup_id(level);
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
	__u64 unchecked = cand & ~sc->checked;
	__u64 first = unchecked & -unchecked;
	__u64 todo = cand & sc->checked & (first ? first - 1 : ~0ULL);

	if (!(eval_uses & REFLEX_USE_CHECKS))
		todo = 0; /* none of the rules has checks */
	for (int i = 0; i < REFLEX_MAX_CHECKED && todo; i++) {
		struct reflex_rule *rule = rule_at(sc, set, todo);

		todo &= todo - 1;
		if (rule && checks_pass(rule, values))
			return rule;
	}
	return first ? rule_at(sc, set, first) : NULL;
}

#endif /* __REFLEX_MATCH_H */
