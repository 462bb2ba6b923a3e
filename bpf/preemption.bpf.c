// SPDX-License-Identifier: Apache-2.0
/*
 * Whether tracepoints run BPF programs preemptibly (src/kernel/preemption.ts;
 * docs/kernels.md, "Preemptible tracepoints from Linux 7").
 * Attached by the agent for a moment, while it opens and closes a listening
 * socket of its own, whose state changes run here in the agent's task. x86's
 * per-CPU preemption count (the bit for a wanted reschedule aside) is 0 there
 * when preemption is on, as on Linux 7, which keeps only migration off; a
 * tracepoint that keeps preemption off counts 1. Runs in an interrupt, or
 * with softirqs off, say nothing. Its own object: a kernel whose symbols
 * omit __preempt_count (no CONFIG_KALLSYMS_ALL), or keeps the count elsewhere
 * (6.2 to 6.14: pcpu_hot), refuses it, and the answer is "unknown".
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "preemption.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

extern const int __preempt_count __ksym;

#define PREEMPT_NEED_RESCHED 0x80000000U
#define PREEMPT_MASK 0xffU

/* The agent's view: the only variable in the object's .bss. */
struct preemption_seen seen;

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(probe_preemption)
{
	__u32 count = *(const __u32 *)bpf_this_cpu_ptr(&__preempt_count) & ~PREEMPT_NEED_RESCHED;

	if (count & ~PREEMPT_MASK)
		return 0;
	seen.in_task = 1;
	if (count == 0)
		seen.preemptible = 1;
	return 0;
}
