// SPDX-License-Identifier: Apache-2.0
/* What one random read of map memory costs an XDP program, for the
 * memory-cost benchmark (crates/tula-dataplane/benches/memory_cost.rs): each
 * program reads and writes the first 16 bytes of the element whose index
 * the frame carries right after its Ethernet header, then swaps the
 * addresses and returns XDP_TX, as the floor program does. The bench picks
 * the indices, so the same code runs with every access pattern; the pattern
 * (how many lines, over how many pages) is all that changes the cost.
 *
 * `lines` is an array of 64-byte lines (vmalloc'd, 4 KiB pages: the
 * connection table's kind of memory); `elems` and `elems_kmalloc` are the
 * same hash of 1 KiB elements, preallocated in one vmalloc'd area or each
 * kmalloc'd in the kernel's direct map (huge pages where the kernel can). */

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>

#include "mac_swap.h"

struct line {
	__u64 words[8];
};

struct elem {
	__u64 words[120]; /* 960 bytes: with the kernel's element header, about 1 KiB */
};

/* 32 MiB, about the connection table's 30.5 MiB at 1,000,000 flows. Mmapable
 * so that its elements start on a page, as the table's do. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct line);
	__uint(max_entries, 1 << 19);
} lines SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct elem);
	__uint(max_entries, 1 << 15);
} elems SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct elem);
	__uint(max_entries, 1 << 15);
} elems_kmalloc SEC(".maps");

/* The element index the frame carries, or -1 if it is too short. */
static __always_inline long frame_index(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;

	if (data + ETH_HLEN + sizeof(__u32) > data_end)
		return -1;
	return *(__u32 *)(data + ETH_HLEN);
}

/* A read that the write depends on, as a table lookup and its update are. */
static __always_inline int touch(struct xdp_md *ctx, void *map)
{
	long index = frame_index(ctx);
	__u32 key = index;
	__u64 *words;

	if (index < 0)
		return XDP_DROP;
	words = bpf_map_lookup_elem(map, &key);
	if (!words)
		return XDP_DROP;
	words[1] += words[0] + 1;
	return mac_swap_tx(ctx);
}

SEC("xdp")
int memory_lines(struct xdp_md *ctx)
{
	return touch(ctx, &lines);
}

SEC("xdp")
int memory_elems(struct xdp_md *ctx)
{
	return touch(ctx, &elems);
}

SEC("xdp")
int memory_elems_kmalloc(struct xdp_md *ctx)
{
	return touch(ctx, &elems_kmalloc);
}

char LICENSE[] SEC("license") = "Apache-2.0";
