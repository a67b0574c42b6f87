/* SPDX-License-Identifier: Apache-2.0 */
/* Header parsing shared by tula's XDP programs: Ethernet with at most one
 * 802.1Q tag, IPv4 with options, the fixed part of TCP and UDP (and a SYN).
 * Every function checks its own bounds against data_end, so a caller never
 * reads past the packet whatever the frame's length. */
#ifndef TULA_PARSE_H
#define TULA_PARSE_H

#include <linux/types.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#ifndef IP_MF
#define IP_MF 0x2000     /* "more fragments" flag, host order */
#endif
#ifndef IP_DF
#define IP_DF 0x4000     /* "don't fragment" flag, host order */
#endif
#ifndef IP_OFFSET
#define IP_OFFSET 0x1fff /* fragment offset mask, host order */
#endif
#define VLAN_VID_MASK 0x0fff

/* An 802.1Q tag as it follows the MAC addresses: TCI, then the inner ethertype. */
struct vlan_tag {
	__be16 tci;
	__be16 proto;
};

struct l2_header {
	struct ethhdr *eth;
	struct vlan_tag *vlan; /* NULL when the frame is untagged */
	__be16 proto;          /* ethertype of the payload (after the tag, if any) */
	__u16 len;             /* bytes before the L3 header: ETH_HLEN, or ETH_HLEN + 4 */
};

/* Parses Ethernet and at most one 802.1Q tag. Returns 0, or -1 if truncated. */
static __always_inline int parse_l2(void *data, void *data_end, struct l2_header *l2)
{
	struct ethhdr *eth = data;
	struct vlan_tag *tag;

	if ((void *)(eth + 1) > data_end)
		return -1;
	l2->eth = eth;
	l2->vlan = NULL;
	l2->proto = eth->h_proto;
	l2->len = sizeof(*eth);
	if (eth->h_proto != bpf_htons(ETH_P_8021Q))
		return 0;
	tag = (void *)(eth + 1);
	if ((void *)(tag + 1) > data_end)
		return -1;
	l2->vlan = tag;
	l2->proto = tag->proto;
	l2->len += sizeof(*tag);
	return 0;
}

/* The IPv4 header at l3 with all its options in the packet, or NULL if it is
 * truncated or invalid (version not 4, IHL below 5). */
static __always_inline struct iphdr *parse_ipv4(void *l3, void *data_end)
{
	struct iphdr *ip = l3;

	if ((void *)(ip + 1) > data_end)
		return NULL;
	if (ip->version != 4 || ip->ihl < 5)
		return NULL;
	if ((void *)ip + ip->ihl * 4 > data_end)
		return NULL;
	return ip;
}

/* First byte after the IPv4 header and its options. */
static __always_inline void *ipv4_payload(const struct iphdr *ip)
{
	return (void *)ip + ip->ihl * 4;
}

/* Non-zero for any fragment (first, middle or last) of a fragmented datagram. */
static __always_inline int ipv4_is_fragment(const struct iphdr *ip)
{
	return ip->frag_off & bpf_htons(IP_MF | IP_OFFSET);
}

/* Non-zero for a fragment after the first: it has no transport header. */
static __always_inline int ipv4_is_later_fragment(const struct iphdr *ip)
{
	return ip->frag_off & bpf_htons(IP_OFFSET);
}

/* Source and destination port, the first four bytes of both TCP and UDP. */
struct l4_ports {
	__be16 src;
	__be16 dst;
};

/* The ports of a TCP or UDP header at l4, or NULL unless the whole fixed
 * header (20 bytes for TCP, 8 for UDP) is in the packet. */
static __always_inline struct l4_ports *parse_ports(void *l4, void *data_end, __u8 proto)
{
	if (proto == IPPROTO_TCP) {
		if (l4 + 20 > data_end)
			return NULL;
	} else {
		if (l4 + 8 > data_end)
			return NULL;
	}
	return l4;
}

#define TCP_FLAGS_OFFSET 13 /* the byte holding CWR ECE URG ACK PSH RST SYN FIN */
#define TCP_FLAGS_SYN 0x02
#define TCP_FLAGS_ACK 0x10

/* Non-zero for a TCP segment that opens a connection: SYN set, ACK clear
 * (a client's SYN, not a SYN-ACK). */
static __always_inline int tcp_opens_connection(void *tcp, void *data_end)
{
	__u8 *flags = tcp + TCP_FLAGS_OFFSET;

	if ((void *)(flags + 1) > data_end)
		return 0;
	return (*flags & (TCP_FLAGS_SYN | TCP_FLAGS_ACK)) == TCP_FLAGS_SYN;
}

#endif
