/* SPDX-License-Identifier: Apache-2.0 */
/* ICMPv6 in XDP, the counterpart of icmp.h: echo replies for IPv6 VIP
 * addresses and Packet Too Big for packets that do not fit the tunnel, built
 * in place in the frame that asked; reading the flow an ICMPv6 error quotes
 * so that it can follow the flow to its backend; and who may be answered at
 * all (RFC 4443 2.4). The rate limit is icmp.h's. */
#ifndef TULA_ICMP6_H
#define TULA_ICMP6_H

#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "csum.h"
#include "icmp.h"
#include "maps.h"
#include "parse6.h"

#define ICMP6_DEST_UNREACH 1
#define ICMP6_PKT_TOOBIG 2
#define ICMP6_TIME_EXCEED 3
#define ICMP6_PARAMPROB 4
#define ICMP6_ECHO_REQUEST 128
#define ICMP6_ECHO_REPLY 129

struct icmp6hdr {
	__u8 type;
	__u8 code;
	__sum16 checksum;
	__be32 data; /* echo: id and sequence; Packet Too Big: the MTU */
};

#define ICMP6_HLEN ((int)sizeof(struct icmp6hdr))
#define IPV6_MIN_MTU 1280
/* A Packet Too Big is exactly the minimum MTU: headers, then this much of the
 * packet (RFC 4443 2.4 (c)); a packet too big for a tunnel always has it. */
#define PTB_QUOTE (IPV6_MIN_MTU - IPV6_HLEN - ICMP6_HLEN)
#define PTB_HLEN (IPV6_HLEN + ICMP6_HLEN)

/* Whether a frame may draw an ICMPv6 message from us (RFC 4443 2.4 (e)): not
 * if sent to an Ethernet broadcast or multicast address, nor from the
 * unspecified address, loopback or a multicast source. ICMPv6 errors are the
 * callers' to exclude (2.4 (e.1)). */
static __always_inline int icmp6_may_answer(const struct ethhdr *eth, const __be32 *saddr)
{
	if (eth->h_dest[0] & 1)
		return 0;
	if (((const __u8 *)saddr)[0] == 0xff)
		return 0;
	if (saddr[0] | saddr[1] | saddr[2])
		return 1;
	return saddr[3] != 0 && saddr[3] != bpf_htonl(1);
}

/* Whether an ICMPv6 type is an error message (types below 128). */
static __always_inline int icmp6_is_error(__u8 type)
{
	return type < 128;
}

/* For an ICMPv6 error about a TCP or UDP packet sent from vip_addr (a
 * backend's reply to a client): fills *flow with the quoted flow as the
 * client sends it (client -> VIP). `quote_len` is how many bytes of the
 * datagram follow the ICMPv6 header. Returns 0, or -1 if it quotes anything
 * else or is cut before the ports. */
static __always_inline int icmp6_error_flow(struct icmp6hdr *icmp, void *data_end, __u32 quote_len,
					    const __be32 *vip_addr, struct flow6 *flow)
{
	struct ipv6_info inner = {};
	struct l4_ports *ports;

	if (parse_ipv6((void *)(icmp + 1), data_end, &inner) || inner.later_fragment)
		return -1;
	if (inner.proto != IPPROTO_TCP && inner.proto != IPPROTO_UDP)
		return -1;
	if (!ipv6_addr_equal(inner.ip6->saddr, vip_addr))
		return -1;
	ports = inner.l4;
	if ((void *)(ports + 1) > data_end || (__u32)((void *)(ports + 1) - (void *)(icmp + 1)) > quote_len)
		return -1;
	__builtin_memcpy(flow->src, inner.ip6->daddr, 16);
	__builtin_memcpy(flow->dst, inner.ip6->saddr, 16);
	flow->sport = ports->dst;
	flow->dport = ports->src;
	flow->proto = inner.proto;
	return 0;
}

/* Turns an echo request into its reply, in place: MACs and addresses
 * swapped, hop limit reset, type 129, the checksum updated (the pseudo-header
 * sum does not change when the addresses swap). */
static __always_inline void icmp6_echo_reply(struct ethhdr *eth, struct ipv6_hdr *ip6, struct icmp6hdr *icmp)
{
	__be32 client[4];
	__u16 old_type_code = *(__u16 *)icmp;

	swap_macs(eth);
	__builtin_memcpy(client, ip6->saddr, 16);
	__builtin_memcpy(ip6->saddr, ip6->daddr, 16);
	__builtin_memcpy(ip6->daddr, client, 16);
	ip6->hop_limit = ICMP_REPLY_TTL;
	icmp->type = ICMP6_ECHO_REPLY;
	icmp->checksum = csum_replace16(icmp->checksum, old_type_code, *(__u16 *)icmp);
}

#define CSUM_CHUNK 512 /* the most bpf_csum_diff sums in one call */

/* Rewrites the frame into an ICMPv6 Packet Too Big to its sender, from the
 * address it was sent to (the VIP), reporting `mtu` and quoting the first
 * PTB_QUOTE bytes of the packet: 1280 bytes in all. The L2 header keeps its
 * tag and gets its MACs swapped. The IPv6 packet at l2_len (a constant at each
 * call) must have at least PTB_QUOTE bytes, as any packet over 1280 has.
 * Returns 0, or -1 if the frame could not be reshaped; the caller drops it. */
static __always_inline int icmp6_packet_too_big(struct xdp_md *ctx, const int l2_len, __u32 mtu)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ipv6_hdr *ip6 = data + l2_len;
	struct ipv6_hdr *reply;
	struct icmp6hdr *icmp;
	__be32 client[4], vip[4];

	if ((void *)(ip6 + 1) > data_end)
		return -1;
	__builtin_memcpy(client, ip6->saddr, 16);
	__builtin_memcpy(vip, ip6->daddr, 16);

	if (bpf_xdp_adjust_head(ctx, -PTB_HLEN))
		return -1;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (data + l2_len + IPV6_MIN_MTU > data_end)
		return -1;
	__builtin_memcpy(data, data + PTB_HLEN, l2_len);
	swap_macs(data);

	reply = data + l2_len;
	reply->ver_tc_flow = bpf_htonl(6U << 28);
	reply->payload_len = bpf_htons(ICMP6_HLEN + PTB_QUOTE);
	reply->nexthdr = NEXTHDR_ICMP6;
	reply->hop_limit = ICMP_REPLY_TTL;
	__builtin_memcpy(reply->saddr, vip, 16);
	__builtin_memcpy(reply->daddr, client, 16);

	icmp = (void *)(reply + 1);
	icmp->type = ICMP6_PKT_TOOBIG;
	icmp->code = 0;
	icmp->checksum = 0;
	icmp->data = bpf_htonl(mtu);
	/* Pseudo-header (addresses, upper-layer length, next header), then the message. */
	__u32 sum = bpf_csum_diff(NULL, 0, (void *)reply->saddr, 32, 0);
	void *msg = icmp;

	sum = bpf_csum_diff(NULL, 0, msg, CSUM_CHUNK, sum);
	sum = bpf_csum_diff(NULL, 0, msg + CSUM_CHUNK, CSUM_CHUNK, sum);
	sum = bpf_csum_diff(NULL, 0, msg + 2 * CSUM_CHUNK, ICMP6_HLEN + PTB_QUOTE - 2 * CSUM_CHUNK, sum);
	icmp->checksum = csum_fold((__u64)sum + bpf_htonl(ICMP6_HLEN + PTB_QUOTE) + bpf_htonl(NEXTHDR_ICMP6));

	/* Cut everything after the quote (64-bit length: see icmp_frag_needed). */
	__u64 frame_len = data_end - data;

	asm volatile("" : "+r"(frame_len));
	if (bpf_xdp_adjust_tail(ctx, (int)(l2_len + IPV6_MIN_MTU) - (int)frame_len))
		return -1;
	return 0;
}

#endif
