// SPDX-License-Identifier: Apache-2.0
/* Tunnel health probes: sends the daemon's own probe connections down the
 * path client traffic takes, so a probe tests the backend's decapsulation,
 * its VIP binding and its sysctls, not just its own address.
 *
 * Attached at tc egress on the balancer's interfaces. A probe socket connects
 * to VIP:port with SO_MARK = PROBE_MARK_BASE | slot; `probe_targets[slot]`
 * names the VIP and the backend. Every IPv4 packet of that socket to the VIP
 * (SYN, ACK, RST) leaves as the balancer would send a client's packet:
 *   - l3-ipip: inside an outer IPv4 header (protocol 4, tunnel source ->
 *     backend), to the next hop toward the backend;
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

/* SO_MARK values of probe sockets: the base in the high 16 bits, the slot in the low 16. */
#define PROBE_MARK_MASK 0xffff0000
#define PROBE_MARK_BASE 0x7a1a0000
#define PROBE_SLOTS 65536

/* Layer 2 DSR: no outer header, only the backend's MAC. */
#define PROBE_F_L2 0x1

/* One tunnel-checked (VIP, backend) pair. Mirrored in crates/tula-health/src/tunnel.rs. */
struct probe_target {
	__be32 vip;        /* 0 = slot unused */
	__be32 backend;
	__be32 tunnel_src; /* outer source; 0 = the probe's own source address */
	__u32 flags;       /* PROBE_F_* */
	__u64 packets;     /* packets sent to the backend this way */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct probe_target);
	__uint(max_entries, PROBE_SLOTS);
} probe_targets SEC(".maps");

SEC("classifier")
int probe_encap(struct __sk_buff *skb)
{
	__u32 mark = skb->mark;
	__u32 slot = mark & ~PROBE_MARK_MASK;
	struct probe_target *target;
	struct bpf_fib_lookup fib = {};
	struct bpf_redir_neigh next_hop = {};
	void *data, *data_end;
	struct iphdr *ip;
	int rc;

	if ((mark & PROBE_MARK_MASK) != PROBE_MARK_BASE || skb->protocol != bpf_htons(ETH_P_IP))
		return TC_ACT_OK;
	target = bpf_map_lookup_elem(&probe_targets, &slot);
	if (!target || !target->vip)
		return TC_ACT_OK;
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	ip = data + ETH_HLEN;
	if ((void *)(ip + 1) > data_end || ip->version != 4)
		return TC_ACT_OK;
	/* Once encapsulated (and on its second pass here) the destination is the backend. */
	if (ip->daddr != target->vip)
		return TC_ACT_OK;

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

char LICENSE[] SEC("license") = "GPL";
