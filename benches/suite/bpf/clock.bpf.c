// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Benchmark instruments: the CLOCK_MONOTONIC time at which each process
 * starts to exit, so that "time to death" does not include the time the
 * benchmark takes to notice; and an empty raw syscall hook, the floor of
 * what any program on tp_btf/sys_enter costs.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u64);
} deaths SEC(".maps");

SEC("tp/sched/sched_process_exit")
int clock_exit(void *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tgid = pid_tgid >> 32;
	__u64 now = bpf_ktime_get_ns();

	if ((__u32)pid_tgid == tgid)
		bpf_map_update_elem(&deaths, &tgid, &now, BPF_ANY);
	return 0;
}

/* The floor of the raw hook: a tp_btf/sys_enter program that does nothing.
 * Loaded only when asked for (the "?"). */
SEC("?tp_btf/sys_enter")
int BPF_PROG(empty_raw, struct pt_regs *regs, long nr)
{
	return 0;
}
