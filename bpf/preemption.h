/* SPDX-License-Identifier: Apache-2.0 */
/* What probe_preemption saw (bpf/preemption.bpf.c); mirrored in src/kernel/preemption.ts. */
#ifndef KMESH_ACCESSLOG_PREEMPTION_H
#define KMESH_ACCESSLOG_PREEMPTION_H

struct preemption_seen {
	__u8 in_task;		/* a run in a task (not in an interrupt, softirqs on) */
	__u8 preemptible;	/* ... with preemption on */
};

#endif
