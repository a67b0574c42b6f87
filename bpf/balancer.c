// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only
/* tula's XDP load balancer, attached to the ingress interface(s).
 *
 * For a TCP or UDP packet to a VIP ({address, port, protocol}, or the VIP's
 * port-0 "all ports" entry) it picks a backend -- the flow's entry in the
 * connection table, or else the VIP's Maglev ring indexed by the flow hash --
 * and sends the packet to it:
 *   L3 DSR (default): prepend an outer IPv4 header (IPIP) to the backend;
 *   L2 DSR (VIP_F_L2_DSR): rewrite the Ethernet addresses only.
 * The next hop comes from bpf_fib_lookup (cached per backend, see
 * next_hops in maps.h): XDP_TX when it leaves by the ingress interface, else
 * XDP_REDIRECT through tx_ports. Everything that is not for a VIP gets
 * XDP_PASS, untouched. See docs/DATAPLANE.md. */

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

#define AF_INET 2

/* Slots per ring; set by the loader before load, so the verifier sees a constant. */
const volatile __u32 ring_size = DEFAULT_RING_SIZE;

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
static __always_inline __u32 flow_hash(const struct flow *f)
{
	__u64 addrs = (__u64)f->dst << 32 | f->src;
	__u64 rest = (__u64)f->proto << 32 | (__u64)f->dport << 16 | f->sport;

	return mix64(mix64(rest ^ FLOW_HASH_SEED) ^ addrs) >> 32;
}

/* Truncated TCP/UDP header: drop it if the address has an all-ports VIP, else pass. */
static __always_inline int truncated_l4(struct vip_key *key)
{
	key->port = 0;
	if (bpf_map_lookup_elem(&vips, key))
		return drop(CNT_MALFORMED);
	return pass(CNT_MALFORMED);
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
	nh->mtu = fib.mtu_result;
	__builtin_memcpy(nh->dmac, fib.dmac, ETH_ALEN);
	__builtin_memcpy(nh->smac, fib.smac, ETH_ALEN);
	nh->expires = now + NEXT_HOP_TTL_JIFFIES;
	return 0;
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
	struct conn *conn;
	struct next_hop *nh;
	__u32 backend_id, reason;
	int rc, tagged, to_kernel = 0;

	/* Parse: Ethernet (+ one tag), IPv4, TCP/UDP ports. */
	if (parse_l2(data, data_end, &l2) < 0 || l2.proto != bpf_htons(ETH_P_IP))
		return pass(CNT_NOT_IPV4);
	tagged = l2.vlan != NULL;
	ip = parse_ipv4(data + l2.len, data_end);
	if (!ip)
		return pass(CNT_MALFORMED);
	if (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP)
		return pass(CNT_NOT_VIP);
	if (!vip_filter_has(ip->daddr))
		return pass(CNT_NOT_VIP);
	/* Only the first fragment has ports; all of them go to the kernel alike. */
	if (ipv4_is_fragment(ip))
		return pass(CNT_FRAGMENT);

	struct vip_key key = { .addr = ip->daddr, .proto = ip->protocol };

	ports = parse_ports(ipv4_payload(ip), data_end, ip->protocol);
	if (!ports)
		return truncated_l4(&key);

	/* VIP: exact port, else the all-ports entry. */
	key.port = ports->dst;
	vip = bpf_map_lookup_elem(&vips, &key);
	if (!vip) {
		key.port = 0;
		vip = bpf_map_lookup_elem(&vips, &key);
		if (!vip)
			return pass(CNT_NOT_VIP);
	}
	add_traffic(&vip_stats, vip->id, bytes);

	/* Backend: the connection table, else the ring. */
	struct flow flow = {
		.src = ip->saddr,
		.dst = ip->daddr,
		.sport = ports->src,
		.dport = ports->dst,
		.proto = ip->protocol,
	};
	/* The lookup also pays off for a SYN: it brings the bucket into cache for
	 * the insert, which costs more without it. */
	conn = bpf_map_lookup_elem(&conns, &flow);
	if (conn) {
		backend_id = conn->backend;
		backend = bpf_map_lookup_elem(&backends, &backend_id);
		if (backend && (backend->flags & BACKEND_F_ALIVE)) {
			count(CNT_LRU_HIT);
			goto chosen;
		}
		count(CNT_LRU_STALE);
	} else {
		count(CNT_LRU_MISS);
	}

	__u32 hash;

	if (vip->flags & VIP_F_SOURCE_HASH) {
		struct flow client = { .src = flow.src };

		hash = flow_hash(&client);
	} else {
		hash = flow_hash(&flow);
	}
	/* Fastrange: maps the hash onto [0, ring_size) without a division. */
	__u32 slot = vip->ring * ring_size + (__u32)(((__u64)hash * ring_size) >> 32);
	__u32 *entry = bpf_map_lookup_elem(&ring, &slot);

	if (!entry)
		return drop(CNT_NO_BACKEND);
	backend_id = *entry;
	backend = bpf_map_lookup_elem(&backends, &backend_id);
	if (!backend || !(backend->flags & BACKEND_F_ALIVE))
		return drop(CNT_NO_BACKEND);

	struct conn new_conn = { .backend = backend_id, .vip = vip->id };

	bpf_map_update_elem(&conns, &flow, &new_conn, BPF_ANY);

chosen:
	/* Next hop: cached, else bpf_fib_lookup. */
	nh = bpf_map_lookup_elem(&next_hops, &backend_id);
	if (!nh)
		return drop(CNT_NO_BACKEND);
	__u64 now = bpf_jiffies64(); /* inlined into one load by the verifier */

	if (now >= nh->expires || nh->backend_addr != backend->addr || nh->ingress != ctx->ingress_ifindex) {
		reason = next_hop_refresh(ctx, backend->addr, nh, now);
		if (reason == CNT_FIB_NO_NEIGH) {
			count(CNT_FIB_NO_NEIGH);
			to_kernel = 1;
		} else if (reason) {
			return drop(reason);
		}
	}

	int l2_dsr = vip->flags & VIP_F_L2_DSR;

	if (!to_kernel) {
		/* XDP cannot fragment, and the DF bit or not, the backend would not get it whole. */
		if (bpf_ntohs(ip->tot_len) + (l2_dsr ? 0 : IPIP_HLEN) > nh->mtu)
			return drop(CNT_FRAG_NEEDED);
		if (!nh->vlan_id != !tagged) {
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
		if (tagged)
			rc = encap_ipip(ctx, ETH_HLEN + sizeof(struct vlan_tag), &outer);
		else
			rc = encap_ipip(ctx, ETH_HLEN, &outer);
		if (rc)
			return drop(CNT_ENCAP_FAIL);
		data = (void *)(long)ctx->data;
		data_end = (void *)(long)ctx->data_end;
	}
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
