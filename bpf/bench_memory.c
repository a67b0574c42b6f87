// SPDX-License-Identifier: Apache-2.0
/* What one random read of map memory costs an XDP program, for the
 * memory-cost benchmark (crates/tula-dataplane/benches/memory_cost.rs): each
 * program reads and writes the first 16 bytes of the element whose index
 * the frame carries right after its Ethernet header, then swaps the
 * addresses and returns XDP_TX, as the floor program does. The bench picks
 * the indices, so the same code runs with every access pattern; the pattern
 * (how many lines, over how many pages) is all that changes the cost.
 *
 * The memory_bucket* programs read a connection-table bucket's 4 lines
 * (256 bytes) the way a new flow does in a full table, or its first only.
 *
 * `lines` is an array of 64-byte lines (vmalloc'd, 4 KiB pages: the
 * connection table's kind of memory); `chunked_lines` holds about as many
 * lines in 1,024 arrays small enough to be kmalloc'd, in the kernel's direct
 * map (huge pages where the kernel can). */

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>

#include "mac_swap.h"

/* A word no line holds: every bucket check misses, as a new flow's does. */
#define BUCKET_MATCH 0x74756c61ULL

struct line {
	__u64 words[8];
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

/* About the same 32 MiB as chunks the kernel kmalloc's (in the direct map):
 * an array is kmalloc'd when it fits in 32 KiB with its 312-byte header
 * (Linux 6.18), so 1,024 arrays of 250 slots of 128 bytes (32,312 bytes
 * each), one per entry of an array of maps. A slot's line starts 8 bytes
 * in: after the header, that is where its cache line starts. */
#define CHUNK_SLOTS 250
struct chunk_slot {
	__u64 skew;
	__u64 words[15];
};

/* Sizes, not types: clang leaves a struct named only inside an inner map's
 * definition a forward declaration in BTF, which the loader cannot size. */
struct chunk {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(struct chunk_slot));
	__uint(max_entries, CHUNK_SLOTS);
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(key_size, sizeof(__u32));
	__uint(max_entries, 1024);
	__array(values, struct chunk);
} chunked_lines SEC(".maps");

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
static __always_inline int touched(struct xdp_md *ctx, __u64 *words)
{
	if (!words)
		return XDP_DROP;
	words[1] += words[0] + 1;
	return mac_swap_tx(ctx);
}

static __always_inline int touch(struct xdp_md *ctx, void *map)
{
	long index = frame_index(ctx);
	__u32 key = index;

	if (index < 0)
		return XDP_DROP;
	return touched(ctx, bpf_map_lookup_elem(map, &key));
}

SEC("xdp")
int memory_lines(struct xdp_md *ctx)
{
	return touch(ctx, &lines);
}

SEC("xdp")
int memory_chunked_lines(struct xdp_md *ctx)
{
	long index = frame_index(ctx);
	__u32 chunk_index = index / CHUNK_SLOTS, slot_index = index % CHUNK_SLOTS;
	struct chunk_slot *slot;
	void *chunk;

	if (index < 0)
		return XDP_DROP;
	chunk = bpf_map_lookup_elem(&chunked_lines, &chunk_index);
	if (!chunk)
		return XDP_DROP;
	slot = bpf_map_lookup_elem(chunk, &slot_index);
	return touched(ctx, slot ? slot->words : NULL);
}

/* A connection-table miss in a full table: `nlines` consecutive lines from
 * the frame's index (a 256-byte bucket is 4), each checked as conn_find
 * checks its ways (no match), then the last one written, as conn_insert
 * writes a way. With `touch_first`, each line's first word is read before
 * any check, so that no load waits on a branch. */
static __always_inline int bucket(struct xdp_md *ctx, const int nlines, const int touch_first)
{
	long index = frame_index(ctx);
	__u64 *words[4] = {};
	__u64 sum = 0;

	if (index < 0)
		return XDP_DROP;
#pragma unroll
	for (int i = 0; i < nlines && i < 4; i++) {
		__u32 key = index + i;

		words[i] = bpf_map_lookup_elem(&lines, &key);
		if (!words[i])
			return XDP_DROP;
		if (touch_first)
			sum += *(volatile __u64 *)words[i];
	}
	if (sum == BUCKET_MATCH)
		return XDP_PASS;
#pragma unroll
	for (int i = 0; i < nlines && i < 4; i++)
		if (words[i][0] == BUCKET_MATCH || words[i][4] == BUCKET_MATCH)
			return XDP_PASS;
	return touched(ctx, words[nlines - 1]);
}

SEC("xdp")
int memory_bucket_line(struct xdp_md *ctx)
{
	return bucket(ctx, 1, 0);
}

SEC("xdp")
int memory_bucket(struct xdp_md *ctx)
{
	return bucket(ctx, 4, 0);
}

SEC("xdp")
int memory_bucket_touched(struct xdp_md *ctx)
{
	return bucket(ctx, 4, 1);
}

char LICENSE[] SEC("license") = "Apache-2.0";
