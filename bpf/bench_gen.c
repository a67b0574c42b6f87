// SPDX-License-Identifier: Apache-2.0
/* The traffic generator of tula's throughput benchmark (crates/tula-bench).
 *
 * It never sees real traffic: user space runs it with BPF_PROG_TEST_RUN and
 * BPF_F_TEST_XDP_LIVE_FRAMES, and every frame it returns XDP_TX for really
 * leaves the interface named in the test run's context. The kernel recycles
 * the frames without restoring them (whoever handled a frame last may have
 * moved or rewritten its headers), so each run writes the whole header again
 * from `gen_template` and then stamps the packet's own flow into it.
 *
 * Packet n belongs either to one of `gen_config.flows` established flows
 * (cycled) or, for `new_per_16` packets out of every 16, to a flow never sent
 * before, a SYN (a per-CPU counter that only grows, so SYN floods stay new
 * across runs, with the CPU in the flow number, so CPUs never share one).
 * A flow's source is 198.19.x.y, port 1024 + (flow >> 16), and its
 * destination entry `gen_dsts[flow % dsts]`. */

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "csum.h"

#define GEN_FRAME_LEN 64
#define GEN_MAX_DSTS 4096
#define CLIENT_NET 0xc6130000 /* 198.19.0.0/16, host order */

/* The frame as user space built it: Ethernet, IPv4 (no options), TCP, padding. */
struct gen_template {
	__u8 bytes[GEN_FRAME_LEN];
};

struct gen_config {
	__u32 flows;      /* established flows to cycle through (>= 1) */
	__u32 new_per_16; /* out of every 16 packets, how many open a new flow */
	__u32 dsts;       /* entries of gen_dsts in use (1 .. GEN_MAX_DSTS) */
	__u32 est_base;   /* established flow numbers start here; new ones at 1 << 31 */
};

/* A destination: TCP or UDP to addr:port. */
struct gen_dst {
	__be32 addr;
	__be16 port;
	__u8 proto;
	__u8 pad;
};

/* Where the generator is: packets so far, established and new flows opened. */
struct gen_state {
	__u64 packets;
	__u64 est_next;
	__u64 new_next;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct gen_template);
	__uint(max_entries, 1);
} gen_template SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct gen_config);
	__uint(max_entries, 1);
} gen_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct gen_dst);
	__uint(max_entries, GEN_MAX_DSTS);
} gen_dsts SEC(".maps");

/* Per CPU so no atomics are needed; the benchmark runs it on one CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct gen_state);
	__uint(max_entries, 1);
} gen_state SEC(".maps");

SEC("xdp")
int bench_gen(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct gen_template *frame = data;
	struct gen_template *template;
	struct gen_config *config;
	struct gen_state *state;
	struct gen_dst *dst;
	struct ethhdr *eth;
	struct iphdr *ip;
	struct tcphdr *tcp;
	__u32 zero = 0, flow, index;
	__u64 n;

	if ((void *)(frame + 1) > data_end)
		return XDP_ABORTED;
	template = bpf_map_lookup_elem(&gen_template, &zero);
	config = bpf_map_lookup_elem(&gen_config, &zero);
	state = bpf_map_lookup_elem(&gen_state, &zero);
	if (!template || !config || !state || !config->flows || !config->dsts)
		return XDP_ABORTED;

	n = state->packets++;
	if ((n & 15) < config->new_per_16)
		/* Bit 31 marks a new flow (a SYN), bits 27-30 the CPU, so that CPUs
		 * running at once never send one flow; 2^27 new flows a CPU, then they repeat. */
		flow = 1U << 31 | (bpf_get_smp_processor_id() & 15) << 27 | ((__u32)state->new_next++ & ((1U << 27) - 1));
	else
		flow = config->est_base + (__u32)(state->est_next++ % config->flows);
	index = flow % config->dsts;
	dst = bpf_map_lookup_elem(&gen_dsts, &index);
	if (!dst)
		return XDP_ABORTED;

	__builtin_memcpy(frame, template, sizeof(*frame));
	eth = data;
	ip = (void *)(eth + 1);
	tcp = (void *)(ip + 1);
	ip->saddr = bpf_htonl(CLIENT_NET | (flow & 0xffff));
	ip->daddr = dst->addr;
	tcp->source = bpf_htons(1024 + ((flow >> 16) % 64512));
	tcp->dest = dst->port;
	if (dst->proto == IPPROTO_UDP) {
		struct udphdr *udp = (void *)tcp;

		ip->protocol = IPPROTO_UDP;
		udp->len = bpf_htons(GEN_FRAME_LEN - sizeof(*eth) - sizeof(*ip));
		udp->check = 0;
	} else if (flow >= (1U << 31)) {
		tcp->syn = 1;
		tcp->ack = 0;
	}
	ip->check = 0;
	ip->check = ipv4_csum(ip);
	return XDP_TX;
}

char LICENSE[] SEC("license") = "Apache-2.0";
