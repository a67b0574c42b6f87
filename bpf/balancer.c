// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only
/* tula's XDP load balancer, attached to the ingress interface(s).
 *
 * For a TCP or UDP packet to a VIP ({address, port, protocol}, or the VIP's
 * port-0 "all ports" entry) it picks a backend -- the flow's entry in the
 * connection table, or else (and always for a TCP SYN) the VIP's ring,
 * indexed by the flow hash (Maglev) or by a per-CPU round-robin cursor --
 * and sends the packet to it:
 *   L3 DSR (default): prepend an outer IPv4 header (IPIP) to the backend;
 *   L2 DSR (VIP_F_L2_DSR): rewrite the Ethernet addresses only.
 * The next hop comes from bpf_fib_lookup (cached per backend, see
 * next_hops in maps.h): XDP_TX when it leaves by the ingress interface, else
 * XDP_REDIRECT through tx_ports. Everything that is not for a VIP gets
 * XDP_PASS, untouched.
 *
 * Besides: a DF packet too big for the tunnel gets ICMP Fragmentation Needed
 * back (icmp.h); a datagram's later fragments follow its first one (frags);
 * ICMP errors quoting a VIP flow go to that flow's backend; echo requests to
 * a VIP address are answered. See docs/DATAPLANE.md. */

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "maps.h"
#include "parse.h"
#include "csum.h"
#include "encap.h"
#include "icmp.h"

#define AF_INET 2

/* Slots per ring; set by the loader before load, so the verifier sees a constant. */
const volatile __u32 ring_size = DEFAULT_RING_SIZE;
/* Buckets of the connection table (conns), likewise. */
const volatile __u32 conn_buckets = CONN_TABLE_SIZE / CONN_WAYS;

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

/* Whether addr may be a VIP address (false positives only; see maps.h). */
static __always_inline int vip_filter_has(__be32 addr)
{
	__u32 zero = 0;
	struct vip_filter *filter = bpf_map_lookup_elem(&vip_filter, &zero);
	__u32 bit = ((__u32)addr * VIP_FILTER_MUL) >> 16;

	return filter && (filter->words[bit / 64] >> (bit % 64)) & 1;
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

static __always_inline __u32 flow_hash(const struct flow *f)
{
	return flow_hash64(f) >> 32;
}

/* What a connection-table entry's `check` must be: binds the backend to the
 * flow (through its 64-bit hash); never 0, which marks an empty way.
 * Mirrored by tula_dataplane's conn_check. */
static __always_inline __u32 conn_check(__u64 hash, __u32 backend)
{
	return (__u32)mix64(hash ^ backend) | 1;
}

/* The bucket of the flow with 64-bit hash `hash`: its high half, fastranged. */
static __always_inline struct conn_bucket *conn_bucket(__u64 hash)
{
	__u32 index = ((hash >> 32) * conn_buckets) >> 32;

	return bpf_map_lookup_elem(&conns, &index);
}

/* The way of `bucket` holding `flow`, or -1. *backend is its backend, or
 * EMPTY_SLOT if the entry fails its check (torn by a concurrent write). */
static __always_inline int conn_find(struct conn_bucket *bucket, const struct flow *flow, __u64 hash, __u32 *backend)
{
	__u64 k0 = ((const __u64 *)flow)[0], k1 = ((const __u64 *)flow)[1];

#pragma unroll
	for (int i = 0; i < CONN_WAYS; i++) {
		struct conn_entry *e = &bucket->ways[i];

		if (((__u64 *)&e->flow)[0] != k0 || ((__u64 *)&e->flow)[1] != k1)
			continue;
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
 * the flows that sent one packet only, else the least recently used (the hit
 * bit makes every stamp of a flow with hits compare newer): a flood of
 * one-packet flows from random sources replaces itself, not established flows. */
static __always_inline void conn_insert(struct conn_bucket *bucket, const struct flow *flow, __u64 hash,
					__u32 backend, __u64 jiffies, int way)
{
	if (way < 0) {
		__u64 oldest = ~0ULL;

		way = 0;
#pragma unroll
		for (int i = 0; i < CONN_WAYS; i++) {
			struct conn_entry *e = &bucket->ways[i];
			__u64 stamp = e->check ? e->stamp : 0;

			if (stamp < oldest) {
				oldest = stamp;
				way = i;
			}
		}
	}
	struct conn_entry *e = &bucket->ways[way & (CONN_WAYS - 1)];

	e->flow = *flow;
	e->backend = backend;
	e->stamp = conn_stamp(jiffies, 1);
	e->check = conn_check(hash, backend);
}

/* The backend a new flow of `vip` goes to: the VIP's ring at the slot the
 * flow hash picks, or, with `round_robin`, at this CPU's cursor, which then
 * moves on by one (the round-robin ring, laid out by user space, interleaves
 * the backends in proportion to their weights). A backend id, or EMPTY_SLOT. */
static __always_inline __u32 new_flow_backend(const struct vip_meta *vip, const struct flow *flow, int round_robin)
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
		__u32 hash;

		if (vip->flags & VIP_F_SOURCE_HASH) {
			struct flow client = { .src = flow->src };

			hash = flow_hash(&client);
		} else {
			hash = flow_hash(flow);
		}
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

/* A datagram cut short or with an impossible length (its IPv4 header whole):
 * dropped if an all-ports VIP claims it, else passed for the kernel to judge
 * (with only per-port VIPs it cannot be known to be VIP traffic). */
static __always_inline int malformed(__be32 daddr, __u8 proto)
{
	if (all_ports_vip(daddr, proto))
		return drop(CNT_MALFORMED);
	return pass(CNT_MALFORMED);
}

/* A later fragment whose datagram's first fragment was not balanced here (or
 * is forgotten): dropped if an all-ports VIP claims it (it can only be that
 * VIP's, and no backend can be known), else passed so the host reassembles
 * what is its own -- a datagram to an unbalanced port, or to an address that
 * merely shares a VIP-filter bit. */
static __always_inline int unclaimed_fragment(__be32 daddr, __u8 proto)
{
	if (all_ports_vip(daddr, proto))
		return drop(CNT_FRAG_ORPHAN);
	return pass(CNT_FRAG_PASSED);
}

/* Cuts `trailer` bytes after the IPv4 datagram (Ethernet padding, or junk)
 * before it is forwarded: what leaves is exactly the datagram, and the MTU
 * decision made on tot_len holds. Returns 0, or non-zero on failure. */
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

/* Fills *nh from bpf_fib_lookup and the egress interface's `ifaces` entry.
 * Returns 0 (nh valid and cached until nh->expires), CNT_FIB_NO_NEIGH (only
 * tunnel_src valid, nothing cached), or another counter: the drop reason. */
static __always_inline __u32 next_hop_refresh(struct xdp_md *ctx, __be32 addr, struct next_hop *nh, __u64 now)
{
	struct bpf_fib_lookup fib = {
		.family = AF_INET,
		.ipv4_dst = addr,
		.ifindex = ctx->ingress_ifindex,
	};
	struct iface *out;
	int rc;

	nh->expires = 0;
	rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH)
		return CNT_FIB_FAIL;
	out = bpf_map_lookup_elem(&ifaces, &fib.ifindex);
	if (!out)
		return CNT_NO_IFACE;
	nh->tunnel_src = out->tunnel_src;
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH)
		return CNT_FIB_NO_NEIGH;

	nh->backend_addr = addr;
	nh->ingress = ctx->ingress_ifindex;
	nh->tx_ifindex = out->vlan_id ? out->lower_ifindex : fib.ifindex;
	nh->vlan_id = out->vlan_id;
	nh->route_mtu = fib.mtu_result;
	/* An interface's path_mtu can only lower it: XDP cannot send more than the route takes. */
	nh->path_mtu = out->path_mtu && out->path_mtu < fib.mtu_result ? out->path_mtu : fib.mtu_result;
	__builtin_memcpy(nh->dmac, fib.dmac, ETH_ALEN);
	__builtin_memcpy(nh->smac, fib.smac, ETH_ALEN);
	nh->expires = now + NEXT_HOP_TTL_JIFFIES;
	return 0;
}

/* A DF packet too big for the tunnel: ICMP Fragmentation Needed back to the
 * client, reporting `mtu` (the tunnel MTU); dropped instead if the replies
 * are switched off, if the packet may draw no ICMP error (`may_answer` clear:
 * an ICMP error, a later fragment, a source or L2 destination that is no
 * single host), or if this CPU is over its rate. */
static __always_inline int too_big(struct xdp_md *ctx, int tagged, __u16 mtu, int may_answer)
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
	if (tagged)
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

SEC("xdp")
int balancer(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u64 bytes = data_end - data;
	struct l2_header l2;
	struct iphdr *ip;
	struct l4_ports *ports;
	struct vip_meta *vip;
	struct backend *backend;
	struct conn_bucket *bucket;
	struct next_hop *nh;
	struct flow flow;
	__u32 backend_id, vip_id, vip_flags, reason, ip_len, trailer;
	__u64 now, hash;
	int rc, tagged, way, to_kernel = 0, first_fragment = 0, icmp_error = 0, opens = 0;

	/* Parse: Ethernet (+ one tag), IPv4. */
	if (parse_l2(data, data_end, &l2) < 0 || l2.proto != bpf_htons(ETH_P_IP))
		return pass(CNT_NOT_IPV4);
	tagged = l2.vlan != NULL;
	ip = parse_ipv4(data + l2.len, data_end);
	if (!ip)
		return pass(CNT_MALFORMED);
	/* IHL * 4 <= tot_len <= the bytes present; what follows tot_len is a trailer. */
	ip_len = bpf_ntohs(ip->tot_len);
	if (ip_len < ip->ihl * 4 || ip_len > (__u64)(data_end - (void *)ip))
		return malformed(ip->daddr, ip->protocol);
	trailer = (data_end - (void *)ip) - ip_len;
	if (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP && ip->protocol != IPPROTO_ICMP)
		return pass(CNT_NOT_VIP);
	if (!vip_filter_has(ip->daddr))
		return pass(CNT_NOT_VIP);

	struct vip_key key = { .addr = ip->daddr, .proto = ip->protocol };

	if (ip->protocol == IPPROTO_ICMP) {
		/* Echo requests are answered; errors quoting a VIP flow go to its backend. */
		struct icmphdr *icmp = ipv4_payload(ip);

		if ((void *)(icmp + 1) > data_end || ip->ihl * 4 + ICMP_HLEN > ip_len)
			return pass(CNT_MALFORMED);
		if (ipv4_is_fragment(ip))
			return pass(CNT_NOT_VIP);
		if (icmp->type == ICMP_ECHO)
			return echo_request(l2.eth, ip, icmp);
		if (icmp->type != ICMP_DEST_UNREACH && icmp->type != ICMP_TIME_EXCEEDED)
			return pass(CNT_NOT_VIP);
		if (icmp_error_flow(icmp, data_end, ip_len - ip->ihl * 4 - ICMP_HLEN, ip->daddr, &flow))
			return pass(CNT_NOT_VIP);
		key.proto = flow.proto;
		key.port = flow.dport;
		icmp_error = 1;
	} else {
		if (ipv4_is_fragment(ip)) {
			struct frag_key datagram = {
				.src = ip->saddr,
				.dst = ip->daddr,
				.id = ip->id,
				.proto = ip->protocol,
			};

			if (ipv4_is_later_fragment(ip)) {
				/* No ports here: the datagram goes where its first fragment went. */
				struct frag_dest *dest = bpf_map_lookup_elem(&frags, &datagram);

				if (!dest)
					return unclaimed_fragment(ip->daddr, ip->protocol);
				backend_id = dest->backend;
				vip_id = dest->vip;
				vip_flags = dest->vip_flags;
				backend = bpf_map_lookup_elem(&backends, &backend_id);
				if (!backend || !(backend->flags & BACKEND_F_ALIVE))
					return drop(CNT_NO_BACKEND);
				add_traffic(&vip_stats, vip_id, bytes);
				count(CNT_FRAGMENT);
				goto chosen;
			}
			first_fragment = 1;
		}
		ports = parse_ports(ipv4_payload(ip), data_end, ip->protocol);
		if (!ports || ip->ihl * 4 + (ip->protocol == IPPROTO_TCP ? 20 : 8) > ip_len)
			return malformed(ip->daddr, ip->protocol);
		if (ip->protocol == IPPROTO_TCP)
			opens = tcp_opens_connection(ports, data_end);
		flow = (struct flow){
			.src = ip->saddr,
			.dst = ip->daddr,
			.sport = ports->src,
			.dport = ports->dst,
			.proto = ip->protocol,
		};
		key.port = ports->dst;
	}

	/* VIP: exact port, else the all-ports entry. */
	vip = bpf_map_lookup_elem(&vips, &key);
	if (!vip) {
		key.port = 0;
		vip = bpf_map_lookup_elem(&vips, &key);
		if (!vip)
			return pass(CNT_NOT_VIP);
	}
	vip_id = vip->id;
	vip_flags = vip->flags;
	add_traffic(&vip_stats, vip_id, bytes);

	/* Backend: the connection table, else the scheduler. A TCP SYN opens a
	 * new connection whatever the table says (its client port may be reused
	 * from an earlier connection, whose backend may take no new ones now):
	 * the scheduler places it and its entry is replaced. */
	now = bpf_jiffies64(); /* inlined into one load by the verifier */
	hash = flow_hash64(&flow);
	bucket = conn_bucket(hash);
	if (!bucket)
		return drop(CNT_NO_BACKEND);
	way = conn_find(bucket, &flow, hash, &backend_id);
	if (way >= 0 && !opens && backend_id != EMPTY_SLOT) {
		backend = bpf_map_lookup_elem(&backends, &backend_id);
		if (backend && (backend->flags & BACKEND_F_ALIVE)) {
			struct conn_entry *e = &bucket->ways[way & (CONN_WAYS - 1)];

			__u64 stamp = e->stamp;

			/* Refreshed once a jiffy: an established flow mostly only reads its entry. */
			if (!(stamp & CONN_STAMP_HIT) || (stamp & ~CONN_STAMP_HIT) >> CONN_STAMP_SHIFT != now)
				e->stamp = conn_stamp(now, 0) | CONN_STAMP_HIT;
			count(CNT_LRU_HIT);
			goto chosen;
		}
		count(CNT_LRU_STALE);
	} else if (way >= 0 && opens) {
		count(CNT_LRU_REOPEN);
	} else {
		count(CNT_LRU_MISS);
	}
	/* An ICMP error takes no round-robin turn: without an entry it goes where the hash says. */
	backend_id = new_flow_backend(vip, &flow, (vip_flags & VIP_F_ROUND_ROBIN) && !icmp_error);
	backend = bpf_map_lookup_elem(&backends, &backend_id);
	if (!backend || !(backend->flags & BACKEND_F_ALIVE))
		return drop(CNT_NO_BACKEND);
	/* An ICMP error follows the flow but starts none (it may well be forged). */
	if (!icmp_error)
		conn_insert(bucket, &flow, hash, backend_id, now, way);

chosen:
	if (icmp_error)
		count(CNT_ICMP_TO_BACKEND);
	if (first_fragment) {
		struct frag_key datagram = {
			.src = ip->saddr,
			.dst = ip->daddr,
			.id = ip->id,
			.proto = ip->protocol,
		};
		struct frag_dest dest = { .backend = backend_id, .vip = vip_id, .vip_flags = vip_flags };

		bpf_map_update_elem(&frags, &datagram, &dest, BPF_ANY);
		count(CNT_FRAG_FIRST);
	}

	/* Next hop: cached, else bpf_fib_lookup. */
	nh = bpf_map_lookup_elem(&next_hops, &backend_id);
	if (!nh)
		return drop(CNT_NO_BACKEND);
	now = bpf_jiffies64();

	if (now >= nh->expires || nh->backend_addr != backend->addr || nh->ingress != ctx->ingress_ifindex) {
		reason = next_hop_refresh(ctx, backend->addr, nh, now);
		if (reason == CNT_FIB_NO_NEIGH) {
			count(CNT_FIB_NO_NEIGH);
			to_kernel = 1;
		} else if (reason) {
			return drop(reason);
		}
	}

	int l2_dsr = vip_flags & VIP_F_L2_DSR;
	__u32 overhead = l2_dsr ? 0 : IPIP_HLEN;

	if (!to_kernel) {
		/* tot_len is the real length: it was checked against the bytes present,
		 * and any trailer is cut before the packet leaves. */
		__u32 len = ip_len + overhead;

		if (len > nh->path_mtu) {
			if (ip->frag_off & bpf_htons(IP_DF))
				return too_big(ctx, tagged, nh->path_mtu - overhead,
					       !icmp_error && !ipv4_is_later_fragment(ip) &&
						       icmp_may_answer(l2.eth, ip->saddr));
			/* Outer DF stays clear (copied): the path may fragment it. Only the
			 * kernel can fragment what is too big for the route itself. */
			count(CNT_TOO_BIG_NO_DF);
			if (len > nh->route_mtu)
				to_kernel = 1;
		}
		if (!to_kernel && !nh->vlan_id != !tagged) {
			count(CNT_VLAN_MISMATCH);
			to_kernel = 1;
		}
	}
	/* The kernel can only finish the job for an IPIP packet: it would route an
	 * L2 DSR packet to the VIP itself. */
	if (to_kernel && l2_dsr)
		return drop(CNT_L2_UNROUTABLE);

	if (!l2_dsr) {
		struct ipip_outer outer = {
			.saddr = nh->tunnel_src,
			.daddr = backend->addr,
			.inner_len = ip->tot_len,
			.df = ip->frag_off & bpf_htons(IP_DF),
			.tos = ip->tos,
		};

		if (!outer.saddr)
			return drop(CNT_NO_IFACE);
		if (!outer.df)
			outer.id = outer_ip_id(nh);
		if (cut_trailer(ctx, trailer))
			return drop(CNT_ENCAP_FAIL);
		if (tagged)
			rc = encap_ipip(ctx, ETH_HLEN + sizeof(struct vlan_tag), &outer);
		else
			rc = encap_ipip(ctx, ETH_HLEN, &outer);
		if (rc)
			return drop(CNT_ENCAP_FAIL);
	} else if (cut_trailer(ctx, trailer)) {
		return drop(CNT_ENCAP_FAIL);
	}
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	add_traffic(&backend_stats, backend_id, bytes);

	if (to_kernel) {
		/* The original MACs stay: the kernel takes the frame as its own and forwards it. */
		count(CNT_PASS);
		return XDP_PASS;
	}

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

/* bpf_fib_lookup is GPL-only, so the kernel must see a GPL-compatible licence. */
char LICENSE[] SEC("license") = "GPL";
