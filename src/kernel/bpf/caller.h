/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * What the programs read about the calling task beyond the helpers: its
 * cgroup's ancestors and files as the kernel identifies them.
 */
#ifndef __REFLEX_CALLER_H
#define __REFLEX_CALLER_H

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

static __always_inline void file_key(struct file *file, __u64 *value)
{
	value[0] = BPF_CORE_READ(file, f_inode, i_ino);
	value[1] = BPF_CORE_READ(file, f_inode, i_sb, s_dev);
}

#endif /* __REFLEX_CALLER_H */
