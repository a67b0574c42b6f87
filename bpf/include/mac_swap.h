/* SPDX-License-Identifier: Apache-2.0 */
/* The benchmarks' floor: what the least XDP program that sends a frame back
 * does -- swap the Ethernet addresses and return XDP_TX. bench_floor.c is
 * only this; bench_memory.c adds one map access before it. */
#ifndef TULA_MAC_SWAP_H
#define TULA_MAC_SWAP_H

#include <linux/bpf.h>
#include <linux/if_ether.h>

static __always_inline int mac_swap_tx(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	unsigned char mac[ETH_ALEN];

	if ((void *)(eth + 1) > data_end)
		return XDP_DROP;
	__builtin_memcpy(mac, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, mac, ETH_ALEN);
	return XDP_TX;
}

#endif
