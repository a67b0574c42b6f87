// SPDX-License-Identifier: Apache-2.0
/* Backend-side IPIP / IP6IP6 decapsulation, for hosts without the ipip or
 * ip6_tunnel module.
 *
 * Attached to a backend's uplink. For an IPv4 packet with protocol 4 (IPIP)
 * whose outer destination is one of this host's tunnel addresses
 * (`decap_local`), it checks the outer and inner headers, drops the packet if
 * the inner destination is not a configured VIP (`decap_vips`, so the backend
 * is no open relay), strips the outer header and passes the inner packet up
 * the stack, as if it had arrived on the uplink itself. The same for an
 * IPv6 packet whose next header is 41 (IP6IP6) or 4 (IPv4 in IPv6) and whose
 * outer destination is in `decap_local6` (inner VIPs: `decap_vips6` for
 * IPv6, `decap_vips` for IPv4; the ethertype becomes 0x0800 for the latter).
 * Everything else passes untouched. Counters: `decap_stats`, see decap_maps.h. */

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "csum.h"
#include "decap_maps.h"
#include "parse.h"
#include "parse6.h"

#define ECN_MASK 0x3
#define ECN_NOT_ECT 0x0
#define ECN_CE 0x3

static __always_inline void count(__u32 slot, __u64 amount)
{
	__u64 *value = bpf_map_lookup_elem(&decap_stats, &slot);

	if (value)
		*value += amount;
}

/* True when the IPv4 header at `ip`, `len` bytes long (20..60, checked),
 * sums to 0xffff. Every word is bounds-checked at a constant offset: the
 * verifier cannot follow a walk whose length it does not know. */
static __always_inline int ipv4_checksum_ok(const struct iphdr *ip, __u32 len, const void *data_end)
{
	const __u32 *word = (const __u32 *)ip;
	__u64 sum = 0;

	if (len < sizeof(*ip) || len > 60 || (const void *)(word + 5) > data_end)
		return 0;
	sum = (__u64)word[0] + word[1] + word[2] + word[3] + word[4];
	/* Options, one 32-bit word at a time, written out: clang will not unroll
	 * a loop with an early exit, and a rolled one defeats the verifier. */
#define OPTION_WORD(i)                                                  \
	if (len > (i) * 4) {                                            \
		if ((const void *)ip + ((i) + 1) * 4 > data_end)        \
			return 0;                                       \
		sum += word[i];                                         \
	}
	OPTION_WORD(5) OPTION_WORD(6) OPTION_WORD(7) OPTION_WORD(8) OPTION_WORD(9)
	OPTION_WORD(10) OPTION_WORD(11) OPTION_WORD(12) OPTION_WORD(13) OPTION_WORD(14)
#undef OPTION_WORD
	return csum_fold(sum) == 0;
}

/* RFC 6040: carry a Congestion Experienced mark from the outer header to the
 * inner one. Returns 0 to drop (CE on a flow that is not ECN-capable). */
static __always_inline int propagate_ecn(__u8 outer_tos, struct iphdr *inner)
{
	__u8 inner_ecn = inner->tos & ECN_MASK;

	if ((outer_tos & ECN_MASK) != ECN_CE || inner_ecn == ECN_CE)
		return 1;
	if (inner_ecn == ECN_NOT_ECT)
		return 0;
	/* The TOS byte shares a 16-bit word with version/IHL: update the header
	 * checksum incrementally for that word (RFC 1624, eqn. 3). */
	__u16 *word = (__u16 *)inner;
	__u16 old_word = *word;
	inner->tos |= ECN_CE;
	inner->check = csum_fold((__u64)(__u16)~inner->check + (__u16)~old_word + *word);
	return 1;
}

/* The same for an inner IPv6 header (no header checksum to update). */
static __always_inline int propagate_ecn6(__u8 outer_tclass, struct ipv6_hdr *inner)
{
	__u8 inner_ecn = ipv6_tclass(inner) & ECN_MASK;

	if ((outer_tclass & ECN_MASK) != ECN_CE || inner_ecn == ECN_CE)
		return 1;
	if (inner_ecn == ECN_NOT_ECT)
		return 0;
	inner->ver_tc_flow |= bpf_htonl((__u32)ECN_CE << 20);
	return 1;
}

/* Restores the link-layer header `eth_copy` (and `tag_copy`, when its proto is
 * set) at the new start of the packet after bpf_xdp_adjust_head, with
 * `ethertype` as the payload's type. Returns 0, or -1 if the packet is short. */
static __always_inline int restore_l2(struct xdp_md *ctx, const struct ethhdr *eth_copy,
				      const struct vlan_tag *tag_copy, __be16 ethertype)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end)
		return -1;
	*eth = *eth_copy;
	if (tag_copy->proto) {
		struct vlan_tag *tag = (void *)(eth + 1);
		if ((void *)(tag + 1) > data_end)
			return -1;
		*tag = *tag_copy;
		tag->proto = ethertype;
	} else {
		eth->h_proto = ethertype;
	}
	return 0;
}

/* The IPv6 outer header at `data + l2_len`. Only a tunnel header right after
 * the fixed header is decapsulated: an outer packet with extension headers
 * (hop-by-hop, routing, destination options, fragment, ...) before it is
 * passed untouched, not guessed at (the kernel, if it has a tunnel, can
 * deal with it; XDP cannot reassemble an outer fragment anyway). */
static __always_inline int decap_ipv6(struct xdp_md *ctx, struct l2_header *l2)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 l2_len = l2->len;
	struct ipv6_hdr *outer = data + l2_len;

	if ((void *)(outer + 1) > data_end)
		goto pass;
	if ((*(__u8 *)outer >> 4) != 6)
		goto pass;
	__u8 next = outer->nexthdr;
	if (next != NEXTHDR_IPV6 && next != NEXTHDR_IPIP)
		goto pass; /* including extension headers before a tunnel header */
	struct decap_in6 tunnel_dst;
	__builtin_memcpy(&tunnel_dst, outer->daddr, sizeof(tunnel_dst));
	if (!bpf_map_lookup_elem(&decap_local6, &tunnel_dst))
		goto pass;

	/* From here on the packet is a tunnel packet addressed to this host. */
	__u32 outer_payload = bpf_ntohs(outer->payload_len);
	__u8 outer_tclass = ipv6_tclass(outer);
	__u32 inner_total;
	__be16 ethertype;
	void *inner = outer + 1;

	if (next == NEXTHDR_IPV6) {
		struct ipv6_hdr *in6 = inner;
		if ((void *)(in6 + 1) > data_end)
			goto malformed;
		/* After the line above: see the IPv4 path. */
		if ((void *)(outer + 1) + outer_payload > data_end)
			goto malformed;
		inner_total = sizeof(*in6) + bpf_ntohs(in6->payload_len);
		if ((*(__u8 *)in6 >> 4) != 6 || inner_total > outer_payload)
			goto malformed;
		struct decap_in6 vip;
		__builtin_memcpy(&vip, in6->daddr, sizeof(vip));
		if (!bpf_map_lookup_elem(&decap_vips6, &vip)) {
			count(DECAP_NOT_VIP, 1);
			return XDP_DROP;
		}
		if (!propagate_ecn6(outer_tclass, in6)) {
			count(DECAP_ECN_DROP, 1);
			return XDP_DROP;
		}
		ethertype = bpf_htons(ETH_P_IPV6);
	} else {
		struct iphdr *in4 = inner;
		if ((void *)(in4 + 1) > data_end)
			goto malformed;
		if ((void *)(outer + 1) + outer_payload > data_end)
			goto malformed;
		inner_total = bpf_ntohs(in4->tot_len);
		if (in4->version != 4 || in4->ihl < 5 || inner_total < in4->ihl * 4U ||
		    inner_total > outer_payload)
			goto malformed;
		__be32 vip = in4->daddr;
		if (!bpf_map_lookup_elem(&decap_vips, &vip)) {
			count(DECAP_NOT_VIP, 1);
			return XDP_DROP;
		}
		if (!propagate_ecn(outer_tclass, in4)) {
			count(DECAP_ECN_DROP, 1);
			return XDP_DROP;
		}
		ethertype = bpf_htons(ETH_P_IP);
	}

	struct ethhdr eth_copy = *l2->eth;
	struct vlan_tag tag_copy = {};
	if (l2->vlan)
		tag_copy = *l2->vlan;
	if (bpf_xdp_adjust_head(ctx, sizeof(*outer))) {
		count(DECAP_ADJUST_FAIL, 1);
		return XDP_DROP;
	}
	if (restore_l2(ctx, &eth_copy, &tag_copy, ethertype))
		return XDP_DROP;
	count(DECAP_PACKETS, 1);
	count(DECAP_BYTES, inner_total);
	return XDP_PASS;

malformed:
	count(DECAP_MALFORMED, 1);
	return XDP_DROP;
pass:
	count(DECAP_PASSED, 1);
	return XDP_PASS;
}

SEC("xdp")
int decap(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct l2_header l2;

	if (parse_l2(data, data_end, &l2))
		goto pass;
	if (l2.proto == bpf_htons(ETH_P_IPV6))
		return decap_ipv6(ctx, &l2);
	if (l2.proto != bpf_htons(ETH_P_IP))
		goto pass;
	struct ethhdr *eth = l2.eth;
	struct vlan_tag *tag = l2.vlan;
	__u32 l2_len = l2.len;

	struct iphdr *outer = data + l2_len;
	if ((void *)(outer + 1) > data_end)
		goto pass;
	if (outer->version != 4 || outer->protocol != IPPROTO_IPIP)
		goto pass;
	__be32 tunnel_dst = outer->daddr;
	if (!bpf_map_lookup_elem(&decap_local, &tunnel_dst))
		goto pass;

	/* From here on the packet is a tunnel packet addressed to this host. */
	__u32 outer_len = outer->ihl * 4;
	__u32 outer_total = bpf_ntohs(outer->tot_len);
	if (outer_len < sizeof(*outer) || outer_total < outer_len + sizeof(struct iphdr))
		goto malformed;
	if (ipv4_is_fragment(outer)) {
		/* XDP cannot reassemble; the kernel may, if it has a tunnel. */
		count(DECAP_FRAGMENT, 1);
		return XDP_PASS;
	}

	if (!ipv4_checksum_ok(outer, outer_len, data_end))
		goto malformed;

	struct iphdr *inner = (void *)outer + outer_len;
	if ((void *)(inner + 1) > data_end)
		goto malformed;
	/* Checked after the line above, or clang would prove that one redundant
	 * and drop the bounds check the verifier needs. */
	if ((void *)outer + outer_total > data_end)
		goto malformed;
	__u32 inner_total = bpf_ntohs(inner->tot_len);
	if (inner->version != 4 || inner->ihl < 5 || inner_total < inner->ihl * 4U ||
	    inner_total > outer_total - outer_len)
		goto malformed;
	__be32 vip = inner->daddr;
	if (!bpf_map_lookup_elem(&decap_vips, &vip)) {
		count(DECAP_NOT_VIP, 1);
		return XDP_DROP;
	}
	if (!propagate_ecn(outer->tos, inner)) {
		count(DECAP_ECN_DROP, 1);
		return XDP_DROP;
	}

	/* Keep the link-layer header, drop the outer IP header after it. */
	struct ethhdr eth_copy = *eth;
	struct vlan_tag tag_copy = {};
	if (tag)
		tag_copy = *tag;
	if (bpf_xdp_adjust_head(ctx, outer_len)) {
		count(DECAP_ADJUST_FAIL, 1);
		return XDP_DROP;
	}
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	if ((void *)(eth + 1) > data_end)
		return XDP_DROP;
	*eth = eth_copy;
	if (tag_copy.proto) {
		tag = (void *)(eth + 1);
		if ((void *)(tag + 1) > data_end)
			return XDP_DROP;
		*tag = tag_copy;
	}
	count(DECAP_PACKETS, 1);
	count(DECAP_BYTES, inner_total);
	return XDP_PASS;

malformed:
	count(DECAP_MALFORMED, 1);
	return XDP_DROP;
pass:
	count(DECAP_PASSED, 1);
	return XDP_PASS;
}

/* Matches the SPDX line; the program uses no GPL-only helper. */
char LICENSE[] SEC("license") = "Apache-2.0";
