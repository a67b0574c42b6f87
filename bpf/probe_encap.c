// SPDX-License-Identifier: Apache-2.0
/* Tunnel health probes: sends the daemon's own probe connections down the
 * path client traffic takes, so a probe tests the backend's decapsulation,
 * its VIP binding and its sysctls, not just its own address.
 *
 * Attached at tc egress on the balancer's interfaces. A probe socket connects
 * to VIP:port with SO_MARK = PROBE_MARK_BASE | slot; `probe_targets[slot]`
 * names the VIP and the backend. Every packet of that socket to the VIP
 * (SYN, ACK, RST) leaves as the balancer would send a client's packet:
 *   - l3-ipip to an IPv4 backend: inside an outer IPv4 header (protocol 4,
 *     tunnel source -> backend), to the next hop toward the backend;
 *   - l3-ipip to an IPv6 backend: inside an outer IPv6 header (next header
 *     41 for an IPv6 VIP, 4 for an IPv4 one; source the tunnel source, or the
 *     kernel's source address toward the backend);
 *   - l2: unchanged, to the backend's MAC.
 * The backend answers from the VIP straight to this host's address (the
 * probe's source), as it answers clients; the balancer passes that reply,
 * which is not addressed to a VIP, and the probe socket takes it.
 * Everything else passes untouched. `packets` counts what was sent this way,
 * so the daemon can tell a probe that left without the program (a route to
 * the VIP through another interface) from one that really took the tunnel. */

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "csum.h"
#include "encap.h"

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif

/* SO_MARK values of probe sockets: the base in the high 16 bits, the slot in the low 16. */
#define PROBE_MARK_MASK 0xffff0000
#define PROBE_MARK_BASE 0x7a1a0000
#define PROBE_SLOTS 65536

/* Layer 2 DSR: no outer header, only the backend's MAC. */
#define PROBE_F_L2 0x1
/* The VIP is vip6, not vip. */
#define PROBE_F_VIP6 0x2
/* The backend is backend6 (an outer IPv6 header), not backend. */
#define PROBE_F_BACKEND6 0x4

/* One tunnel-checked (VIP, backend) pair. Mirrored in crates/tula-health/src/tunnel.rs. */
struct probe_target {
	__be32 vip;        /* 0 (and no PROBE_F_VIP6) = slot unused */
	__be32 backend;
	__be32 tunnel_src; /* outer IPv4 source; 0 = the probe's own source address */
	__u32 flags;       /* PROBE_F_* */
	__u64 packets;     /* packets sent to the backend this way */
	__be32 vip6[4];
	__be32 backend6[4];
	__be32 tunnel_src6[4]; /* outer IPv6 source; all 0 = the kernel's source toward the backend */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct probe_target);
	__uint(max_entries, PROBE_SLOTS);
} probe_targets SEC(".maps");

/* Sends the probe packet (IPv4 or IPv6, as skb->protocol says; `inner_len`
 * and `tclass` read from its header) to the IPv6 backend in an outer IPv6
 * header with next header `nexthdr`. */
static __always_inline int send_ip6_tunnel(struct __sk_buff *skb, struct probe_target *target, __u8 nexthdr,
					   __be16 inner_len, __u8 tclass)
{
	struct bpf_fib_lookup fib = {};
	struct bpf_redir_neigh next_hop = {};
	struct ip6_outer fields = {
		.inner_len = inner_len,
		.nexthdr = nexthdr,
		.tclass = tclass,
		/* Any value does for one probe flow; the socket's hash keeps it steady. */
		.flow_label = bpf_get_hash_recalc(skb),
	};
	struct ipv6_hdr outer;
	int rc;

	fib.family = AF_INET6;
	__builtin_memcpy(fib.ipv6_dst, target->backend6, 16);
	/* A given tunnel source is kept; an unset one (::) the lookup fills in. */
	__builtin_memcpy(fib.ipv6_src, target->tunnel_src6, 16);
	fib.ifindex = skb->ifindex;
	rc = bpf_fib_lookup(skb, &fib, sizeof(fib), BPF_FIB_LOOKUP_SRC);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH)
		return TC_ACT_SHOT;
	next_hop.nh_family = AF_INET6;
	__builtin_memcpy(next_hop.ipv6_nh, fib.ipv6_dst, 16); /* the gateway, or the backend when on-link */
	__builtin_memcpy(fields.saddr, fib.ipv6_src, 16);
	__builtin_memcpy(fields.daddr, target->backend6, 16);
	ip6_write_outer(&outer, &fields);
	/* ENCAP_L3_IPV6 also makes an IPv4 probe's skb->protocol IPv6, so the new MAC header says 0x86dd. */
	if (bpf_skb_adjust_room(skb, IP6_OUTER_HLEN, BPF_ADJ_ROOM_MAC, BPF_F_ADJ_ROOM_ENCAP_L3_IPV6))
		return TC_ACT_SHOT;
	if (bpf_skb_store_bytes(skb, ETH_HLEN, &outer, sizeof(outer), 0))
		return TC_ACT_SHOT;
	__sync_fetch_and_add(&target->packets, 1);
	return bpf_redirect_neigh(fib.ifindex, &next_hop, sizeof(next_hop), 0);
}

/* An IPv4 probe to an IPv4 VIP: IPIP or IPv4 in IPv6, or L2. */
static __always_inline int probe4(struct __sk_buff *skb, struct probe_target *target)
{
	struct bpf_fib_lookup fib = {};
	struct bpf_redir_neigh next_hop = {};
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct iphdr *ip = data + ETH_HLEN;
	int rc;

	if ((void *)(ip + 1) > data_end || ip->version != 4)
		return TC_ACT_OK;
	/* Once encapsulated (and on its second pass here) the destination is the backend. */
	if (!target->vip || ip->daddr != target->vip)
		return TC_ACT_OK;
	if (target->flags & PROBE_F_BACKEND6)
		return send_ip6_tunnel(skb, target, IPPROTO_IPIP, ip->tot_len, ip->tos);

	/* The next hop toward the backend, as the balancer finds it (a forwarding lookup). */
	fib.family = AF_INET;
	fib.ipv4_dst = target->backend;
	fib.ifindex = skb->ifindex;
	rc = bpf_fib_lookup(skb, &fib, sizeof(fib), 0);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH)
		return TC_ACT_SHOT;
	next_hop.nh_family = AF_INET;
	next_hop.ipv4_nh = fib.ipv4_dst; /* the gateway, or the backend itself when on-link */

	if (!(target->flags & PROBE_F_L2)) {
		struct ipip_outer fields = {
			.saddr = target->tunnel_src ? target->tunnel_src : ip->saddr,
			.daddr = target->backend,
			.inner_len = ip->tot_len,
			.df = ip->frag_off & bpf_htons(IP_DF),
			.tos = ip->tos,
		};
		struct iphdr outer;

		ipip_write_outer(&outer, &fields);
		/* Room after the MAC header; the inner packet (and a partial checksum's offsets) stays put. */
		if (bpf_skb_adjust_room(skb, IPIP_HLEN, BPF_ADJ_ROOM_MAC, BPF_F_ADJ_ROOM_ENCAP_L3_IPV4))
			return TC_ACT_SHOT;
		if (bpf_skb_store_bytes(skb, ETH_HLEN, &outer, sizeof(outer), 0))
			return TC_ACT_SHOT;
	}
	__sync_fetch_and_add(&target->packets, 1);
	/* The kernel fills in both MACs, resolving the next hop if it is not yet known. */
	return bpf_redirect_neigh(fib.ifindex, &next_hop, sizeof(next_hop), 0);
}

/* An IPv6 probe to an IPv6 VIP: IP6IP6 (L2 DSR of IPv6 is not probed this way). */
static __always_inline int probe6(struct __sk_buff *skb, struct probe_target *target)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ipv6_hdr *ip6 = data + ETH_HLEN;

	if ((void *)(ip6 + 1) > data_end || (bpf_ntohl(ip6->ver_tc_flow) >> 28) != 6)
		return TC_ACT_OK;
	if (!(target->flags & PROBE_F_VIP6) || !(target->flags & PROBE_F_BACKEND6))
		return TC_ACT_OK;
	/* Once encapsulated (and on its second pass here) the destination is the backend. */
	if (ip6->daddr[0] != target->vip6[0] || ip6->daddr[1] != target->vip6[1] ||
	    ip6->daddr[2] != target->vip6[2] || ip6->daddr[3] != target->vip6[3])
		return TC_ACT_OK;
	return send_ip6_tunnel(skb, target, IPPROTO_IPV6, bpf_htons(bpf_ntohs(ip6->payload_len) + IPV6_HLEN),
			       (bpf_ntohl(ip6->ver_tc_flow) >> 20) & 0xff);
}

SEC("classifier")
int probe_encap(struct __sk_buff *skb)
{
	__u32 mark = skb->mark;
	__u32 slot = mark & ~PROBE_MARK_MASK;
	struct probe_target *target;

	if ((mark & PROBE_MARK_MASK) != PROBE_MARK_BASE)
		return TC_ACT_OK;
	target = bpf_map_lookup_elem(&probe_targets, &slot);
	if (!target)
		return TC_ACT_OK;
	if (skb->protocol == bpf_htons(ETH_P_IP))
		return probe4(skb, target);
	if (skb->protocol == bpf_htons(ETH_P_IPV6))
		return probe6(skb, target);
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
