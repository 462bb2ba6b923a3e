/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The few kernel structures the probe reads, declared by hand with
 * preserve_access_index so that libbpf relocates every field against the
 * running kernel's BTF (CO-RE). Only the fields used are listed: this file is
 * the exact list of what the probe depends on in the kernel.
 */
#ifndef KMESH_ACCESSLOG_KERNEL_H
#define KMESH_ACCESSLOG_KERNEL_H

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6

/* enum sock_flags: bit set in sock.sk_flags once the peer's FIN was processed */
#define SOCK_DONE 1

struct in6_addr {
	__u8 s6_addr[16];
} __attribute__((preserve_access_index));

struct ns_common {
	unsigned int inum;
} __attribute__((preserve_access_index));

struct net {
	struct ns_common ns;
} __attribute__((preserve_access_index));

typedef struct {
	struct net *net;
} possible_net_t;

struct sock_common {
	__be32 skc_daddr;
	__be32 skc_rcv_saddr;
	__be16 skc_dport;
	__u16 skc_num;		/* the local port, host byte order; 0 until chosen */
	unsigned short skc_family;
	volatile unsigned char skc_state;
	struct in6_addr skc_v6_daddr;
	struct in6_addr skc_v6_rcv_saddr;
	possible_net_t skc_net;
	unsigned long skc_flags;	/* sock.sk_flags is this field */
} __attribute__((preserve_access_index));

struct sock {
	struct sock_common __sk_common;
	int sk_err;
	__u16 sk_protocol;
	__u32 sk_max_ack_backlog;	/* set by listen(); an accepted socket is a copy of its listener */
	struct socket *sk_socket;	/* NULL for a child no accept() has taken yet */
} __attribute__((preserve_access_index));

struct inet_sock {
	struct sock sk;
	__be16 inet_sport;
} __attribute__((preserve_access_index));

struct minmax_sample {
	__u32 t;
	__u32 v;
} __attribute__((preserve_access_index));

struct minmax {
	struct minmax_sample s[3];
} __attribute__((preserve_access_index));

struct request_sock;

struct tcp_sock {
	__u64 bytes_received;
	__u64 bytes_acked;
	__u32 rcv_nxt;
	__u32 copied_seq;
	__u32 snd_una;
	__u32 write_seq;
	__u32 srtt_us;
	struct minmax rtt_min;
	__u32 total_retrans;
	__u32 lost;
	struct request_sock *fastopen_rsk;	/* a Fast Open child's request, while in SYN_RECV */
} __attribute__((preserve_access_index));

struct seq_file;

struct bpf_iter_meta {
	struct seq_file *seq;
} __attribute__((preserve_access_index));

/* A process, for the owner of a connection: its ids, its cgroup (v2), its open files. */
struct kernfs_node {
	__u64 id;	/* a cgroup's id: the inode number of its directory (64-bit kernels) */
} __attribute__((preserve_access_index));

struct cgroup {
	struct kernfs_node *kn;
} __attribute__((preserve_access_index));

struct css_set {
	struct cgroup *dfl_cgrp;	/* its cgroup in the v2 hierarchy */
} __attribute__((preserve_access_index));

struct file;

struct fdtable {
	unsigned int max_fds;
	struct file **fd;
} __attribute__((preserve_access_index));

struct files_struct {
	struct fdtable *fdt;
} __attribute__((preserve_access_index));

struct task_struct {
	int tgid;
	struct task_struct *group_leader;	/* the process's main thread: its comm is the process's name */
	char comm[16];
	struct css_set *cgroups;
	struct files_struct *files;
} __attribute__((preserve_access_index));

/* The context of an iter/task_file program: one call per open file of each process. */

struct inode {
	unsigned short i_mode;
} __attribute__((preserve_access_index));

struct file {
	struct inode *f_inode;
	void *private_data;	/* struct socket * for a socket */
} __attribute__((preserve_access_index));

struct socket {
	struct sock *sk;
} __attribute__((preserve_access_index));

struct bpf_iter__task_file {
	struct bpf_iter_meta *meta;
	struct task_struct *task;
	__u32 fd;
	struct file *file;
} __attribute__((preserve_access_index));

/* The context of an iter/bpf_sk_storage_map program: one call per socket holding a value. */
struct bpf_map;

struct bpf_iter__bpf_sk_storage_map {
	struct bpf_iter_meta *meta;
	struct bpf_map *map;
	struct sock *sk;
	void *value;
} __attribute__((preserve_access_index));

/* The context of a syscalls:sys_exit_* tracepoint program, as its format file lays it out. */
struct syscall_exit_args {
	__u64 common;	/* common_type, common_flags, common_preempt_count, common_pid */
	__s32 syscall_nr;
	__s32 pad;
	__s64 ret;
};

/* The contexts of the classic tracepoints sock:inet_sock_set_state and
 * tcp:tcp_destroy_sock (the stand-ins), as their format files lay them out
 * (since Linux 4.16), up to the last field read. */
struct inet_sock_set_state_args {
	__u64 common;
	const struct sock *skaddr;
	__s32 oldstate;
	__s32 newstate;
};

struct tcp_event_sk_args {
	__u64 common;
	const struct sock *skaddr;
};

#define S_IFMT 00170000
#define S_IFSOCK 0140000

#endif
