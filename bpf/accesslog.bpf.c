// SPDX-License-Identifier: Apache-2.0
/*
 * kmesh-accesslog, kernel side.
 *
 * One BTF tracepoint, inet_sock_set_state, sees every TCP state change of
 * every socket on the node, whatever its network namespace or cgroup. A hash
 * map keyed by the socket's address keeps what the kernel does not (when the
 * connection began, which side opened it, the counters' starting values);
 * when the socket reaches TCP_CLOSE one conn_record goes to the ring buffer.
 * A program the agent runs on demand reports the open connections it names
 * (periodic reports); an iterator, run once at start, adds the connections
 * that were already open (every TCP socket some process holds). No per-packet
 * hook: the cost is a few map operations per connection.
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

/* What the kernel does not keep about a connection. */
struct conn_state {
	__u64 start_ns;
	__u64 acked_base;	/* tcp_sock.bytes_acked when it became ESTABLISHED (the SYN) */
	__u64 received_base;	/* tcp_sock.bytes_received then */
	__u8 direction;
	__u8 flags;		/* STATE_* */
	__u8 pad[6];
};

#define STATE_ESTABLISHED 0x1	/* reached ESTABLISHED */
#define STATE_FIN_SENT 0x2	/* our FIN is in the sequence space (FIN_WAIT1 or LAST_ACK seen) */
#define STATE_START_UNKNOWN 0x4	/* first seen after it began (open before the probe) */

/* Sized by the agent before load (--max-connections); entries live from
 * connect()/accept to TCP_CLOSE, so the map holds only open connections. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct conn_state);
} connections SEC(".maps");

/* Sized by the agent before load (--ring-buffer-size). No value type: libbpf
 * refuses one on a ring buffer. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20);
} events SEC(".maps");

/* The agent's view into the probe (layouts in accesslog.h). */
volatile struct probe_switches switches = { .emit_enabled = 1 };
struct probe_counters counters;

/* Puts struct conn_record into the object's BTF for the layout test. */
struct conn_record *const unused_record_type __attribute__((unused));

static __always_inline void copy_addrs(struct conn_record *rec, const struct sock *sk,
				       __u16 family, __u8 direction)
{
	__u8 *local = direction == DIRECTION_OUTBOUND ? rec->src_addr : rec->dst_addr;
	__u8 *remote = direction == DIRECTION_OUTBOUND ? rec->dst_addr : rec->src_addr;

	if (family == AF_INET) {
		BPF_CORE_READ_INTO((__be32 *)local, sk, __sk_common.skc_rcv_saddr);
		BPF_CORE_READ_INTO((__be32 *)remote, sk, __sk_common.skc_daddr);
	} else {
		BPF_CORE_READ_INTO((struct in6_addr *)local, sk, __sk_common.skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO((struct in6_addr *)remote, sk, __sk_common.skc_v6_daddr);
	}
}

static __always_inline unsigned long sock_flags(const struct sock *sk)
{
	if (bpf_core_field_exists(sk->__sk_common.skc_flags))
		return BPF_CORE_READ(sk, __sk_common.skc_flags);
	return BPF_CORE_READ((const struct sock___flags_in_sock *)sk, sk_flags);
}

/*
 * Fill one record from the socket as it is now. The kernel's bytes_acked and
 * bytes_received count the SYN and the FIN as well as payload: the SYN is
 * taken off through the values saved at ESTABLISHED, the FIN by looking
 * whether it was sent and acknowledged (ours) or processed (the peer's).
 */
static __always_inline void fill_record(struct conn_record *rec, const struct sock *sk,
					const struct conn_state *st, __u16 family, __u8 state,
					__u64 now)
{
	const struct tcp_sock *tp = (const struct tcp_sock *)sk;
	__u64 acked = BPF_CORE_READ(tp, bytes_acked);
	__u64 received = BPF_CORE_READ(tp, bytes_received);
	__u16 local_port = bpf_ntohs(BPF_CORE_READ((const struct inet_sock *)sk, inet_sport));
	__u16 remote_port = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	__u32 min_rtt = BPF_CORE_READ(tp, rtt_min.s[0].v);

	__builtin_memset(rec, 0, sizeof(*rec));
	rec->start_ns = st->start_ns;
	rec->report_ns = now;
	rec->sock_id = (__u64)sk;
	rec->family = family;
	rec->direction = st->direction;
	rec->state = state;
	copy_addrs(rec, sk, family, st->direction);
	rec->src_port = st->direction == DIRECTION_OUTBOUND ? local_port : remote_port;
	rec->dst_port = st->direction == DIRECTION_OUTBOUND ? remote_port : local_port;
	rec->netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	rec->packets_lost = BPF_CORE_READ(tp, lost);
	rec->retransmissions = BPF_CORE_READ(tp, total_retrans);
	rec->srtt_us = BPF_CORE_READ(tp, srtt_us) >> 3;
	rec->min_rtt_us = min_rtt == ~0U ? 0 : min_rtt;
	if (st->flags & STATE_START_UNKNOWN)
		rec->flags |= RECORD_START_UNKNOWN;

	if (!(st->flags & STATE_ESTABLISHED)) {
		rec->error = BPF_CORE_READ(sk, sk_err);
		return;
	}
	rec->flags |= RECORD_ESTABLISHED;

	if ((st->flags & STATE_FIN_SENT) &&
	    BPF_CORE_READ(tp, snd_una) == BPF_CORE_READ(tp, write_seq))
		acked -= 1;
	if (sock_flags(sk) & (1UL << SOCK_DONE))
		received -= 1;
	rec->sent_bytes = acked > st->acked_base ? acked - st->acked_base : 0;
	rec->received_bytes = received > st->received_base ? received - st->received_base : 0;
}

static __always_inline void emit(const struct sock *sk, const struct conn_state *st,
				 __u16 family, __u8 state, __u64 now)
{
	struct conn_record *rec;

	if (!switches.emit_enabled)
		return;
	rec = bpf_ringbuf_reserve(&events, sizeof(*rec), 0);
	if (!rec) {
		__sync_fetch_and_add(&counters.records_lost, 1);
		return;
	}
	fill_record(rec, sk, st, family, state, now);
	/* The agent drains on its own clock: waking it per record would cost more. */
	bpf_ringbuf_submit(rec, BPF_RB_NO_WAKEUP);
}

/*
 * A connection seen for the first time after it began: it was open before the
 * probe was attached, and its start is unknown. Its direction is still known:
 * an accepted socket is created as a copy of its listener, so it carries the
 * backlog listen() set, while a socket that called connect() never listened.
 * (A listener made with backlog 0 would pass for the connecting side.) The SYN
 * is then taken off the way Linux counts it: in bytes_acked on the side that
 * connected only.
 */
static __always_inline void init_unknown(struct conn_state *st, const struct sock *sk)
{
	__builtin_memset(st, 0, sizeof(*st));
	st->direction = BPF_CORE_READ(sk, sk_max_ack_backlog) ? DIRECTION_INBOUND : DIRECTION_OUTBOUND;
	st->flags = STATE_ESTABLISHED | STATE_START_UNKNOWN;
	st->acked_base = st->direction == DIRECTION_OUTBOUND ? 1 : 0;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(handle_set_state, const struct sock *sk, const int oldstate, const int newstate)
{
	__u64 key = (__u64)sk;
	__u64 now = bpf_ktime_get_ns();
	struct conn_state *st, fresh;
	__u16 family;

	/* Nothing to do in these states: the FIN that matters was counted when
	 * FIN_WAIT1 or LAST_ACK was entered, and the close comes later. Listening
	 * sockets are not connections. */
	switch (newstate) {
	case BPF_TCP_CLOSE_WAIT:
	case BPF_TCP_FIN_WAIT2:
	case BPF_TCP_CLOSING:
	case BPF_TCP_LISTEN:
		return 0;
	}
	if (oldstate == BPF_TCP_LISTEN && newstate == BPF_TCP_CLOSE)
		return 0;
	/* sk is a BTF pointer here: its own fields are read directly. */
	if (sk->sk_protocol != IPPROTO_TCP)
		return 0;
	family = sk->__sk_common.skc_family;
	if (family != AF_INET && family != AF_INET6)
		return 0;

	if (newstate == BPF_TCP_SYN_SENT || newstate == BPF_TCP_SYN_RECV) {
		__builtin_memset(&fresh, 0, sizeof(fresh));
		fresh.start_ns = now;
		fresh.direction = newstate == BPF_TCP_SYN_SENT ? DIRECTION_OUTBOUND : DIRECTION_INBOUND;
		if (bpf_map_update_elem(&connections, &key, &fresh, BPF_ANY))
			__sync_fetch_and_add(&counters.tracking_failed, 1);
		return 0;
	}

	st = bpf_map_lookup_elem(&connections, &key);
	if (newstate == BPF_TCP_ESTABLISHED) {
		const struct tcp_sock *tp = (const struct tcp_sock *)sk;

		if (!st) {
			/* The handshake began before the probe was attached. */
			__builtin_memset(&fresh, 0, sizeof(fresh));
			fresh.direction = oldstate == BPF_TCP_SYN_SENT ? DIRECTION_OUTBOUND
								       : DIRECTION_INBOUND;
			if (fresh.direction == DIRECTION_OUTBOUND)
				fresh.flags = STATE_START_UNKNOWN;
			st = &fresh;
		}
		if (st->direction == DIRECTION_INBOUND)
			st->start_ns = now; /* accepted: INBOUND connections start here */
		st->flags |= STATE_ESTABLISHED;
		st->acked_base = BPF_CORE_READ(tp, bytes_acked);
		st->received_base = BPF_CORE_READ(tp, bytes_received);
		if (st == &fresh && bpf_map_update_elem(&connections, &key, &fresh, BPF_ANY))
			__sync_fetch_and_add(&counters.tracking_failed, 1);
		return 0;
	}

	if (!st) {
		init_unknown(&fresh, sk);
		st = &fresh;
		if (newstate != BPF_TCP_CLOSE &&
		    bpf_map_update_elem(&connections, &key, &fresh, BPF_ANY)) {
			__sync_fetch_and_add(&counters.tracking_failed, 1);
		}
		/* Re-read so that the flag below lands in the map's copy. */
		if (newstate != BPF_TCP_CLOSE) {
			st = bpf_map_lookup_elem(&connections, &key);
			if (!st)
				st = &fresh;
		}
	}

	if (newstate == BPF_TCP_FIN_WAIT1 || newstate == BPF_TCP_LAST_ACK) {
		st->flags |= STATE_FIN_SENT;
		return 0;
	}
	if (newstate != BPF_TCP_CLOSE)
		return 0;

	emit(sk, st, family, BPF_TCP_CLOSE, now);
	bpf_map_delete_elem(&connections, &key);
	return 0;
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
 * one record per key of report_batch whose connection is still tracked and
 * established, state and cumulative counters as they are now, each in its
 * key's slot (a slot left with state 0 has no report). The records come back
 * through the map, not the ring buffer, so a full ring cannot lose
 * them. The socket is read through bpf_probe_read_kernel only: a connection
 * may close while it is read, and then reports what its socket last held.
 * (A map-element iterator would walk the map in the kernel, but some kernels
 * refuse those iterators to every caller; this runs wherever raw tracepoint
 * programs may.) report_one is a global function so that the verifier checks
 * it once rather than once per turn of the loop; its arguments are scalars,
 * as Linux 5.10 requires of global functions.
 */
__noinline int report_one(__u64 key, __u32 slot, __u64 now)
{
	const struct sock *sk = (const struct sock *)key;
	struct report_batch *batch;
	struct conn_record *rec;
	struct conn_state *st;
	__u32 zero = 0;

	batch = bpf_map_lookup_elem(&report_batch, &zero);
	if (!batch || slot >= REPORT_BATCH)
		return 0;
	/* The verifier needs a bound on the register the offset is computed
	 * from: clang would compute it from a copy the test above did not
	 * narrow, and drop a mask the test makes redundant, but for the barrier. */
	barrier_var(slot);
	rec = &batch->records[slot & (REPORT_BATCH - 1)];
	st = bpf_map_lookup_elem(&connections, &key);
	if (!st || !(st->flags & STATE_ESTABLISHED)) {
		rec->state = 0; /* no report: closed since, or never established */
		return 0;
	}
	fill_record(rec, sk, st, BPF_CORE_READ(sk, __sk_common.skc_family),
		    BPF_CORE_READ(sk, __sk_common.skc_state), now);
	return 1;
}

SEC("raw_tp")
int report_open(__u64 *ctx)
{
	__u32 zero = 0, count = ctx[0], i;
	struct report_batch *batch;
	__u64 now = bpf_ktime_get_ns();

	batch = bpf_map_lookup_elem(&report_batch, &zero);
	if (!batch)
		return 0;
	for (i = 0; i < REPORT_BATCH && i < count; i++)
		report_one(batch->records[i].sock_id, i, now);
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
SEC("iter/task_file")
int seed_open(struct bpf_iter__task_file *ctx)
{
	struct file *file = ctx->file;
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
	init_unknown(&st, sk);
	switch (state) {
	case BPF_TCP_ESTABLISHED:
	case BPF_TCP_CLOSE_WAIT:
		break;
	case BPF_TCP_FIN_WAIT1:
	case BPF_TCP_FIN_WAIT2:
	case BPF_TCP_LAST_ACK:
	case BPF_TCP_CLOSING:
		st.flags |= STATE_FIN_SENT;
		break;
	default:
		return 0; /* not a connection (listening), or not one yet or any more */
	}
	key = (__u64)sk;
	/* BPF_NOEXIST: a socket shared by several processes is added once, and
	 * one the tracepoint already tracks keeps what it knows. */
	if (bpf_map_update_elem(&connections, &key, &st, BPF_NOEXIST) == 0)
		bpf_seq_write(ctx->meta->seq, &state, 1);
	return 0;
}
