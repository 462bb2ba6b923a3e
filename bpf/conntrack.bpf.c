// SPDX-License-Identifier: Apache-2.0
/*
 * kmesh-accesslog, the NAT translations of the kernel's connection tracking.
 *
 * A client's socket knows only the address it connected to: a Service's
 * ClusterIP, which kube-proxy's DNAT rewrites after the socket. Conntrack
 * keeps both sides of that rewrite, and every connection it tracks passes
 * once through __nf_conntrack_hash_insert, when it is confirmed (after the
 * NAT rules ran on its first packet). There, for a TCP connection whose
 * destination was translated, the source of the reply tuple (the backend
 * that answers) is stored under the original tuple (what the client's socket
 * sees); the agent looks it up when the socket reports. A connection that
 * was not translated costs a few reads and no map operation.
 *
 * Its own object, apart from accesslog.bpf.o: nf_conntrack is often a module
 * that is loaded after the agent starts (by the first NAT rule), and a node
 * without it must not lose the access log. The same function is hooked by a
 * kprobe (any kernel with kprobes, a module function too) or, on kernels
 * built without kprobes, by fentry; the agent loads one of the two.
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <asm/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>

#include "conntrack.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define IPS_DST_NAT (1UL << 5)	/* enum ip_conntrack_status */
#define IP_CT_DIR_ORIGINAL 0
#define IP_CT_DIR_REPLY 1

/*
 * The fields read, declared by hand with preserve_access_index so that libbpf
 * relocates them against the running kernel's BTF (struct nf_conn is in
 * vmlinux's BTF even where nf_conntrack is a module). This is the exact list
 * of what the hook depends on in the kernel.
 */
union nf_inet_addr {
	__u32 all[4];
} __attribute__((preserve_access_index));

union nf_conntrack_man_proto {
	__be16 all;	/* the port, for TCP */
} __attribute__((preserve_access_index));

struct nf_conntrack_man {
	union nf_inet_addr u3;
	union nf_conntrack_man_proto u;
	__u16 l3num;
} __attribute__((preserve_access_index));

struct nf_conntrack_tuple {
	struct nf_conntrack_man src;
	struct {
		union nf_inet_addr u3;
		union {
			__be16 all;
		} u;
		__u8 protonum;
	} dst;
} __attribute__((preserve_access_index));

struct nf_conntrack_tuple_hash {
	struct nf_conntrack_tuple tuple;
} __attribute__((preserve_access_index));

struct nf_conn {
	unsigned long status;
	struct nf_conntrack_tuple_hash tuplehash[2];
} __attribute__((preserve_access_index));

/* The latest translations, the oldest forgotten first: a ClusterIP
 * connection's entry outlives it for as long as fewer than max_entries
 * others are translated after it. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct nat_key);
	__type(value, struct nat_backend);
} nat_backends SEC(".maps");

struct nat_counters nat_counters;

static __always_inline int remember(const struct nf_conn *ct)
{
	struct nat_backend backend = {};
	struct nat_key key = {};
	__u16 family;

	if (!(BPF_CORE_READ(ct, status) & IPS_DST_NAT))
		return 0;
	if (BPF_CORE_READ(ct, tuplehash[IP_CT_DIR_ORIGINAL].tuple.dst.protonum) != IPPROTO_TCP)
		return 0;
	family = BPF_CORE_READ(ct, tuplehash[IP_CT_DIR_ORIGINAL].tuple.src.l3num);
	if (family != AF_INET && family != AF_INET6)
		return 0;
	key.family = family;
	/* The address unions are 16 bytes; an IPv4 tuple's are zero past the
	 * first 4 (conntrack clears a tuple before filling it), but the key
	 * must not depend on that. */
	if (family == AF_INET) {
		BPF_CORE_READ_INTO((__u32 *)key.saddr, ct, tuplehash[IP_CT_DIR_ORIGINAL].tuple.src.u3.all[0]);
		BPF_CORE_READ_INTO((__u32 *)key.daddr, ct, tuplehash[IP_CT_DIR_ORIGINAL].tuple.dst.u3.all[0]);
		BPF_CORE_READ_INTO((__u32 *)backend.addr, ct, tuplehash[IP_CT_DIR_REPLY].tuple.src.u3.all[0]);
	} else {
		BPF_CORE_READ_INTO((union nf_inet_addr *)key.saddr, ct, tuplehash[IP_CT_DIR_ORIGINAL].tuple.src.u3);
		BPF_CORE_READ_INTO((union nf_inet_addr *)key.daddr, ct, tuplehash[IP_CT_DIR_ORIGINAL].tuple.dst.u3);
		BPF_CORE_READ_INTO((union nf_inet_addr *)backend.addr, ct, tuplehash[IP_CT_DIR_REPLY].tuple.src.u3);
	}
	key.sport = bpf_ntohs(BPF_CORE_READ(ct, tuplehash[IP_CT_DIR_ORIGINAL].tuple.src.u.all));
	key.dport = bpf_ntohs(BPF_CORE_READ(ct, tuplehash[IP_CT_DIR_ORIGINAL].tuple.dst.u.all));
	backend.port = bpf_ntohs(BPF_CORE_READ(ct, tuplehash[IP_CT_DIR_REPLY].tuple.src.u.all));
	backend.inserted_ns = bpf_ktime_get_ns();
	if (bpf_map_update_elem(&nat_backends, &key, &backend, BPF_ANY) == 0)
		__sync_fetch_and_add(&nat_counters.translations, 1);
	return 0;
}

/* static void __nf_conntrack_hash_insert(struct nf_conn *ct, unsigned int hash, unsigned int reply_hash) */
SEC("kprobe/__nf_conntrack_hash_insert")
int BPF_KPROBE(conntrack_insert_kprobe, const struct nf_conn *ct)
{
	return remember(ct);
}

SEC("fentry/__nf_conntrack_hash_insert")
int BPF_PROG(conntrack_insert_fentry, const struct nf_conn *ct)
{
	return remember(ct);
}
