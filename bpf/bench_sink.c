// SPDX-License-Identifier: Apache-2.0
/* The sink of tula's throughput benchmark (crates/tula-bench): attached where
 * the balancer's output arrives, it counts every frame -- and separately the
 * IPIP ones (L3 DSR output) and the rest -- then drops it. Having an XDP
 * program here is also what lets a veth accept its peer's XDP_TX frames. */

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

enum sink_counter {
	SINK_FRAMES,
	SINK_IPIP,  /* IPv4 protocol 4: encapsulated by the balancer */
	SINK_OTHER, /* anything else (L2 DSR output, kernel replies, ...) */
	SINK_BYTES,
	SINK_COUNTERS,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, SINK_COUNTERS);
} sink_counts SEC(".maps");

static __always_inline void add(__u32 counter, __u64 amount)
{
	__u64 *value = bpf_map_lookup_elem(&sink_counts, &counter);

	if (value)
		*value += amount;
}

SEC("xdp")
int bench_sink(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);

	add(SINK_FRAMES, 1);
	add(SINK_BYTES, data_end - data);
	if ((void *)(ip + 1) <= data_end && eth->h_proto == bpf_htons(ETH_P_IP) &&
	    ip->protocol == IPPROTO_IPIP)
		add(SINK_IPIP, 1);
	else
		add(SINK_OTHER, 1);
	return XDP_DROP;
}

char LICENSE[] SEC("license") = "Apache-2.0";
