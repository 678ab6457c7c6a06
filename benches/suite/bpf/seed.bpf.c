// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The tutorial program reflex grew from, as a benchmark baseline: on
 * sys_enter_ptrace, if the caller's parent is target_ppid (or any, when 0),
 * send SIGKILL and report {pid, comm, success} through a ring buffer.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct seed_event {
	int pid;
	char comm[16];
	bool success;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} rb SEC(".maps");

const volatile int target_ppid = 0;

SEC("tp/syscalls/sys_enter_ptrace")
int seed_sys_enter_ptrace(struct trace_event_raw_sys_enter *ctx)
{
	long ret = 0;
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	int pid = pid_tgid >> 32;

	if (target_ppid != 0) {
		struct task_struct *task = (struct task_struct *)bpf_get_current_task();
		int ppid = BPF_CORE_READ(task, real_parent, tgid);

		if (ppid != target_ppid)
			return 0;
	}
	ret = bpf_send_signal(9);

	struct seed_event *e = bpf_ringbuf_reserve(&rb, sizeof(*e), 0);
	if (e) {
		e->success = (ret == 0);
		e->pid = pid;
		bpf_get_current_comm(&e->comm, sizeof(e->comm));
		bpf_ringbuf_submit(e, 0);
	}
	return 0;
}
