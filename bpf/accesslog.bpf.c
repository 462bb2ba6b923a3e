// SPDX-License-Identifier: Apache-2.0
/*
 * kmesh-accesslog, kernel side.
 *
 * One BTF tracepoint, inet_sock_set_state, sees every TCP state change of
 * every socket on the node, whatever its network namespace or cgroup. What the
 * kernel does not keep about a connection (when it began, which side opened
 * it, which connection it is) is kept beside the socket; when the socket
 * reaches TCP_CLOSE one conn_record goes to the ring buffer. Periodic reports
 * walk the open connections on demand; an iterator, run once at start, adds
 * the connections that were already open (every TCP socket some process
 * holds). No per-packet hook.
 *
 * Three ways to keep the state, one loaded per kernel (src/kernel/probe.ts):
 * - the socket table (conn_table) in front of the hash map, from Linux 5.12
 *   (compare-and-exchange): an array indexed by a hash of the socket's
 *   address, whose entries are claimed and given back with no allocation and
 *   no lock; a socket whose entry another holds goes to the hash map.
 *   Periodic reports walk the table (report_table), then the map. The
 *   *_table programs.
 * - a hash map keyed by the socket's address (connections), for older
 *   kernels: periodic reports look up the keys the agent reads (report_open).
 * - socket-local storage (conn_storage), from Linux 5.11, where tracing
 *   programs may use it: freed with the socket, never stale, but an
 *   allocation at every connection; periodic reports walk it with a
 *   map-element iterator (report_sk). The *_sk programs.
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>

#include "kernel.h"
#include "accesslog.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/*
 * What the kernel does not keep about a connection, and which connection it
 * is: a socket's memory can hold another connection once the socket is freed
 * (and a close the probe missed leaves its entry behind), so an entry is used
 * only for the socket whose ports and peer address it names.
 */
struct conn_state {
	__u64 start_ns;
	__u32 remote_addr;	/* last 32 bits of the peer's address */
	__u16 remote_port;	/* network byte order, as in the socket */
	__u16 local_port;	/* network byte order; 0 until known (connect() picks it after SYN_SENT) */
	__u8 direction;
	__u8 flags;		/* STATE_* */
	__u8 pad[6];
	struct conn_owner owner;	/* all zero until known (see accesslog.h) */
};

#define STATE_START_UNKNOWN 0x1	/* first seen after it began (open before the probe) */
#define STATE_FIN_UNCOUNTED 0x2	/* the peer's FIN came with its SYN: not in bytes_received */
#define STATE_FIN_SENT 0x4	/* our FIN is in the sequence space (FIN_WAIT1 or LAST_ACK seen) */

/* Where a program keeps the state (a constant: each program uses one). */
#define KEEP_MAP 0	/* the hash map */
#define KEEP_STORAGE 1	/* socket-local storage */
#define KEEP_TABLE 2	/* the socket table, then the hash map */

/* Whether our FIN is in the sequence space, from the state the socket is in
 * (or was in just before it closed): these states are entered by sending it. */
static __always_inline int fin_sent(int state)
{
	return state == BPF_TCP_FIN_WAIT1 || state == BPF_TCP_FIN_WAIT2 ||
	       state == BPF_TCP_CLOSING || state == BPF_TCP_LAST_ACK || state == BPF_TCP_TIME_WAIT;
}

/* A state a connection is in between ESTABLISHED and its close. */
static __always_inline int connected(int state)
{
	return state == BPF_TCP_ESTABLISHED || state == BPF_TCP_CLOSE_WAIT || fin_sent(state);
}

/* A state an attempt is in before it is a connection. */
static __always_inline int attempting(int state)
{
	return state == BPF_TCP_SYN_SENT || state == BPF_TCP_SYN_RECV;
}

/* Sized by the agent before load (--max-connections); entries live from
 * connect()/accept to TCP_CLOSE, so the map holds only open connections.
 * Allocated as entries come; the agent preallocates it on kernels before 6.1,
 * whose verifier WARNs when a raw_tp program (report_open) uses a map
 * allocated at run time. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct conn_state);
} connections SEC(".maps");

/*
 * The socket table: entry i holds the state of the socket whose address
 * hashes to i, when that socket claimed it first. `sock` is 0 while the entry
 * is free, and the socket's address once its state is written; a socket
 * claiming it writes its address with the low bit set first (socket
 * addresses are even), so that no reader takes the entry as that socket's
 * before its state is there. A socket's state is in the table or in the hash
 * map, never in both.
 */
#define TABLE_BITS 14
#define TABLE_CLAIMING 1ULL

struct conn_entry {
	__u64 sock;
	struct conn_state st;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1 << TABLE_BITS);
	__type(key, __u32);
	__type(value, struct conn_entry);
} conn_table SEC(".maps");

/* The same, kept with the socket itself (see the top of this file). */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct conn_state);
} conn_storage SEC(".maps");

/* Sized by the agent before load (--ring-buffer-size). No value type: libbpf
 * refuses one on a ring buffer. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20);
} events SEC(".maps");

/* The agent's view into the probe (layouts in accesslog.h). */
volatile struct probe_switches switches = { .emit_enabled = 1 };
struct probe_counters counters;

/*
 * Stand-ins (docs/kernels.md, "Preemptible tracepoints from Linux 7"). The kernel runs a
 * tracing program at most once at a time per CPU and skips a run that comes
 * meanwhile. Where tracepoints run their programs preemptibly (Linux 7), a
 * task preempted inside a program keeps it running on that CPU (migration
 * stays off), and every other task's run there is skipped. There the agent
 * attaches stand-ins beside each of the two programs and turns
 * switches.stand_ins on: each program claims a state change (or a socket's
 * end) in this CPU's run_claims before it makes it, and makes none that
 * another program claimed less than CLAIM_NS before. A run the kernel skipped
 * claims nothing, so the next program makes it. With the hash map and the
 * socket table the first stand-in is a classic tracepoint program, which runs
 * with preemption off on Linux 7, and two tp_btf ones follow it (a softirq
 * nested in the classic one's run is shut out of it, and a task preempted in
 * a tp_btf stand-in shuts out that one); socket storage, which classic
 * programs may not use, gets three tp_btf stand-ins.
 */
struct claim {
	__u64 sock;	/* the socket */
	__u32 states;	/* a state change's old and new states (old << 16 | new); 0 for an end */
	__u32 reserved;
	__u64 at;	/* bpf_ktime_get_ns() when claimed */
};

struct run_claims {
	struct claim change;	/* the last state change claimed on this CPU */
	struct claim end;	/* the last socket end claimed on this CPU */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct run_claims);
} run_claims SEC(".maps");

/*
 * How long a claim holds. A tracepoint runs its programs one after the other,
 * so a program finds the claim of the one before it within microseconds,
 * unless its task was preempted in between (then it makes the run again: a
 * stand-in finds its work done, see state_change_at). A socket makes each
 * change once in its life, and a later socket at the same address makes other
 * changes between, so an older claim that looks the same is rarer still.
 */
#define CLAIM_NS 10000000ULL

/* Claims the event in `c` (socket `sk`, `states`): 0 when another program claimed it. */
static __always_inline int claim(struct claim *c, const struct sock *sk, __u32 states)
{
	__u64 now = bpf_ktime_get_ns();

	if (c->sock == (__u64)sk && c->states == states && now - c->at < CLAIM_NS)
		return 0;
	c->sock = (__u64)sk;
	c->states = states;
	c->at = now;
	return 1;
}

/* Whether this program may make sk's change (claiming it), or its end (newstate < 0). */
static __always_inline int claimed_here(const struct sock *sk, const int oldstate, const int newstate)
{
	__u32 zero = 0;
	struct run_claims *c = bpf_map_lookup_elem(&run_claims, &zero);

	if (!c)
		return 1;
	if (newstate < 0)
		return claim(&c->end, sk, 0);
	return claim(&c->change, sk, (__u32)oldstate << 16 | (__u16)newstate);
}

/*
 * How a program reads the socket: a tp_btf program's sk is a pointer the
 * verifier knows the type of (each field one load); a classic tracepoint's is
 * only a number, read through bpf_probe_read_kernel. A constant in each
 * program, so that each is compiled with one of the two.
 */
#define SK_DIRECT 0
#define SK_PROBED 1
#define SK_READ(how, p, field) ((how) == SK_PROBED ? BPF_CORE_READ(p, field) : (p)->field)

/* Puts struct conn_record and struct conn_state into the object's BTF for
 * the layout tests. */
struct conn_record *const unused_record_type __attribute__((unused));
struct conn_state *const unused_state_type __attribute__((unused));

/*
 * What a record needs from the socket. The tracepoint reads it with plain
 * loads (its sk is a pointer the verifier knows the type of: each field is one
 * instruction); report_one, whose sk is only a number, reads it through
 * bpf_probe_read_kernel (BPF_CORE_READ), a helper call per field. Both read
 * the same fields, listed here once.
 */
struct sock_figures {
	__u64 acked;		/* tcp_sock.bytes_acked */
	__u64 received;		/* tcp_sock.bytes_received */
	unsigned long flags;	/* sock_common.skc_flags (sock.sk_flags) */
	__u32 snd_una;
	__u32 write_seq;
	__u32 srtt_us;		/* << 3, as the kernel keeps it */
	__u32 min_rtt;		/* ~0U: no sample yet */
	__u32 lost;
	__u32 total_retrans;
	__u32 netns;
	__s32 err;
	__u16 local_port;	/* network byte order */
	__u16 remote_port;
	__u8 local_addr[16];	/* IPv4 in the first 4 bytes */
	__u8 remote_addr[16];
	__u32 remote_word;	/* the last 32 bits of remote_addr (the whole of an IPv4 one) */
};

static __always_inline void read_figures_direct(struct sock_figures *f, const struct sock *sk,
						const struct tcp_sock *tp, __u16 family)
{
	f->acked = tp->bytes_acked;
	f->received = tp->bytes_received;
	f->flags = sk->__sk_common.skc_flags;
	f->snd_una = tp->snd_una;
	f->write_seq = tp->write_seq;
	f->srtt_us = tp->srtt_us;
	f->min_rtt = tp->rtt_min.s[0].v;
	f->lost = tp->lost;
	f->total_retrans = tp->total_retrans;
	f->netns = sk->__sk_common.skc_net.net->ns.inum;
	f->err = sk->sk_err;
	f->local_port = ((const struct inet_sock *)tp)->inet_sport;
	f->remote_port = sk->__sk_common.skc_dport;
	if (family == AF_INET) {
		*(__be32 *)f->local_addr = sk->__sk_common.skc_rcv_saddr;
		*(__be32 *)f->remote_addr = sk->__sk_common.skc_daddr;
	} else {
		__builtin_memcpy(f->local_addr, &sk->__sk_common.skc_v6_rcv_saddr, 16);
		__builtin_memcpy(f->remote_addr, &sk->__sk_common.skc_v6_daddr, 16);
	}
	/* Set on both paths, so that no path reads a stack slot the other
	 * wrote (Linux 5.10 refuses that). */
	f->remote_word = family == AF_INET ? *(const __u32 *)f->remote_addr : *(const __u32 *)&f->remote_addr[12];
}

static __always_inline void read_figures_probe(struct sock_figures *f, const struct sock *sk,
					       __u16 family)
{
	const struct tcp_sock *tp = (const struct tcp_sock *)sk;

	f->acked = BPF_CORE_READ(tp, bytes_acked);
	f->received = BPF_CORE_READ(tp, bytes_received);
	f->flags = BPF_CORE_READ(sk, __sk_common.skc_flags);
	f->snd_una = BPF_CORE_READ(tp, snd_una);
	f->write_seq = BPF_CORE_READ(tp, write_seq);
	f->srtt_us = BPF_CORE_READ(tp, srtt_us);
	f->min_rtt = BPF_CORE_READ(tp, rtt_min.s[0].v);
	f->lost = BPF_CORE_READ(tp, lost);
	f->total_retrans = BPF_CORE_READ(tp, total_retrans);
	f->netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	f->err = BPF_CORE_READ(sk, sk_err);
	f->local_port = BPF_CORE_READ((const struct inet_sock *)sk, inet_sport);
	f->remote_port = BPF_CORE_READ(sk, __sk_common.skc_dport);
	if (family == AF_INET) {
		BPF_CORE_READ_INTO((__be32 *)f->local_addr, sk, __sk_common.skc_rcv_saddr);
		BPF_CORE_READ_INTO((__be32 *)f->remote_addr, sk, __sk_common.skc_daddr);
	} else {
		BPF_CORE_READ_INTO((struct in6_addr *)f->local_addr, sk, __sk_common.skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO((struct in6_addr *)f->remote_addr, sk, __sk_common.skc_v6_daddr);
	}
	f->remote_word = family == AF_INET ? *(const __u32 *)f->remote_addr : *(const __u32 *)&f->remote_addr[12];
}

/* Only what same_connection and identify compare (the ports and remote_word),
 * read as read_figures_probe reads them: the accept programs need no more. */
static __always_inline void read_ids_probe(struct sock_figures *f, const struct sock *sk, __u16 family)
{
	const struct in6_addr *v6;

	f->local_port = BPF_CORE_READ((const struct inet_sock *)sk, inet_sport);
	f->remote_port = BPF_CORE_READ(sk, __sk_common.skc_dport);
	if (family == AF_INET) {
		f->remote_word = BPF_CORE_READ(sk, __sk_common.skc_daddr);
	} else {
		v6 = __builtin_preserve_access_index(&sk->__sk_common.skc_v6_daddr);
		bpf_probe_read_kernel(&f->remote_word, sizeof(f->remote_word), (const __u8 *)v6 + 12);
	}
}

/* The last 32 bits of the peer's address (the whole of an IPv4 one). */
static __always_inline __u32 remote_word(const struct sock_figures *f, __u16 family)
{
	return f->remote_word;
}

/* Whether the entry is this socket's connection (see struct conn_state). */
static __always_inline int same_connection(const struct conn_state *st, const struct sock_figures *f,
					   __u16 family)
{
	return st->remote_port == f->remote_port && st->remote_addr == remote_word(f, family) &&
	       (st->local_port == 0 || st->local_port == f->local_port);
}

/*
 * Fill one record from the socket's figures as they are now. The kernel's
 * bytes_acked and bytes_received count the SYN and the FIN as well as
 * payload. bytes_acked counts our SYN on the side that connected (a Fast Open
 * SYN's data too, which is payload), never on the accepting side (its SYN-ACK
 * is acknowledged before the child socket exists, or preset so); bytes_received
 * never counts the peer's SYN. So the SYN is a constant, whatever happened at
 * ESTABLISHED, and the FIN is taken off by looking whether it was sent and
 * acknowledged (ours) or processed (the peer's, unless it came with the SYN).
 * `failed`: an attempt that never became a connection.
 */
static __always_inline void fill_record(struct conn_record *rec, const struct sock *sk,
					const struct conn_state *st, const struct sock_figures *f,
					__u16 family, __u8 state, int our_fin_sent, int failed, __u64 now)
{
	__u8 outbound = st->direction == DIRECTION_OUTBOUND;
	__u64 acked = f->acked;
	__u64 received = f->received;
	__u64 syn = outbound ? 1 : 0;

	__builtin_memset(rec, 0, sizeof(*rec));
	rec->start_ns = st->start_ns;
	rec->report_ns = now;
	rec->sock_id = (__u64)sk;
	rec->family = family;
	rec->direction = st->direction;
	rec->state = state;
	__builtin_memcpy(outbound ? rec->src_addr : rec->dst_addr, f->local_addr, 16);
	__builtin_memcpy(outbound ? rec->dst_addr : rec->src_addr, f->remote_addr, 16);
	rec->src_port = bpf_ntohs(outbound ? f->local_port : f->remote_port);
	rec->dst_port = bpf_ntohs(outbound ? f->remote_port : f->local_port);
	rec->netns = f->netns;
	rec->packets_lost = f->lost;
	rec->retransmissions = f->total_retrans;
	rec->srtt_us = f->srtt_us >> 3;
	rec->min_rtt_us = f->min_rtt == ~0U ? 0 : f->min_rtt;
	rec->owner = st->owner;
	if (st->flags & STATE_START_UNKNOWN)
		rec->flags |= RECORD_START_UNKNOWN;

	if (failed) {
		rec->error = f->err;
		return;
	}
	rec->flags |= RECORD_ESTABLISHED;

	if (our_fin_sent && f->snd_una == f->write_seq && acked > syn)
		acked -= 1;
	if ((f->flags & (1UL << SOCK_DONE)) && !(st->flags & STATE_FIN_UNCOUNTED) && received > 0)
		received -= 1;
	rec->sent_bytes = acked > syn ? acked - syn : 0;
	rec->received_bytes = received;
}

/*
 * The kernel's part of the run-time filters (accesslog.h): the agent writes
 * the rules, the tracepoint follows them. No filter in the kernel costs one
 * array lookup per connection start and close.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct filter_use);
} filter_use SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, FILTER_SLOTS);
	__type(key, __u32);
	__type(value, struct filter_rules);
} filter_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct filter_drops);
} filter_drops SEC(".maps");

/* The rules in force, or NULL when the kernel filters nothing. */
static __always_inline const struct filter_rules *rules_in_force(void)
{
	const struct filter_use *use;
	__u32 zero = 0, slot;

	use = bpf_map_lookup_elem(&filter_use, &zero);
	if (!use || use->slot == 0)
		return NULL;
	slot = use->slot - 1;
	return bpf_map_lookup_elem(&filter_rules, &slot);
}

/* Whether port (host byte order) is in a set of filter_rules. Port 0 (not
 * chosen yet) is in none: the agent never sets its bit. */
static __always_inline int port_in(const __u8 *set, __u16 port)
{
	__u32 byte = port >> 3;

	/* The mask is for the verifier (before 5.13 a byte swap, as in
	 * bpf_ntohs, leaves the port unbounded); clang would drop it as
	 * redundant, but for the barrier. */
	barrier_var(byte);
	return set[byte & 8191] & (1 << (port & 7));
}

/* A connection's start (SYN_SENT for the side that connects, ESTABLISHED for
 * the side that accepts): whether the rules drop it whatever happens to it
 * later. Then no state is kept for it; its close is judged, and counted, by
 * dropped_at_close like any other. Whether it will fail is not known yet, nor
 * the local port of a connect() that did not bind one (local_port 0). */
static __always_inline int dropped_at_start(__u8 direction, __u16 local_port, __u16 remote_port)
{
	const struct filter_rules *r = rules_in_force();

	if (!r || !r->at_start)
		return 0;
	if (r->direction && r->direction != direction)
		return 1;
	if (port_in(r->drop_ports, local_port) || port_in(r->drop_ports, remote_port))
		return 1;
	return r->keep_ports_set && local_port && !port_in(r->keep_ports, local_port) &&
	       !port_in(r->keep_ports, remote_port);
}

/* A connection's close, before its record: whether the rules drop it,
 * counted under the first filter that does, in the agent's order. */
static __always_inline int dropped_at_close(const struct conn_state *st, const struct sock_figures *f, int failed)
{
	const struct filter_rules *r = rules_in_force();
	__u16 local_port, remote_port;
	struct filter_drops *drops;
	__u32 zero = 0, which;

	if (!r)
		return 0;
	local_port = bpf_ntohs(f->local_port);
	remote_port = bpf_ntohs(f->remote_port);
	if (r->direction && r->direction != st->direction)
		which = FILTER_DIRECTION;
	else if (r->failed_only && !failed)
		which = FILTER_FAILED_ONLY;
	else if (r->keep_ports_set && !port_in(r->keep_ports, local_port) && !port_in(r->keep_ports, remote_port))
		which = FILTER_PORT;
	else if (port_in(r->drop_ports, local_port) || port_in(r->drop_ports, remote_port))
		which = FILTER_EXCLUDE_PORT;
	else
		return 0;
	drops = bpf_map_lookup_elem(&filter_drops, &zero);
	if (drops) /* atomic: another program of ours may interrupt this one on the CPU */
		__sync_fetch_and_add(&drops->by_filter[which & (FILTER_KINDS - 1)], 1);
	return 1;
}

static __always_inline void emit(const struct sock *sk, const struct conn_state *st,
				 const struct sock_figures *f, __u16 family, int our_fin_sent, int failed,
				 __u64 now)
{
	struct conn_record *rec;

	if (!switches.emit_enabled || dropped_at_close(st, f, failed))
		return;
	rec = bpf_ringbuf_reserve(&events, sizeof(*rec), 0);
	if (!rec) {
		__sync_fetch_and_add(&counters.records_lost, 1);
		return;
	}
	fill_record(rec, sk, st, f, family, BPF_TCP_CLOSE, our_fin_sent, failed, now);
	/* The agent drains on its own clock: waking it per record would cost more. */
	bpf_ringbuf_submit(rec, BPF_RB_NO_WAKEUP);
}

/*
 * A connection seen for the first time after it began: it was open before the
 * probe was attached (or the kernel skipped the probe when it began), and its
 * start is unknown. Its direction is still known: an accepted socket is
 * created as a copy of its listener, so it carries the backlog listen() set
 * (sk_max_ack_backlog), while a socket that called connect() never listened.
 * (A listener made with backlog 0 would pass for the connecting side.)
 */
static __always_inline void init_unknown(struct conn_state *st, __u32 max_ack_backlog)
{
	__builtin_memset(st, 0, sizeof(*st));
	st->direction = max_ack_backlog ? DIRECTION_INBOUND : DIRECTION_OUTBOUND;
	st->flags = STATE_START_UNKNOWN;
}

/* Names the connection an entry belongs to (see struct conn_state). */
static __always_inline void identify(struct conn_state *st, const struct sock_figures *f, __u16 family)
{
	st->remote_addr = remote_word(f, family);
	st->remote_port = f->remote_port;
	st->local_port = f->local_port;
}

/* The table entry of the socket `offset` bytes from counters. */
static __always_inline struct conn_entry *table_entry_at(__u32 offset)
{
	__u32 index = (offset * 0x9E3779B9U) >> (32 - TABLE_BITS);

	return bpf_map_lookup_elem(&conn_table, &index);
}

/* The table entry of a socket known only by its address as a number (read
 * with bpf_probe_read_kernel): counters' address is read as a number too. */
static __always_inline struct conn_entry *table_entry_of(__u64 key)
{
	const void *at = &counters;
	__u64 base = 0;

	bpf_probe_read_kernel(&base, sizeof(base), &at);
	return table_entry_at(key - base);
}

/* The table entry sk's address picks. The verifier allows no arithmetic on a
 * pointer it knows the type of (SK_DIRECT), but the difference of two
 * pointers is a number (to a loader with CAP_PERFMON, which tracing needs
 * anyway). */
static __always_inline struct conn_entry *table_entry(const struct sock *sk, const int how)
{
	if (how == SK_PROBED)
		return table_entry_of((__u64)sk);
	return table_entry_at((__u64)sk - (__u64)&counters);
}

/* The state of the socket at `key`: in `entry`, its table entry, if it holds
 * it, else in the hash map (not looked up while the map holds none); or NULL. */
static __always_inline struct conn_state *entry_or_map(struct conn_entry *entry, __u64 key)
{
	if (entry && entry->sock == key)
		return &entry->st;
	if (!counters.in_map)
		return 0;
	return bpf_map_lookup_elem(&connections, &key);
}

/* The state kept for sk's connection, or NULL. */
static __always_inline struct conn_state *state_of(const struct sock *sk, const int keep, const int how)
{
	__u64 key = (__u64)sk;

	if (keep == KEEP_STORAGE)
		return bpf_sk_storage_get(&conn_storage, (struct sock *)sk, 0, 0);
	if (keep == KEEP_TABLE)
		return entry_or_map(table_entry(sk, how), key);
	return bpf_map_lookup_elem(&connections, &key);
}

/* The same for a socket known only by its address as a number (not with
 * socket storage). */
static __always_inline struct conn_state *state_at(__u64 key, const int keep)
{
	if (keep == KEEP_TABLE)
		return entry_or_map(table_entry_of(key), key);
	return bpf_map_lookup_elem(&connections, &key);
}

/* Deletes key's state from the hash map. */
static __always_inline int unmap(__u64 key, const int keep)
{
	if (bpf_map_delete_elem(&connections, &key))
		return 0;
	if (keep == KEEP_TABLE)
		__sync_fetch_and_add(&counters.in_map, -1);
	return 1;
}

static __always_inline void forget(const struct sock *sk, const int keep, const int how)
{
	__u64 key = (__u64)sk;
	struct conn_entry *entry;

	if (keep == KEEP_STORAGE) {
		bpf_sk_storage_delete(&conn_storage, (struct sock *)sk);
		return;
	}
	if (keep == KEEP_TABLE) {
		entry = table_entry(sk, how);
		/* an atomic, so that the state is read before the entry is free */
		if (entry && __sync_val_compare_and_swap(&entry->sock, key, 0) == key)
			return;
	}
	unmap(key, keep);
}

/*
 * Keeps the state of a connection that begins. A state already there belonged
 * to an earlier connection whose close never reached the probe (of this
 * socket, or in the hash map of a freed socket whose address is reused), and
 * is replaced. (The kernel skips a tracing program that is already running on
 * the CPU when a softirq interrupts it: see the README's performance section.)
 */
static __always_inline void track(const struct sock *sk, const struct conn_state *st, const int keep, const int how)
{
	__u64 key = (__u64)sk;
	struct conn_entry *entry;
	struct conn_state *kept;

	if (keep == KEEP_STORAGE) {
		/* Created holding *st; one already there is another connection's
		 * (its start differs: this one's is now). */
		kept = bpf_sk_storage_get(&conn_storage, (struct sock *)sk, (void *)st,
					  BPF_SK_STORAGE_GET_F_CREATE);
		if (!kept) {
			__sync_fetch_and_add(&counters.tracking_failed, 1);
		} else if (kept->start_ns != st->start_ns) {
			*kept = *st;
			__sync_fetch_and_add(&counters.closes_missed, 1);
		}
		return;
	}
	if (keep == KEEP_TABLE) {
		entry = table_entry(sk, how);
		if (entry && entry->sock == key) {
			/* an earlier connection of this socket, whose close was missed */
			entry->st = *st;
			__sync_fetch_and_add(&counters.closes_missed, 1);
			return;
		}
		if (entry && entry->sock == 0 &&
		    __sync_val_compare_and_swap(&entry->sock, 0, key + TABLE_CLAIMING) == 0) {
			entry->st = *st;
			__sync_lock_test_and_set(&entry->sock, key);
			/* an earlier connection of this address, in the map */
			if (counters.in_map && unmap(key, keep))
				__sync_fetch_and_add(&counters.closes_missed, 1);
			return;
		}
	}
	if (bpf_map_update_elem(&connections, &key, st, BPF_NOEXIST) == 0) {
		if (keep == KEEP_TABLE)
			__sync_fetch_and_add(&counters.in_map, 1);
		return;
	}
	if (bpf_map_update_elem(&connections, &key, st, BPF_ANY) == 0)
		__sync_fetch_and_add(&counters.closes_missed, 1);
	else
		__sync_fetch_and_add(&counters.tracking_failed, 1);
}

/* The peer's address and port, for an entry made at connect(): the local port
 * is not chosen yet then (it is filled in when the connection is reported). */
static __always_inline void identify_peer(struct conn_state *st, const struct sock *sk, __u16 family,
					  const int how)
{
	const struct in6_addr *v6;

	st->remote_port = SK_READ(how, sk, __sk_common.skc_dport);
	if (family == AF_INET) {
		st->remote_addr = SK_READ(how, sk, __sk_common.skc_daddr);
	} else if (how == SK_PROBED) {
		v6 = __builtin_preserve_access_index(&sk->__sk_common.skc_v6_daddr);
		bpf_probe_read_kernel(&st->remote_addr, sizeof(st->remote_addr), (const __u8 *)v6 + 12);
	} else {
		st->remote_addr = *(const __u32 *)((const __u8 *)&sk->__sk_common.skc_v6_daddr + 12);
	}
}

/* ── The process behind a connection (struct conn_owner in accesslog.h) ── */

/* The process of a task: its id, its cgroup, and the name of its main thread
 * (a thread may name itself otherwise; /proc/<pid>/status shows the main one). */
static __always_inline void owner_of_task(struct conn_owner *o, struct task_struct *task)
{
	if (!task)
		return;
	o->pid = BPF_CORE_READ(task, tgid);
	o->cgroup_id = BPF_CORE_READ(task, cgroups, dfl_cgrp, kn, id);
	BPF_CORE_READ_STR_INTO(&o->comm, task, group_leader, comm);
}

/* The task running now: only where the kernel runs in the connect() or
 * accept() caller (a state change in softirq runs in whoever was there).
 * What owner_of_task reads, through helpers that need no read of the task's
 * memory (the main thread's comm is the current one's when it runs itself). */
static __always_inline void owner_of_current(struct conn_owner *o)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct task_struct *task;

	o->pid = pid_tgid >> 32;
	o->cgroup_id = bpf_get_current_cgroup_id();
	if ((__u32)pid_tgid == o->pid) {
		bpf_get_current_comm(&o->comm, sizeof(o->comm));
		return;
	}
	task = (struct task_struct *)bpf_get_current_task();
	BPF_CORE_READ_STR_INTO(&o->comm, task, group_leader, comm);
}

/*
 * Owners of accepted connections, with socket-local storage, whose programs
 * at accept()'s exit (tracepoints) may not use it: kept here by the socket's
 * address until the connection's state takes them (its close, a periodic
 * report). An LRU map: preallocated (tracepoints may not allocate on older
 * kernels), sized by the agent (1 entry with the hash map or the socket
 * table, whose accept programs write the state directly); beyond its size the
 * oldest owners are forgotten.
 * Each names its connection, as struct conn_state does.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct conn_state);
} accept_owners SEC(".maps");

/* With socket storage: an accepted connection's owner, from accept_owners,
 * into its state (which lacks one); `drop`: its close, forget the entry. */
static __always_inline void take_accept_owner(const struct sock *sk, struct conn_state *st,
					      const struct sock_figures *f, __u16 family, int drop)
{
	__u64 key = (__u64)sk;
	struct conn_state *found;

	found = bpf_map_lookup_elem(&accept_owners, &key);
	if (!found)
		return;
	if (st->direction == DIRECTION_INBOUND && st->owner.pid == 0 && same_connection(found, f, family))
		st->owner = found->owner;
	if (drop)
		bpf_map_delete_elem(&accept_owners, &key);
}

/*
 * At the exit of accept()/accept4(), in the caller: the socket of the fd it
 * returned, from the caller's file table. The connection's state exists by
 * then (the accepted socket reached ESTABLISHED before accept() could take it,
 * a Fast Open child excepted: it is still in SYN_RECV and gets no owner).
 */
static __always_inline int on_accept(long fd, const int keep)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct sock_figures figures;
	struct conn_state *st, pending;
	struct file **fds, *file;
	struct fdtable *fdt;
	struct socket *sock;
	const struct sock *sk;
	__u64 key;
	__u16 family;

	if (fd < 0)
		return 0;
	fdt = BPF_CORE_READ(task, files, fdt);
	if (!fdt || fd >= BPF_CORE_READ(fdt, max_fds))
		return 0;
	fds = BPF_CORE_READ(fdt, fd);
	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]) || !file)
		return 0;
	if ((BPF_CORE_READ(file, f_inode, i_mode) & S_IFMT) != S_IFSOCK)
		return 0;
	sock = BPF_CORE_READ(file, private_data);
	sk = BPF_CORE_READ(sock, sk);
	if (!sk || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return 0;
	family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return 0;
	key = (__u64)sk;
	if (keep != KEEP_STORAGE) {
		/* only a connection tracked from its start and not named yet */
		st = state_at(key, keep);
		if (!st || st->direction != DIRECTION_INBOUND || st->owner.pid != 0)
			return 0;
		read_ids_probe(&figures, sk, family);
		if (same_connection(st, &figures, family))
			owner_of_current(&st->owner);
		return 0;
	}
	read_ids_probe(&figures, sk, family);
	__builtin_memset(&pending, 0, sizeof(pending));
	identify(&pending, &figures, family);
	owner_of_current(&pending.owner);
	bpf_map_update_elem(&accept_owners, &key, &pending, BPF_ANY);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int handle_accept4(struct syscall_exit_args *ctx)
{
	return on_accept(ctx->ret, KEEP_MAP);
}

SEC("tracepoint/syscalls/sys_exit_accept")
int handle_accept(struct syscall_exit_args *ctx)
{
	return on_accept(ctx->ret, KEEP_MAP);
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int handle_accept4_sk(struct syscall_exit_args *ctx)
{
	return on_accept(ctx->ret, KEEP_STORAGE);
}

SEC("tracepoint/syscalls/sys_exit_accept")
int handle_accept_sk(struct syscall_exit_args *ctx)
{
	return on_accept(ctx->ret, KEEP_STORAGE);
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int handle_accept4_table(struct syscall_exit_args *ctx)
{
	return on_accept(ctx->ret, KEEP_TABLE);
}

SEC("tracepoint/syscalls/sys_exit_accept")
int handle_accept_table(struct syscall_exit_args *ctx)
{
	return on_accept(ctx->ret, KEEP_TABLE);
}

/* Whether the tests' switch ignore_close_port names one of sk's ports. (The
 * local port is read from inet_sport: a socket being closed has given its
 * skc_num back already, unless bind() chose it.) */
static __always_inline int ignored_by_test(const struct sock *sk)
{
	__u16 port = switches.ignore_close_port;

	return bpf_ntohs(BPF_CORE_READ((const struct inet_sock *)sk, inet_sport)) == port ||
	       bpf_ntohs(sk->__sk_common.skc_dport) == port;
}

/*
 * The state changes that make a connection's life here:
 * - SYN_SENT: connect(); the entry starts OUTBOUND.
 * - ESTABLISHED from SYN_RECV: an accepted socket (which the kernel creates in
 *   SYN_RECV when the handshake completes) starts INBOUND here; or a socket of
 *   ours that met a SYN while connecting (simultaneous open, a socket
 *   connecting to itself) stays the OUTBOUND one it is.
 * - CLOSE_WAIT: the peer's FIN; noted when it came with the SYN.
 * - FIN_WAIT1, LAST_ACK: our FIN sent; noted for on_destroy, which cannot
 *   know the state a socket closed from.
 * - CLOSE: the record. Whether the connection was ever established is read
 *   from the state it closes from, so a skipped run of the probe at
 *   ESTABLISHED changes nothing (the SYN is a constant: see fill_record), and
 *   ESTABLISHED after SYN_SENT needs no work at all.
 * The others return at once: whether our FIN was sent is read from the state
 * a socket closes from.
 */
static __always_inline int on_state_change(const struct sock *sk, const int oldstate, const int newstate,
					   const int keep, const int stand_in, const int how)
{
	const struct tcp_sock *tp;
	struct sock_figures figures;
	struct conn_state *st, fresh;
	__u16 family;
	__u64 now;

	if (newstate == BPF_TCP_ESTABLISHED) {
		if (oldstate != BPF_TCP_SYN_RECV)
			return 0;
	} else if (newstate != BPF_TCP_SYN_SENT && newstate != BPF_TCP_CLOSE &&
		   newstate != BPF_TCP_CLOSE_WAIT && newstate != BPF_TCP_FIN_WAIT1 &&
		   newstate != BPF_TCP_LAST_ACK) {
		return 0;
	}
	/* A listener closing is not a connection; CLOSE to CLOSE is no change. */
	if (oldstate == BPF_TCP_LISTEN || oldstate == newstate)
		return 0;
	if (SK_READ(how, sk, sk_protocol) != IPPROTO_TCP)
		return 0;
	family = SK_READ(how, sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return 0;
	if (newstate == BPF_TCP_FIN_WAIT1 || newstate == BPF_TCP_LAST_ACK) {
		st = state_of(sk, keep, how);
		if (st)
			st->flags |= STATE_FIN_SENT;
		return 0;
	}

	if (newstate == BPF_TCP_SYN_SENT) {
		/* A stand-in finding a state: the first made this change */
		if (stand_in && state_of(sk, keep, how))
			return 0;
		if (dropped_at_start(DIRECTION_OUTBOUND, SK_READ(how, sk, __sk_common.skc_num),
				     bpf_ntohs(SK_READ(how, sk, __sk_common.skc_dport))))
			return 0;
		__builtin_memset(&fresh, 0, sizeof(fresh));
		fresh.start_ns = bpf_ktime_get_ns();
		fresh.direction = DIRECTION_OUTBOUND;
		identify_peer(&fresh, sk, family, how);
		/* connect() runs this in its caller: the owner is the current task */
		owner_of_current(&fresh.owner);
		track(sk, &fresh, keep, how);
		return 0;
	}

	/* The same socket, typed as a tcp_sock so that its TCP fields can be
	 * read directly (NULL for what is not a full TCP socket). A classic
	 * tracepoint's socket is a full one, its protocol TCP. */
	tp = how == SK_PROBED ? (const struct tcp_sock *)sk : bpf_skc_to_tcp_sock((void *)sk);
	if (!tp)
		return 0;

	if (newstate == BPF_TCP_CLOSE_WAIT) {
		/* The peer's FIN. Counted in bytes_received like data, except
		 * when it came with the SYN (a Fast Open SYN-ACK carrying it):
		 * then, and only then, bytes_received is one short of what
		 * rcv_nxt moved past the bytes not read yet. */
		if ((__u32)(SK_READ(how, tp, rcv_nxt) - SK_READ(how, tp, copied_seq)) !=
		    (__u32)SK_READ(how, tp, bytes_received) + 1)
			return 0;
		st = state_of(sk, keep, how);
		if (st)
			st->flags |= STATE_FIN_UNCOUNTED;
		return 0;
	}

	now = bpf_ktime_get_ns();
	if (how == SK_PROBED)
		read_figures_probe(&figures, sk, family);
	else
		read_figures_direct(&figures, sk, tp, family);
	/* To the stack and back, as in on_destroy: 5.10's verifier otherwise
	 * follows the two families' paths crossed. */
	asm volatile("" : : "r"(&figures) : "memory");
	/* A child that no accept() has taken yet (no struct socket) is no
	 * connect()'s: nothing to look up, track() replaces what a socket
	 * before it left at its address, and counts it. */
	if (!stand_in && newstate == BPF_TCP_ESTABLISHED && !sk->sk_socket)
		st = NULL;
	else
		st = state_of(sk, keep, how);
	if (st && !same_connection(st, &figures, family)) {
		/* another connection's, whose close the probe never saw */
		forget(sk, keep, how);
		__sync_fetch_and_add(&counters.closes_missed, 1);
		st = NULL;
	}

	if (newstate == BPF_TCP_ESTABLISHED) {
		/* from SYN_RECV */
		if (st && stand_in)
			return 0;
		if (st && st->direction == DIRECTION_OUTBOUND) {
			st->local_port = figures.local_port; /* simultaneous open */
			return 0;
		}
		if (dropped_at_start(DIRECTION_INBOUND, bpf_ntohs(figures.local_port),
				     bpf_ntohs(figures.remote_port)))
			return 0;
		__builtin_memset(&fresh, 0, sizeof(fresh));
		fresh.start_ns = now;
		fresh.direction = DIRECTION_INBOUND;
		identify(&fresh, &figures, family);
		track(sk, &fresh, keep, how);
		return 0;
	}

	/* CLOSE. A connection not tracked was open before the probe was
	 * attached (or the probe's run at its start was skipped): it is
	 * reported with what is known. A stand-in finding none leaves it: the
	 * first may have made this close already. */
	if (!st) {
		if (stand_in)
			return 0;
		/* A child that dies in SYN_RECV was never accepted: a duplicate
		 * the kernel discards while the real one goes on, or one whose
		 * setup failed. Only a Fast Open child was a connection its
		 * client could see fail: one made from a SYN with data (which
		 * it holds: a plain child has received nothing in SYN_RECV),
		 * its request still attached unless a RST took it off. */
		if (oldstate == BPF_TCP_SYN_RECV && !tp->fastopen_rsk && !tp->bytes_received)
			return 0;
		init_unknown(&fresh, sk->sk_max_ack_backlog);
		st = &fresh;
	}
	if (keep == KEEP_STORAGE)
		take_accept_owner(sk, st, &figures, family, 1);
	emit(sk, st, &figures, family, fin_sent(oldstate), attempting(oldstate), now);
	if (st != &fresh)
		forget(sk, keep, how);
	return 0;
}

/*
 * on_state_change, by the first program (level 0) or a stand-in (level > 0),
 * unless another program claimed this change (with the stand-ins attached).
 * Where a task is preempted between two programs, another task's change may
 * take this CPU's claim meanwhile, and a stand-in then makes a change already
 * made: it finds its state (a start) or none (a close), and does nothing; so it
 * also leaves alone a close not tracked, which the first would have written
 * with what is known. (A stand-in attached in front of the first, as a classic
 * tracepoint program is where another tool's was attached before the agent,
 * makes every change, and the first none.)
 */
static __always_inline int state_change_at(const struct sock *sk, const int oldstate, const int newstate,
					   const int keep, const int level, const int how)
{
	/* Tests: a close ignored is left unclaimed, as a run the kernel skipped. */
	if (level == 0 && newstate == BPF_TCP_CLOSE && switches.ignore_close_port && ignored_by_test(sk))
		return 0;
	if (switches.stand_ins && !claimed_here(sk, oldstate, newstate))
		return 0;
	if (level > 0)
		__sync_fetch_and_add(&counters.changes_stood_in, 1);
	return on_state_change(sk, oldstate, newstate, keep, level > 0, how);
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(handle_set_state, const struct sock *sk, const int oldstate, const int newstate)
{
	return state_change_at(sk, oldstate, newstate, KEEP_MAP, 0, SK_DIRECT);
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(handle_set_state_sk, const struct sock *sk, const int oldstate, const int newstate)
{
	return state_change_at(sk, oldstate, newstate, KEEP_STORAGE, 0, SK_DIRECT);
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(handle_set_state_table, const struct sock *sk, const int oldstate, const int newstate)
{
	return state_change_at(sk, oldstate, newstate, KEEP_TABLE, 0, SK_DIRECT);
}

SEC("tracepoint/sock/inet_sock_set_state")
int classic_set_state(const struct inet_sock_set_state_args *ctx)
{
	return state_change_at(ctx->skaddr, ctx->oldstate, ctx->newstate, KEEP_MAP, 1, SK_PROBED);
}

SEC("tracepoint/sock/inet_sock_set_state")
int classic_set_state_table(const struct inet_sock_set_state_args *ctx)
{
	return state_change_at(ctx->skaddr, ctx->oldstate, ctx->newstate, KEEP_TABLE, 1, SK_PROBED);
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(stand_in2_set_state, const struct sock *sk, const int oldstate, const int newstate)
{
	return state_change_at(sk, oldstate, newstate, KEEP_MAP, 2, SK_DIRECT);
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(stand_in2_set_state_table, const struct sock *sk, const int oldstate, const int newstate)
{
	return state_change_at(sk, oldstate, newstate, KEEP_TABLE, 2, SK_DIRECT);
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(stand_in3_set_state, const struct sock *sk, const int oldstate, const int newstate)
{
	return state_change_at(sk, oldstate, newstate, KEEP_MAP, 3, SK_DIRECT);
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(stand_in3_set_state_table, const struct sock *sk, const int oldstate, const int newstate)
{
	return state_change_at(sk, oldstate, newstate, KEEP_TABLE, 3, SK_DIRECT);
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(stand_in_set_state_sk, const struct sock *sk, const int oldstate, const int newstate)
{
	return state_change_at(sk, oldstate, newstate, KEEP_STORAGE, 1, SK_DIRECT);
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(stand_in2_set_state_sk, const struct sock *sk, const int oldstate, const int newstate)
{
	return state_change_at(sk, oldstate, newstate, KEEP_STORAGE, 2, SK_DIRECT);
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(stand_in3_set_state_sk, const struct sock *sk, const int oldstate, const int newstate)
{
	return state_change_at(sk, oldstate, newstate, KEEP_STORAGE, 3, SK_DIRECT);
}

/*
 * The end of a TCP socket (tcp_v4_destroy_sock, for IPv6 too), once per
 * socket, its figures final. A state still kept for the socket here is one
 * whose close the tracepoint program never saw: the kernel skipped that run
 * (a softirq closed the socket while the program ran on the same CPU, see
 * the README's performance section). This program is on another tracepoint,
 * with a guard of its own, so the record is made here. The state the socket
 * closed from is not known here: whether the connection was established is
 * read from the socket (the accepting side's state begins at ESTABLISHED; the
 * connecting side's SYN was acknowledged: bytes_acked), and whether our FIN
 * was sent from the state kept (STATE_FIN_SENT). A close that was seen left
 * no state: nothing to do.
 */
static __always_inline int on_destroy(const struct sock *sk, const int keep, const int how)
{
	const struct tcp_sock *tp;
	struct sock_figures figures;
	struct conn_state *st;
	__u16 family;
	int failed;

	st = state_of(sk, keep, how);
	if (!st)
		return 0;
	family = SK_READ(how, sk, __sk_common.skc_family);
	tp = how == SK_PROBED ? (const struct tcp_sock *)sk : bpf_skc_to_tcp_sock((void *)sk);
	if (!tp || (family != AF_INET && family != AF_INET6))
		return 0;
	if (how == SK_PROBED)
		read_figures_probe(&figures, sk, family);
	else
		read_figures_direct(&figures, sk, tp, family);
	/* The figures go to the stack and are read back from there: else clang
	 * keeps them in registers and stack slots shared between the two
	 * families' paths, which the verifier, not knowing that family decides
	 * both, follows crossed. */
	asm volatile("" : : "r"(&figures) : "memory");
	failed = st->direction == DIRECTION_OUTBOUND && figures.acked == 0;
	if (keep == KEEP_STORAGE)
		take_accept_owner(sk, st, &figures, family, 1);
	if (!same_connection(st, &figures, family) || (failed && !figures.err)) {
		/* A freed socket's state, whose close and end were both skipped;
		 * or a failed attempt whose error the application has read since
		 * (connect() or SO_ERROR clear it): its line would have to guess. */
		__sync_fetch_and_add(&counters.closes_missed, 1);
	} else {
		emit(sk, st, &figures, family, st->flags & STATE_FIN_SENT, failed, bpf_ktime_get_ns());
		__sync_fetch_and_add(&counters.closes_at_destroy, 1);
	}
	forget(sk, keep, how);
	return 0;
}

/* on_destroy, by the first program or a stand-in, as state_change_at. */
static __always_inline int destroy_at(const struct sock *sk, const int keep, const int level, const int how)
{
	if (switches.stand_ins && !claimed_here(sk, 0, -1))
		return 0;
	if (level > 0)
		__sync_fetch_and_add(&counters.ends_stood_in, 1);
	return on_destroy(sk, keep, how);
}

SEC("tp_btf/tcp_destroy_sock")
int BPF_PROG(handle_destroy, const struct sock *sk)
{
	return destroy_at(sk, KEEP_MAP, 0, SK_DIRECT);
}

SEC("tp_btf/tcp_destroy_sock")
int BPF_PROG(handle_destroy_sk, const struct sock *sk)
{
	return destroy_at(sk, KEEP_STORAGE, 0, SK_DIRECT);
}

SEC("tp_btf/tcp_destroy_sock")
int BPF_PROG(handle_destroy_table, const struct sock *sk)
{
	return destroy_at(sk, KEEP_TABLE, 0, SK_DIRECT);
}

SEC("tracepoint/tcp/tcp_destroy_sock")
int classic_destroy(const struct tcp_event_sk_args *ctx)
{
	return destroy_at(ctx->skaddr, KEEP_MAP, 1, SK_PROBED);
}

SEC("tracepoint/tcp/tcp_destroy_sock")
int classic_destroy_table(const struct tcp_event_sk_args *ctx)
{
	return destroy_at(ctx->skaddr, KEEP_TABLE, 1, SK_PROBED);
}

SEC("tp_btf/tcp_destroy_sock")
int BPF_PROG(stand_in2_destroy, const struct sock *sk)
{
	return destroy_at(sk, KEEP_MAP, 2, SK_DIRECT);
}

SEC("tp_btf/tcp_destroy_sock")
int BPF_PROG(stand_in2_destroy_table, const struct sock *sk)
{
	return destroy_at(sk, KEEP_TABLE, 2, SK_DIRECT);
}

SEC("tp_btf/tcp_destroy_sock")
int BPF_PROG(stand_in3_destroy, const struct sock *sk)
{
	return destroy_at(sk, KEEP_MAP, 3, SK_DIRECT);
}

SEC("tp_btf/tcp_destroy_sock")
int BPF_PROG(stand_in3_destroy_table, const struct sock *sk)
{
	return destroy_at(sk, KEEP_TABLE, 3, SK_DIRECT);
}

SEC("tp_btf/tcp_destroy_sock")
int BPF_PROG(stand_in_destroy_sk, const struct sock *sk)
{
	return destroy_at(sk, KEEP_STORAGE, 1, SK_DIRECT);
}

SEC("tp_btf/tcp_destroy_sock")
int BPF_PROG(stand_in2_destroy_sk, const struct sock *sk)
{
	return destroy_at(sk, KEEP_STORAGE, 2, SK_DIRECT);
}

SEC("tp_btf/tcp_destroy_sock")
int BPF_PROG(stand_in3_destroy_sk, const struct sock *sk)
{
	return destroy_at(sk, KEEP_STORAGE, 3, SK_DIRECT);
}

/* Where report_open takes its keys and leaves its records (accesslog.h). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct report_batch);
} report_batch SEC(".maps");

/*
 * Periodic reports, run by the agent (BPF_PROG_TEST_RUN) and never attached:
 * one record per connection still tracked and established, state and
 * cumulative counters as they are now, each in its slot of report_batch (a
 * slot left with state 0 has no report). report_open reports the keys of the
 * hash map the agent wrote into the batch's sock_id fields; report_table a
 * run of REPORT_BATCH entries of the socket table. The records come back
 * through the map, not the ring buffer, so a full ring cannot lose
 * them. The socket is read through bpf_probe_read_kernel only: a connection
 * may close while it is read, and then reports what its socket last held.
 * (A map-element iterator would walk the map in the kernel, but some kernels
 * refuse those iterators to every caller; this runs wherever raw tracepoint
 * programs may.) report_one and report_entry are global functions so that the
 * verifier checks each once rather than once per turn of the loop; their
 * arguments are scalars, as Linux 5.10 requires of global functions.
 */

/* The batch's record for `slot`, emptied (state 0: no report), or NULL. */
static __always_inline struct conn_record *report_slot(__u32 slot)
{
	struct report_batch *batch;
	struct conn_record *rec;
	__u32 zero = 0;

	batch = bpf_map_lookup_elem(&report_batch, &zero);
	if (!batch || slot >= REPORT_BATCH)
		return 0;
	/* The verifier needs a bound on the register the offset is computed
	 * from: clang would compute it from a copy the test above did not
	 * narrow, and drop a mask the test makes redundant, but for the barrier. */
	barrier_var(slot);
	rec = &batch->records[slot & (REPORT_BATCH - 1)];
	rec->state = 0;
	return rec;
}

/* Fills rec for the socket at `key` whose state is st: 1 if reported, 0 if
 * there is nothing to report now, -1 if the state outlived its connection. */
static __always_inline int report_state(struct conn_record *rec, __u64 key, struct conn_state *st, __u64 now)
{
	const struct sock *sk = (const struct sock *)key;
	struct sock_figures figures;
	__u16 family;
	__u8 state;

	state = BPF_CORE_READ(sk, __sk_common.skc_state);
	family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (attempting(state) && st->local_port == 0)
		return 0; /* an attempt still under way: not a connection yet */
	read_figures_probe(&figures, sk, family);
	/* The state outlived its connection (or attempt): the kernel never ran
	 * the probe for its close, and the socket is closed, or its memory is
	 * some other socket's now. */
	if (!connected(state) || !same_connection(st, &figures, family))
		return -1;
	st->local_port = figures.local_port;
	fill_record(rec, sk, st, &figures, family, state, fin_sent(state), 0, now);
	return 1;
}

/* `keep`: KEEP_MAP or KEEP_TABLE, whichever way the programs loaded keep state. */
__noinline int report_one(__u64 key, __u32 slot, __u64 now, __u32 keep)
{
	struct conn_record *rec;
	struct conn_state *st;
	int reported;

	rec = report_slot(slot);
	if (!rec)
		return 0;
	st = bpf_map_lookup_elem(&connections, &key);
	if (!st)
		return 0; /* closed since */
	reported = report_state(rec, key, st, now);
	if (reported >= 0)
		return reported;
	if (bpf_map_delete_elem(&connections, &key) == 0) {
		__sync_fetch_and_add(&counters.closes_missed, 1);
		if (keep == KEEP_TABLE)
			__sync_fetch_and_add(&counters.in_map, -1);
	}
	return 0;
}

/* ctx: how many keys, and the way state is kept (report_one's `keep`). */
SEC("raw_tp")
int report_open(__u64 *ctx)
{
	__u32 zero = 0, count = ctx[0], keep = ctx[1], i;
	struct report_batch *batch;
	__u64 now = bpf_ktime_get_ns();

	batch = bpf_map_lookup_elem(&report_batch, &zero);
	if (!batch)
		return 0;
	for (i = 0; i < REPORT_BATCH && i < count; i++)
		report_one(batch->records[i].sock_id, i, now, keep);
	return 0;
}

__noinline int report_entry(__u32 index, __u32 slot, __u64 now)
{
	struct conn_entry *entry;
	struct conn_record *rec;
	int reported;
	__u64 key;

	rec = report_slot(slot);
	entry = bpf_map_lookup_elem(&conn_table, &index);
	if (!rec || !entry)
		return 0;
	key = entry->sock;
	if (key == 0 || (key & TABLE_CLAIMING))
		return 0; /* free, or its state not written yet */
	reported = report_state(rec, key, &entry->st, now);
	if (reported >= 0)
		return reported;
	if (__sync_val_compare_and_swap(&entry->sock, key, 0) == key)
		__sync_fetch_and_add(&counters.closes_missed, 1);
	return 0;
}

/* ctx: the first entry of the run. */
SEC("raw_tp")
int report_table(__u64 *ctx)
{
	__u32 first = ctx[0], i;
	__u64 now = bpf_ktime_get_ns();

	for (i = 0; i < REPORT_BATCH; i++)
		report_entry(first + i, i, now);
	return 0;
}

/*
 * Run once when the agent starts, after handle_set_state is attached: every
 * established TCP socket that a process holds open and that is not tracked
 * yet is added, as a connection whose start is unknown, so that periodic
 * reports cover it too. One byte is written per connection added (the agent
 * counts them). Sockets of processes outside the agent's PID namespace are
 * not seen here; they are still reported when they close.
 */
static __always_inline int seed(struct bpf_iter__task_file *ctx, const int keep)
{
	struct file *file = ctx->file;
	struct sock_figures figures;
	const struct sock *sk;
	struct socket *sock;
	struct conn_state st;
	__u64 key;
	__u16 family;
	__u8 state;

	if (!file || (BPF_CORE_READ(file, f_inode, i_mode) & S_IFMT) != S_IFSOCK)
		return 0;
	sock = BPF_CORE_READ(file, private_data);
	sk = BPF_CORE_READ(sock, sk);
	if (!sk || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return 0;
	family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return 0;
	state = BPF_CORE_READ(sk, __sk_common.skc_state);
	/* a connection, or an attempt of connect() under way */
	if (!connected(state) && state != BPF_TCP_SYN_SENT)
		return 0;
	init_unknown(&st, BPF_CORE_READ(sk, sk_max_ack_backlog));
	read_figures_probe(&figures, sk, family);
	identify(&st, &figures, family);
	owner_of_task(&st.owner, ctx->task); /* the one that holds it now: what is known */
	if (state == BPF_TCP_SYN_SENT)
		st.local_port = 0; /* an attempt's entry names its peer only */
	key = (__u64)sk;
	/* A socket shared by several processes is added once, and one the
	 * tracepoint already tracks keeps what it knows: in the table, or in
	 * the map (BPF_NOEXIST). */
	if (keep == KEEP_TABLE && state_at(key, keep))
		return 0;
	if (bpf_map_update_elem(&connections, &key, &st, BPF_NOEXIST) == 0) {
		if (keep == KEEP_TABLE)
			__sync_fetch_and_add(&counters.in_map, 1);
		bpf_seq_write(ctx->meta->seq, &state, 1);
	}
	return 0;
}

SEC("iter/task_file")
int seed_open(struct bpf_iter__task_file *ctx)
{
	return seed(ctx, KEEP_MAP);
}

SEC("iter/task_file")
int seed_open_table(struct bpf_iter__task_file *ctx)
{
	return seed(ctx, KEEP_TABLE);
}

/*
 * Periodic reports over socket-local storage: the agent runs this iterator
 * over conn_storage, which walks every socket that holds a state, and reads
 * one record per connection still established (as report_one fills them),
 * written to the iterator's output. The kernel does the walk: nothing is
 * looked up by key, and a socket that is gone is not there to be walked.
 */
SEC("iter/bpf_sk_storage_map")
int report_sk(struct bpf_iter__bpf_sk_storage_map *ctx)
{
	struct sock *sk = ctx->sk;
	const struct conn_state *st = ctx->value;
	struct sock_figures figures;
	struct conn_state known;
	struct conn_record rec;
	__u16 family;
	__u8 state;

	if (!sk || !st || sk->sk_protocol != IPPROTO_TCP)
		return 0;
	state = sk->__sk_common.skc_state;
	family = sk->__sk_common.skc_family;
	/* an attempt under way, or a close the probe missed (the socket is
	 * not freed yet: its state goes with it) */
	if (!connected(state) || (family != AF_INET && family != AF_INET6))
		return 0;
	/* as report_one: read through the helper (clang's code for the
	 * direct reads here is more than the verifier follows) */
	read_figures_probe(&figures, sk, family);
	if (!same_connection(st, &figures, family))
		return 0;
	if (st->direction == DIRECTION_INBOUND && st->owner.pid == 0) {
		/* its owner may still wait in accept_owners: the report names it */
		known = *st;
		take_accept_owner(sk, &known, &figures, family, 0);
		st = &known;
	}
	fill_record(&rec, sk, st, &figures, family, state, fin_sent(state), 0, bpf_ktime_get_ns());
	bpf_seq_write(ctx->meta->seq, &rec, sizeof(rec));
	return 0;
}

/* seed_open for socket-local storage: the socket is found with
 * bpf_sock_from_file, so that its state can be kept beside it. */
SEC("iter/task_file")
int seed_open_sk(struct bpf_iter__task_file *ctx)
{
	struct file *file = ctx->file;
	struct sock_figures figures;
	struct socket *sock;
	struct conn_state st;
	struct sock *sk;
	__u16 family;
	__u8 state;

	if (!file)
		return 0;
	sock = bpf_sock_from_file(file);
	if (!sock)
		return 0;
	sk = sock->sk;
	if (!sk || sk->sk_protocol != IPPROTO_TCP)
		return 0;
	family = sk->__sk_common.skc_family;
	if (family != AF_INET && family != AF_INET6)
		return 0;
	state = sk->__sk_common.skc_state;
	/* a connection, or an attempt of connect() under way */
	if (!connected(state) && state != BPF_TCP_SYN_SENT)
		return 0;
	/* a socket shared by several processes is added once, and one the
	 * tracepoint already tracks keeps what it knows */
	if (bpf_sk_storage_get(&conn_storage, sk, 0, 0))
		return 0;
	init_unknown(&st, sk->sk_max_ack_backlog);
	read_figures_probe(&figures, sk, family);
	identify(&st, &figures, family);
	owner_of_task(&st.owner, ctx->task); /* the one that holds it now: what is known */
	if (state == BPF_TCP_SYN_SENT)
		st.local_port = 0; /* an attempt's state names its peer only */
	if (bpf_sk_storage_get(&conn_storage, sk, &st, BPF_SK_STORAGE_GET_F_CREATE))
		bpf_seq_write(ctx->meta->seq, &state, 1);
	return 0;
}
