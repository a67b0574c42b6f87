/* SPDX-License-Identifier: Apache-2.0 */
/* The decapsulation program's maps: the contract with user space.
 * Mirrored in crates/tula-decap/src/program.rs (map names, key and value
 * types, counter slots). Change both together. */
#ifndef TULA_DECAP_MAPS_H
#define TULA_DECAP_MAPS_H

#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define DECAP_MAX_LOCAL 64 /* this host's tunnel endpoint addresses */
#define DECAP_MAX_VIPS 512

/* One slot each in `decap_stats` (per-CPU __u64). Append only. */
enum decap_counter {
	DECAP_PACKETS = 0,   /* decapsulated and passed up */
	DECAP_BYTES,         /* inner bytes (inner IPv4 total length, or 40 + IPv6 payload length) passed up */
	DECAP_PASSED,        /* not a tunnel packet for this host: passed untouched */
	DECAP_MALFORMED,     /* dropped: a tunnel packet for us with a bad outer or inner header */
	DECAP_NOT_VIP,       /* dropped: inner destination is not a configured VIP */
	DECAP_FRAGMENT,      /* passed: an outer fragment, which XDP cannot reassemble */
	DECAP_ADJUST_FAIL,   /* dropped: bpf_xdp_adjust_head refused */
	DECAP_ECN_DROP,      /* dropped: outer CE mark on a not-ECN-capable inner packet (RFC 6040) */
	DECAP_COUNTERS,
};

/* An IPv6 address as it is in the packet (network byte order). */
struct decap_in6 {
	__be32 addr[4];
};

/* Keys are IPv4 addresses in network byte order; the value is unused (1). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __be32);
	__type(value, __u32);
	__uint(max_entries, DECAP_MAX_LOCAL);
} decap_local SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __be32);
	__type(value, __u32);
	__uint(max_entries, DECAP_MAX_VIPS);
} decap_vips SEC(".maps");

/* The IPv6 counterparts: this host's IPv6 tunnel endpoint addresses (outer
 * IPv6 destinations to decapsulate) and the IPv6 VIPs an inner IPv6 packet
 * may be addressed to. An inner IPv4 packet in IPv6 is checked against
 * `decap_vips`. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct decap_in6);
	__type(value, __u32);
	__uint(max_entries, DECAP_MAX_LOCAL);
} decap_local6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct decap_in6);
	__type(value, __u32);
	__uint(max_entries, DECAP_MAX_VIPS);
} decap_vips6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, DECAP_COUNTERS);
} decap_stats SEC(".maps");

#endif
