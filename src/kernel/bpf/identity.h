/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Who, what and where: the identity an event carries, read in the kernel at
 * the decision (so it stays true after the process is gone). Only a decision
 * pays for it: nothing here runs for a call that no rule answers.
 */
#ifndef __REFLEX_IDENTITY_H
#define __REFLEX_IDENTITY_H

#define AREA_MASK (REFLEX_STRINGS_AREA - 1)

/* What a call is about, past its values: what its event names. */
struct call_info {
	struct file *file;	    /* a hook's file (exec, open) */
	struct task_struct *target; /* a hook's target task (ptrace, kill) */
	const void *path;	    /* a syscall's path argument (user memory) */
	const char *saved_path;	    /* at an exit: that path, read at the entry */
	const void *argv;	    /* an exec's argv array (user memory) */
	__u32 target_pid;	    /* a syscall's target pid (kill, ptrace) */
	bool exit;		    /* at a syscall's exit: values 6 and 7 are ret, duration */
	bool exec_regs;		    /* the exec hook: `argv` is in the syscall's registers */
};

/* 6.15 renamed kernfs_node's parent (now RCU-protected). */
struct kernfs_node___old {
	struct kernfs_node *parent;
} __attribute__((preserve_access_index));

static __always_inline struct kernfs_node *kn_parent(struct kernfs_node *kn)
{
	if (bpf_core_field_exists(struct kernfs_node___old, parent)) {
		struct kernfs_node___old *old = (void *)kn;

		return BPF_CORE_READ(old, parent);
	}
	return BPF_CORE_READ(kn, __parent);
}

/*
 * Strings are packed: string `s` starts where the last one ended (`end`)
 * and is at most REFLEX_STRING_MAX bytes, so an event carries only the bytes
 * it uses. put_*() open a string at `e->end` and close it with its length.
 */
static __always_inline __u32 open_string(struct reflex_event *e, int s)
{
	e->off[s] = e->end;
	return e->end;
}

static __always_inline void close_string(struct reflex_event *e, int s, __u32 len)
{
	e->len[s] = len;
	e->end += len;
}

/*
 * Appends the kernel (or user) string `name` and its NUL at `*off` in string
 * `s`, which starts at `base`. False when it does not fit (the string is
 * then cut before it) or cannot be read. A read may write past the string's
 * end: into room the next string overwrites.
 */
static __always_inline bool put_piece(struct reflex_event *e, int s, __u32 base, __u32 *off,
				      const void *name, bool user)
{
	__u32 o = *off;
	char *dst = &e->strings[(base + o) & AREA_MASK];
	long n;

	if (o >= REFLEX_STRING_MAX)
		return false;
	if (user)
		n = bpf_probe_read_user_str(dst, REFLEX_STRING_MAX, name);
	else
		n = bpf_probe_read_kernel_str(dst, REFLEX_STRING_MAX, name);
	if (n <= 0)
		return false;
	if (o + n > REFLEX_STRING_MAX) {
		e->truncated |= 1 << s;
		return false;
	}
	*off = o + n;
	return true;
}

/*
 * The path of (`d`, `vfsmnt`) into slot `s`, leaf first, up to the root of
 * the mount namespace it is in (crossing mount points). Cut (and marked so)
 * past REFLEX_PATH_DEPTH components or the slot's size.
 */
static __always_inline void put_path(struct reflex_event *e, int s, struct dentry *d,
				     struct vfsmount *vfsmnt)
{
	struct mount *mnt = (void *)vfsmnt - bpf_core_field_offset(struct mount, mnt);
	struct dentry *leaf = d, *root = BPF_CORE_READ(mnt, mnt.mnt_root);
	__u32 base = open_string(e, s), off = 0;
	int i;

	for (i = 0; i < REFLEX_PATH_DEPTH; i++) {
		struct dentry *parent = BPF_CORE_READ(d, d_parent);

		if (d == root) {
			struct mount *up = BPF_CORE_READ(mnt, mnt_parent);

			if (!up || up == mnt)
				break; /* the namespace's root */
			d = BPF_CORE_READ(mnt, mnt_mountpoint);
			mnt = up;
			root = BPF_CORE_READ(mnt, mnt.mnt_root);
			continue;
		}
		if (!d || d == parent)
			break; /* a filesystem's root, mounted nowhere */
		if (!put_piece(e, s, base, &off, BPF_CORE_READ(d, d_name.name), false))
			break;
		d = parent;
	}
	if (i == REFLEX_PATH_DEPTH)
		e->truncated |= 1 << s;
	/* A file at the root of a mount of its own that is mounted nowhere (a
	 * memfd, an anonymous inode): its name alone, as /proc says it. */
	if (!off && leaf)
		put_piece(e, s, base, &off, BPF_CORE_READ(leaf, d_name.name), false);
	close_string(e, s, off);
}

/*
 * The path of `file` into string `s` of the scratch record's event. A
 * global function, like reflex_describe(): the walk is verified once, not
 * once for each of the up to seven paths an event names.
 */
__attribute__((noinline)) int reflex_put_file(__u32 s, __u64 file)
{
	struct reflex_scratch *sc = current_scratch();
	struct file *f = (struct file *)file;

	if (!sc || !f || s >= REFLEX_STR_MAX)
		return 0;
	put_path(&sc->e, s, BPF_CORE_READ(f, f_path.dentry), BPF_CORE_READ(f, f_path.mnt));
	return 0;
}

/* `e` is the scratch record's event: every path is written there. */
static __always_inline void put_file(struct reflex_event *e, int s, struct file *file)
{
	reflex_put_file(s, (__u64)file);
}

/* The executable `task` runs (none for a kernel thread). */
static __always_inline void put_exe(struct reflex_event *e, int s, struct task_struct *task)
{
	struct mm_struct *mm = BPF_CORE_READ(task, mm);

	if (mm)
		put_file(e, s, BPF_CORE_READ(mm, exe_file));
}

/* The current task's cgroup v2 path, leaf first, without the root. */
static __always_inline void put_cgroup(struct reflex_event *e, struct task_struct *task)
{
	struct kernfs_node *kn = BPF_CORE_READ(task, cgroups, dfl_cgrp, kn);
	__u32 base = open_string(e, REFLEX_STR_CGROUP), off = 0;
	int i;

	for (i = 0; i < REFLEX_CGROUP_DEPTH && kn; i++) {
		struct kernfs_node *up = kn_parent(kn);

		if (!up)
			break;
		if (!put_piece(e, REFLEX_STR_CGROUP, base, &off, BPF_CORE_READ(kn, name), false))
			break;
		kn = up;
	}
	if (i == REFLEX_CGROUP_DEPTH)
		e->truncated |= 1 << REFLEX_STR_CGROUP;
	close_string(e, REFLEX_STR_CGROUP, off);
}

/* The current task's command line: its first REFLEX_STRING_MAX bytes. */
static __always_inline void put_argv(struct reflex_event *e, struct task_struct *task)
{
	struct mm_struct *mm = BPF_CORE_READ(task, mm);
	__u64 start, len;

	if (!mm)
		return;
	start = BPF_CORE_READ(mm, arg_start);
	len = BPF_CORE_READ(mm, arg_end) - start;
	if (len > REFLEX_STRING_MAX) {
		len = REFLEX_STRING_MAX;
		e->truncated |= 1 << REFLEX_STR_ARGV;
	}
	if (len && !bpf_probe_read_user(&e->strings[open_string(e, REFLEX_STR_ARGV) & AREA_MASK],
					len, (void *)start))
		close_string(e, REFLEX_STR_ARGV, len);
}

/* An exec's new command line, from the user array of pointers `argv`. */
static __always_inline void put_exec_argv(struct reflex_event *e, const void *argv)
{
	__u32 base = open_string(e, REFLEX_STR_EXEC_ARGV), off = 0;
	int i;

	for (i = 0; i < REFLEX_EXEC_ARGS; i++) {
		const char *arg = NULL;

		if (bpf_probe_read_user(&arg, sizeof(arg), argv + i * sizeof(arg)) || !arg)
			break;
		if (!put_piece(e, REFLEX_STR_EXEC_ARGV, base, &off, arg, true))
			break;
	}
	if (i == REFLEX_EXEC_ARGS)
		e->truncated |= 1 << REFLEX_STR_EXEC_ARGV;
	close_string(e, REFLEX_STR_EXEC_ARGV, off);
}

/* A path the caller gave (a syscall's argument), as given. */
static __always_inline void put_user_path(struct reflex_event *e, const void *path)
{
	__u32 base = open_string(e, REFLEX_STR_FILE), off = 0;

	put_piece(e, REFLEX_STR_FILE, base, &off, path, true);
	close_string(e, REFLEX_STR_FILE, off);
	e->given |= 1 << REFLEX_STR_FILE;
}

/* The same, read at the syscall's entry and kept (a map value). */
static __always_inline void put_saved_path(struct reflex_event *e, const char *path)
{
	__u32 base = open_string(e, REFLEX_STR_FILE), off = 0;

	put_piece(e, REFLEX_STR_FILE, base, &off, path, false);
	close_string(e, REFLEX_STR_FILE, off);
	e->given |= 1 << REFLEX_STR_FILE;
}

/* The login uid (audit), where the kernel keeps one. */
static __always_inline __u32 login_uid(struct task_struct *task)
{
	if (bpf_core_field_exists(task->loginuid))
		return BPF_CORE_READ(task, loginuid.val);
	return (__u32)-1;
}

static __always_inline __u64 started(struct task_struct *task)
{
	return BPF_CORE_READ(task, group_leader, start_boottime);
}

/* The caller: who, where, and its ancestors. */
static __always_inline void put_caller(struct reflex_event *e, struct task_struct *task)
{
	struct task_struct *p;

	e->start_ns = started(task);
	e->euid = BPF_CORE_READ(task, cred, euid.val);
	e->auid = login_uid(task);
	e->sid = BPF_CORE_READ(task, signal, pids[PIDTYPE_SID], numbers[0].nr);
	put_exe(e, REFLEX_STR_EXE, task);
	put_cgroup(e, task);
	e->identity |= REFLEX_ID_PROCESS;

	p = BPF_CORE_READ(task, real_parent);
	e->parent_start_ns = started(p);
	BPF_CORE_READ_STR_INTO(&e->parent_comm, p, comm);
	e->identity |= REFLEX_ID_ANCESTORS;
}

/* The ancestors' pids and executables, the parent first. Slots after
 * REFLEX_STR_FILE..TARGET_EXE: written after them. */
static __always_inline void put_ancestors(struct reflex_event *e, struct task_struct *task)
{
	struct task_struct *p = BPF_CORE_READ(task, real_parent);

	for (int i = 0; i < REFLEX_ANCESTORS; i++) {
		__u32 tgid = p ? BPF_CORE_READ(p, tgid) : 0;

		e->ancestors[i] = tgid;
		if (!tgid)
			break;
		put_exe(e, REFLEX_STR_ANCESTOR_EXE + i, p);
		p = BPF_CORE_READ(p, real_parent);
	}
}

/* The process acted on: its comm and executable. */
static __always_inline void put_target(struct reflex_event *e, struct task_struct *t)
{
	e->target_pid = BPF_CORE_READ(t, tgid);
	BPF_CORE_READ_STR_INTO(&e->target_comm, t, comm);
	put_exe(e, REFLEX_STR_TARGET_EXE, t);
	e->identity |= REFLEX_ID_TARGET;
}

/*
 * Fills in the identity of the event being built in this CPU's current
 * scratch slot: who called, what the call was about (the scratch's addresses),
 * the ancestors. A global function: the verifier checks it once per
 * program, on its own, instead of along every path of every program that
 * decides (on 5.10 under emulation that made a start take over 30 s).
 */
__attribute__((noinline)) int reflex_describe(void)
{
	struct reflex_scratch *s = current_scratch();
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct reflex_event *e;

	if (!s)
		return 0;
	e = &s->e;
	put_caller(e, task);
	if (s->file)
		put_file(e, REFLEX_STR_FILE, (struct file *)s->file);
	else if (s->saved_path)
		put_saved_path(e, (const char *)s->saved_path);
	else if (s->path)
		put_user_path(e, (const void *)s->path);
	if (s->argv)
		put_exec_argv(e, (const void *)s->argv);
	if (s->target) {
		put_target(e, (struct task_struct *)s->target);
	} else if (s->target_pid) {
		e->target_pid = s->target_pid;
		if (task_kfuncs && bpf_ksym_exists(bpf_task_from_pid)) {
			struct task_struct *t = bpf_task_from_pid(s->target_pid);

			if (t) {
				put_target(e, t);
				bpf_task_release(t);
			}
		}
	}
	put_ancestors(e, task);
	put_argv(e, task);
	return 0;
}

#if defined(__TARGET_ARCH_x86)
#define NR_EXECVE   59
#define NR_EXECVEAT 322
#elif defined(__TARGET_ARCH_arm64)
#define NR_EXECVE   221
#define NR_EXECVEAT 281
#endif

/* The argv of the exec in progress, from the syscall's registers (the new
 * program's memory is not readable yet): where bpf_task_pt_regs exists
 * (5.15+). */
static __always_inline const void *exec_argv(void)
{
#ifdef NR_EXECVE
	struct pt_regs *regs;
	long nr;

	if (!bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_task_pt_regs))
		return NULL;
	regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
#if defined(__TARGET_ARCH_x86)
	nr = BPF_CORE_READ(regs, orig_ax);
#else
	nr = BPF_CORE_READ(regs, syscallno);
#endif
	if (nr == NR_EXECVE)
		return (const void *)PT_REGS_PARM2_CORE_SYSCALL(regs);
	if (nr == NR_EXECVEAT)
		return (const void *)PT_REGS_PARM3_CORE_SYSCALL(regs);
#endif
	return NULL;
}

#endif /* __REFLEX_IDENTITY_H */
