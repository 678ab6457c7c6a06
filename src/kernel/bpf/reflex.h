/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Everything that crosses the kernel/user boundary, defined once.
 *
 * The BPF programs include this header; the Rust side gets the same
 * definitions from the skeleton that libbpf-cargo generates out of the
 * object's BTF (`kernel::types`). Never copy these by hand into Rust.
 *
 * Rules live in two rule sets (0 and 1). Programs read `state.active` once
 * per call and use only that set; user space writes the inactive set and then
 * flips `active`, so a reload is one atomic switch.
 */
#ifndef __REFLEX_H
#define __REFLEX_H

/*
 * Sizes and limits. An enum, not #defines, so that they reach BTF and the
 * Rust side reads the same numbers (`types::reflex_limit`).
 */
enum reflex_limit {
	REFLEX_COMM_LEN = 16,
	REFLEX_SETS = 2,
	/* Table entries: syscall entries below REFLEX_FIRST_HOOK, then the
	 * security hooks and the sampler (enum reflex_hook), then from
	 * REFLEX_EXIT_BASE the syscall exits (REFLEX_EXIT_BASE + number). */
	REFLEX_MAX_SYSCALLS = 1024,
	REFLEX_FIRST_HOOK = 480,
	REFLEX_EXIT_BASE = 512,
	/* Rules in one rule set. */
	REFLEX_MAX_RULES = 1024,
	/* Rules on one syscall: the bits of a 64-bit mask. */
	REFLEX_SLOTS = 64,
	/* Mask, range and "protected" argument checks per rule. */
	REFLEX_MAX_CHECKS = 4,
	/* Rules with such checks on one syscall. */
	REFLEX_MAX_CHECKED = 16,
	/* Selector entries (syscall, selector, value), both rule sets together. */
	REFLEX_MAX_MATCHES = 16384,
	/* Processes kept in the protected set. */
	REFLEX_MAX_PROTECTED = 16384,
	/* Protected executables and cgroups. */
	REFLEX_MAX_PROTECT_OBJECTS = 1024,
	/* Cgroup ancestor levels a cgroup selector may name (depth below the root). */
	REFLEX_CGROUP_LEVELS = 16,
	/* Threads whose timed syscall is in flight. */
	REFLEX_MAX_TIMED = 65536,
	/* (install's rule, group) rate counters. */
	REFLEX_MAX_RATES = 16384,
	/* Processes stopped by reflex, awaiting their SIGCONT. */
	REFLEX_MAX_PAUSED = 4096,
	/* (install's rule, what it acted on) pairs a circuit breaker remembers. */
	REFLEX_MAX_DISARM_SEEN = 16384,
	/* Most distinct things a circuit breaker allows. */
	REFLEX_MAX_DISARM_DISTINCT = 1024,
	/* Values a call is matched on: the six argument registers, then (at a
	 * syscall's exit) what it returned and how long it took (ns). */
	REFLEX_VALUES = 8,
	REFLEX_VALUE_RET = 6,
	REFLEX_VALUE_DURATION = 7,
	/* Bytes of each string an event carries (enum reflex_string). */
	REFLEX_STRING_MAX = 256,
	/* A power of two above every string's maximum together: an index into
	 * the packed strings, masked by it less one, is always in bounds. */
	REFLEX_STRINGS_AREA = 4096,
	/* Path components walked from a file up to its root. */
	REFLEX_PATH_DEPTH = 16,
	/* Cgroup path components walked up to the root cgroup. */
	REFLEX_CGROUP_DEPTH = 16,
	/* Ancestors an event names (pid, executable): the parent first. */
	REFLEX_ANCESTORS = 4,
	/* Ancestors `ancestor:` selectors (and --tree) look through. */
	REFLEX_ANCESTOR_DEPTH = 16,
	/* Arguments of an exec's new command line read from user memory. */
	REFLEX_EXEC_ARGS = 16,
	/* Threads in a timed syscall whose path argument waits for the exit. */
	REFLEX_MAX_TIMED_PATHS = 4096,
};

/*
 * Security hooks (BPF-LSM), numbered after the syscalls so that rules on them
 * use the same tables. What each puts in the rule arguments:
 */
enum reflex_hook {
	REFLEX_HOOK_PTRACE = 480, /* ptrace_access_check: arg0 target tgid, arg1 PTRACE_MODE_* */
	REFLEX_HOOK_EXEC = 481,	  /* bprm_check_security: the file (REFLEX_DIM_FILE) */
	REFLEX_HOOK_OPEN = 482,	  /* file_open: the file, arg1 f_flags */
	REFLEX_HOOK_KILL = 483,	  /* task_kill: arg0 target tgid, arg1 signal */
	REFLEX_HOOK_MODULE = 484, /* kernel_read_file, kernel_load_data: a module */
	REFLEX_HOOK_SAMPLE = 485, /* perf_event cpu-clock sampling: no arguments */
	REFLEX_HOOK_BPF = 486,	  /* bpf: arg0 the command (BPF_PROG_LOAD, ...) */
	REFLEX_HOOK_END = 487,
};

/* What the kernel program did about a matched call. */
enum reflex_action {
	REFLEX_ACTION_SIGNALLED = 1,	/* helper returned 0 */
	REFLEX_ACTION_FAILED = 2,	/* helper returned -errno (in `result`) */
	REFLEX_ACTION_WOULD_SIGNAL = 3, /* monitor mode */
	REFLEX_ACTION_SKIPPED = 4,	/* a safety rule refused; see `skip` */
	REFLEX_ACTION_AUDITED = 5,	/* the rule only reports */
	REFLEX_ACTION_DENIED = 6,	/* the hook refused the operation (`error`) */
	REFLEX_ACTION_WOULD_DENY = 7,	/* monitor mode */
	REFLEX_ACTION_DISARMED = 8,	/* the rule's circuit breaker is open: audited instead */
	REFLEX_ACTION_MAX = 9,
};

/* Why a matched call was not acted upon. */
enum reflex_skip {
	REFLEX_SKIP_NONE = 0,
	REFLEX_SKIP_INIT = 1,	   /* the caller is pid 1 */
	REFLEX_SKIP_KTHREAD = 2,   /* the caller is a kernel thread */
	REFLEX_SKIP_SELF = 3,	   /* the caller is reflex itself */
	REFLEX_SKIP_PROTECTED = 4, /* the caller is in the protected set */
	/* The same, of the task a `to:` rule would signal. */
	REFLEX_SKIP_TARGET_INIT = 5,
	REFLEX_SKIP_TARGET_KTHREAD = 6,
	REFLEX_SKIP_TARGET_SELF = 7,
	REFLEX_SKIP_TARGET_PROTECTED = 8,
};

/* How the signal is aimed. */
enum reflex_target {
	REFLEX_TARGET_PROCESS = 0, /* bpf_send_signal: the whole thread group */
	REFLEX_TARGET_THREAD = 1,  /* bpf_send_signal_thread: the calling thread */
};

/* What a rule does when it matches. */
enum reflex_verdict {
	REFLEX_VERDICT_AUDIT = 1,  /* report only */
	REFLEX_VERDICT_SIGNAL = 2, /* send `signal` to `target` */
	REFLEX_VERDICT_DENY = 3,   /* refuse with -`error` (hooks only), and send `signal` if set */
};

/* Which program answers a syscall (only one does, per rule set). */
enum reflex_handler {
	REFLEX_HANDLER_NONE = 0,
	REFLEX_HANDLER_TRACEPOINT = 1, /* tp/syscalls/sys_enter_<name>, one link per syscall */
	REFLEX_HANDLER_RAW = 2,	       /* tp_btf/sys_enter, one link for all syscalls */
	REFLEX_HANDLER_LSM = 3,	       /* a BPF-LSM program on the hook */
	REFLEX_HANDLER_PERF = 4,       /* the sampler */
	REFLEX_HANDLER_FENTRY = 5,     /* fentry on the syscall's function, one link per syscall */
};

/* Selector dimensions: what a rule can constrain with a value lookup. */
enum reflex_dim {
	REFLEX_DIM_PID = 0,
	REFLEX_DIM_PPID,
	REFLEX_DIM_UID,
	REFLEX_DIM_GID,
	REFLEX_DIM_ARG0,
	REFLEX_DIM_ARG1,
	REFLEX_DIM_ARG2,
	REFLEX_DIM_ARG3,
	REFLEX_DIM_ARG4,
	REFLEX_DIM_ARG5,
	REFLEX_DIM_COMM,
	REFLEX_DIM_CGROUP,
	REFLEX_DIM_EXE,
	REFLEX_DIM_PARENT_EXE,
	REFLEX_DIM_FILE,	 /* a hook's file: inode, device */
	REFLEX_DIM_RET,		 /* at a syscall's exit: what it returned */
	REFLEX_DIM_ANCESTOR,	 /* some ancestor's tgid (up to REFLEX_ANCESTOR_DEPTH) */
	REFLEX_DIM_ANCESTOR_EXE, /* some ancestor's executable: inode, device */
	REFLEX_DIM_MAX,
};

/*
 * What the rule sets an evaluator serves use, besides their selectors
 * (eval_uses in state.h): code for anything else is left out when the
 * evaluator is verified.
 */
enum reflex_use {
	REFLEX_USE_CHECKS = 1 << 0, /* argument and "protected" checks */
	REFLEX_USE_RATE = 1 << 1,   /* rates */
	REFLEX_USE_TO = 1 << 2,	    /* signals to another task */
	REFLEX_USE_DISARM = 1 << 3, /* circuit breakers */
	REFLEX_USE_STOP = 1 << 4,   /* stopping signals (listed for resumption) */
};

/* Per (rule set, syscall): which rules apply and how to narrow them. */
struct reflex_syscall {
	__u64 rules;		       /* slots in use */
	__u64 checked;		       /* slots whose rule has argument checks */
	__u64 free[REFLEX_DIM_MAX];    /* rules that do not constrain the dim */
	__u64 negated[REFLEX_DIM_MAX]; /* rules whose constraint on the dim is "not" */
	__u16 rule[REFLEX_SLOTS];      /* slot -> rule index; slot order is precedence */
	__u32 dims;		       /* bit d: some rule constrains dim d */
	__u32 cgroup_levels;	       /* bit l: some cgroup selector names a cgroup at depth l */
	__u8 handler;		       /* enum reflex_handler */
	__u8 nargs; /* arguments the syscall takes; the raw hook zeroes the rest */
	__u8 timed; /* exit rules on this syscall: record each entry's time */
	/* Where the syscall's arguments point (REFLEX_ARG_NONE: nowhere): */
	__u8 path_arg;	 /* a path (open, exec, ...), read from user memory */
	__u8 argv_arg;	 /* an exec's argv array */
	__u8 target_arg; /* the pid acted on (kill, ptrace) */
	__u8 _pad[2];
};

/* Key of the selector map: does `value` of `dim` satisfy rules on `nr`? */
struct reflex_match_key {
	__u32 nr;
	__u8 set;
	__u8 dim; /* enum reflex_dim */
	__u16 _pad;
	__u64 value[2]; /* ids in value[0]; comm bytes; exe: inode, device */
};

/* Rules (slot bits) that list the value, and rules that exclude it. */
struct reflex_match {
	__u64 pos;
	__u64 neg;
};

/* Argument checks that a lookup cannot do, evaluated per candidate rule. */
enum reflex_check_op {
	REFLEX_CHECK_NONE = 0,
	REFLEX_CHECK_MASK_ANY = 1,  /* arg & a != 0 */
	REFLEX_CHECK_MASK_ALL = 2,  /* arg & a == a */
	REFLEX_CHECK_MASK_NONE = 3, /* arg & a == 0 */
	REFLEX_CHECK_RANGE = 4,	    /* a <= arg <= b */
	REFLEX_CHECK_NOT_RANGE = 5, /* arg < a || arg > b */
	REFLEX_CHECK_PROTECTED = 6, /* arg is the pid of a protected process */
	REFLEX_CHECK_NOT_PROTECTED = 7,
};

struct reflex_check {
	__u8 op;  /* enum reflex_check_op */
	__u8 arg; /* 0..5 */
	__u8 _pad[6];
	__u64 a;
	__u64 b;
};

struct reflex_rule {
	__u32 id;     /* index in its rule set, reported in events */
	__s32 signal; /* 0: none (a deny without signal) */
	__u8 verdict; /* enum reflex_verdict */
	__u8 target;  /* enum reflex_target */
	__u8 monitor; /* report what would be done, do nothing */
	__u8 nchecks;
	__s32 error;	      /* deny: the errno returned */
	__u64 rate_window_ns; /* 0: no rate condition */
	__u32 rate_over;      /* act on calls past this many in a window */
	__u8 rate_by;	      /* enum reflex_rate_by */
	__u8 to;	      /* enum reflex_to */
	__u8 value_kind;      /* enum reflex_value */
	__u8 _pad;
	__u32 to_pid;	  /* REFLEX_TO_PID */
	__u32 generation; /* the install that wrote it: events name rules by it */
	__u64 value;	  /* si_value, REFLEX_VALUE_NUMBER */
	__u64 pause_ns;	  /* SIGSTOP now; user space sends SIGCONT after this long */
	/* Circuit breaker: past this many distinct `disarm_by` acted on within
	 * the window, the rule audits instead until the next install (0: none). */
	__u64 disarm_window_ns;
	__u32 disarm_distinct;
	__u8 disarm_by; /* enum reflex_disarm_by */
	__u8 _pad2[3];
	struct reflex_check checks[REFLEX_MAX_CHECKS];
};

/* What a circuit breaker counts as distinct. */
enum reflex_disarm_by {
	REFLEX_DISARM_EXECUTABLE = 0,
	REFLEX_DISARM_CGROUP = 1,
	REFLEX_DISARM_PROCESS = 2,
};

/* A circuit breaker's state, per install's rule. */
struct reflex_disarm_key {
	__u32 rule;
	__u32 generation;
};

struct reflex_disarm {
	__u64 window_start; /* bpf_ktime_get_ns() */
	__u64 distinct;	    /* distinct things acted on in the window */
	__u64 open;	    /* 1: tripped; the rule audits until the next install */
};

/* One thing a circuit breaker has seen, and when (bpf_ktime_get_ns()). */
struct reflex_disarm_seen_key {
	__u32 rule;
	__u32 generation;
	__u64 what[2];
};

/* Rate conditions: what counts as one group. */
enum reflex_rate_by {
	REFLEX_RATE_PROCESS = 0,
	REFLEX_RATE_PARENT = 1,
	REFLEX_RATE_SESSION = 2,
	REFLEX_RATE_CGROUP = 3,
};

/* Whom a rule's signal goes to. */
enum reflex_to {
	REFLEX_TO_CALLER = 0,
	REFLEX_TO_PARENT = 1, /* bpf_send_signal_task (6.13+) */
	REFLEX_TO_PID = 2,    /* bpf_send_signal_task (6.13+) */
};

/* The si_value sent with a signal to another task. */
enum reflex_value {
	REFLEX_VALUE_NUMBER = 0,
	REFLEX_VALUE_CALLER_PID = 1,
};

/* Global run-time state, one entry. */
struct reflex_state {
	__u32 active;		     /* the rule set in force: 0 or 1 */
	__u32 protect_cgroup_levels; /* depths of protected cgroups */
};

/* Why a process is in the protected set (bits). */
enum reflex_protect {
	REFLEX_PROTECT_PID = 1,	   /* listed by pid */
	REFLEX_PROTECT_EXE = 2,	   /* runs a protected executable */
	REFLEX_PROTECT_CGROUP = 4, /* lives in a protected cgroup */
};

/* A thread's timed syscall, from entry to exit. */
struct reflex_start {
	__u64 ns; /* bpf_ktime_get_ns() at entry */
	__s64 nr;
	__u32 set;
	__u32 _pad;
	__u64 args[6]; /* the arguments at entry: exit events carry them */
};

/* Where in a syscall's arguments nothing is (struct reflex_syscall). */
enum reflex_arg_kind {
	REFLEX_ARG_NONE = 0xff,
};

/*
 * The strings of an event, each in its own slot of `strings`, `len` bytes
 * long (0: absent). A path is kept leaf first, each component followed by a
 * NUL ("python3\0bin\0usr\0" is /usr/bin/python3), up to the root of the
 * process's mount namespace, so that a full slot loses the top, not the
 * name. A command line is its arguments, each followed by a NUL.
 *
 * ARGV is last: it is the one read whole at the start of its slot; every
 * other slot is written in pieces, and a piece may run past its slot into
 * the next (which is written after it, or not at all and then has len 0).
 */
enum reflex_string {
	REFLEX_STR_EXE = 0,	 /* the caller's executable */
	REFLEX_STR_CGROUP,	 /* its cgroup v2, from the root */
	REFLEX_STR_FILE,	 /* the file executed or opened */
	REFLEX_STR_EXEC_ARGV,	 /* an exec's new command line */
	REFLEX_STR_TARGET_EXE,	 /* the executable of the process acted on */
	REFLEX_STR_ANCESTOR_EXE, /* + i: ancestor i's executable (0: the parent) */
	REFLEX_STR_ARGV =
		REFLEX_STR_ANCESTOR_EXE + REFLEX_ANCESTORS, /* the caller's command line */
	REFLEX_STR_MAX,
};

/* A process reflex stopped (a pause, or any stop signal): when user space
 * sends its SIGCONT, and why it stopped. */
struct reflex_pause {
	__u64 resume_at; /* bpf_ktime_get_boot_ns(); ~0: when reflex stops */
	__u32 rule;
	__u32 generation; /* of the rule, for its name */
};

/* A rate counter belongs to one install's rule: a reload starts every count
 * afresh (keyed by set slot, a rule installed two reloads later in the same
 * slot and index would inherit it). The rule fixes what `group` is. */
struct reflex_rate_key {
	__u32 rule;
	__u32 generation;
	__u64 group;
};

struct reflex_rate {
	__u64 start; /* window start, bpf_ktime_get_ns() */
	__u64 count;
};

/* An executable, as the kernel sees it. */
struct reflex_file_key {
	__u64 ino;
	__u32 dev; /* kernel dev_t: major << 20 | minor */
	__u32 _pad;
};

/* One decision, streamed through the `events` ring buffer. */
struct reflex_event {
	__u64 boot_ns; /* bpf_ktime_get_boot_ns() at the decision */
	__u64 cgroup_id;
	__u64 args[6];
	__u32 pid; /* thread group id, as user space sees it */
	__u32 tid;
	__u32 ppid; /* real_parent->tgid */
	__u32 uid;
	__u32 gid;
	__s32 syscall_nr; /* or enum reflex_hook */
	__s32 signal;
	__s32 result;	  /* 0, or -errno from the helper */
	__s32 error;	  /* deny: the errno returned to the caller */
	__u32 to_pid;	  /* the process signalled, when not the caller */
	__u64 count;	  /* rate rules: matching calls in the window */
	__u64 window_ns;  /* rate rules: the window */
	__u32 rule;	  /* index in rule set `set` */
	__u32 generation; /* of the rule: which install's names apply */
	__u8 set;
	__u8 action; /* enum reflex_action */
	__u8 skip;   /* enum reflex_skip */
	__u8 target; /* enum reflex_target */
	char comm[REFLEX_COMM_LEN];
	/* Who, where, what: read in the kernel at the decision, and true after
	 * the process is gone. */
	__s64 ret;	   /* at a syscall's exit: what it returned */
	__u64 duration_ns; /* at a syscall's exit: how long it took */
	__u64 start_ns;	   /* the process's start, on the boot-time clock (ns) */
	__u64 parent_start_ns;
	__u32 euid;
	__u32 auid;			   /* login uid; 4294967295: unset */
	__u32 sid;			   /* session id */
	__u32 target_pid;		   /* the process acted on (kill, ptrace), 0: none */
	__u32 ancestors[REFLEX_ANCESTORS]; /* tgids; [0]: the parent; 0 past the top */
	char parent_comm[REFLEX_COMM_LEN];
	char target_comm[REFLEX_COMM_LEN];
	__u16 off[REFLEX_STR_MAX]; /* where string s starts in `strings` */
	__u16 len[REFLEX_STR_MAX]; /* and its length */
	__u16 end;		   /* bytes of `strings` in use: the record ends there */
	__u16 _pad3;
	__u16 truncated; /* bit per enum reflex_string: cut at its slot's end */
	__u16 given;	 /* bit per string: as the caller wrote it (a syscall's
			  * argument), not a path walked from the kernel's dentries */
	__u8 identity;	 /* enum reflex_identity: what was read */
	__u8 exit;	 /* 1: at a syscall's exit (ret, duration_ns) */
	__u8 _pad2[2];
	/* The strings, packed one after another (at most REFLEX_STR_MAX *
	 * REFLEX_STRING_MAX bytes in use; the rest is room for the last write). */
	char strings[REFLEX_STRINGS_AREA + REFLEX_STRING_MAX];
};

/* What an event's identity holds (bits of reflex_event.identity). */
enum reflex_identity {
	REFLEX_ID_PROCESS = 1,	 /* exe, argv, start, euid, auid, sid, cgroup path */
	REFLEX_ID_ANCESTORS = 2, /* parent and ancestors */
	REFLEX_ID_TARGET = 4,	 /* target comm and exe (needs a task: a hook's, or a kfunc) */
};

/*
 * A call as the matcher test describes it: the caller's identity and the
 * arguments, so that the kernel's matcher runs (BPF_PROG_TEST_RUN) on calls
 * no real process makes. Read by reflex_test_match only.
 */
struct reflex_test_call {
	__u64 args[REFLEX_VALUES]; /* the arguments, then ret and duration */
	__u64 exe[2];		   /* inode, device */
	__u64 parent_exe[2];
	__u64 cgroups[REFLEX_CGROUP_LEVELS]; /* ancestor ids by level; 0 past the depth */
	__u64 comm[2];
	__u64 file[2]; /* a hook's file: inode, device */
	__u32 index;   /* table index */
	__u32 set;
	__u32 pid;
	__u32 ppid;
	__u32 uid;
	__u32 gid;
	__u32 ancestors[REFLEX_ANCESTOR_DEPTH]; /* tgids, the parent first; 0 past the top */
	__u64 ancestor_exes[REFLEX_ANCESTOR_DEPTH][2];
};

/* Per-CPU counters kept by the kernel side; user space sums the CPUs. */
enum reflex_stat {
	REFLEX_STAT_MATCHED = 0,
	REFLEX_STAT_SIGNALLED,
	REFLEX_STAT_FAILED,
	REFLEX_STAT_WOULD_SIGNAL,
	REFLEX_STAT_SKIPPED,
	REFLEX_STAT_AUDITED,
	REFLEX_STAT_DENIED,
	REFLEX_STAT_WOULD_DENY,
	REFLEX_STAT_PAUSED,
	REFLEX_STAT_DROPPED,  /* ring buffer reservation failed */
	REFLEX_STAT_DISARMED, /* matches audited because a circuit breaker was open */
	REFLEX_STAT_MAX,
};

struct reflex_stats {
	__u64 count[REFLEX_STAT_MAX];
};

/* Decisions of one rule of one rule set, by action (per CPU): what metrics
 * count, whether or not an event could be reported. */
struct reflex_rule_stats {
	__u64 count[REFLEX_ACTION_MAX];
};

#endif /* __REFLEX_H */
