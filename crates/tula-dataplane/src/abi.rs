//! Byte-for-byte mirrors of the structs in `bpf/include/maps.h`: what the
//! balancer's maps hold. Fields keep the kernel's representation (addresses
//! and ports in network byte order, as on the wire); the typed API in the
//! crate root converts. `tests/abi_layout.rs` checks every struct against the
//! object's BTF.

use std::net::{Ipv4Addr, Ipv6Addr};

/// `struct vip_key`: the `vips` map key.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct VipKey {
    pub addr: u32,
    /// Network order; 0 means all ports.
    pub port: u16,
    pub proto: u8,
    pub pad: u8,
}

/// `struct vip_meta`: the `vips` map value.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VipMeta {
    pub id: u32,
    pub flags: u32,
    pub ring: u32,
    pub pad: u32,
}

/// `struct backend`: the `backends` map value, and each CPU's copy of it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backend {
    /// An IPv6 backend's: the tag of its address (in `backends6`), `addr6_tag()`.
    pub addr: u32,
    pub flags: u16,
    /// Its hop's: paths filled under another epoch are refilled.
    pub epoch: u16,
    /// Its address's element of `paths` (per CPU): backends with one address share it.
    pub hop: u32,
    /// In a CPU's copy, [`Settings::backend_generation`] when copied; 0 in `backends`.
    pub generation: u32,
}

/// `struct backend` of layouts 2 to 5, before hops: read only to move a
/// pinned balancer to this build.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackendLayout5 {
    pub addr: u32,
    pub flags: u16,
    pub epoch: u16,
}

/// `struct cpu_backend`: the `cpu_backends` map value, a CPU's copy of a
/// backend and what it sent there (element `cpu * max_backends + id`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuBackend {
    pub backend: Backend,
    pub traffic: Traffic,
}

/// `struct backend6`: the `backends6` map value, the address of a backend with `BACKEND_F_IPV6`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backend6 {
    pub addr: [u32; 4],
}

/// `struct vip6_key`: the `vips6` map key (its value is a [`VipMeta`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Vip6Key {
    pub addr: [u32; 4],
    /// Network order; 0 means all ports.
    pub port: u16,
    pub proto: u8,
    pub pad: u8,
}

/// `struct vip6_addr_key`: the `vip_addrs6` map key.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Vip6AddrKey {
    pub addr: [u32; 4],
}

/// `struct flow`: the `conns` map key, a client flow's 5-tuple.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Flow {
    pub src: u32,
    pub dst: u32,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub pad: [u8; 3],
}

/// `CONN_WAYS`: flows per bucket of the connection table.
pub const CONN_WAYS: u32 = 8;
/// `CONN_STAMP_SHIFT`: `ConnEntry::stamp` is jiffies shifted by this, plus a write sequence.
pub const CONN_STAMP_SHIFT: u32 = 20;
/// `CONN_STAMP_HIT`: in `ConnEntry::stamp`, the flow sent more than one packet.
pub const CONN_STAMP_HIT: u64 = 1 << 63;
/// `SYN_SLOTS`: slots of each CPU's SYN tables (`syns`, `syns6`), where a
/// TCP SYN of a hashed VIP waits for its connection's next packet.
pub const SYN_SLOTS: u32 = 4096;
/// `SYN_LIFE`: jiffies a held SYN stays valid.
pub const SYN_LIFE: u64 = 1024;

/// `struct conn_entry`: one way of a connection-table bucket, or a SYN-table slot.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnEntry {
    pub flow: Flow,
    pub backend: u32,
    /// `conn_check(flow hash, backend)`; 0 = an empty way.
    pub check: u32,
    pub stamp: u64,
}

/// `struct conn_bucket`: the `conns` map value.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnBucket {
    pub ways: [ConnEntry; CONN_WAYS as usize],
}

/// `struct flow6`: an IPv6 client flow's 5-tuple, the key of a `conns6` entry.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Flow6 {
    pub src: [u32; 4],
    pub dst: [u32; 4],
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub pad: [u8; 3],
}

/// `struct conn6_entry`: one way of a `conns6` bucket.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Conn6Entry {
    pub flow: Flow6,
    pub backend: u32,
    pub check: u32,
    pub stamp: u64,
}

/// `struct conn6_bucket`: the `conns6` map value.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Conn6Bucket {
    pub ways: [Conn6Entry; CONN_WAYS as usize],
}

/// Buckets of a connection table of (at least) `entries` flows.
pub fn conn_buckets(entries: u32) -> u32 {
    entries.div_ceil(CONN_WAYS)
}

/// `RING_CHUNK_SLOTS`: ring slots per element of the `ring` map.
pub const RING_CHUNK_SLOTS: u32 = 64;

/// `struct ring_chunk`: one element of the `ring` map, `RING_CHUNK_SLOTS` consecutive slots of a ring.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingChunk {
    pub slots: [u32; RING_CHUNK_SLOTS as usize],
}

impl Default for RingChunk {
    fn default() -> Self {
        RingChunk {
            slots: [tula_maglev::EMPTY_SLOT; RING_CHUNK_SLOTS as usize],
        }
    }
}

/// Elements of the `ring` map one ring of `ring_size` slots takes.
pub fn ring_chunks(ring_size: u32) -> u32 {
    ring_size.div_ceil(RING_CHUNK_SLOTS)
}

/// `LAYOUT_VERSION`: the map layout this crate reads and writes.
pub const LAYOUT_VERSION: u32 = 7;

/// `struct conn` of layout 2: the value of its `conns` LRU hash, keyed by
/// [`Flow`]. Read (or written) only to move a pinned balancer between builds.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnLayout2 {
    pub backend: u32,
    /// `VipMeta::id` of the flow's VIP.
    pub vip: u32,
}

/// `struct layout`: the one entry of the `layout` map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Layout {
    pub version: u32,
    pub ring_size: u32,
}

/// `struct iface`: the `ifaces` map value, keyed by egress ifindex.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Iface {
    pub tunnel_src: u32,
    /// MTU of the path beyond the interface, if below the route MTU; 0 = the route MTU.
    pub path_mtu: u16,
    pub vlan_id: u16,
    pub lower_ifindex: u32,
}

/// `struct iface6`: the `ifaces6` map value, keyed by egress ifindex.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Iface6 {
    /// Outer source of IPv6 tunnels leaving here.
    pub tunnel_src: [u32; 4],
}

/// `struct traffic`: per-CPU packets and bytes in `vip_stats` and in each
/// [`CpuBackend`] (`backend_stats` in layouts 2 to 4, [`PathLayout5`] in 5).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    pub packets: u64,
    pub bytes: u64,
}

/// `struct next_hop`: a hop's cached next hop, in its [`Path`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NextHop {
    pub expires: u64,
    pub ingress: u32,
    pub tx_ifindex: u32,
    pub tunnel_src: u32,
    pub vlan_id: u16,
    /// The route MTU, or the egress interface's `path_mtu` if lower.
    pub path_mtu: u16,
    pub dmac: [u8; 6],
    pub smac: [u8; 6],
    pub route_mtu: u16,
    /// The last outer IP ID given a packet without DF sent to this backend from this CPU.
    pub ip_id: u16,
    /// [`Backend::epoch`] when filled.
    pub epoch: u16,
    pub pad: [u8; 2],
    /// The IPv4 backend address looked up, or an IPv6 one's tag.
    pub addr: u32,
}

/// `struct path`: the `paths` map value, one per hop and CPU (element
/// `cpu * max_backends + hop`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Path {
    pub nh: NextHop,
    pub pad: [u8; 16],
}

/// `struct path` of layout 5, per backend id with its traffic: read only to
/// move a pinned balancer to this build.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PathLayout5 {
    pub nh: [u64; 6],
    pub traffic: Traffic,
}

/// `struct path6`: the `paths6` map value, an IPv6 backend's outer addresses
/// (indexed as `paths`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Path6 {
    pub backend_addr6: [u32; 4],
    pub tunnel_src6: [u32; 4],
}

/// `struct frag_key`: the `frags` map key, a fragmented datagram.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FragKey {
    pub src: u32,
    pub dst: u32,
    /// IPv4 identification, network order.
    pub id: u16,
    pub proto: u8,
    pub pad: u8,
}

/// `struct frag6_key`: the `frags6` map key, a fragmented IPv6 datagram.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Frag6Key {
    pub src: [u32; 4],
    pub dst: [u32; 4],
    /// The fragment header's identification, network order.
    pub id: u32,
    /// The fragment header's next header.
    pub proto: u8,
    pub pad: [u8; 3],
}

/// `struct frag_dest`: the `frags` and `frags6` map value, where the datagram's first fragment went.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragDest {
    pub backend: u32,
    pub vip: u32,
    pub vip_flags: u32,
    /// The outer IPv6 flow label of its flow (IPv6 backends).
    pub flow_label: u32,
}

/// `struct vip_addr`: the `vip_addrs` map value, keyed by VIP address.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VipAddr {
    pub flags: u32,
}

/// `struct settings`: the one entry of the `settings` map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    pub flags: u32,
    /// Changes with every write to `backends`: CPUs' older copies are refilled; 0 = copy always.
    pub backend_generation: u32,
    pub icmp_interval_ns: u64,
    pub icmp_burst_ns: u64,
}

/// `struct icmp_bucket`: a CPU's token bucket for ICMP replies (`icmp_buckets`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IcmpBucket {
    pub stamp_ns: u64,
    pub credit_ns: u64,
}

/// `VIP_FILTER_BITS`: size of the VIP address filter.
pub const VIP_FILTER_BITS: u32 = 65536;
/// `VIP_FILTER_MUL`: the filter's multiplicative hash.
pub const VIP_FILTER_MUL: u32 = 0x9e37_79b1;

/// `struct vip_filter`: the one entry of the `vip_filter` map.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VipFilter {
    pub words: [u64; VIP_FILTER_BITS as usize / 64],
}

impl Default for VipFilter {
    fn default() -> Self {
        VipFilter {
            words: [0; VIP_FILTER_BITS as usize / 64],
        }
    }
}

impl VipFilter {
    /// The bit for `addr`, as `vip_filter_has()` in balancer.c computes it.
    pub fn bit(addr: Ipv4Addr) -> u32 {
        addr_to_raw(addr).wrapping_mul(VIP_FILTER_MUL) >> 16
    }

    pub fn insert(&mut self, addr: Ipv4Addr) {
        let bit = Self::bit(addr);
        self.words[bit as usize / 64] |= 1 << (bit % 64);
    }

    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        let bit = Self::bit(addr);
        self.words[bit as usize / 64] >> (bit % 64) & 1 == 1
    }

    /// The IPv4 address whose bit an IPv6 address shares (`vip_filter_has6()`):
    /// its four words xored.
    pub fn fold6(addr: Ipv6Addr) -> Ipv4Addr {
        let words = addr6_to_raw(addr);
        addr_from_raw(words[0] ^ words[1] ^ words[2] ^ words[3])
    }
}

// SAFETY: all of them are repr(C), made only of integers, with explicit padding fields.
unsafe impl aya::Pod for VipKey {}
unsafe impl aya::Pod for VipMeta {}
unsafe impl aya::Pod for Backend {}
unsafe impl aya::Pod for Flow {}
unsafe impl aya::Pod for ConnEntry {}
unsafe impl aya::Pod for ConnBucket {}
unsafe impl aya::Pod for Iface {}
unsafe impl aya::Pod for Traffic {}
unsafe impl aya::Pod for NextHop {}
unsafe impl aya::Pod for VipFilter {}
unsafe impl aya::Pod for FragKey {}
unsafe impl aya::Pod for FragDest {}
unsafe impl aya::Pod for VipAddr {}
unsafe impl aya::Pod for Settings {}
unsafe impl aya::Pod for IcmpBucket {}
unsafe impl aya::Pod for RingChunk {}
unsafe impl aya::Pod for Layout {}
unsafe impl aya::Pod for ConnLayout2 {}
unsafe impl aya::Pod for Backend6 {}
unsafe impl aya::Pod for Vip6Key {}
unsafe impl aya::Pod for Vip6AddrKey {}
unsafe impl aya::Pod for Flow6 {}
unsafe impl aya::Pod for Conn6Entry {}
unsafe impl aya::Pod for Conn6Bucket {}
unsafe impl aya::Pod for Iface6 {}
unsafe impl aya::Pod for Path {}
unsafe impl aya::Pod for PathLayout5 {}
unsafe impl aya::Pod for BackendLayout5 {}
unsafe impl aya::Pod for CpuBackend {}
unsafe impl aya::Pod for Path6 {}
unsafe impl aya::Pod for Frag6Key {}

/// `VIP_F_L2_DSR`: rewrite MACs only.
pub const VIP_F_L2_DSR: u32 = 1 << 0;
/// `VIP_F_SOURCE_HASH`: hash the client address only.
pub const VIP_F_SOURCE_HASH: u32 = 1 << 1;
/// `VIP_F_NO_ICMP_ECHO`: echo requests to the VIP's address are not answered.
pub const VIP_F_NO_ICMP_ECHO: u32 = 1 << 2;
/// `VIP_F_ROUND_ROBIN`: a new flow takes the ring slot at this CPU's cursor (`rr_cursors`).
pub const VIP_F_ROUND_ROBIN: u32 = 1 << 3;
/// `VIP_F_WEIGHTED`: with `VIP_F_ROUND_ROBIN`, the ring honours weights (read by user space only).
pub const VIP_F_WEIGHTED: u32 = 1 << 4;
/// `VIP_ADDR_F_ECHO`: echo requests to the address get a reply.
pub const VIP_ADDR_F_ECHO: u32 = 1 << 0;
/// `SETTINGS_F_NO_FRAG_NEEDED`: too-big DF packets are dropped without an answer.
pub const SETTINGS_F_NO_FRAG_NEEDED: u32 = 1 << 0;
/// `FRAG_TABLE_SIZE`: datagrams the `frags` map remembers.
pub const FRAG_TABLE_SIZE: u32 = 8192;
/// `BACKEND_F_ALIVE`: the backend may carry flows.
pub const BACKEND_F_ALIVE: u16 = 1 << 0;
/// `BACKEND_F_IPV6`: an IPv6 backend, its address in `backends6`.
pub const BACKEND_F_IPV6: u16 = 1 << 1;

/// Rings beyond `max_vips` (`RING_SLOTS - MAX_VIPS` in maps.h), so a swap never writes a live ring.
pub const SPARE_RINGS: u32 = 16;
/// Slots in the `counters` map (`COUNTER_SLOTS`).
pub const COUNTER_SLOTS: u32 = 32;
/// `CONN_SEQ_SLOT`: the `counters` slot holding each CPU's connection-table write sequence.
pub const CONN_SEQ_SLOT: u32 = COUNTER_SLOTS - 1;

/// Kernel representation of an IPv4 address: its octets in memory order.
pub fn addr_to_raw(addr: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(addr.octets())
}

/// The address whose octets are `raw` in memory order.
pub fn addr_from_raw(raw: u32) -> Ipv4Addr {
    Ipv4Addr::from(raw.to_ne_bytes())
}

/// Kernel representation of an IPv6 address: four words of its octets in memory order.
pub fn addr6_to_raw(addr: Ipv6Addr) -> [u32; 4] {
    let o = addr.octets();
    std::array::from_fn(|i| u32::from_ne_bytes([o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]]))
}

/// The IPv6 address whose words are `raw` in memory order.
pub fn addr6_from_raw(raw: [u32; 4]) -> Ipv6Addr {
    let mut octets = [0u8; 16];
    for (i, word) in raw.iter().enumerate() {
        octets[4 * i..4 * i + 4].copy_from_slice(&word.to_ne_bytes());
    }
    Ipv6Addr::from(octets)
}
