/* SPDX-License-Identifier: Apache-2.0 */
/* Internet checksum (RFC 1071) arithmetic for XDP programs. Sums are kept in a
 * 64-bit accumulator of 16- or 32-bit words loaded in memory order; the folded
 * result is stored back in memory order too, so byte order never matters. */
#ifndef TULA_CSUM_H
#define TULA_CSUM_H

#include <linux/types.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>

/* Folds a 64-bit one's complement sum to 16 bits and complements it: the value
 * to store in a checksum field. */
static __always_inline __u16 csum_fold(__u64 sum)
{
	sum = (sum & 0xffffffff) + (sum >> 32);
	sum = (sum & 0xffffffff) + (sum >> 32);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/* Checksum of a 20-byte IPv4 header (no options) whose check field is zero. */
static __always_inline __u16 ipv4_csum(const struct iphdr *ip)
{
	const __u32 *word = (const __u32 *)ip;

	return csum_fold((__u64)word[0] + word[1] + word[2] + word[3] + word[4]);
}

/* The new value of checksum `check` when one 16-bit word it covers changes
 * from old to new (RFC 1624, eqn. 3); all three as stored in memory. */
static __always_inline __u16 csum_replace16(__u16 check, __u16 old, __u16 new)
{
	return csum_fold((__u64)(__u16)~check + (__u16)~old + new);
}

#endif
