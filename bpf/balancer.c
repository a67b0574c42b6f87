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
 * the flows that sent one packet only (or went quiet for CONN_HIT_LIFE), else
 * the least recently used (the hit bit makes every stamp of a flow with
 * recent hits compare newer): a flood of one-packet flows from random
 * sources replaces itself, not active established flows. */
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

			if ((stamp & CONN_STAMP_HIT) &&
			    jiffies - ((stamp & ~CONN_STAMP_HIT) >> CONN_STAMP_SHIFT) > CONN_HIT_LIFE)
				stamp &= ~CONN_STAMP_HIT;
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

/* The steps of balancer() return an XDP verdict, or NEXT_STEP to go on. */
#define NEXT_STEP -1

/* What classify() learned about a frame that may be for a VIP. */
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

/* Where pick_backend() or follow_fragment() decided to send it. */
struct choice {
	struct backend *backend;
	__u32 backend_id;
	__u32 vip_id;
	__u32 vip_flags;
};

/* Parses the frame and decides whether it may be ours: non-IPv4, malformed,
 * echo requests and other protocols end here; TCP, UDP and quoting ICMP
 * errors go on with their flow and VIP key. */
static __always_inline int classify(struct xdp_md *ctx, struct pkt *p)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct iphdr *ip;

	p->data_end = data_end;
	p->bytes = data_end - data;
	if (parse_l2(data, data_end, &p->l2) < 0 || p->l2.proto != bpf_htons(ETH_P_IP))
		return pass(CNT_NOT_IPV4);
	p->tagged = p->l2.vlan != NULL;
	ip = parse_ipv4(data + p->l2.len, data_end);
	if (!ip)
		return pass(CNT_MALFORMED);
	p->ip = ip;
	/* IHL * 4 <= tot_len <= the bytes present; what follows tot_len is a trailer. */
	p->ip_len = bpf_ntohs(ip->tot_len);
	if (p->ip_len < ip->ihl * 4 || p->ip_len > (__u64)(data_end - (void *)ip))
		return malformed(ip->daddr, ip->protocol);
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
		return malformed(ip->daddr, ip->protocol);
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

static __always_inline struct frag_key datagram_of(const struct iphdr *ip)
{
	return (struct frag_key){ .src = ip->saddr, .dst = ip->daddr, .id = ip->id, .proto = ip->protocol };
}

/* A later fragment has no ports: it goes where its datagram's first fragment went. */
static __always_inline int follow_fragment(struct pkt *p, struct choice *c)
{
	struct frag_key datagram = datagram_of(p->ip);
	struct frag_dest *dest = bpf_map_lookup_elem(&frags, &datagram);

	if (!dest)
		return unclaimed_fragment(p->ip->daddr, p->ip->protocol);
	c->backend_id = dest->backend;
	c->vip_id = dest->vip;
	c->vip_flags = dest->vip_flags;
	c->backend = bpf_map_lookup_elem(&backends, &c->backend_id);
	if (!c->backend || !(c->backend->flags & BACKEND_F_ALIVE))
		return drop(CNT_NO_BACKEND);
	add_traffic(&vip_stats, c->vip_id, p->bytes);
	count(CNT_FRAGMENT);
	return NEXT_STEP;
}

/* The VIP: the exact port, else the all-ports entry. */
static __always_inline struct vip_meta *lookup_vip(struct pkt *p)
{
	struct vip_meta *vip = bpf_map_lookup_elem(&vips, &p->key);

	if (vip)
		return vip;
	p->key.port = 0;
	return bpf_map_lookup_elem(&vips, &p->key);
}

/* The backend: the connection table, else the scheduler. A TCP SYN opens a
 * new connection whatever the table says (its client port may be reused from
 * an earlier connection, whose backend may take no new ones now): the
 * scheduler places it and its entry is replaced. */
static __always_inline int pick_backend(struct pkt *p, struct choice *c)
{
	struct vip_meta *vip = lookup_vip(p);
	struct conn_bucket *bucket;
	__u64 now, hash;
	int way;

	if (!vip)
		return pass(CNT_NOT_VIP);
	c->vip_id = vip->id;
	c->vip_flags = vip->flags;
	add_traffic(&vip_stats, c->vip_id, p->bytes);

	now = bpf_jiffies64(); /* inlined into one load by the verifier */
	hash = flow_hash64(&p->flow);
	bucket = conn_bucket(hash);
	if (!bucket)
		return drop(CNT_NO_BACKEND);
	way = conn_find(bucket, &p->flow, hash, &c->backend_id);
	if (way >= 0 && !p->opens && c->backend_id != EMPTY_SLOT) {
		c->backend = bpf_map_lookup_elem(&backends, &c->backend_id);
		if (c->backend && (c->backend->flags & BACKEND_F_ALIVE)) {
			struct conn_entry *e = &bucket->ways[way & (CONN_WAYS - 1)];
			__u64 stamp = e->stamp;

			/* Refreshed once a jiffy: an established flow mostly only reads its entry. */
			if (!(stamp & CONN_STAMP_HIT) || (stamp & ~CONN_STAMP_HIT) >> CONN_STAMP_SHIFT != now)
				e->stamp = conn_stamp(now, 0) | CONN_STAMP_HIT;
			count(CNT_LRU_HIT);
			return NEXT_STEP;
		}
		count(CNT_LRU_STALE);
	} else if (way >= 0 && p->opens) {
		count(CNT_LRU_REOPEN);
	} else {
		count(CNT_LRU_MISS);
	}
	/* An ICMP error takes no round-robin turn: without an entry it goes where the hash says. */
	c->backend_id = new_flow_backend(vip, &p->flow, (c->vip_flags & VIP_F_ROUND_ROBIN) && !p->icmp_error);
	c->backend = bpf_map_lookup_elem(&backends, &c->backend_id);
	if (!c->backend || !(c->backend->flags & BACKEND_F_ALIVE))
		return drop(CNT_NO_BACKEND);
	/* An ICMP error follows the flow but starts none (it may well be forged). */
	if (!p->icmp_error)
		conn_insert(bucket, &p->flow, hash, c->backend_id, now, way);
	return NEXT_STEP;
}

/* Sends the packet to the chosen backend: next hop, MTU, IPIP or MAC rewrite,
 * then XDP_TX, XDP_REDIRECT, or the kernel when only it can finish the job. */
static __always_inline int forward(struct xdp_md *ctx, struct pkt *p, struct choice *c)
{
	struct iphdr *ip = p->ip;
	struct backend *backend = c->backend;
	struct next_hop *nh;
	__u32 reason;
	__u64 now;
	int rc, to_kernel = 0;

	/* Next hop: cached, else bpf_fib_lookup. */
	nh = bpf_map_lookup_elem(&next_hops, &c->backend_id);
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

	int l2_dsr = c->vip_flags & VIP_F_L2_DSR;
	__u32 overhead = l2_dsr ? 0 : IPIP_HLEN;

	if (!to_kernel) {
		/* tot_len is the real length: it was checked against the bytes present,
		 * and any trailer is cut before the packet leaves. */
		__u32 len = p->ip_len + overhead;

		if (len > nh->path_mtu) {
			if (ip->frag_off & bpf_htons(IP_DF))
				return too_big(ctx, p->tagged, nh->path_mtu - overhead,
					       !p->icmp_error && !p->later_fragment &&
						       icmp_may_answer(p->l2.eth, ip->saddr));
			/* Outer DF stays clear (copied): the path may fragment it. Only the
			 * kernel can fragment what is too big for the route itself. */
			count(CNT_TOO_BIG_NO_DF);
			if (len > nh->route_mtu)
				to_kernel = 1;
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
	add_traffic(&backend_stats, c->backend_id, p->bytes);

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
	if (p->tagged) {
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

SEC("xdp")
int balancer(struct xdp_md *ctx)
{
	struct pkt p = {};
	struct choice c = {};
	int rc;

	rc = classify(ctx, &p);
	if (rc != NEXT_STEP)
		return rc;
	if (p.later_fragment)
		rc = follow_fragment(&p, &c);
	else
		rc = pick_backend(&p, &c);
	if (rc != NEXT_STEP)
		return rc;
	if (p.icmp_error)
		count(CNT_ICMP_TO_BACKEND);
	if (p.first_fragment) {
		struct frag_key datagram = datagram_of(p.ip);
		struct frag_dest dest = { .backend = c.backend_id, .vip = c.vip_id, .vip_flags = c.vip_flags };

		bpf_map_update_elem(&frags, &datagram, &dest, BPF_ANY);
		count(CNT_FRAG_FIRST);
	}
	return forward(ctx, &p, &c);
}

/* bpf_fib_lookup is GPL-only, so the kernel must see a GPL-compatible licence. */
char LICENSE[] SEC("license") = "GPL";
