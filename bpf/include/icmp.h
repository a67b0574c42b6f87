/* SPDX-License-Identifier: Apache-2.0 */
/* ICMP in XDP. What the balancer answers itself, built in place in the frame
 * that asked: echo replies for VIP addresses, and Fragmentation Needed for
 * packets too big for the tunnel (rate-limited per CPU). And reading the flow
 * an ICMP error quotes, so that the error can follow the flow to its backend. */
#ifndef TULA_ICMP_H
#define TULA_ICMP_H

#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "csum.h"
#include "maps.h"
#include "parse.h"

/* <linux/icmp.h> pulls in libc headers a BPF target has not: our own definitions. */
#define ICMP_ECHOREPLY 0
#define ICMP_DEST_UNREACH 3
#define ICMP_FRAG_NEEDED 4 /* code of ICMP_DEST_UNREACH */
#define ICMP_ECHO 8
#define ICMP_TIME_EXCEEDED 11

struct icmphdr {
	__u8 type;
	__u8 code;
	__sum16 checksum;
	union {
		struct {
			__be16 id;
			__be16 sequence;
		} echo;
		struct {
			__be16 __unused;
			__be16 mtu;
		} frag;
	} un;
};

#define ICMP_HLEN ((int)sizeof(struct icmphdr))
/* What a Fragmentation Needed reply puts before the quoted packet: IPv4 and ICMP headers. */
#define FRAG_NEEDED_HLEN (20 + ICMP_HLEN)
/* The most a reply quotes: an IPv4 header with 40 bytes of options, and 8 bytes after it. */
#define ICMP_QUOTE_MAX (60 + 8)
#define ICMP_ERROR_TOS 0xc0 /* precedence "internetwork control", which routers give their ICMP errors */
#define ICMP_REPLY_TTL 64

static __always_inline void swap_macs(struct ethhdr *eth)
{
	__u8 mac[ETH_ALEN];

	__builtin_memcpy(mac, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, mac, ETH_ALEN);
}

/* For an ICMP error about a TCP or UDP packet sent from vip_addr (the
 * backend's reply to a client): fills *flow with the quoted flow turned
 * around, as the client sends it (client -> VIP). `quote_len` is how many
 * bytes of the datagram follow the ICMP header. Returns 0, or -1 if the
 * error quotes anything else (another source, protocol, a later fragment)
 * or is cut before the ports. */
static __always_inline int icmp_error_flow(struct icmphdr *icmp, void *data_end, __u32 quote_len,
					   __be32 vip_addr, struct flow *flow)
{
	struct iphdr *inner = parse_ipv4((void *)icmp + ICMP_HLEN, data_end);
	struct l4_ports *ports;

	if (!inner || inner->ihl * 4 + sizeof(*ports) > quote_len)
		return -1;
	if (inner->saddr != vip_addr || ipv4_is_later_fragment(inner))
		return -1;
	if (inner->protocol != IPPROTO_TCP && inner->protocol != IPPROTO_UDP)
		return -1;
	ports = ipv4_payload(inner);
	if ((void *)(ports + 1) > data_end)
		return -1;
	*flow = (struct flow){
		.src = inner->daddr,
		.dst = inner->saddr,
		.sport = ports->dst,
		.dport = ports->src,
		.proto = inner->protocol,
	};
	return 0;
}

/* Whether a frame may draw an ICMP message from us at all (RFC 1122
 * 3.2.2 and 3.2.1.3, RFC 1812 4.3.2.7): not if it was sent to an Ethernet
 * broadcast or multicast address, nor if its source cannot be a single host
 * (0/8 "this network", 127/8 loopback, 224/4 multicast, 240/4 reserved and
 * the limited broadcast): a reply would go to many hosts, or to none.
 * ICMP errors, and later fragments, are the callers' to exclude. */
static __always_inline int icmp_may_answer(const struct ethhdr *eth, __be32 saddr)
{
	__u8 first = ((const __u8 *)&saddr)[0]; /* network order: the first octet */

	if (eth->h_dest[0] & 1)
		return 0;
	return first != 0 && first != 127 && first < 224;
}

/* Turns an echo request with a 20-byte IPv4 header into its reply, in place:
 * MACs and addresses swapped, TTL reset, type 0, both checksums updated. */
static __always_inline void icmp_echo_reply(struct ethhdr *eth, struct iphdr *ip, struct icmphdr *icmp)
{
	__be32 client = ip->saddr;
	__u16 old_type_code = *(__u16 *)icmp;

	swap_macs(eth);
	ip->saddr = ip->daddr;
	ip->daddr = client;
	ip->ttl = ICMP_REPLY_TTL;
	ip->check = 0;
	ip->check = ipv4_csum(ip);
	icmp->type = ICMP_ECHOREPLY;
	icmp->checksum = csum_replace16(icmp->checksum, old_type_code, *(__u16 *)icmp);
}

/* Rewrites the frame into an ICMP Fragmentation Needed (type 3, code 4) to its
 * sender, from the address it was sent to (the VIP), reporting next-hop MTU
 * `mtu` and quoting the IPv4 header, options included, and the 8 bytes after
 * it (RFC 792). The L2 header keeps its tag and gets its MACs swapped: the
 * reply leaves where the packet came in. The IPv4 header at l2_len (ETH_HLEN
 * or ETH_HLEN + 4, a constant at each call) must be followed by at least
 * ICMP_QUOTE_MAX bytes, as in any packet too big for a tunnel.
 * Returns 0, or -1 if the frame could not be reshaped; the caller drops it. */
static __always_inline int icmp_frag_needed(struct xdp_md *ctx, const int l2_len, __u16 mtu)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct iphdr *ip = data + l2_len;
	struct iphdr *reply;
	struct icmphdr *icmp;

	if ((void *)(ip + 1) > data_end)
		return -1;
	__u32 quoted = ip->ihl * 4 + 8;
	__be32 client = ip->saddr;
	__be32 vip = ip->daddr;

	/* The packet stays where it is and becomes the quote; the headers go in front. */
	if (bpf_xdp_adjust_head(ctx, -FRAG_NEEDED_HLEN))
		return -1;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (data + l2_len + FRAG_NEEDED_HLEN + ICMP_QUOTE_MAX > data_end)
		return -1;
	__builtin_memcpy(data, data + FRAG_NEEDED_HLEN, l2_len);
	swap_macs(data);

	reply = data + l2_len;
	*(__be16 *)reply = bpf_htons(0x4500 | ICMP_ERROR_TOS);
	reply->tot_len = bpf_htons(FRAG_NEEDED_HLEN + quoted);
	reply->id = 0;
	reply->frag_off = bpf_htons(IP_DF);
	reply->ttl = ICMP_REPLY_TTL;
	reply->protocol = IPPROTO_ICMP;
	reply->check = 0;
	reply->saddr = vip;
	reply->daddr = client;
	reply->check = ipv4_csum(reply);

	icmp = (void *)(reply + 1);
	icmp->type = ICMP_DEST_UNREACH;
	icmp->code = ICMP_FRAG_NEEDED;
	icmp->checksum = 0;
	icmp->un.frag.__unused = 0;
	icmp->un.frag.mtu = bpf_htons(mtu);
	icmp->checksum = csum_fold((__u32)bpf_csum_diff(NULL, 0, (void *)icmp, ICMP_HLEN + quoted, 0));

	/* Cut everything after the quote. The length is kept 64-bit: the verifier
	 * refuses 32-bit arithmetic on packet pointers, which clang would emit. */
	__u64 frame_len = data_end - data;

	asm volatile("" : "+r"(frame_len));
	if (bpf_xdp_adjust_tail(ctx, (int)(l2_len + FRAG_NEEDED_HLEN + quoted) - (int)frame_len))
		return -1;
	return 0;
}

/* Whether this CPU may send one more ICMP reply now: a token bucket kept in
 * nanoseconds of credit, refilled by the time since the last call, holding at
 * most icmp_burst_ns, and charged icmp_interval_ns per reply. */
static __always_inline int icmp_rate_allows(const struct settings *s)
{
	__u32 zero = 0;
	struct icmp_bucket *bucket = bpf_map_lookup_elem(&icmp_buckets, &zero);
	__u64 now = bpf_ktime_get_ns();
	__u64 credit;

	if (!bucket)
		return 0;
	credit = bucket->credit_ns + (now - bucket->stamp_ns);
	if (credit > s->icmp_burst_ns)
		credit = s->icmp_burst_ns;
	bucket->stamp_ns = now;
	if (credit < s->icmp_interval_ns) {
		bucket->credit_ns = credit;
		return 0;
	}
	bucket->credit_ns = credit - s->icmp_interval_ns;
	return 1;
}

#endif
