/* SPDX-License-Identifier: Apache-2.0 */
/* IP-in-IP encapsulation in XDP: grow the head of the frame by one outer
 * header, move the L2 header to the new front and write the outer header
 * between it and the untouched inner packet. Outer IPv4 (IPIP, protocol 4)
 * or outer IPv6 (next header 41 for IPv6 inside, 4 for IPv4 inside). */
#ifndef TULA_ENCAP_H
#define TULA_ENCAP_H

#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "csum.h"
#include "parse.h"
#include "parse6.h"

#define IPIP_HLEN ((int)sizeof(struct iphdr))

/* What the outer header copies from the inner one, read before the head moves. */
struct ipip_outer {
	__be32 saddr;
	__be32 daddr;
	__be16 inner_len; /* inner total length, network order */
	__be16 df;        /* inner DF bit (IP_DF or 0), network order */
	__be16 id;        /* 0 with DF; see outer_ip_id in balancer.c */
	__u8 tos;
};

/* Writes the outer header: version 4, no options, TTL 64, protocol 4. */
static __always_inline void ipip_write_outer(struct iphdr *outer, const struct ipip_outer *o)
{
	__be16 tot_len = bpf_htons(bpf_ntohs(o->inner_len) + IPIP_HLEN);
	__be16 ver_tos = bpf_htons(0x4500 | o->tos);
	__be16 ttl_proto = bpf_htons((64 << 8) | IPPROTO_IPIP);

	/* The same 16-bit words in memory order as the header; the sum is order-independent. */
	__u64 sum = (__u64)ver_tos + tot_len + o->id + o->df + ttl_proto + o->saddr + o->daddr;

	*(__be16 *)outer = ver_tos;
	outer->tot_len = tot_len;
	outer->id = o->id;
	outer->frag_off = o->df;
	outer->ttl = 64;
	outer->protocol = IPPROTO_IPIP;
	outer->check = csum_fold(sum);
	outer->saddr = o->saddr;
	outer->daddr = o->daddr;
}

/* Grows the head of a frame whose L3 header starts at l2_len (ETH_HLEN or
 * ETH_HLEN + 4, a compile-time constant at each call) by `hlen` bytes and
 * moves the L2 header, unchanged, to the new front; the caller rewrites MACs
 * or the tag afterwards. Returns where the outer header goes, or NULL if the
 * head cannot grow; the caller drops the frame. */
static __always_inline void *encap_push(struct xdp_md *ctx, const int l2_len, const int hlen)
{
	void *data, *data_end;

	if (bpf_xdp_adjust_head(ctx, -hlen))
		return NULL;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (data + l2_len + hlen > data_end)
		return NULL;
	/* The old L2 header now sits hlen bytes in; it never overlaps its new place. */
	__builtin_memcpy(data, data + hlen, l2_len);
	return data + l2_len;
}

/* Prepends an outer IPv4 header (IPIP). Returns 0, or -1: drop the frame. */
static __always_inline int encap_ipip(struct xdp_md *ctx, const int l2_len, const struct ipip_outer *o)
{
	struct iphdr *outer = encap_push(ctx, l2_len, IPIP_HLEN);

	if (!outer)
		return -1;
	ipip_write_outer(outer, o);
	return 0;
}

/* What an outer IPv6 header says, gathered before the head moves. */
struct ip6_outer {
	__be32 saddr[4];
	__be32 daddr[4];
	__be16 inner_len;  /* the inner packet's whole length, network order */
	__u8 nexthdr;      /* NEXTHDR_IPV6 or NEXTHDR_IPIP */
	__u8 tclass;       /* copied from the inner TOS / traffic class */
	__u32 flow_label;  /* from the inner flow's hash: backends' RSS and ECMP spread the tunnel */
};

#define IP6_OUTER_HLEN IPV6_HLEN
#define TUNNEL_HOP_LIMIT 64

/* Writes the outer IPv6 header: no extension headers, hop limit 64. */
static __always_inline void ip6_write_outer(struct ipv6_hdr *outer, const struct ip6_outer *o)
{
	outer->ver_tc_flow = bpf_htonl(6U << 28 | (__u32)o->tclass << 20 | (o->flow_label & 0xfffff));
	outer->payload_len = o->inner_len;
	outer->nexthdr = o->nexthdr;
	outer->hop_limit = TUNNEL_HOP_LIMIT;
	__builtin_memcpy(outer->saddr, o->saddr, 16);
	__builtin_memcpy(outer->daddr, o->daddr, 16);
}

/* Prepends an outer IPv6 header. Returns 0, or -1: drop the frame. */
static __always_inline int encap_ip6(struct xdp_md *ctx, const int l2_len, const struct ip6_outer *o)
{
	struct ipv6_hdr *outer = encap_push(ctx, l2_len, IP6_OUTER_HLEN);

	if (!outer)
		return -1;
	/* The ethertype just before it (after the tag, if any): IPv4 in IPv6 had 0x0800. */
	((__be16 *)outer)[-1] = bpf_htons(ETH_P_IPV6);
	ip6_write_outer(outer, o);
	return 0;
}

#endif
