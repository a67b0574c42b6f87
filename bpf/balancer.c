// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only
/* tula's XDP load balancer, attached to the ingress interface(s).
 *
 * For a TCP or UDP packet to a VIP ({address, port, protocol}, or the VIP's
 * port-0 "all ports" entry) it picks a backend -- the flow's entry in the
 * connection table, or else (and always for a TCP SYN) the VIP's ring,
 * indexed by the flow hash (Maglev) or by a per-CPU round-robin cursor --
 * and sends the packet to it:
 *   L3 DSR (default): prepend an outer IPv4 header (IPIP) to the backend, or
 *   an outer IPv6 header to an IPv6 backend (next header 41 for an IPv6 VIP,
 *   4 for an IPv4 one);
 *   L2 DSR (VIP_F_L2_DSR): rewrite the Ethernet addresses only.
 * IPv4 and IPv6 take the same steps (classify, pick_backend, forward) with
 * tables of their own (vips6, conns6, frags6, ...); the *6 functions are the
 * IPv6 ones.
 * The next hop comes from bpf_fib_lookup (cached per backend and CPU, see
 * struct path in maps.h): XDP_TX when it leaves by the ingress interface, else
 * XDP_REDIRECT through tx_ports. Everything that is not for a VIP gets
 * XDP_PASS, untouched.
 *
 * Besides: a DF packet (any IPv6 packet) too big for the tunnel gets ICMP
 * Fragmentation Needed (Packet Too Big) back (icmp.h, icmp6.h); a datagram's
 * later fragments follow its first one (frags, frags6); ICMP errors quoting a
 * VIP flow go to that flow's backend; echo requests to a VIP address are
 * answered. See docs/DATAPLANE.md. */

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "maps.h"
#include "parse.h"
#include "parse6.h"
#include "csum.h"
#include "encap.h"
#include "icmp.h"
#include "icmp6.h"

#define AF_INET 2
#define AF_INET6 10

/* Slots per ring; set by the loader before load, so the verifier sees a constant. */
const volatile __u32 ring_size = DEFAULT_RING_SIZE;
/* Buckets of the connection tables (conns, conns6), likewise. */
const volatile __u32 conn_buckets = CONN_TABLE_SIZE / CONN_WAYS;
const volatile __u32 conn6_buckets = CONN_TABLE_SIZE / CONN_WAYS;
/* Backend ids per CPU in `cpu_backends` (max_backends), likewise. */
const volatile __u32 path_backends = MAX_BACKENDS;
/* Hops per CPU in `paths` and `paths6` (max_backend_addresses, at most max_backends), likewise. */
const volatile __u32 path_hops = MAX_BACKENDS;

static __always_inline void count(__u32 slot)
{
	__u64 *value = bpf_map_lookup_elem(&counters, &slot);

	if (value)
		*value += 1;
}

static __always_inline int pass(__u32 reason)
{
	count(reason);
	count(CNT_PASS);
	return XDP_PASS;
}

static __always_inline int drop(__u32 reason)
{
	count(reason);
	count(CNT_DROP);
	return XDP_DROP;
}

static __always_inline void add_traffic(void *stats, __u32 id, __u64 bytes)
{
	struct traffic *t = bpf_map_lookup_elem(stats, &id);

	if (t) {
		t->packets += 1;
		t->bytes += bytes;
	}
}

/* This CPU's copy of backend `id` (see struct cpu_backend), copied anew from
 * `backends` when user space has written any backend since (the settings'
 * generation moved on), or NULL if there is no such id. */
static __always_inline struct cpu_backend *backend_of(__u32 id)
{
	__u32 index = bpf_get_smp_processor_id() * path_backends + id;
	__u32 zero = 0, generation;
	struct cpu_backend *copy;
	struct settings *s;

	if (id >= path_backends)
		return NULL;
	copy = bpf_map_lookup_elem(&cpu_backends, &index);
	s = bpf_map_lookup_elem(&settings, &zero);
	if (!copy || !s)
		return NULL;
	/* Read before the entry: a copy holds at least what was published under the generation it carries. */
	generation = *(volatile __u32 *)&s->backend_generation;
	if (copy->backend.generation != generation || !generation) {
		struct backend *b = bpf_map_lookup_elem(&backends, &id);

		if (!b)
			return NULL;
		copy->backend = *b;
		copy->backend.generation = generation;
	}
	return copy;
}

/* Whether addr may be a VIP address (false positives only; see maps.h). */
static __always_inline int vip_filter_has(__be32 addr)
{
	__u32 zero = 0;
	struct vip_filter *filter = bpf_map_lookup_elem(&vip_filter, &zero);
	__u32 bit = ((__u32)addr * VIP_FILTER_MUL) >> 16;

	return filter && (filter->words[bit / 64] >> (bit % 64)) & 1;
}

/* The same for an IPv6 address: the filter bit of its four words xored. */
static __always_inline int vip_filter_has6(const __be32 *addr)
{
	return vip_filter_has(addr[0] ^ addr[1] ^ addr[2] ^ addr[3]);
}

/* A 64-bit multiply-xorshift finalizer: every input bit flips each output bit
 * with probability close to 1/2. */
static __always_inline __u64 mix64(__u64 x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return x;
}

#define FLOW_HASH_SEED 0x74756c612d763031ULL /* "tula-v01": changing it moves every new flow */

/* The flow hash that indexes Maglev rings. Fixed (no per-host seed) so that
 * every balancer in front of the same backends picks the same one.
 * Mirrored bit for bit by tula_dataplane::flow_hash. */
static __always_inline __u64 flow_hash64(const struct flow *f)
{
	__u64 addrs = (__u64)f->dst << 32 | f->src;
	__u64 rest = (__u64)f->proto << 32 | (__u64)f->dport << 16 | f->sport;

	return mix64(mix64(rest ^ FLOW_HASH_SEED) ^ addrs);
}

/* The tag of an IPv6 backend address: what `backend.addr` holds for an IPv6
 * backend (it has no IPv4 address) and what a path filled for the address
 * records, so that a path filled for another address never matches. Mirrored
 * by tula_dataplane's addr6_tag. */
static __always_inline __u32 addr6_tag(const __be32 *addr)
{
	const __u64 *words = (const __u64 *)addr;

	return mix64(mix64(words[0] ^ FLOW_HASH_SEED) ^ words[1]) >> 32;
}

static __always_inline __u32 flow_hash(const struct flow *f)
{
	return flow_hash64(f) >> 32;
}

/* The flow hash of an IPv6 flow: the ports and protocol as for IPv4, then
 * each 64 bits of the addresses mixed in turn. Mirrored by tula_dataplane. */
static __always_inline __u64 flow6_hash64(const struct flow6 *f)
{
	const __u64 *src = (const __u64 *)f->src, *dst = (const __u64 *)f->dst;
	__u64 rest = (__u64)f->proto << 32 | (__u64)f->dport << 16 | f->sport;
	__u64 h = mix64(rest ^ FLOW_HASH_SEED);

	h = mix64(h ^ src[0]);
	h = mix64(h ^ src[1]);
	h = mix64(h ^ dst[0]);
	return mix64(h ^ dst[1]);
}

/* The outer IPv6 flow label of a flow: 20 bits of its hash, the same for
 * every packet of the flow, different between flows. */
static __always_inline __u32 flow_label(__u64 hash)
{
	return (__u32)hash & 0xfffff;
}

/* What a connection-table entry's `check` must be: binds the backend to the
 * flow (through its 64-bit hash); never 0, which marks an empty way.
 * Mirrored by tula_dataplane's conn_check. */
static __always_inline __u32 conn_check(__u64 hash, __u32 backend)
{
	return (__u32)mix64(hash ^ backend) | 1;
}

/* One code serves both connection tables (conns: struct conn_entry, conns6:
 * struct conn6_entry). An entry is its flow, compared as `key_words` 64-bit
 * words, then a conn_tail; the callers pass sizes as constants, so each
 * inlined copy is as if written for its table. */
struct conn_tail {
	__u32 backend;
	__u32 check;
	__u64 stamp;
};
_Static_assert(__builtin_offsetof(struct conn_entry, backend) == sizeof(struct flow), "conn_entry = flow + tail");
_Static_assert(__builtin_offsetof(struct conn6_entry, backend) == sizeof(struct flow6), "conn6_entry = flow6 + tail");
#define CONN4_KEY_WORDS (sizeof(struct flow) / 8)
#define CONN6_KEY_WORDS (sizeof(struct flow6) / 8)

/* The entry's tail: way `way` of `bucket`, whose entries are `size` bytes. */
static __always_inline struct conn_tail *conn_way(void *bucket, const int size, const int key_words, int way)
{
	return bucket + (way & (CONN_WAYS - 1)) * size + key_words * 8;
}

/* The bucket of the flow with 64-bit hash `hash`: its high half, fastranged. */
static __always_inline void *conn_bucket(__u64 hash, const int v6)
{
	__u32 index;

	if (v6) {
		index = ((hash >> 32) * conn6_buckets) >> 32;
		return bpf_map_lookup_elem(&conns6, &index);
	}
	index = ((hash >> 32) * conn_buckets) >> 32;
	return bpf_map_lookup_elem(&conns, &index);
}

static __always_inline int conn_key_equal(const __u64 *a, const __u64 *b, const int words)
{
#pragma unroll
	for (int i = 0; i < words; i++)
		if (a[i] != b[i])
			return 0;
	return 1;
}

/* The way of `bucket` holding `flow`, or -1. *backend is its backend, or
 * EMPTY_SLOT if the entry fails its check (torn by a concurrent write).
 * Ways fill from the first and are never emptied in the middle (user space
 * closes the gap it leaves), so an empty way ends the search: a miss in a
 * table that is not full reads the bucket's first lines only. */
static __always_inline int conn_find(void *bucket, const int size, const int key_words, const __u64 *flow,
				     __u64 hash, __u32 *backend)
{
#pragma unroll
	for (int i = 0; i < CONN_WAYS; i++) {
		struct conn_tail *e = conn_way(bucket, size, key_words, i);

		if (!conn_key_equal(bucket + i * size, flow, key_words)) {
			if (!e->check)
				return -1;
			continue;
		}
		/* Read once: the value checked is the value used. */
		__u32 id = *(volatile __u32 *)&e->backend;

		*backend = *(volatile __u32 *)&e->check == conn_check(hash, id) ? id : EMPTY_SLOT;
		return i;
	}
	return -1;
}

/* The stamp of a table write or refresh now; `write` counts a write first. */
static __always_inline __u64 conn_stamp(__u64 jiffies, int write)
{
	__u32 slot = CONN_SEQ_SLOT;
	__u64 *seq = bpf_map_lookup_elem(&counters, &slot);
	__u64 low = 0;

	if (seq) {
		if (write)
			*seq += 1;
		low = *seq & ((1ULL << CONN_STAMP_SHIFT) - 1);
	}
	return jiffies << CONN_STAMP_SHIFT | low;
}

/* Writes `flow` -> `backend` into `bucket`: into way `way` (the flow's own,
 * found by conn_find), else an empty way, else the least recently used of
 * the flows that sent one packet only (or went quiet for CONN_HIT_LIFE), else
 * the least recently used (the hit bit makes every stamp of a flow with
 * recent hits compare newer): a flood of one-packet flows from random
 * sources replaces itself, not active established flows. `hit` (0 or
 * CONN_STAMP_HIT: the flow's second packet) goes into the stamp. */
static __always_inline void conn_insert(void *bucket, const int size, const int key_words, const __u64 *flow,
					__u64 hash, __u32 backend, __u64 jiffies, int way, __u64 hit)
{
	if (way < 0) {
		__u64 oldest = ~0ULL;

		way = 0;
#pragma unroll
		for (int i = 0; i < CONN_WAYS; i++) {
			struct conn_tail *e = conn_way(bucket, size, key_words, i);

			/* The first empty way (see conn_find): none after it is taken. */
			if (!e->check) {
				way = i;
				break;
			}
			__u64 stamp = e->stamp;

			if ((stamp & CONN_STAMP_HIT) &&
			    jiffies - ((stamp & ~CONN_STAMP_HIT) >> CONN_STAMP_SHIFT) > CONN_HIT_LIFE)
				stamp &= ~CONN_STAMP_HIT;
			if (stamp < oldest) {
				oldest = stamp;
				way = i;
			}
		}
	}
	__u64 *key = bucket + (way & (CONN_WAYS - 1)) * size;
	struct conn_tail *e = conn_way(bucket, size, key_words, way);

#pragma unroll
	for (int i = 0; i < key_words; i++)
		key[i] = flow[i];
	e->backend = backend;
	e->stamp = conn_stamp(jiffies, 1) | hit;
	e->check = conn_check(hash, backend);
}

/* This CPU's slot of the SYN table (syns: a struct conn_entry, or with `v6`
 * syns6: a struct conn6_entry) for the flow of 64-bit hash `hash`. */
static __always_inline void *syn_slot(__u64 hash, const int v6)
{
	__u32 index = bpf_get_smp_processor_id() * SYN_SLOTS + (hash & (SYN_SLOTS - 1));

	if (v6)
		return bpf_map_lookup_elem(&syns6, &index);
	return bpf_map_lookup_elem(&syns, &index);
}

/* Whether `syn` (an entry of `key_words` key words) holds the SYN of `flow`,
 * whole (its check) and younger than SYN_LIFE; then *backend is where the
 * SYN went. */
static __always_inline int syn_holds(void *syn, const int key_words, const void *flow, __u64 hash, __u64 now,
				     __u32 *backend)
{
	struct conn_tail *held = syn + key_words * 8;
	__u32 id = held->backend;

	if (!conn_key_equal(syn, flow, key_words) || held->check != conn_check(hash, id) ||
	    now - held->stamp > SYN_LIFE)
		return 0;
	*backend = id;
	return 1;
}

/* The backend a new flow of `vip` goes to: the VIP's ring at the slot `hash`
 * (the flow's, or its client's for source hashing) picks, or, with `round_robin`, at this CPU's cursor, which then
 * moves on by one (the round-robin ring, laid out by user space, interleaves
 * the backends in proportion to their weights). A backend id, or EMPTY_SLOT. */
static __always_inline __u32 new_flow_backend(const struct vip_meta *vip, __u32 hash, int round_robin)
{
	__u32 index;

	if (round_robin) {
		__u32 vip_id = vip->id;
		__u32 *cursor = bpf_map_lookup_elem(&rr_cursors, &vip_id);

		if (!cursor)
			return EMPTY_SLOT;
		index = *cursor < ring_size ? *cursor : 0;
		*cursor = index + 1 < ring_size ? index + 1 : 0;
	} else {
		/* Fastrange: maps the hash onto [0, ring_size) without a division. */
		index = ((__u64)hash * ring_size) >> 32;
	}
	__u32 ring_chunks = (ring_size + RING_CHUNK_SLOTS - 1) / RING_CHUNK_SLOTS;
	__u32 chunk_key = vip->ring * ring_chunks + index / RING_CHUNK_SLOTS;
	struct ring_chunk *chunk = bpf_map_lookup_elem(&ring, &chunk_key);

	return chunk ? chunk->slots[index % RING_CHUNK_SLOTS] : EMPTY_SLOT;
}


/* Whether {addr, proto} has an all-ports VIP: then every TCP or UDP datagram
 * to the address is that VIP's, whatever its ports (or lack of them). */
static __always_inline int all_ports_vip(__be32 addr, __u8 proto)
{
	struct vip_key key = { .addr = addr, .proto = proto };

	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
		return 0;
	return vip_filter_has(addr) && bpf_map_lookup_elem(&vips, &key);
}

static __always_inline int all_ports_vip6(const __be32 *addr, __u8 proto)
{
	struct vip6_key key = { .proto = proto };

	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
		return 0;
	__builtin_memcpy(key.addr, addr, 16);
	return vip_filter_has6(addr) && bpf_map_lookup_elem(&vips6, &key);
}

/* A datagram cut short or with an impossible length (its IP header whole):
 * dropped if an all-ports VIP claims it (`claimed`), else passed for the
 * kernel to judge (with only per-port VIPs it cannot be known to be VIP
 * traffic). */
static __always_inline int malformed(int claimed)
{
	if (claimed)
		return drop(CNT_MALFORMED);
	return pass(CNT_MALFORMED);
}

/* A later fragment whose datagram's first fragment was not balanced here (or
 * is forgotten): dropped if an all-ports VIP claims it (it can only be that
 * VIP's, and no backend can be known), else passed so the host reassembles
 * what is its own -- a datagram to an unbalanced port, or to an address that
 * merely shares a VIP-filter bit. */
static __always_inline int unclaimed_fragment(int claimed)
{
	if (claimed)
		return drop(CNT_FRAG_ORPHAN);
	return pass(CNT_FRAG_PASSED);
}

/* Cuts `trailer` bytes after the IP datagram (Ethernet padding, or junk)
 * before it is forwarded: what leaves is exactly the datagram, and the MTU
 * decision made on its length holds. Returns 0, or non-zero on failure. */
static __always_inline int cut_trailer(struct xdp_md *ctx, __u32 trailer)
{
	return trailer ? bpf_xdp_adjust_tail(ctx, -(int)trailer) : 0;
}

/* The outer IP ID of a packet without DF, which the path (or the kernel, for
 * what is too big for the route) may fragment. A counter per backend, since
 * the backend reassembles by {tunnel source, backend, id}, kept per CPU in
 * the next-hop entry so that it costs no atomic operation and no lookup;
 * each CPU's sequence is offset by cpu * 0x9e37 so two CPUs in step do not
 * repeat each other's IDs. (A flow hash would need computing on established
 * flows, and would give two datagrams of one flow the same ID.) */
static __always_inline __be16 outer_ip_id(struct next_hop *nh)
{
	__u16 id = ++nh->ip_id + bpf_get_smp_processor_id() * 0x9e37;

	return bpf_htons(id);
}

/* Fills the family-independent part of *nh from a successful bpf_fib_lookup
 * and the egress interface's `ifaces` entry, valid until now + TTL and while
 * the backend stays at `epoch`. */
static __always_inline void next_hop_fill(struct xdp_md *ctx, const struct bpf_fib_lookup *fib,
					  const struct iface *out, struct next_hop *nh, __u64 now, __u16 epoch)
{
	nh->epoch = epoch;
	nh->ingress = ctx->ingress_ifindex;
	nh->tx_ifindex = out->vlan_id ? out->lower_ifindex : fib->ifindex;
	nh->vlan_id = out->vlan_id;
	nh->route_mtu = fib->mtu_result;
	/* An interface's path_mtu can only lower it: XDP cannot send more than the route takes. */
	nh->path_mtu = out->path_mtu && out->path_mtu < fib->mtu_result ? out->path_mtu : fib->mtu_result;
	__builtin_memcpy(nh->dmac, fib->dmac, ETH_ALEN);
	__builtin_memcpy(nh->smac, fib->smac, ETH_ALEN);
	nh->expires = now + NEXT_HOP_TTL_JIFFIES;
}

/* Fills *nh from bpf_fib_lookup and the egress interface's `ifaces` entry.
 * Returns 0 (nh valid and cached until nh->expires), CNT_FIB_NO_NEIGH (only
 * tunnel_src valid, nothing cached), or another counter: the drop reason. */
static __always_inline __u32 next_hop_refresh(struct xdp_md *ctx, __be32 addr, struct next_hop *nh, __u64 now,
					       __u16 epoch)
{
	struct bpf_fib_lookup fib = {
		.family = AF_INET,
		.ipv4_dst = addr,
		.ifindex = ctx->ingress_ifindex,
	};
	struct iface *out;
	int rc;

	nh->expires = 0;
	nh->addr = addr;
	rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH)
		return CNT_FIB_FAIL;
	out = bpf_map_lookup_elem(&ifaces, &fib.ifindex);
	if (!out)
		return CNT_NO_IFACE;
	nh->tunnel_src = out->tunnel_src;
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH)
		return CNT_FIB_NO_NEIGH;
	next_hop_fill(ctx, &fib, out, nh, now, epoch);
	return 0;
}

/* The same for an IPv6 backend (AF_INET6 lookup, the neighbour from ND); the
 * tunnel source comes from `ifaces6` (all zero if the interface has none). */
static __always_inline __u32 next_hop6_refresh(struct xdp_md *ctx, const __be32 *addr, struct path *pa,
					       struct path6 *pa6, __u64 now, __u16 epoch)
{
	struct bpf_fib_lookup fib = {
		.family = AF_INET6,
		.ifindex = ctx->ingress_ifindex,
	};
	struct iface6 *src;
	struct iface *out;
	int rc;

	pa->nh.expires = 0;
	pa->nh.addr = addr6_tag(addr);
	__builtin_memcpy(fib.ipv6_dst, addr, 16);
	rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH)
		return CNT_FIB_FAIL;
	out = bpf_map_lookup_elem(&ifaces, &fib.ifindex);
	if (!out)
		return CNT_NO_IFACE;
	src = bpf_map_lookup_elem(&ifaces6, &fib.ifindex);
	if (src)
		__builtin_memcpy(pa6->tunnel_src6, src->tunnel_src, 16);
	else
		__builtin_memset(pa6->tunnel_src6, 0, 16);
	/* Before the no-neighbour return: the kernel gets the packet tunnelled to this address. */
	__builtin_memcpy(pa6->backend_addr6, addr, 16);
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH)
		return CNT_FIB_NO_NEIGH;
	next_hop_fill(ctx, &fib, out, &pa->nh, now, epoch);
	return 0;
}

/* A packet too big for the tunnel that must not be fragmented (IPv4 with DF,
 * any IPv6): ICMP Fragmentation Needed (`v6`: ICMPv6 Packet Too Big) back to
 * the client, reporting `mtu`; dropped instead if the replies are switched
 * off, if the packet may draw no ICMP error (`may_answer` clear: an ICMP
 * error, a later IPv4 fragment, a source or L2 destination that is no single
 * host), or if this CPU is over its rate. */
static __always_inline int too_big(struct xdp_md *ctx, int tagged, __u16 mtu, int may_answer, const int v6)
{
	__u32 zero = 0;
	struct settings *s = bpf_map_lookup_elem(&settings, &zero);
	int rc;

	if (!s || (s->flags & SETTINGS_F_NO_FRAG_NEEDED))
		return drop(CNT_FRAG_NEEDED);
	count(CNT_FRAG_NEEDED);
	if (!may_answer)
		return drop(CNT_ICMP_FORBIDDEN);
	if (!icmp_rate_allows(s))
		return drop(CNT_ICMP_SUPPRESSED);
	if (v6 && tagged)
		rc = icmp6_packet_too_big(ctx, ETH_HLEN + sizeof(struct vlan_tag), mtu);
	else if (v6)
		rc = icmp6_packet_too_big(ctx, ETH_HLEN, mtu);
	else if (tagged)
		rc = icmp_frag_needed(ctx, ETH_HLEN + sizeof(struct vlan_tag), mtu);
	else
		rc = icmp_frag_needed(ctx, ETH_HLEN, mtu);
	if (rc)
		return drop(CNT_ENCAP_FAIL);
	count(CNT_ICMP_FRAG_NEEDED);
	count(CNT_TX);
	return XDP_TX;
}

/* An echo request to a VIP address: answered here if the address's VIPs say
 * so (vip_addrs), else passed. Fragmented requests and IPv4 options pass too.
 * A request no reply may be sent to (icmp_may_answer) is dropped. */
static __always_inline int echo_request(struct ethhdr *eth, struct iphdr *ip, struct icmphdr *icmp)
{
	__be32 daddr = ip->daddr;
	struct vip_addr *addr = bpf_map_lookup_elem(&vip_addrs, &daddr);

	if (!addr || !(addr->flags & VIP_ADDR_F_ECHO) || icmp->code != 0 || ip->ihl != 5)
		return pass(CNT_NOT_VIP);
	if (!icmp_may_answer(eth, ip->saddr))
		return drop(CNT_ICMP_FORBIDDEN);
	icmp_echo_reply(eth, ip, icmp);
	count(CNT_ICMP_ECHO);
	count(CNT_TX);
	return XDP_TX;
}

/* The same for IPv6 (vip_addrs6); a request with extension headers passes. */
static __always_inline int echo_request6(struct ethhdr *eth, struct ipv6_info *v6, struct icmp6hdr *icmp)
{
	struct vip6_addr_key daddr;
	struct vip_addr *addr;

	__builtin_memcpy(daddr.addr, v6->ip6->daddr, 16);
	addr = bpf_map_lookup_elem(&vip_addrs6, &daddr);
	if (!addr || !(addr->flags & VIP_ADDR_F_ECHO) || icmp->code != 0 || (void *)icmp != (void *)(v6->ip6 + 1))
		return pass(CNT_NOT_VIP);
	if (!icmp6_may_answer(eth, v6->ip6->saddr))
		return drop(CNT_ICMP_FORBIDDEN);
	icmp6_echo_reply(eth, v6->ip6, icmp);
	count(CNT_ICMP_ECHO);
	count(CNT_TX);
	return XDP_TX;
}

/* The steps of balancer() return an XDP verdict, or NEXT_STEP to go on. */
#define NEXT_STEP -1

/* What classify() learned about an IPv4 frame that may be for a VIP. */
struct pkt {
	struct l2_header l2;
	struct iphdr *ip;
	void *data_end;
	__u64 bytes;           /* the frame's length as it came in */
	__u32 ip_len;          /* tot_len, checked against IHL and the bytes present */
	__u32 trailer;         /* bytes after tot_len, cut before the packet leaves */
	struct flow flow;      /* for an ICMP error: the quoted flow */
	struct vip_key key;    /* the VIP it is for (port filled in by classify) */
	__u8 tagged;           /* one 802.1Q tag */
	__u8 later_fragment;   /* no ports: follows its first fragment */
	__u8 first_fragment;   /* remembered in frags for the later ones */
	__u8 icmp_error;       /* an ICMP error quoting a VIP flow */
	__u8 opens;            /* a TCP SYN: always a new connection */
};

/* What classify6() learned about an IPv6 frame. */
struct pkt6 {
	struct l2_header l2;
	struct ipv6_info v6;   /* the headers, and fragment facts */
	__u64 bytes;
	__u32 ip_len;          /* 40 + payload length, checked against the headers and the bytes present */
	__u32 trailer;
	struct flow6 flow;
	struct vip6_key key;
	__u8 tagged;
	__u8 icmp_error;
	__u8 opens;
};

/* Where pick_backend() or follow_fragment() decided to send it. */
struct choice {
	struct backend *backend;  /* this CPU's copy */
	struct traffic *traffic;  /* what this CPU sent to it, beside the copy */
	__u32 backend_id;
	__u32 vip_id;
	__u32 vip_flags;
	__u32 flow_label;      /* of an outer IPv6 header */
};

/* Parses the IPv4 frame and decides whether it may be ours: malformed, echo
 * requests and other protocols end here; TCP, UDP and quoting ICMP errors go
 * on with their flow and VIP key. */
static __always_inline int classify(struct xdp_md *ctx, struct pkt *p)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct iphdr *ip;

	p->data_end = data_end;
	p->bytes = data_end - data;
	p->tagged = p->l2.vlan != NULL;
	ip = parse_ipv4(data + p->l2.len, data_end);
	if (!ip)
		return pass(CNT_MALFORMED);
	p->ip = ip;
	/* IHL * 4 <= tot_len <= the bytes present; what follows tot_len is a trailer. */
	p->ip_len = bpf_ntohs(ip->tot_len);
	if (p->ip_len < ip->ihl * 4 || p->ip_len > (__u64)(data_end - (void *)ip))
		return malformed(all_ports_vip(ip->daddr, ip->protocol));
	p->trailer = (data_end - (void *)ip) - p->ip_len;
	if (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP && ip->protocol != IPPROTO_ICMP)
		return pass(CNT_NOT_VIP);
	if (!vip_filter_has(ip->daddr))
		return pass(CNT_NOT_VIP);
	p->key = (struct vip_key){ .addr = ip->daddr, .proto = ip->protocol };

	if (ip->protocol == IPPROTO_ICMP) {
		/* Echo requests are answered; errors quoting a VIP flow go to its backend. */
		struct icmphdr *icmp = ipv4_payload(ip);

		if ((void *)(icmp + 1) > data_end || ip->ihl * 4 + ICMP_HLEN > p->ip_len)
			return pass(CNT_MALFORMED);
		if (ipv4_is_fragment(ip))
			return pass(CNT_NOT_VIP);
		if (icmp->type == ICMP_ECHO)
			return echo_request(p->l2.eth, ip, icmp);
		if (icmp->type != ICMP_DEST_UNREACH && icmp->type != ICMP_TIME_EXCEEDED)
			return pass(CNT_NOT_VIP);
		if (icmp_error_flow(icmp, data_end, p->ip_len - ip->ihl * 4 - ICMP_HLEN, ip->daddr, &p->flow))
			return pass(CNT_NOT_VIP);
		p->key.proto = p->flow.proto;
		p->key.port = p->flow.dport;
		p->icmp_error = 1;
		return NEXT_STEP;
	}

	if (ipv4_is_fragment(ip)) {
		if (ipv4_is_later_fragment(ip)) {
			p->later_fragment = 1;
			return NEXT_STEP;
		}
		p->first_fragment = 1;
	}
	struct l4_ports *ports = parse_ports(ipv4_payload(ip), data_end, ip->protocol);

	if (!ports || ip->ihl * 4 + (ip->protocol == IPPROTO_TCP ? 20 : 8) > p->ip_len)
		return malformed(all_ports_vip(ip->daddr, ip->protocol));
	if (ip->protocol == IPPROTO_TCP)
		p->opens = tcp_opens_connection(ports, data_end);
	p->flow = (struct flow){
		.src = ip->saddr,
		.dst = ip->daddr,
		.sport = ports->src,
		.dport = ports->dst,
		.proto = ip->protocol,
	};
	p->key.port = ports->dst;
	return NEXT_STEP;
}

/* The same for an IPv6 frame: the extension headers looked through (parse6.h),
 * anything unparseable passed; ICMPv6 echo requests answered, ICMPv6 errors
 * quoting a VIP flow (destination unreachable, packet too big, time
 * exceeded, parameter problem) sent on with the quoted flow. */
static __always_inline int classify6(struct xdp_md *ctx, struct pkt6 *p)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ipv6_hdr *ip6;
	__u32 headers;
	__u8 proto;

	p->bytes = data_end - data;
	p->tagged = p->l2.vlan != NULL;
	if (parse_ipv6(data + p->l2.len, data_end, &p->v6))
		return pass(CNT_MALFORMED);
	ip6 = p->v6.ip6;
	proto = p->v6.proto;
	headers = ipv6_headers_len(&p->v6);
	/* The headers looked through <= 40 + payload length <= the bytes present
	 * (a jumbogram's payload length is 0: malformed here). */
	p->ip_len = IPV6_HLEN + bpf_ntohs(ip6->payload_len);
	if (headers > p->ip_len || p->ip_len > (__u64)(data_end - (void *)ip6))
		return malformed(all_ports_vip6(ip6->daddr, proto));
	p->trailer = (data_end - (void *)ip6) - p->ip_len;
	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP && proto != NEXTHDR_ICMP6)
		return pass(CNT_NOT_VIP);
	if (!vip_filter_has6(ip6->daddr))
		return pass(CNT_NOT_VIP);
	__builtin_memcpy(p->key.addr, ip6->daddr, 16);
	p->key.proto = proto;

	if (proto == NEXTHDR_ICMP6) {
		struct icmp6hdr *icmp = p->v6.l4;

		if ((void *)(icmp + 1) > data_end || headers + ICMP6_HLEN > p->ip_len)
			return pass(CNT_MALFORMED);
		if (p->v6.fragment)
			return pass(CNT_NOT_VIP);
		if (icmp->type == ICMP6_ECHO_REQUEST)
			return echo_request6(p->l2.eth, &p->v6, icmp);
		if (icmp->type < ICMP6_DEST_UNREACH || icmp->type > ICMP6_PARAMPROB)
			return pass(CNT_NOT_VIP);
		if (icmp6_error_flow(icmp, data_end, p->ip_len - headers - ICMP6_HLEN, ip6->daddr, &p->flow))
			return pass(CNT_NOT_VIP);
		p->key.proto = p->flow.proto;
		p->key.port = p->flow.dport;
		p->icmp_error = 1;
		return NEXT_STEP;
	}
	if (p->v6.later_fragment)
		return NEXT_STEP;

	struct l4_ports *ports = parse_ports(p->v6.l4, data_end, proto);

	if (!ports || headers + (proto == IPPROTO_TCP ? 20 : 8) > p->ip_len)
		return malformed(all_ports_vip6(ip6->daddr, proto));
	if (proto == IPPROTO_TCP)
		p->opens = tcp_opens_connection(ports, data_end);
	__builtin_memcpy(p->flow.src, ip6->saddr, 16);
	__builtin_memcpy(p->flow.dst, ip6->daddr, 16);
	p->flow.sport = ports->src;
	p->flow.dport = ports->dst;
	p->flow.proto = proto;
	p->key.port = ports->dst;
	return NEXT_STEP;
}

static __always_inline struct frag_key datagram_of(const struct iphdr *ip)
{
	return (struct frag_key){ .src = ip->saddr, .dst = ip->daddr, .id = ip->id, .proto = ip->protocol };
}

static __always_inline void datagram6_of(const struct ipv6_info *v6, struct frag6_key *key)
{
	__builtin_memcpy(key->src, v6->ip6->saddr, 16);
	__builtin_memcpy(key->dst, v6->ip6->daddr, 16);
	key->id = v6->frag_id;
	key->proto = v6->frag_nexthdr;
}

/* Points c at this CPU's copy of backend c->backend_id; 0 if there is none. */
static __always_inline int choose_backend(struct choice *c)
{
	struct cpu_backend *copy = backend_of(c->backend_id);

	if (!copy)
		return 0;
	c->backend = &copy->backend;
	c->traffic = &copy->traffic;
	return 1;
}

/* A later fragment has no ports: it goes where its datagram's first fragment
 * went (`dest`, from frags or frags6), or, unknown, is unclaimed_fragment(). */
static __always_inline int follow_fragment(struct frag_dest *dest, int claimed, __u64 bytes, struct choice *c)
{
	if (!dest)
		return unclaimed_fragment(claimed);
	c->backend_id = dest->backend;
	c->vip_id = dest->vip;
	c->vip_flags = dest->vip_flags;
	c->flow_label = dest->flow_label;
	if (!choose_backend(c) || !(c->backend->flags & BACKEND_F_ALIVE))
		return drop(CNT_NO_BACKEND);
	add_traffic(&vip_stats, c->vip_id, bytes);
	count(CNT_FRAGMENT);
	return NEXT_STEP;
}

/* A first fragment's choice, for its datagram's later fragments. */
static __always_inline void remember_datagram(void *frags_map, void *datagram, const struct choice *c)
{
	struct frag_dest dest = {
		.backend = c->backend_id,
		.vip = c->vip_id,
		.vip_flags = c->vip_flags,
		.flow_label = c->flow_label,
	};

	bpf_map_update_elem(frags_map, datagram, &dest, BPF_ANY);
	count(CNT_FRAG_FIRST);
}

/* The VIP: the exact port, else the all-ports entry. */
static __always_inline struct vip_meta *lookup_vip(struct vip_key *key)
{
	struct vip_meta *vip = bpf_map_lookup_elem(&vips, key);

	if (vip)
		return vip;
	key->port = 0;
	return bpf_map_lookup_elem(&vips, key);
}

static __always_inline struct vip_meta *lookup_vip6(struct vip6_key *key)
{
	struct vip_meta *vip = bpf_map_lookup_elem(&vips6, key);

	if (vip)
		return vip;
	key->port = 0;
	return bpf_map_lookup_elem(&vips6, key);
}

/* The hash `vip`'s ring is read at for `flow` (of 64-bit hash `hash`): the
 * flow's, or with source hashing its client's. */
static __always_inline __u32 ring_hash_of(const struct vip_meta *vip, const void *flow, const int v6, __u64 hash)
{
	if (!(vip->flags & VIP_F_SOURCE_HASH))
		return hash >> 32;
	if (v6) {
		struct flow6 client = {};

		__builtin_memcpy(client.src, ((const struct flow6 *)flow)->src, 16);
		return flow6_hash64(&client) >> 32;
	}
	struct flow client = { .src = ((const struct flow *)flow)->src };

	return flow_hash(&client);
}

/* Places a TCP SYN of a hashed VIP by the ring and holds it in this CPU's
 * SYN table slot `syn` until its connection's next packet: a SYN flood reads
 * and writes no line of conns (conns6), and evicts no flow from it. */
static __always_inline int hold_syn(void *syn, const int key_words, const struct vip_meta *vip, const void *flow,
				    const int v6, __u64 hash, __u64 now, struct choice *c)
{
	struct conn_tail *held = syn + key_words * 8;
	__u64 *key = syn;

	count(CNT_LRU_MISS);
	c->backend_id = new_flow_backend(vip, ring_hash_of(vip, flow, v6, hash), 0);
	if (!choose_backend(c) || !(c->backend->flags & BACKEND_F_ALIVE))
		return drop(CNT_NO_BACKEND);
#pragma unroll
	for (int i = 0; i < key_words; i++)
		key[i] = ((const __u64 *)flow)[i];
	held->backend = c->backend_id;
	held->stamp = now;
	held->check = conn_check(hash, c->backend_id);
	return NEXT_STEP;
}

/* The backend for `flow` (a struct flow, or with `v6` a struct flow6) of
 * `vip`: this CPU's SYN table, then the connection table, else the
 * scheduler. A TCP SYN (`opens`) opens a new connection whatever the table
 * says (its client port may be reused from an earlier connection, whose
 * backend may take no new ones now): the scheduler places it, and the
 * connection's entry is replaced, at its SYN (round robin) or (hashed VIPs)
 * at its next packet, which finds the SYN in this CPU's SYN table and moves
 * it into the connection table. */
static __always_inline int pick_backend(struct vip_meta *vip, const void *flow, const int v6, int opens,
					int icmp_error, __u64 bytes, struct choice *c)
{
	const int size = v6 ? sizeof(struct conn6_entry) : sizeof(struct conn_entry);
	const int key_words = v6 ? CONN6_KEY_WORDS : CONN4_KEY_WORDS;
	void *bucket, *syn;
	__u64 now, hash;
	__u32 held = EMPTY_SLOT;
	int way, from_syn;

	if (!vip)
		return pass(CNT_NOT_VIP);
	c->vip_id = vip->id;
	c->vip_flags = vip->flags;
	add_traffic(&vip_stats, c->vip_id, bytes);

	now = bpf_jiffies64(); /* inlined into one load by the verifier */
	hash = v6 ? flow6_hash64(flow) : flow_hash64(flow);
	c->flow_label = flow_label(hash);
	bucket = conn_bucket(hash, v6);
	if (!bucket)
		return drop(CNT_NO_BACKEND);
	syn = syn_slot(hash, v6);
	if (!syn)
		return drop(CNT_NO_BACKEND);
	/* Round robin cannot find its turn again on another CPU: its SYNs go into conns. */
	if (opens && !(c->vip_flags & VIP_F_ROUND_ROBIN))
		return hold_syn(syn, key_words, vip, flow, v6, hash, now, c);
	from_syn = syn_holds(syn, key_words, flow, hash, now, &c->backend_id);
	/* Taken once: the entry it becomes in conns speaks for the flow from now on. */
	if (from_syn && !icmp_error)
		((struct conn_tail *)(syn + key_words * 8))->check = 0;
	way = conn_find(bucket, size, key_words, flow, hash, &held);
	if (from_syn) {
		if (choose_backend(c) && (c->backend->flags & BACKEND_F_ALIVE)) {
			if (icmp_error) {
				count(CNT_LRU_HIT);
				return NEXT_STEP;
			}
			/* The connection's second packet: its entry starts with the hit bit. */
			count(way >= 0 ? CNT_LRU_REOPEN : CNT_LRU_HIT);
			conn_insert(bucket, size, key_words, flow, hash, c->backend_id, now, way, CONN_STAMP_HIT);
			return NEXT_STEP;
		}
		count(CNT_LRU_STALE);
	} else if (way >= 0 && !opens && held != EMPTY_SLOT) {
		c->backend_id = held;
		if (choose_backend(c) && (c->backend->flags & BACKEND_F_ALIVE)) {
			struct conn_tail *e = conn_way(bucket, size, key_words, way);
			__u64 stamp = e->stamp;

			/* Refreshed once a jiffy: an established flow mostly only reads its entry. */
			if (!(stamp & CONN_STAMP_HIT) || (stamp & ~CONN_STAMP_HIT) >> CONN_STAMP_SHIFT != now)
				e->stamp = conn_stamp(now, 0) | CONN_STAMP_HIT;
			count(CNT_LRU_HIT);
			return NEXT_STEP;
		}
		count(CNT_LRU_STALE);
	} else if (way >= 0 && opens) {
		count(CNT_LRU_REOPEN);
	} else {
		count(CNT_LRU_MISS);
	}
	/* An ICMP error takes no round-robin turn: without an entry it goes where the hash says. */
	c->backend_id = new_flow_backend(vip, ring_hash_of(vip, flow, v6, hash),
					 (c->vip_flags & VIP_F_ROUND_ROBIN) && !icmp_error);
	if (!choose_backend(c) || !(c->backend->flags & BACKEND_F_ALIVE))
		return drop(CNT_NO_BACKEND);
	/* An ICMP error follows the flow but starts none (it may well be forged). */
	if (!icmp_error)
		conn_insert(bucket, size, key_words, flow, hash, c->backend_id, now, way, 0);
	return NEXT_STEP;
}

/* This CPU's path toward the chosen backend's hop, its next hop from the
 * cache or else bpf_fib_lookup: IPv4 or, for a backend with BACKEND_F_IPV6,
 * IPv6 (then *path6 is its entry, with the outer addresses). Returns 0, or
 * the reason to drop; *to_kernel is set when only the kernel can send it (no
 * neighbour). */
static __always_inline __u32 next_hop_of(struct xdp_md *ctx, struct choice *c, struct path **path,
					 struct path6 **path6, int *to_kernel)
{
	__u32 hop = c->backend->hop;
	__u32 index = bpf_get_smp_processor_id() * path_hops + hop;
	struct path *pa = bpf_map_lookup_elem(&paths, &index);
	struct path6 *pa6 = NULL;
	__u64 now = bpf_jiffies64();
	__u32 reason = 0;

	if (!pa || hop >= path_hops)
		return CNT_NO_BACKEND;
	if (c->backend->flags & BACKEND_F_IPV6) {
		pa6 = bpf_map_lookup_elem(&paths6, &index);
		if (!pa6)
			return CNT_NO_BACKEND;
	}
	/* The epoch is read before the address a refresh reads: a path can only be
	 * filled under an epoch older than its address, which the next packet redoes. */
	__u16 epoch = *(volatile __u16 *)&c->backend->epoch;

	/* The address (an IPv6 one's tag) too: a path may have been filled for another address by a
	 * backend whose copy was torn, or whose IPv6 address changed before its hop did. */
	if (now >= pa->nh.expires || pa->nh.epoch != epoch || pa->nh.ingress != ctx->ingress_ifindex ||
	    pa->nh.addr != c->backend->addr) {
		if (pa6) {
			struct backend6 *b6 = bpf_map_lookup_elem(&backends6, &c->backend_id);

			if (!b6)
				return CNT_NO_BACKEND;
			reason = next_hop6_refresh(ctx, b6->addr, pa, pa6, now, epoch);
		} else {
			reason = next_hop_refresh(ctx, c->backend->addr, &pa->nh, now, epoch);
		}
	}
	*path = pa;
	*path6 = pa6;
	if (reason == CNT_FIB_NO_NEIGH) {
		count(CNT_FIB_NO_NEIGH);
		*to_kernel = 1;
		return 0;
	}
	return reason;
}

/* Cuts the trailer and prepends an outer IPv6 header toward the IPv6
 * backend of pa6, for an inner packet of `inner_len` bytes (network order)
 * of next header `nexthdr`. Returns 0, or the counter to drop it with. */
static __always_inline __u32 tunnel6(struct xdp_md *ctx, int tagged, __u32 trailer, struct path6 *pa6,
				     const struct choice *c, __be16 inner_len, __u8 nexthdr, __u8 tclass)
{
	struct ip6_outer o = {
		.inner_len = inner_len,
		.nexthdr = nexthdr,
		.tclass = tclass,
		.flow_label = c->flow_label,
	};
	int rc;

	if (!(pa6->tunnel_src6[0] | pa6->tunnel_src6[1] | pa6->tunnel_src6[2] | pa6->tunnel_src6[3]))
		return CNT_NO_IFACE;
	__builtin_memcpy(o.saddr, pa6->tunnel_src6, 16);
	__builtin_memcpy(o.daddr, pa6->backend_addr6, 16);
	if (cut_trailer(ctx, trailer))
		return CNT_ENCAP_FAIL;
	if (tagged)
		rc = encap_ip6(ctx, ETH_HLEN + sizeof(struct vlan_tag), &o);
	else
		rc = encap_ip6(ctx, ETH_HLEN, &o);
	return rc ? CNT_ENCAP_FAIL : 0;
}

/* Sends the rewritten or encapsulated frame on: the next hop's MACs (and
 * VLAN), then XDP_TX, XDP_REDIRECT, or XDP_PASS for the kernel to finish. */
static __always_inline int transmit(struct xdp_md *ctx, const struct choice *c, struct path *pa, int tagged,
				    int to_kernel, __u64 bytes)
{
	struct next_hop *nh = &pa->nh;

	c->traffic->packets += 1;
	c->traffic->bytes += bytes;

	if (to_kernel) {
		/* The original MACs stay: the kernel takes the frame as its own and forwards it. */
		count(CNT_PASS);
		return XDP_PASS;
	}

	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end)
		return drop(CNT_ENCAP_FAIL);
	__builtin_memcpy(eth->h_dest, nh->dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, nh->smac, ETH_ALEN);
	if (tagged) {
		struct vlan_tag *tag = (void *)(eth + 1);

		if ((void *)(tag + 1) > data_end)
			return drop(CNT_ENCAP_FAIL);
		tag->tci = (tag->tci & bpf_htons(~VLAN_VID_MASK)) | bpf_htons(nh->vlan_id & VLAN_VID_MASK);
	}

	if (nh->tx_ifindex == ctx->ingress_ifindex) {
		count(CNT_TX);
		return XDP_TX;
	}
	if (bpf_redirect_map(&tx_ports, nh->tx_ifindex, 0) != XDP_REDIRECT)
		return drop(CNT_NO_TX_PORT);
	count(CNT_REDIRECT);
	return XDP_REDIRECT;
}

/* Sends an IPv4 packet to the chosen backend: next hop, MTU, IPIP (IPv4 in
 * IPv6 to an IPv6 backend) or MAC rewrite, then transmit(). */
static __always_inline int forward(struct xdp_md *ctx, struct pkt *p, struct choice *c)
{
	struct iphdr *ip = p->ip;
	struct path *pa = NULL;
	struct path6 *pa6 = NULL;
	__u32 reason;
	int rc, to_kernel = 0;

	reason = next_hop_of(ctx, c, &pa, &pa6, &to_kernel);
	if (reason || !pa)
		return drop(reason ? reason : CNT_NO_BACKEND);

	struct next_hop *nh = &pa->nh;

	int l2_dsr = c->vip_flags & VIP_F_L2_DSR;
	__u32 overhead = l2_dsr ? 0 : pa6 ? IP6_OUTER_HLEN : IPIP_HLEN;

	if (!to_kernel) {
		/* tot_len is the real length: it was checked against the bytes present,
		 * and any trailer is cut before the packet leaves. */
		__u32 len = p->ip_len + overhead;

		if (len > nh->path_mtu) {
			if (ip->frag_off & bpf_htons(IP_DF))
				return too_big(ctx, p->tagged, nh->path_mtu - overhead,
					       !p->icmp_error && !p->later_fragment &&
						       icmp_may_answer(p->l2.eth, ip->saddr),
					       0);
			/* Outer DF stays clear (copied): the path may fragment it. Only the
			 * kernel can fragment what is too big for the route itself, and
			 * not in an outer IPv6 header: no router fragments IPv6. */
			count(CNT_TOO_BIG_NO_DF);
			if (len > nh->route_mtu) {
				if (pa6)
					return drop(CNT_TOO_BIG_DROPPED);
				to_kernel = 1;
			}
		}
		if (!to_kernel && !nh->vlan_id != !p->tagged) {
			count(CNT_VLAN_MISMATCH);
			to_kernel = 1;
		}
	}
	/* The kernel can only finish the job for an IPIP packet: it would route an
	 * L2 DSR packet to the VIP itself. */
	if (to_kernel && l2_dsr)
		return drop(CNT_L2_UNROUTABLE);

	if (!l2_dsr && pa6) {
		reason = tunnel6(ctx, p->tagged, p->trailer, pa6, c, ip->tot_len, NEXTHDR_IPIP, ip->tos);
		if (reason)
			return drop(reason);
	} else if (!l2_dsr) {
		struct ipip_outer outer = {
			.saddr = nh->tunnel_src,
			.daddr = c->backend->addr,
			.inner_len = ip->tot_len,
			.df = ip->frag_off & bpf_htons(IP_DF),
			.tos = ip->tos,
		};

		if (!outer.saddr)
			return drop(CNT_NO_IFACE);
		if (!outer.df)
			outer.id = outer_ip_id(nh);
		if (cut_trailer(ctx, p->trailer))
			return drop(CNT_ENCAP_FAIL);
		if (p->tagged)
			rc = encap_ipip(ctx, ETH_HLEN + sizeof(struct vlan_tag), &outer);
		else
			rc = encap_ipip(ctx, ETH_HLEN, &outer);
		if (rc)
			return drop(CNT_ENCAP_FAIL);
	} else if (cut_trailer(ctx, p->trailer)) {
		return drop(CNT_ENCAP_FAIL);
	}
	return transmit(ctx, c, pa, p->tagged, to_kernel, p->bytes);
}

/* Sends an IPv6 packet to the chosen backend: IP6IP6 (next header 41) to an
 * IPv6 backend, or the MAC rewrite (L2 DSR). IPv6 is never fragmented on the
 * way: a packet over the tunnel MTU gets Packet Too Big, reporting at least
 * 1280 (RFC 8200 5); one of 1280 bytes or less that still does not fit (a
 * tunnel MTU below 1280) is dropped. IPv6 in IPv4 is not done: an L3 IPv6
 * VIP's IPv4 backend counts no_backend. */
static __always_inline int forward6(struct xdp_md *ctx, struct pkt6 *p, struct choice *c)
{
	struct ipv6_hdr *ip6 = p->v6.ip6;
	struct path *pa = NULL;
	struct path6 *pa6 = NULL;
	__u32 reason;
	int to_kernel = 0;

	reason = next_hop_of(ctx, c, &pa, &pa6, &to_kernel);
	if (reason || !pa)
		return drop(reason ? reason : CNT_NO_BACKEND);

	struct next_hop *nh = &pa->nh;

	int l2_dsr = c->vip_flags & VIP_F_L2_DSR;
	__u32 overhead = l2_dsr ? 0 : IP6_OUTER_HLEN;

	if (!l2_dsr && !pa6)
		return drop(CNT_NO_BACKEND);
	if (!to_kernel) {
		__u32 len = p->ip_len + overhead;

		if (len > nh->path_mtu) {
			__u32 mtu = nh->path_mtu - overhead;

			if (p->ip_len <= IPV6_MIN_MTU)
				return drop(CNT_TOO_BIG_DROPPED);
			return too_big(ctx, p->tagged, mtu < IPV6_MIN_MTU ? IPV6_MIN_MTU : mtu,
				       !p->icmp_error && icmp6_may_answer(p->l2.eth, ip6->saddr), 1);
		}
		if (!nh->vlan_id != !p->tagged) {
			count(CNT_VLAN_MISMATCH);
			to_kernel = 1;
		}
	}
	if (to_kernel && l2_dsr)
		return drop(CNT_L2_UNROUTABLE);

	if (!l2_dsr) {
		reason = tunnel6(ctx, p->tagged, p->trailer, pa6, c, bpf_htons(p->ip_len), NEXTHDR_IPV6,
				 ipv6_tclass(ip6));
		if (reason)
			return drop(reason);
	} else if (cut_trailer(ctx, p->trailer)) {
		return drop(CNT_ENCAP_FAIL);
	}
	return transmit(ctx, c, pa, p->tagged, to_kernel, p->bytes);
}

static __always_inline int balance4(struct xdp_md *ctx, struct l2_header *l2)
{
	struct pkt p = { .l2 = *l2 };
	struct choice c = {};
	int rc;

	rc = classify(ctx, &p);
	if (rc != NEXT_STEP)
		return rc;
	if (p.later_fragment) {
		struct frag_key datagram = datagram_of(p.ip);

		rc = follow_fragment(bpf_map_lookup_elem(&frags, &datagram),
				     all_ports_vip(p.ip->daddr, p.ip->protocol), p.bytes, &c);
	} else {
		rc = pick_backend(lookup_vip(&p.key), &p.flow, 0, p.opens, p.icmp_error, p.bytes, &c);
	}
	if (rc != NEXT_STEP)
		return rc;
	if (p.icmp_error)
		count(CNT_ICMP_TO_BACKEND);
	if (p.first_fragment) {
		struct frag_key datagram = datagram_of(p.ip);

		remember_datagram(&frags, &datagram, &c);
	}
	return forward(ctx, &p, &c);
}

static __always_inline int balance6(struct xdp_md *ctx, struct l2_header *l2)
{
	struct pkt6 p = { .l2 = *l2 };
	struct choice c = {};
	int rc;

	rc = classify6(ctx, &p);
	if (rc != NEXT_STEP)
		return rc;
	if (p.v6.later_fragment) {
		struct frag6_key datagram = {};

		datagram6_of(&p.v6, &datagram);
		rc = follow_fragment(bpf_map_lookup_elem(&frags6, &datagram),
				     all_ports_vip6(p.v6.ip6->daddr, p.v6.frag_nexthdr), p.bytes, &c);
	} else {
		rc = pick_backend(lookup_vip6(&p.key), &p.flow, 1, p.opens, p.icmp_error, p.bytes, &c);
	}
	if (rc != NEXT_STEP)
		return rc;
	if (p.icmp_error)
		count(CNT_ICMP_TO_BACKEND);
	if (p.v6.fragment && !p.v6.later_fragment) {
		struct frag6_key datagram = {};

		datagram6_of(&p.v6, &datagram);
		remember_datagram(&frags6, &datagram, &c);
	}
	return forward6(ctx, &p, &c);
}

SEC("xdp")
int balancer(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct l2_header l2;

	if (parse_l2(data, data_end, &l2) < 0)
		return pass(CNT_NOT_IPV4);
	if (l2.proto == bpf_htons(ETH_P_IP))
		return balance4(ctx, &l2);
	if (l2.proto == bpf_htons(ETH_P_IPV6))
		return balance6(ctx, &l2);
	return pass(CNT_NOT_IPV4);
}

/* bpf_fib_lookup is GPL-only, so the kernel must see a GPL-compatible licence. */
char LICENSE[] SEC("license") = "GPL";
