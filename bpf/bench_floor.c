// SPDX-License-Identifier: Apache-2.0
/* The floor for tula's packet-cost benchmark: the least an XDP program that
 * sends a frame back can do -- swap the Ethernet addresses and return XDP_TX.
 * The balancer's costs are printed as multiples of this one's. */

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "mac_swap.h"

SEC("xdp")
int bench_floor(struct xdp_md *ctx)
{
	return mac_swap_tx(ctx);
}

char LICENSE[] SEC("license") = "Apache-2.0";
