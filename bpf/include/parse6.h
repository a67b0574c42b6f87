/* SPDX-License-Identifier: Apache-2.0 */
/* IPv6 header parsing for tula's XDP programs: the fixed header, then the
 * extension headers between it and the transport header that a balancer must
 * look through (hop-by-hop, routing, destination options) and the fragment
 * header. Anything else (more than IPV6_EXT_MAX of them, ESP, AH, a header cut
 * short) is unparseable: the caller passes it, never guesses. Every function
 * checks its bounds against data_end. */
#ifndef TULA_PARSE6_H
#define TULA_PARSE6_H

#include <linux/types.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "parse.h"

#define IPV6_HLEN 40
#define NEXTHDR_HOP 0
#define NEXTHDR_IPIP 4
#define NEXTHDR_ROUTING 43
#define NEXTHDR_FRAGMENT 44
#define NEXTHDR_IPV6 41
#define NEXTHDR_ICMP6 58
#define NEXTHDR_DEST 60
#define IPV6_EXT_MAX 4 /* extension headers looked through; a packet with more is passed */

/* <linux/ipv6.h> drags in libc headers: our own, with addresses as 32-bit words. */
struct ipv6_hdr {
	__be32 ver_tc_flow; /* version 4 bits, traffic class 8, flow label 20 */
	__be16 payload_len;
	__u8 nexthdr;
	__u8 hop_limit;
	__be32 saddr[4];
	__be32 daddr[4];
};

struct ipv6_frag_hdr {
	__u8 nexthdr;
	__u8 reserved;
	__be16 frag_off; /* offset in 8-byte units << 3, then 2 reserved bits and M */
	__be32 id;
};
#define IPV6_FRAG_OFFSET 0xfff8 /* host order */
#define IPV6_FRAG_MF 0x0001

/* What parse_ipv6 learned. */
struct ipv6_info {
	struct ipv6_hdr *ip6;
	void *l4;           /* the first byte after the last header looked through */
	__u8 proto;         /* the upper-layer protocol (next header of the last one) */
	__u8 fragment;      /* a fragment header was there */
	__u8 later_fragment; /* ... with a non-zero offset: l4 is no transport header */
	__u8 frag_nexthdr;  /* the fragment header's next header: the same in every fragment */
	__be32 frag_id;
};

/* The traffic class of an IPv6 header. */
static __always_inline __u8 ipv6_tclass(const struct ipv6_hdr *ip6)
{
	return bpf_ntohl(ip6->ver_tc_flow) >> 20;
}

/* Parses the IPv6 header at l3 and its extension headers up to the upper
 * layer (or to the fragment header of a later fragment). Returns 0, or -1 if
 * the frame is cut short, the version is not 6, or there are more than
 * IPV6_EXT_MAX extension headers. */
static __always_inline int parse_ipv6(void *l3, void *data_end, struct ipv6_info *info)
{
	struct ipv6_hdr *ip6 = l3;
	void *cur;
	__u8 next;

	if ((void *)(ip6 + 1) > data_end)
		return -1;
	if ((*(__u8 *)ip6 >> 4) != 6)
		return -1;
	info->ip6 = ip6;
	next = ip6->nexthdr;
	cur = ip6 + 1;
#pragma unroll
	for (int i = 0; i < IPV6_EXT_MAX; i++) {
		if (next == NEXTHDR_HOP || next == NEXTHDR_ROUTING || next == NEXTHDR_DEST) {
			__u8 *ext = cur;

			if ((void *)(ext + 2) > data_end)
				return -1;
			next = ext[0];
			cur += (ext[1] + 1) * 8;
		} else if (next == NEXTHDR_FRAGMENT) {
			struct ipv6_frag_hdr *frag = cur;

			if ((void *)(frag + 1) > data_end)
				return -1;
			info->fragment = 1;
			info->frag_id = frag->id;
			info->frag_nexthdr = frag->nexthdr;
			next = frag->nexthdr;
			cur = frag + 1;
			/* After a later fragment's header comes payload, not headers. */
			if (frag->frag_off & bpf_htons(IPV6_FRAG_OFFSET)) {
				info->later_fragment = 1;
				break;
			}
		} else {
			break;
		}
	}
	if (!info->later_fragment && (next == NEXTHDR_HOP || next == NEXTHDR_ROUTING || next == NEXTHDR_DEST ||
				      next == NEXTHDR_FRAGMENT))
		return -1;
	info->proto = next;
	info->l4 = cur;
	return 0;
}

/* Bytes from the start of the IPv6 header to l4. */
static __always_inline __u32 ipv6_headers_len(const struct ipv6_info *info)
{
	return (__u32)(info->l4 - (void *)info->ip6);
}

static __always_inline int ipv6_addr_equal(const __be32 *a, const __be32 *b)
{
	return !((a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3]));
}

#endif
