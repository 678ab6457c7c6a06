// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Tiny programs that exist only to be loaded: each answers "may reflex use
 * this kind of program here?". None is loaded unless a probe asks for it
 * (the "?" prefix turns autoload off), and none does anything when it runs.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("?lsm/file_open")
int BPF_PROG(probe_lsm, struct file *file)
{
	return 0;
}

SEC("?fentry/vfs_read")
int BPF_PROG(probe_fentry)
{
	return 0;
}

SEC("?tp_btf/sys_enter")
int BPF_PROG(probe_tp_btf, struct pt_regs *regs, long id)
{
	return 0;
}
