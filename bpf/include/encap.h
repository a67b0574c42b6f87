/* SPDX-License-Identifier: Apache-2.0 */
/* IPIP encapsulation in XDP: grow the head of the frame by one IPv4 header,
 * move the L2 header to the new front and write the outer header between it
 * and the untouched inner packet. */
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

/* Prepends the outer header to a frame whose L3 header starts at l2_len
 * (ETH_HLEN or ETH_HLEN + 4, a compile-time constant at each call). The L2
 * header is moved unchanged; the caller rewrites MACs or the tag afterwards.
 * Returns 0, or -1 if the head cannot grow; the caller drops the frame. */
static __always_inline int encap_ipip(struct xdp_md *ctx, const int l2_len, const struct ipip_outer *o)
{
	void *data, *data_end;

	if (bpf_xdp_adjust_head(ctx, -IPIP_HLEN))
		return -1;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (data + l2_len + IPIP_HLEN > data_end)
		return -1;
	/* The old L2 header now sits IPIP_HLEN bytes in; it never overlaps its new place. */
	__builtin_memcpy(data, data + IPIP_HLEN, l2_len);
	ipip_write_outer(data + l2_len, o);
	return 0;
}

#endif
