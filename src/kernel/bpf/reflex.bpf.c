// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * reflex kernel side: answer a watched syscall, security hook or sample in
 * the kernel, with a signal or a refusal, before the caller runs another
 * user-space instruction. This file holds the programs; what they share is
 * in the headers beside it: the boundary (reflex.h), the constants and maps
 * (state.h), the caller (caller.h), the matcher (match.h), what an event
 * names (identity.h), carrying a rule out (act.h).
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

#include "state.h"
#include "caller.h"
#include "match.h"
#include "identity.h"
#include "act.h"

/* Force the boundary types into BTF so the skeleton exports them. */
struct reflex_event _reflex_event = {};
struct reflex_stats _reflex_stats = {};
struct reflex_rule_stats _reflex_rule_stats = {};
enum reflex_action _reflex_action = 0;
enum reflex_skip _reflex_skip = 0;
enum reflex_target _reflex_target = 0;
enum reflex_stat _reflex_stat = 0;
enum reflex_verdict _reflex_verdict = 0;
enum reflex_handler _reflex_handler = 0;
enum reflex_dim _reflex_dim = 0;
enum reflex_use _reflex_use = 0;
enum reflex_check_op _reflex_check_op = 0;
enum reflex_protect _reflex_protect = 0;
enum reflex_limit _reflex_limit = 0;
enum reflex_hook _reflex_hook = 0;
enum reflex_rate_by _reflex_rate_by = 0;
enum reflex_to _reflex_to = 0;
enum reflex_value _reflex_value = 0;
struct reflex_start _reflex_start = {};
struct reflex_rate_key _reflex_rate_key = {};
struct reflex_test_call _reflex_test_call = {};
struct reflex_disarm _reflex_disarm = {};
struct reflex_disarm_key _reflex_disarm_key = {};
enum reflex_disarm_by _reflex_disarm_by = 0;
enum reflex_string _reflex_string = 0;
enum reflex_identity _reflex_identity = 0;
enum reflex_arg_kind _reflex_arg_kind = 0;

/* --tree: whether the caller descends from the process named (looked for
 * up to REFLEX_ANCESTOR_DEPTH generations). */
static __always_inline bool in_tree(struct task_struct *task)
{
	struct task_struct *p = BPF_CORE_READ(task, real_parent);

	for (int i = 0; i < REFLEX_ANCESTOR_DEPTH && p; i++) {
		__u32 tgid = BPF_CORE_READ(p, tgid);

		if (tgid == scope_tree)
			return true;
		if (tgid <= 1)
			return false;
		p = BPF_CORE_READ(p, real_parent);
	}
	return false;
}

/* What a syscall's arguments point to (its table entry says which), for
 * the event. User memory is read only at the entry: at an exit, the path
 * read then is used instead. */
static __always_inline void pointed_to(const struct reflex_syscall *sc, const __u64 *values,
				       struct call_info *ci)
{
	__u8 a = sc->path_arg;

	if (a < 6 && !ci->exit)
		ci->path = (const void *)values[a];
	a = sc->argv_arg;
	if (a < 6 && !ci->exit)
		ci->argv = (const void *)values[a];
	a = sc->target_arg;
	if (a < 6 && (__s32)values[a] > 0)
		ci->target_pid = (__u32)values[a];
	if (ci->exec_regs)
		ci->argv = exec_argv();
}

/*
 * Finds the rule of `sc` that answers this call, if any, and carries it out.
 * `values`: REFLEX_VALUES of them (the arguments; at an exit, then what it
 * returned and how long it took). Returns what a security hook must return.
 */
static __always_inline int evaluate(const struct reflex_syscall *sc, __u32 set, long nr,
				    const __u64 *values, struct call_info *ci, bool kfuncs)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 ppid = 0; /* read when first needed */
	struct reflex_rule *rule;
	__u64 file[2] = {};

	if (scope_ppid) {
		ppid = BPF_CORE_READ(task, real_parent, tgid);
		if (ppid != scope_ppid)
			return 0;
	}
	if (scope_tree && !in_tree(task))
		return 0;
	if (ci->file)
		file_key(ci->file, file);
	rule = find_rule(sc, set, nr, values, file, task, pid_tgid, &ppid, false, NULL);
	if (!rule)
		return 0;
	pointed_to(sc, values, ci);
	return act(rule, set, nr, values, ci, task, pid_tgid,
		   ppid ?: BPF_CORE_READ(task, real_parent, tgid), kfuncs);
}

static const struct timed_path no_path = {};

/* Exit rules on this syscall: remember when this thread entered it, its
 * arguments, and the path one points to. */
static __always_inline void time_entry(const struct reflex_syscall *sc, long nr, __u32 set,
				       const __u64 *args)
{
	__u32 tid;
	struct reflex_start start;
	struct timed_path *saved;
	__u8 a = sc->path_arg;

	/* Calls no exit rule times pay nothing here (the helpers below are
	 * calls the compiler cannot move past this test). */
	if (!sc->timed)
		return;
	tid = (__u32)bpf_get_current_pid_tgid();
	start = (struct reflex_start){.ns = bpf_ktime_get_ns(), .nr = nr, .set = set};
	for (int i = 0; i < 6; i++)
		start.args[i] = args[i];
	bpf_map_update_elem(&starts, &tid, &start, BPF_ANY);
	if (a >= 6)
		return;
	saved = bpf_map_lookup_elem(&timed_paths, &tid);
	if (!saved) {
		bpf_map_update_elem(&timed_paths, &tid, &no_path, BPF_ANY);
		saved = bpf_map_lookup_elem(&timed_paths, &tid);
	}
	if (saved &&
	    bpf_probe_read_user_str(saved->path, sizeof(saved->path), (const void *)args[a]) < 0)
		saved->path[0] = 0;
}

/* At a timed syscall's exit: the exit rules, with the arguments from the
 * entry, what it returned and the time since entry (ns). */
static __always_inline int on_exit(long nr, long retval, __u8 kind)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid(), idx;
	struct reflex_start *start = bpf_map_lookup_elem(&starts, &tid);
	const struct reflex_syscall *sc;
	struct call_info ci = {.exit = true};
	__u64 values[REFLEX_VALUES] = {};
	struct timed_path *saved;
	__u32 set;

	if (!start)
		return 0;
	if (nr < 0)
		nr = start->nr; /* the raw hook does not know it */
	if (start->nr != nr || nr >= REFLEX_EXIT_BASE) {
		bpf_map_delete_elem(&starts, &tid);
		return 0;
	}
	values[REFLEX_VALUE_DURATION] = bpf_ktime_get_ns() - start->ns;
	values[REFLEX_VALUE_RET] = retval;
	for (int i = 0; i < 6; i++)
		values[i] = start->args[i];
	/* The set the call entered with answers it, as for entry rules. */
	set = start->set & 1;
	bpf_map_delete_elem(&starts, &tid);
	saved = bpf_map_lookup_elem(&timed_paths, &tid);
	idx = set * REFLEX_MAX_SYSCALLS + REFLEX_EXIT_BASE + (__u32)nr;
	sc = bpf_map_lookup_elem(&syscalls, &idx);
	if (sc && sc->handler == kind && sc->rules) {
		ci.saved_path = saved ? saved->path : NULL;
		evaluate(sc, set, REFLEX_EXIT_BASE + nr, values, &ci, false);
	}
	if (saved)
		bpf_map_delete_elem(&timed_paths, &tid);
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
	time_entry(sc, nr, set, call->args);
	if (!sc->rules)
		return 0;
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

/* The evaluation a tracepoint stub hands over in `calls`. */
static __always_inline int evaluate_handed(bool kfuncs)
{
	__u32 zero = 0, set, idx;
	struct reflex_call *call = bpf_map_lookup_elem(&calls, &zero);
	const struct reflex_syscall *sc;
	__u64 values[REFLEX_VALUES] = {};
	struct call_info ci = {};

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
		values[i] = call->args[i];
	evaluate(sc, set, call->nr, values, &ci, kfuncs);
	return 0;
}

SEC("tp")
int reflex_tp_eval(void *ctx)
{
	return evaluate_handed(task_kfuncs);
}

/* A syscall's arguments from its registers, for the fentry and raw hooks
 * (`regs` is a BTF pointer there: plain loads, no helper calls). Registers
 * past the syscall's arguments hold leftovers: zeros are reported, as the
 * per-syscall tracepoints do. */
static __always_inline void regs_args(struct pt_regs *regs, const struct reflex_syscall *sc,
				      __u64 *args)
{
	args[0] = PT_REGS_PARM1_SYSCALL(regs);
	args[1] = PT_REGS_PARM2_SYSCALL(regs);
	args[2] = PT_REGS_PARM3_SYSCALL(regs);
	args[3] = PT_REGS_PARM4_SYSCALL(regs);
	args[4] = PT_REGS_PARM5_SYSCALL(regs);
	args[5] = PT_REGS_PARM6_SYSCALL(regs);
	for (int i = 0; i < 6; i++)
		if (i >= sc->nargs)
			args[i] = 0;
}

/*
 * fentry on a watched syscall's own function (`__x64_sys_<name>`): the rest
 * of the machine's syscalls pay nothing (no tracepoint slow path), the
 * watched one a trampoline. One stub per syscall: user space loads this
 * program's instructions again for each function (the attach target is
 * fixed at load) and attaches each; every stub hands the call to the
 * evaluator by tail call, so that the rule evaluation is verified once per
 * function prototype. The targets named here are placeholders.
 */
#if defined(__TARGET_ARCH_x86)
#define SYSCALL_NR(regs) ((long)(regs)->orig_ax)
#elif defined(__TARGET_ARCH_arm64)
#define SYSCALL_NR(regs) ((long)(regs)->syscallno)
#endif

/* A watched call's number, rule set and arguments, read from its
 * registers. */
static __always_inline const struct reflex_syscall *fentry_call(struct pt_regs *regs, long *nr,
								__u32 *set, __u64 *args)
{
	const struct reflex_syscall *sc;

	*nr = SYSCALL_NR(regs);
	sc = watched(*nr, REFLEX_HANDLER_FENTRY, set);
	if (sc)
		regs_args(regs, sc, args);
	return sc;
}

SEC("?fentry/__x64_sys_ptrace")
int BPF_PROG(reflex_fentry, struct pt_regs *regs)
{
	__u64 args[6];
	__u32 set;
	long nr;
	const struct reflex_syscall *sc = fentry_call(regs, &nr, &set, args);

	if (!sc)
		return 0;
	time_entry(sc, nr, set, args);
	if (!sc->rules)
		return 0;
	bpf_tail_call(ctx, &fentry_eval, 0);
	return 0;
}

/* The evaluator reads the call from its registers again (the tail call
 * hands it the same context) rather than from the per-CPU slot the
 * tracepoint stubs use: a program on a BPF trampoline runs with migration
 * disabled, not preemption, so another thread's stub on this CPU could
 * overwrite a slot between this call's stub and its evaluation. If a
 * reload switched sets in between, the new set answers the call. */
SEC("?fentry/__x64_sys_ptrace")
int BPF_PROG(reflex_fentry_eval, struct pt_regs *regs)
{
	__u64 values[REFLEX_VALUES] = {};
	struct call_info ci = {};
	__u32 set;
	long nr;
	const struct reflex_syscall *sc = fentry_call(regs, &nr, &set, values);

	if (!sc || !sc->rules)
		return 0;
	evaluate(sc, set, nr, values, &ci, task_kfuncs);
	return 0;
}

/* fexit on a timed syscall's function, for exit rules: loaded again for
 * each function, as the stubs are. */
SEC("?fexit/__x64_sys_ptrace")
int BPF_PROG(reflex_fexit, struct pt_regs *regs, long ret)
{
	return on_exit(SYSCALL_NR(regs), ret, REFLEX_HANDLER_FENTRY);
}

/* One program on the raw sys_enter tracepoint: sees every syscall, so the
 * first thing it does is drop the unwatched ones. */
static __always_inline int on_raw(struct pt_regs *regs, long nr, bool kfuncs)
{
	__u64 values[REFLEX_VALUES] = {};
	struct call_info ci = {};
	__u32 set;
	const struct reflex_syscall *sc = watched(nr, REFLEX_HANDLER_RAW, &set);

	if (!sc)
		return 0;
	regs_args(regs, sc, values);
	time_entry(sc, nr, set, values);
	if (!sc->rules)
		return 0;
	evaluate(sc, set, nr, values, &ci, kfuncs);
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
	__u64 values[REFLEX_VALUES] = {};
	struct call_info ci = {};
	__u32 set;
	const struct reflex_syscall *sc = watched(REFLEX_HOOK_SAMPLE, REFLEX_HANDLER_PERF, &set);

	if (!sc || !sc->rules)
		return 0;
	/* The idle task and kernel threads are never sampled: no event. */
	if (!(bpf_get_current_pid_tgid() >> 32) || (BPF_CORE_READ(task, flags) & PF_KTHREAD))
		return 0;
	evaluate(sc, set, REFLEX_HOOK_SAMPLE, values, &ci, false);
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

static __always_inline int on_hook(long hook, __u64 a0, __u64 a1, struct call_info *ci)
{
	__u64 values[REFLEX_VALUES] = {a0, a1};
	__u32 set;
	const struct reflex_syscall *sc = watched(hook, REFLEX_HANDLER_LSM, &set);

	if (!sc)
		return 0;
	return lsm_return(evaluate(sc, set, hook, values, ci, false));
}

SEC("?lsm/ptrace_access_check")
int BPF_PROG(reflex_lsm_ptrace, struct task_struct *child, unsigned int mode, int ret)
{
	struct call_info ci = {.target = child};

	if (ret)
		return ret;
	return on_hook(REFLEX_HOOK_PTRACE, child->tgid, mode, &ci);
}

SEC("?lsm/bprm_check_security")
int BPF_PROG(reflex_lsm_exec, struct linux_binprm *bprm, int ret)
{
	struct call_info ci = {.file = bprm->file, .exec_regs = true};

	if (ret)
		return ret;
	return on_hook(REFLEX_HOOK_EXEC, 0, 0, &ci);
}

SEC("?lsm/file_open")
int BPF_PROG(reflex_lsm_open, struct file *file, int ret)
{
	struct call_info ci = {.file = file};

	if (ret)
		return ret;
	return on_hook(REFLEX_HOOK_OPEN, 0, file->f_flags, &ci);
}

SEC("?lsm/task_kill")
int BPF_PROG(reflex_lsm_kill, struct task_struct *p, struct kernel_siginfo *info, int sig,
	     const struct cred *cred, int ret)
{
	struct call_info ci = {.target = p};

	if (ret)
		return ret;
	return on_hook(REFLEX_HOOK_KILL, p->tgid, sig, &ci);
}

SEC("?lsm/kernel_read_file")
int BPF_PROG(reflex_lsm_module_file, struct file *file, enum kernel_read_file_id id, bool contents,
	     int ret)
{
	if (ret)
		return ret;
	struct call_info ci = {.file = file};

	if (id != READING_MODULE)
		return 0;
	return on_hook(REFLEX_HOOK_MODULE, 0, 0, &ci);
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
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;

	struct call_info ci = {};

	if (tgid == reflex_tgid || (helper_tgid && tgid == helper_tgid))
		return 0;
	return on_hook(REFLEX_HOOK_BPF, cmd, 0, &ci);
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
	struct call_info ci = {};

	if (id != LOADING_MODULE)
		return 0;
	return on_hook(REFLEX_HOOK_MODULE, 0, 0, &ci);
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

/*
 * Matcher test only, never attached: runs find_rule on the call described
 * in `test_calls` (BPF_PROG_TEST_RUN) and returns the answering rule's index
 * plus one, or 0 when no rule answers. Nothing is carried out.
 */
SEC("?raw_tp")
int reflex_test_match(void *ctx)
{
	__u32 zero = 0, idx, set, ppid = 0;
	const struct reflex_test_call *c = bpf_map_lookup_elem(&test_calls, &zero);
	const struct reflex_syscall *sc;
	struct reflex_rule *rule;

	if (!c || c->index >= REFLEX_MAX_SYSCALLS)
		return 0;
	set = c->set & 1;
	idx = set * REFLEX_MAX_SYSCALLS + c->index;
	sc = bpf_map_lookup_elem(&syscalls, &idx);
	if (!sc || !sc->rules)
		return 0;
	rule = find_rule(sc, set, c->index, c->args, c->file, NULL, 0, &ppid, true, c);
	return rule ? rule->id + 1 : 0;
}
