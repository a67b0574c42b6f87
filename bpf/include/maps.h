/* SPDX-License-Identifier: Apache-2.0 */
/* The balancer's shared structs and maps: the contract with user space.
 * Every struct here has a #[repr(C)] mirror in crates/tula-dataplane/src/abi.rs,
 * checked against this object's BTF by a test. Change both together. */
#ifndef TULA_MAPS_H
#define TULA_MAPS_H

#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* Map sizes here are defaults; the loader resizes them (set_max_entries). */
#define MAX_VIPS 512
#define MAX_BACKENDS 4096
#define RING_SLOTS (MAX_VIPS + 16) /* spare rings so a swap never writes a live one */
#define DEFAULT_RING_SIZE 65537
#define CONN_TABLE_SIZE 1000000
#define MAX_IFACES 64

/* vip_meta.flags */
#define VIP_F_L2_DSR (1U << 0)      /* rewrite MACs only; default is L3 (IPIP) */
#define VIP_F_SOURCE_HASH (1U << 1) /* hash the client address only */

/* backend.flags */
#define BACKEND_F_ALIVE (1U << 0) /* may carry flows; clear = removed, disabled or down */

struct vip_key {
	__be32 addr;
	__be16 port; /* 0 = all ports */
	__u8 proto;  /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 pad;
};

struct vip_meta {
	__u32 id;    /* index into vip_stats */
	__u32 flags; /* VIP_F_* */
	__u32 ring;  /* which ring slot in `ring` holds this VIP's Maglev table */
	__u32 pad;
};

struct backend {
	__be32 addr;
	__u32 flags; /* BACKEND_F_* */
};

/* 5-tuple of a client flow, in network byte order as on the wire. */
struct flow {
	__be32 src;
	__be32 dst;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad[3];
};

struct conn {
	__u32 backend; /* index into backends */
	__u32 vip;     /* vip_meta.id, so user space can count flows per VIP */
};

struct iface {
	__be32 tunnel_src;    /* outer source address for IPIP leaving here */
	__u16 mtu;            /* tunnel MTU of this egress interface */
	__u16 vlan_id;        /* non-zero: a VLAN device on lower_ifindex */
	__u32 lower_ifindex;  /* where frames for a VLAN device really leave */
};

struct traffic {
	__u64 packets;
	__u64 bytes;
};

/* Global counters: one slot each in `counters`. Append only. */
enum counter {
	CNT_PASS = 0,      /* verdicts */
	CNT_TX,
	CNT_REDIRECT,
	CNT_DROP,
	CNT_NOT_IPV4,      /* passed: ARP, IPv6, other ethertypes */
	CNT_NOT_VIP,       /* passed: IPv4 but no VIP matched */
	CNT_MALFORMED,     /* dropped: truncated or invalid header for a VIP */
	CNT_LRU_HIT,
	CNT_LRU_MISS,
	CNT_LRU_STALE,     /* conn entry pointed at a backend no longer alive */
	CNT_NO_BACKEND,    /* dropped: ring slot empty or backend not alive */
	CNT_FIB_NO_NEIGH,  /* passed to the kernel so it resolves the neighbour */
	CNT_FIB_FAIL,      /* dropped: no route / blackhole / unreachable */
	CNT_NO_IFACE,      /* dropped: egress interface not configured (no tunnel source) */
	CNT_VLAN_MISMATCH, /* passed: tagging of ingress and egress disagree */
	CNT_ENCAP_FAIL,    /* dropped: adjust_head failed */
	CNT_NO_TX_PORT,    /* dropped: egress interface missing from tx_ports */
	CNT_MAX,
};
#define COUNTER_SLOTS 32

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct vip_key);
	__type(value, struct vip_meta);
	__uint(max_entries, MAX_VIPS);
} vips SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct backend);
	__uint(max_entries, MAX_BACKENDS);
} backends SEC(".maps");

/* RING_SLOTS rings of ring_size backend ids each, laid end to end. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, RING_SLOTS * DEFAULT_RING_SIZE);
} ring SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct flow);
	__type(value, struct conn);
	__uint(max_entries, CONN_TABLE_SIZE);
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
} conns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct iface);
	__uint(max_entries, MAX_IFACES);
} ifaces SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, MAX_IFACES);
} tx_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct traffic);
	__uint(max_entries, MAX_VIPS);
} vip_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct traffic);
	__uint(max_entries, MAX_BACKENDS);
} backend_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, COUNTER_SLOTS);
} counters SEC(".maps");

#endif
