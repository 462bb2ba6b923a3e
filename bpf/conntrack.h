/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The NAT translations the conntrack hook keeps for the agent: the map's key
 * and value. This is the single definition of their layout;
 * src/kernel/conntrack.ts mirrors it and test/kernel/record-layout.test.ts
 * checks both against the object's BTF.
 */
#ifndef KMESH_ACCESSLOG_CONNTRACK_H
#define KMESH_ACCESSLOG_CONNTRACK_H

/* A TCP connection as its client's socket sees it: conntrack's original tuple. */
struct nat_key {
	__u8 saddr[16];		/* IPv4 in the first 4 bytes, the rest zero */
	__u8 daddr[16];		/* the address connected to: a ClusterIP */
	__u16 sport;		/* host byte order */
	__u16 dport;		/* host byte order */
	__u16 family;		/* AF_INET (2) or AF_INET6 (10) */
	__u16 pad;
};

/* Where the connection really goes: the source of conntrack's reply tuple. */
struct nat_backend {
	__u64 inserted_ns;	/* CLOCK_MONOTONIC when conntrack confirmed the connection */
	__u8 addr[16];		/* IPv4 in the first 4 bytes */
	__u16 port;		/* host byte order */
	__u16 pad[3];
};

/* What the hook counts: the only variable in the object's .bss. */
struct nat_counters {
	__u64 translations;	/* TCP connections whose destination NAT changed, remembered */
};

#endif
