/* SPDX-License-Identifier: Apache-2.0 */
/* The balancer's shared structs and maps: the contract with user space.
 * Every struct here has a #[repr(C)] mirror in crates/tula-dataplane/src/abi.rs,
 * checked against this object's BTF by a test. Change both together. */
#ifndef TULA_MAPS_H
#define TULA_MAPS_H

#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* Map sizes here are defaults; the loader resizes them (set_max_entries). */
#define MAX_VIPS 512
#define MAX_BACKENDS 4096
#define RING_SLOTS (MAX_VIPS + 16) /* spare rings so a swap never writes a live one */
#define DEFAULT_RING_SIZE 65537
#define CONN_TABLE_SIZE 1000000
#define MAX_IFACES 64
#define FRAG_TABLE_SIZE 8192 /* datagrams whose later fragments are in flight */

/* vip_meta.flags */
#define VIP_F_L2_DSR (1U << 0)      /* rewrite MACs only; default is L3 (IPIP) */
#define VIP_F_SOURCE_HASH (1U << 1) /* hash the client address only */
#define VIP_F_NO_ICMP_ECHO (1U << 2) /* do not answer ICMP echo to the address (see vip_addrs) */
#define VIP_F_ROUND_ROBIN (1U << 3)  /* a new flow takes the ring slot at this CPU's cursor (rr_cursors), not the hash's */
#define VIP_F_WEIGHTED (1U << 4)     /* with VIP_F_ROUND_ROBIN: the ring honours weights (user space only) */

/* backend.flags */
#define BACKEND_F_ALIVE (1U << 0) /* may carry flows; clear = removed, disabled or down */
#define BACKEND_F_IPV6 (1U << 1)  /* an IPv6 backend: its address is in backends6, addr is 0 */

struct vip_key {
	__be32 addr;
	__be16 port; /* 0 = all ports */
	__u8 proto;  /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 pad;
};

struct vip_meta {
	__u32 id;    /* index into vip_stats */
	__u32 flags; /* VIP_F_* */
	__u32 ring;  /* which ring slot in `ring` holds this VIP's Maglev table */
	__u32 pad;
};

struct traffic {
	__u64 packets;
	__u64 bytes;
};

/* A backend as user space writes it (`backends`) and as each CPU copies it
 * (`cpu_backends`). Backends with one address share a hop: one next hop per
 * CPU in `paths`, and one epoch, which user space changes when the hop is
 * given to another address and when interfaces change. */
struct backend {
	__be32 addr;      /* an IPv6 backend's: addr6_tag() of its address (in backends6) */
	__u16 flags;      /* BACKEND_F_* */
	__u16 epoch;      /* its hop's: a path filled under another epoch is refilled */
	__u32 hop;        /* its address's element of `paths` (per CPU), below path_hops */
	__u32 generation; /* in a CPU's copy: settings.backend_generation when copied; 0 in `backends` */
};

/* What a CPU keeps per backend id: its copy of the `backends` entry, and
 * what it sent there, side by side in one line of its own (element cpu *
 * path_backends + id of `cpu_backends`): an established packet reads and
 * writes no other line for its backend, and no two CPUs write one line. */
struct cpu_backend {
	struct backend backend;
	struct traffic traffic;
};
_Static_assert(sizeof(struct cpu_backend) == 32, "two backends per cache line");

/* The address of a backend with BACKEND_F_IPV6, at its id in backends6. */
struct backend6 {
	__be32 addr[4];
};

/* An IPv6 VIP: the vips6 key (value: struct vip_meta, as for vips). */
struct vip6_key {
	__be32 addr[4];
	__be16 port; /* 0 = all ports */
	__u8 proto;  /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 pad;
};

/* 5-tuple of a client flow, in network byte order as on the wire. */
struct flow {
	__be32 src;
	__be32 dst;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad[3];
};

/* The connection table is set-associative: a flow's hash picks a bucket of
 * CONN_WAYS entries, the flow's key is compared whole, and a new flow takes
 * an empty way or else the one that saw a packet least recently. No lock: a
 * CPU may read an entry that another is writing; `check` binds the backend to
 * the key, so such a torn entry counts as a miss and is written anew (it can
 * never send one flow to another flow's backend). See docs/DATAPLANE.md. */
#define CONN_WAYS 8
#define CONN_STAMP_SHIFT 20 /* conn_entry.stamp = jiffies << 20 | write sequence */
#define CONN_STAMP_HIT (1ULL << 63) /* in stamp: the flow sent more than one packet, so it is replaced after every one-packet flow */
/* How long the hit bit protects a flow after its last packet, in jiffies
 * (1 s at HZ=250): a flow that went quiet (or closed) ages like a one-packet
 * flow, so old established flows cannot fill a bucket for good and leave new
 * flows only each other's ways to take. */
#define CONN_HIT_LIFE 256
/* TCP SYNs of a hashed VIP wait in their CPU's SYN table (`syns`, `syns6`),
 * not in conns (conns6), until their connection's next packet: SYN_SLOTS entries a CPU,
 * direct-mapped by the flow hash's low bits, each valid for SYN_LIFE jiffies
 * (4.1 s at HZ=250: a client's second SYN retransmission comes after 3 s). */
#define SYN_SLOTS 4096
#define SYN_LIFE 1024
struct conn_entry {
	struct flow flow; /* the key, compared whole */
	__u32 backend;    /* index into backends */
	__u32 check;      /* conn_check(flow hash, backend); 0 = an empty way */
	__u64 stamp;      /* when the flow last sent a packet: bpf_jiffies64() << CONN_STAMP_SHIFT,
	                   * plus this CPU's table-write sequence so entries of one jiffy keep their order */
};

struct conn_bucket {
	struct conn_entry ways[CONN_WAYS];
};

/* The 5-tuple of an IPv6 client flow, network byte order. 8-byte aligned so
 * that it is compared (and hashed) as five 64-bit words. */
struct flow6 {
	__be32 src[4];
	__be32 dst[4];
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad[3];
} __attribute__((aligned(8)));

/* The IPv6 connection table (conns6), a table of its own so that the IPv4
 * one keeps its 32-byte entries: the same ways, stamps and checks. */
struct conn6_entry {
	struct flow6 flow;
	__u32 backend;
	__u32 check;
	__u64 stamp;
};

struct conn6_bucket {
	struct conn6_entry ways[CONN_WAYS];
};

struct iface {
	__be32 tunnel_src;    /* outer source address for IPIP leaving here */
	__u16 path_mtu;       /* MTU of the path beyond, if below the route MTU; 0 = the route MTU */
	__u16 vlan_id;        /* non-zero: a VLAN device on lower_ifindex */
	__u32 lower_ifindex;  /* where frames for a VLAN device really leave */
};

/* The `ifaces6` value: the outer source of IPv6 tunnels leaving by an interface. */
struct iface6 {
	__be32 tunnel_src[4];
};

/* Next-hop cache: what bpf_fib_lookup and `ifaces` said about a backend
 * address, kept per CPU and hop (in its struct path) for NEXT_HOP_TTL_JIFFIES
 * so the per-packet path needs neither. Valid while jiffies are before
 * `expires`, the backend's epoch is still `epoch`, its IPv4 address still
 * `addr` and the ingress still matches; user space moves every backend to a
 * new epoch when interfaces change. */
#define NEXT_HOP_TTL_JIFFIES 25 /* 100 ms at HZ=250; 25 ms to 250 ms for HZ 1000 to 100 */
struct next_hop {
	__u64 expires;       /* bpf_jiffies64() deadline; 0 = empty */
	__u32 ingress;       /* looked up for a packet arriving on this interface */
	__u32 tx_ifindex;    /* where the frame leaves (a VLAN's lower device) */
	__be32 tunnel_src;   /* the egress interface's IPIP source */
	__u16 vlan_id;       /* egress VLAN, 0 if untagged */
	__u16 path_mtu;      /* the route MTU, or the egress interface's path_mtu if lower: what
	                      * an encapsulated packet must fit (the tunnel MTU is 20 less) */
	__u8 dmac[6];
	__u8 smac[6];
	__u16 route_mtu;     /* route MTU (bpf_fib_lookup): the largest frame XDP can send there */
	__u16 ip_id;         /* last outer IP ID given a packet without DF (outer_ip_id); not reset by refreshes */
	__u16 epoch;         /* backend.epoch when filled */
	__u8 pad[2];
	__be32 addr;         /* the IPv4 backend address looked up, or an IPv6 one's addr6_tag() */
};

/* A CPU's next hop toward a hop (a backend address), one 64-byte line:
 * element cpu * path_hops + hop of `paths`. Each CPU's paths lie
 * together (fewer pages, so fewer TLB misses, than interleaving the CPUs),
 * and no two CPUs write one line. */
struct path {
	struct next_hop nh;
	__u8 pad[16];
};
_Static_assert(sizeof(struct path) == 64, "a path is one cache line");

/* An IPv6 backend's outer addresses as its next hop was looked up, at the
 * same element of `paths6`: read only for IPv6 backends. */
struct path6 {
	__be32 backend_addr6[4];
	__be32 tunnel_src6[4]; /* the egress interface's IPv6 tunnel source (ifaces6), 0 if none */
};

/* A fragmented datagram, as every one of its fragments names it. */
struct frag_key {
	__be32 src;
	__be32 dst;
	__be16 id;
	__u8 proto;
	__u8 pad;
};

/* A fragmented IPv6 datagram: the frags6 key. */
struct frag6_key {
	__be32 src[4];
	__be32 dst[4];
	__be32 id;
	__u8 proto; /* the fragment header's next header */
	__u8 pad[3];
};

/* Where a datagram's first fragment went, so the later ones follow it. */
struct frag_dest {
	__u32 backend;    /* index into backends */
	__u32 vip;        /* vip_meta.id */
	__u32 vip_flags;  /* vip_meta.flags */
	__u32 flow_label; /* the outer IPv6 flow label of its flow (IPv6 backends) */
};

/* vip_addrs value: what the balancer answers for a VIP address itself. */
#define VIP_ADDR_F_ECHO (1U << 0) /* ICMP echo requests get a reply */
struct vip_addr {
	__u32 flags; /* VIP_ADDR_F_* */
};

/* Global settings, the one entry of `settings`; all zero = the defaults. */
#define SETTINGS_F_NO_FRAG_NEEDED (1U << 0) /* drop too-big DF packets without answering */
struct settings {
	__u32 flags;             /* SETTINGS_F_* */
	__u32 backend_generation; /* changes with every write to `backends`: older CPU copies are refilled; 0 = copy always */
	__u64 icmp_interval_ns;  /* each CPU sends at most one Fragmentation Needed per interval ... */
	__u64 icmp_burst_ns;     /* ... after saving up at most this much time (burst = this / interval) */
};

/* Per-CPU token bucket for the ICMP replies, counted in nanoseconds of credit. */
struct icmp_bucket {
	__u64 stamp_ns; /* bpf_ktime_get_ns() of the last refill */
	__u64 credit_ns;
};

/* VIP address filter: bit (addr * VIP_FILTER_MUL) >> 16 of the address as
 * loaded from the packet is set for every VIP address, so most non-VIP packets
 * are passed without a hash lookup. A set bit may still be no VIP. */
#define VIP_FILTER_BITS 65536
#define VIP_FILTER_MUL 0x9e3779b1U /* multiplicative hash; bit = (addr * MUL) >> 16 */
struct vip_filter {
	__u64 words[VIP_FILTER_BITS / 64];
};

/* Global counters: one slot each in `counters`. Append only. */
enum counter {
	CNT_PASS = 0,      /* verdicts */
	CNT_TX,
	CNT_REDIRECT,
	CNT_DROP,
	CNT_NOT_IPV4,      /* passed: neither IPv4 nor IPv6 (ARP, other ethertypes, runt frames) */
	CNT_NOT_VIP,       /* passed: IPv4 or IPv6 but no VIP matched */
	CNT_MALFORMED,     /* truncated or invalid IPv4/TCP/UDP/ICMP header or length: dropped if an all-ports VIP claims it, else passed */
	CNT_LRU_HIT,       /* the flow found: in conns, or (its connection's next packet) in this CPU's SYN table */
	CNT_LRU_MISS,      /* new flow (or TCP SYN): placed by the scheduler */
	CNT_LRU_STALE,     /* conn entry pointed at a backend no longer alive */
	CNT_NO_BACKEND,    /* dropped: ring slot empty or backend not alive */
	CNT_FIB_NO_NEIGH,  /* L3: passed encapsulated so the kernel resolves the neighbour */
	CNT_FIB_FAIL,      /* dropped: no route / blackhole / unreachable */
	CNT_NO_IFACE,      /* dropped: egress interface not registered, or (L3) without tunnel source */
	CNT_VLAN_MISMATCH, /* L3: passed encapsulated: tagging of ingress and egress disagree */
	CNT_ENCAP_FAIL,    /* dropped: adjust_head failed */
	CNT_NO_TX_PORT,    /* dropped: egress interface missing from tx_ports */
	CNT_FRAGMENT,      /* a later fragment (offset > 0), sent where its first fragment went */
	CNT_FRAG_NEEDED,   /* DF packet larger than the tunnel MTU: answered (CNT_ICMP_FRAG_NEEDED) or dropped */
	CNT_L2_UNROUTABLE, /* dropped: L2 DSR packet that only the kernel could have sent (no neighbour, VLAN mismatch, too big) */
	CNT_ICMP_FRAG_NEEDED, /* ICMP Fragmentation Needed sent back to the client (verdict tx) */
	CNT_ICMP_SUPPRESSED,  /* dropped: Fragmentation Needed held back by the per-CPU rate limit */
	CNT_TOO_BIG_NO_DF,    /* larger than the tunnel MTU without DF: outer DF clear, the path fragments it */
	CNT_ICMP_ECHO,        /* echo request to a VIP address answered (verdict tx) */
	CNT_ICMP_TO_BACKEND,  /* ICMP error quoting a VIP flow, sent to that flow's backend */
	CNT_FRAG_FIRST,       /* first fragment of a datagram: balanced by its ports, remembered in frags */
	CNT_FRAG_ORPHAN,      /* dropped: a later fragment whose first fragment was not seen (or forgotten) */
	CNT_LRU_REOPEN,       /* TCP connection opened on a 5-tuple in the table (a reused client port): placed anew, the entry replaced */
	CNT_ICMP_FORBIDDEN,   /* dropped: would draw ICMP (Fragmentation Needed, echo reply) that RFC 1122/1812 forbid */
	CNT_FRAG_PASSED,      /* passed: a later fragment of no datagram balanced here, and no all-ports VIP claims it */
	CNT_TOO_BIG_DROPPED,  /* dropped: no DF but larger than the route MTU toward an IPv6 backend (no router fragments IPv6) */
	CNT_MAX,
};
#define COUNTER_SLOTS 32
#define CONN_SEQ_SLOT (COUNTER_SLOTS - 1) /* not a counter: this CPU's connection-table writes */
_Static_assert(CNT_MAX <= CONN_SEQ_SLOT, "counters would overrun the connection-table sequence slot");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct vip_key);
	__type(value, struct vip_meta);
	__uint(max_entries, MAX_VIPS);
} vips SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct backend);
	__uint(max_entries, MAX_BACKENDS);
} backends SEC(".maps");

#define EMPTY_SLOT 0xffffffffU /* a ring slot without backend */

/* A ring is stored in chunks of RING_CHUNK_SLOTS backend ids, one array
 * element each, so a slot costs 4 bytes (a lone u32 element would take 8:
 * array elements are 8-byte aligned) and a whole ring is a few hundred
 * elements for one BPF_MAP_UPDATE_BATCH. Ring r's slot i is element
 * r * ring_chunks + i / RING_CHUNK_SLOTS, entry i % RING_CHUNK_SLOTS, where
 * ring_chunks = ceil(ring_size / RING_CHUNK_SLOTS); the last chunk's tail is
 * EMPTY_SLOT and never read. */
#define RING_CHUNK_SLOTS 64
struct ring_chunk {
	__u32 slots[RING_CHUNK_SLOTS];
};

/* RING_SLOTS rings of ring_chunks chunks each, laid end to end. Mmapable so
 * that user space writes a whole (free) ring with one copy instead of an
 * update per chunk. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct ring_chunk);
	__uint(max_entries, RING_SLOTS * ((DEFAULT_RING_SIZE + RING_CHUNK_SLOTS - 1) / RING_CHUNK_SLOTS));
} ring SEC(".maps");

/* How the maps of a loaded balancer are laid out, for whoever opens them
 * later (a restarted daemon adopting a pinned balancer): written once at
 * load, never read by the balancer. */
#define LAYOUT_VERSION 7 /* 1: rings of single u32 elements, no layout map; 2: conns an LRU hash; 3: no IPv6 maps;
                          * 4: next_hops, next_hops6 and backend_stats instead of paths and paths6;
                          * 5: 8-byte backends, paths per backend id with its traffic, no cpu_backends;
                          * 6: no syns and syns6 (SYNs went into conns and conns6) */
struct layout {
	__u32 version;   /* LAYOUT_VERSION */
	__u32 ring_size; /* slots per ring (the program's ring_size) */
};

/* One entry. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct layout);
	__uint(max_entries, 1);
} layout SEC(".maps");

/* conn_buckets buckets (a global of the program, set at load) of CONN_WAYS
 * flows. Mmapable only so that the kernel starts the elements on a page: an
 * array's elements otherwise begin 312 bytes into the allocation (after
 * struct bpf_array), and a 256-byte bucket would span five cache lines and
 * split way 0's key. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct conn_bucket);
	__uint(max_entries, CONN_TABLE_SIZE / CONN_WAYS);
} conns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct iface);
	__uint(max_entries, MAX_IFACES);
} ifaces SEC(".maps");

/* Egress interfaces for XDP_REDIRECT, keyed by ifindex. */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__type(key, __u32);
	__type(value, struct bpf_devmap_val);
	__uint(max_entries, MAX_IFACES);
} tx_ports SEC(".maps");

/* A backend per id and possible CPU: backend b's copy on CPU c is element
 * c * path_backends + b (path_backends, a global of the program set at load,
 * is max_backends). A plain array, not a per-CPU one, so reaching it takes no
 * pointer table; mmapable only so that the kernel puts the first element on a
 * page boundary (see conns: no element straddles two lines). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct cpu_backend);
	__uint(max_entries, MAX_BACKENDS * 2);
} cpu_backends SEC(".maps");

/* The SYN table: a conn_entry per slot and possible CPU, the slot of flow
 * hash h on CPU c being element c * SYN_SLOTS + (h & (SYN_SLOTS - 1)); a
 * slot's `check` of 0 marks it empty, its stamp is the SYN's jiffies. Each
 * CPU writes only its own slots, and a SYN flood only these 128 KiB a CPU:
 * it reads and writes no line of conns. Mmapable for alignment, as conns. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct conn_entry);
	__uint(max_entries, SYN_SLOTS * 2);
} syns SEC(".maps");

/* A path per hop and possible CPU: element cpu * path_hops + hop (path_hops,
 * set at load, is max_backend_addresses, at most max_backends: one hop per
 * backend address, so at most one per backend id). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct path);
	__uint(max_entries, MAX_BACKENDS * 2);
} paths SEC(".maps");

/* Indexed as paths. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct path6);
	__uint(max_entries, MAX_BACKENDS * 2);
} paths6 SEC(".maps");

/* One entry. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct vip_filter);
	__uint(max_entries, 1);
} vip_filter SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct traffic);
	__uint(max_entries, MAX_VIPS);
} vip_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, COUNTER_SLOTS);
} counters SEC(".maps");

/* Keyed by VIP id: the ring slot the VIP's next new flow on this CPU takes
 * (round-robin schedulers), always below ring_size. Per CPU, so advancing it
 * needs no atomic operation; each CPU walks the ring on its own. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, MAX_VIPS);
} rr_cursors SEC(".maps");

/* One LRU shared by all CPUs: a NIC may spread one datagram's fragments over queues. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct frag_key);
	__type(value, struct frag_dest);
	__uint(max_entries, FRAG_TABLE_SIZE);
} frags SEC(".maps");

/* VIP address -> what the balancer answers for it; derived from `vips` by user space. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __be32);
	__type(value, struct vip_addr);
	__uint(max_entries, MAX_VIPS);
} vip_addrs SEC(".maps");

/* The IPv6 counterparts of vips, backends, conns, ifaces, frags and
 * vip_addrs; VIP ids, rings, backend ids, paths and stats are shared. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct vip6_key);
	__type(value, struct vip_meta);
	__uint(max_entries, MAX_VIPS);
} vips6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct backend6);
	__uint(max_entries, MAX_BACKENDS);
} backends6 SEC(".maps");

/* The IPv6 SYN table: as syns, of conn6_entry. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct conn6_entry);
	__uint(max_entries, SYN_SLOTS * 2);
} syns6 SEC(".maps");

/* conn6_buckets buckets (a global of the program, set at load); mmapable as conns. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct conn6_bucket);
	__uint(max_entries, CONN_TABLE_SIZE / CONN_WAYS);
} conns6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct iface6);
	__uint(max_entries, MAX_IFACES);
} ifaces6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct frag6_key);
	__type(value, struct frag_dest);
	__uint(max_entries, FRAG_TABLE_SIZE);
} frags6 SEC(".maps");

struct vip6_addr_key {
	__be32 addr[4];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct vip6_addr_key);
	__type(value, struct vip_addr);
	__uint(max_entries, MAX_VIPS);
} vip_addrs6 SEC(".maps");

/* One entry. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct settings);
	__uint(max_entries, 1);
} settings SEC(".maps");

/* One entry per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct icmp_bucket);
	__uint(max_entries, 1);
} icmp_buckets SEC(".maps");

#endif
