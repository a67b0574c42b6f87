/* SPDX-License-Identifier: Apache-2.0 */
/* Passes every frame. A veth only accepts frames its peer sends with XDP_TX
 * or XDP_REDIRECT when it runs an XDP program itself, so the lab puts this
 * one on the far side of the load balancer's links. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
