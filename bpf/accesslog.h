/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The record the kernel side writes to the ring buffer, one per report.
 * This is the single definition of its layout; src/kernel/record.ts mirrors
 * it and test/kernel/record-layout.test.ts checks both against the object's BTF.
 */
#ifndef KMESH_ACCESSLOG_H
#define KMESH_ACCESSLOG_H

#define DIRECTION_OUTBOUND 1 /* a local socket called connect() */
#define DIRECTION_INBOUND 2  /* a local socket accepted the connection */

/* flags */
#define RECORD_START_UNKNOWN 0x1 /* open before the probe was attached: start_ns is 0 */
#define RECORD_ESTABLISHED 0x2   /* the connection reached ESTABLISHED at some point */

/*
 * The process behind a connection: the one that called connect() (in the
 * kernel's state change to SYN_SENT) or accept() (at the syscall's exit), or,
 * for a connection open before the probe, one that held its socket then.
 * All zero when none is known.
 */
struct conn_owner {
	__u64 cgroup_id;	/* its cgroup v2 id (inode number of the cgroup's directory); 0 = unknown */
	__u32 pid;		/* thread group id, in the initial PID namespace; 0 = unknown */
	char comm[16];		/* its command name (the task's comm), NUL-padded */
	__u32 reserved;
};

struct conn_record {
	__u64 start_ns;		/* CLOCK_MONOTONIC: connect() (OUTBOUND) or accept (INBOUND); 0 = unknown */
	__u64 report_ns;	/* CLOCK_MONOTONIC at this report */
	__u64 sent_bytes;	/* payload bytes sent and acknowledged by the peer */
	__u64 received_bytes;	/* payload bytes received in order */
	__u64 sock_id;		/* kernel address of the socket: ties reports of one connection together */
	__u8 src_addr[16];	/* the connect() side; IPv4 in the first 4 bytes when family is AF_INET */
	__u8 dst_addr[16];	/* the accept() side */
	__u16 src_port;		/* host byte order */
	__u16 dst_port;		/* host byte order */
	__u16 family;		/* AF_INET (2) or AF_INET6 (10) */
	__u8 direction;		/* DIRECTION_* */
	__u8 state;		/* BPF_TCP_* at the report */
	__u32 packets_lost;	/* cumulative (tcp_sock.lost) */
	__u32 retransmissions;	/* cumulative (tcp_sock.total_retrans) */
	__u32 srtt_us;		/* smoothed RTT in microseconds (srtt_us >> 3) */
	__u32 min_rtt_us;	/* minimum RTT seen, microseconds; 0 = no sample */
	__u32 netns;		/* inode number of the socket's network namespace */
	__s32 error;		/* errno for an attempt that never became ESTABLISHED, else 0 */
	__u32 flags;		/* RECORD_* */
	__u32 reserved;
	struct conn_owner owner;
};

/*
 * Counters the kernel keeps for the agent: the only variable in the object's
 * .bss, so the agent reads it at offset 0 of that map. Nothing is lost
 * without being counted here.
 */
struct probe_counters {
	__u64 records_lost;	/* ring buffer full: a record was dropped */
	__u64 tracking_failed;	/* connections map full: a connection was not tracked from its start */
	__u64 closes_missed;	/* a tracked connection's close never reached the probe (found later) */
	__u64 closes_at_destroy; /* a close the tracepoint program missed, recorded when the socket ended */
	__u64 in_map;		/* with the socket table: states in the hash map (their entry was taken) */
	__u64 changes_stood_in;	/* state changes the first program did not make that a stand-in made */
	__u64 ends_stood_in;	/* socket ends the first program did not make that a stand-in made */
};

/*
 * Switches the agent flips while the probe runs: the only variable in the
 * object's .data, written through that map at offset 0.
 */
struct probe_switches {
	__u32 emit_enabled;	/* 0: the kernel writes no record at all */
	__u16 ignore_close_port; /* tests only (never set by the agent): the tracepoint program
				  * ignores the close of sockets with this local or peer port, as
				  * if the kernel had skipped it (with the stand-ins attached, a
				  * stand-in makes it); 0: none */
	__u8 stand_ins;		/* 1: the stand-ins are attached: the state-change and socket-end
				  * programs claim their runs in run_claims (set before they attach) */
	__u8 reserved;
};

/*
 * Periodic reports. The agent reads the keys of the connections map (socket
 * addresses), writes up to REPORT_BATCH of them into the sock_id fields of
 * the one report_batch value, and runs report_open once (BPF_PROG_TEST_RUN,
 * the count as its only argument). report_open fills the record of each key
 * still tracked and established in place, and sets state to 0 in the others.
 */
#define REPORT_BATCH 256 /* a power of two (the kernel side masks slot numbers) */

struct report_batch {
	struct conn_record records[REPORT_BATCH];
};

/*
 * Run-time filters the kernel applies: the part of the agent's filters
 * (src/accesslog/filters.ts) that a connection's direction, ports and whether
 * it failed decide, written by the agent whenever its filters or switches
 * change (src/kernel/kernel-filter.ts says when the kernel may decide). Two
 * slots of struct filter_rules; filter_use names the one in force, so a
 * change is written whole into the other slot before it is used.
 */
#define FILTER_SLOTS 2

struct filter_use {
	__u32 slot;		/* 0: no filter in the kernel; n: filter_rules[n - 1] */
	__u32 reserved;
};

struct filter_rules {
	__u8 direction;		/* DIRECTION_*: drop the other direction; 0: none */
	__u8 failed_only;	/* drop connections that became established */
	__u8 keep_ports_set;	/* drop connections with neither port in keep_ports */
	__u8 at_start;		/* also decide at a connection's first state change (no state kept) */
	__u32 reserved;
	__u8 keep_ports[8192];	/* bit p & 7 of byte p >> 3: port p */
	__u8 drop_ports[8192];	/* drop connections with either port here */
};

/* Connections dropped, by the first filter that dropped them (the agent's
 * order): one per-CPU value. */
#define FILTER_DIRECTION 0
#define FILTER_FAILED_ONLY 1
#define FILTER_PORT 2
#define FILTER_EXCLUDE_PORT 3
#define FILTER_KINDS 4

struct filter_drops {
	__u64 by_filter[FILTER_KINDS];
};

#endif
