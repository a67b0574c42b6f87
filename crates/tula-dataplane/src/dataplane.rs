//! [`Dataplane`]: one loaded balancer (program + maps), the interfaces it is
//! attached to, and the typed API that programs its maps.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use aya::maps::{Array, DevMapHash, HashMap, IterableMap, Map, MapData, PerCpuArray};
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::xdp::XdpLink;
use aya::programs::{Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader, TestRun, TestRunOptions};
use tracing::{info, warn};

use crate::abi;
use crate::counters::{Counters, Traffic};
use crate::error::{map_err, DataplaneError, Result};
use crate::flow::{Flow, Protocol};
use crate::pin;
use crate::conn_table;
use crate::rings::{self, FreeRings};

/// The compiled balancer, built by `make bpf` from bpf/balancer.c.
static BALANCER_OBJECT: &[u8] = include_bytes!("../../../bpf/obj/balancer.o");

/// Slot value meaning "no backend" (the same as tula_maglev::EMPTY_SLOT).
pub const EMPTY_SLOT: u32 = tula_maglev::EMPTY_SLOT;

/// Map sizes and where to pin. The defaults are the limits stated in docs/DATAPLANE.md.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadOptions {
    /// VIP entries ({address, port, protocol}); also the range of VIP ids.
    pub max_vips: u32,
    /// Backend ids are 0..max_backends.
    pub max_backends: u32,
    /// Slots per Maglev ring; must be prime.
    pub ring_size: u32,
    /// Flows the connection table remembers (rounded up to whole buckets of
    /// 8 ways, shared by all CPUs).
    pub conn_table_size: u32,
    /// Pin program, maps and links here (e.g. [`pin::DEFAULT_PIN_DIR`]) so they
    /// outlive the process; `None` unloads everything when the Dataplane drops.
    pub pin_dir: Option<PathBuf>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            max_vips: 512,
            max_backends: 4096,
            ring_size: tula_maglev::DEFAULT_RING_SIZE,
            conn_table_size: 1_000_000,
            pin_dir: None,
        }
    }
}

impl LoadOptions {
    fn validate(&self) -> Result<()> {
        let invalid = |option, value: u32, reason| {
            Err(DataplaneError::InvalidOption {
                option,
                value: value.into(),
                reason,
            })
        };
        if self.max_vips == 0 {
            return invalid("max_vips", self.max_vips, "must be at least 1");
        }
        if self.max_backends == 0 || self.max_backends == EMPTY_SLOT {
            return invalid(
                "max_backends",
                self.max_backends,
                "must be between 1 and 2^32 - 2",
            );
        }
        if !tula_maglev::is_prime(self.ring_size) {
            return invalid("ring_size", self.ring_size, "must be prime");
        }
        if ring_entries(self.max_vips, self.ring_size).is_none() {
            return invalid(
                "ring_size",
                self.ring_size,
                "(max_vips + 16) rings of it exceed 2^32 map elements",
            );
        }
        if self.conn_table_size == 0 {
            return invalid(
                "conn_table_size",
                self.conn_table_size,
                "must be at least 1",
            );
        }
        Ok(())
    }
}

/// Elements of the `ring` map: (max_vips + SPARE_RINGS) rings of ring_size slots, in chunks.
fn ring_entries(max_vips: u32, ring_size: u32) -> Option<u32> {
    max_vips
        .checked_add(abi::SPARE_RINGS)?
        .checked_mul(abi::ring_chunks(ring_size))
}

/// A VIP: packets to `addr:port` over `protocol` are balanced. Port 0 means all ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VipKey {
    pub addr: Ipv4Addr,
    pub port: u16,
    pub protocol: Protocol,
}

impl VipKey {
    fn to_abi(self) -> abi::VipKey {
        abi::VipKey {
            addr: abi::addr_to_raw(self.addr),
            port: self.port.to_be(),
            proto: self.protocol.number(),
            pad: 0,
        }
    }

    fn from_abi(raw: &abi::VipKey) -> Option<VipKey> {
        Some(VipKey {
            addr: abi::addr_from_raw(raw.addr),
            port: u16::from_be(raw.port),
            protocol: Protocol::from_number(raw.proto)?,
        })
    }
}

impl std::fmt::Display for VipKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}:{}", self.protocol, self.addr, self.port)
    }
}

/// How packets reach the chosen backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dsr {
    /// Layer 3: an outer IPv4 header (IPIP) to the backend's address.
    L3Ipip,
    /// Layer 2: only the Ethernet addresses change; the backend must be on-link.
    L2,
}

/// How a new flow picks its backend, and what the VIP's ring must hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheduler {
    /// The Maglev ring indexed by a hash of the 5-tuple.
    Maglev,
    /// The Maglev ring indexed by a hash of the client address only.
    SourceHash,
    /// The ring walked slot by slot by a per-CPU cursor: give it a
    /// [`round_robin_ring`](crate::round_robin_ring) of the backends at weight 1.
    RoundRobin,
    /// Like `RoundRobin`, over a [`round_robin_ring`](crate::round_robin_ring)
    /// with the backends' weights. (The balancer treats both alike; the
    /// difference is the ring, and the flag lets user space read it back.)
    WeightedRoundRobin,
}

/// What the data plane knows about a VIP besides its ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VipSpec {
    /// Index of the VIP's traffic counters, below `max_vips`. VIP keys may share one.
    pub id: u32,
    pub dsr: Dsr,
    pub scheduler: Scheduler,
    /// Answer ICMP echo requests to the VIP's address in XDP. The address is
    /// answered while any VIP on it says so.
    pub icmp_echo: bool,
}

impl VipSpec {
    fn flags(&self) -> u32 {
        let dsr = match self.dsr {
            Dsr::L3Ipip => 0,
            Dsr::L2 => abi::VIP_F_L2_DSR,
        };
        let scheduler = match self.scheduler {
            Scheduler::Maglev => 0,
            Scheduler::SourceHash => abi::VIP_F_SOURCE_HASH,
            Scheduler::RoundRobin => abi::VIP_F_ROUND_ROBIN,
            Scheduler::WeightedRoundRobin => abi::VIP_F_ROUND_ROBIN | abi::VIP_F_WEIGHTED,
        };
        let echo = if self.icmp_echo {
            0
        } else {
            abi::VIP_F_NO_ICMP_ECHO
        };
        dsr | scheduler | echo
    }

    fn from_abi(meta: &abi::VipMeta) -> VipSpec {
        VipSpec {
            id: meta.id,
            dsr: if meta.flags & abi::VIP_F_L2_DSR != 0 {
                Dsr::L2
            } else {
                Dsr::L3Ipip
            },
            scheduler: if meta.flags & abi::VIP_F_ROUND_ROBIN != 0 {
                if meta.flags & abi::VIP_F_WEIGHTED != 0 {
                    Scheduler::WeightedRoundRobin
                } else {
                    Scheduler::RoundRobin
                }
            } else if meta.flags & abi::VIP_F_SOURCE_HASH != 0 {
                Scheduler::SourceHash
            } else {
                Scheduler::Maglev
            },
            icmp_echo: meta.flags & abi::VIP_F_NO_ICMP_ECHO == 0,
        }
    }
}

/// A backend as the data plane sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Backend {
    pub addr: Ipv4Addr,
    /// Only alive backends get packets; a connection-table entry for one that
    /// is not alive is ignored and the flow re-hashed.
    pub alive: bool,
}

/// A connection-table entry: the backend a flow sticks to, and the id of
/// the VIP it was sent to (found from the flow by the VIP map).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Conn {
    pub backend: u32,
    pub vip: u32,
}

/// How an egress interface is set up for the balancer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InterfaceSpec {
    /// Outer source address of IPIP packets leaving here; defaults to the
    /// interface's primary IPv4 address.
    pub tunnel_src: Option<Ipv4Addr>,
    /// Set for a VLAN device: frames leave tagged through its lower device.
    pub vlan: Option<Vlan>,
    /// The MTU of the path beyond this interface toward the backends, when it
    /// is smaller than the route MTU (the link's own): encapsulated packets
    /// leaving here must fit it, so the tunnel MTU is 20 less. `None`: the
    /// route MTU. A value above the route MTU has no effect.
    pub path_mtu: Option<u16>,
}

/// How the balancer answers a DF packet too big for the tunnel: ICMP
/// Fragmentation Needed, at most `per_second` a second per CPU after a burst
/// of `burst`. With `frag_needed` off such packets are dropped unanswered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IcmpSettings {
    pub frag_needed: bool,
    pub per_second: u32,
    pub burst: u32,
}

impl Default for IcmpSettings {
    fn default() -> Self {
        IcmpSettings {
            frag_needed: true,
            per_second: 100,
            burst: 50,
        }
    }
}

const NS_PER_SECOND: u64 = 1_000_000_000;

impl IcmpSettings {
    fn to_abi(self) -> abi::Settings {
        let interval = NS_PER_SECOND / u64::from(self.per_second.max(1));
        abi::Settings {
            flags: if self.frag_needed {
                0
            } else {
                abi::SETTINGS_F_NO_FRAG_NEEDED
            },
            pad: 0,
            icmp_interval_ns: interval,
            icmp_burst_ns: interval * u64::from(self.burst),
        }
    }

    fn from_abi(raw: &abi::Settings) -> IcmpSettings {
        let interval = raw.icmp_interval_ns.max(1);
        IcmpSettings {
            frag_needed: raw.flags & abi::SETTINGS_F_NO_FRAG_NEEDED == 0,
            per_second: (NS_PER_SECOND / interval).min(u32::MAX.into()) as u32,
            burst: (raw.icmp_burst_ns / interval).min(u32::MAX.into()) as u32,
        }
    }
}

/// An 802.1Q VLAN device's tag and the device its frames really leave by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vlan {
    pub id: u16,
    pub lower: String,
}

/// An XDP program's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum XdpAction {
    Aborted,
    Drop,
    Pass,
    Tx,
    Redirect,
}

impl XdpAction {
    fn from_code(code: u32) -> Result<XdpAction> {
        Ok(match code {
            0 => XdpAction::Aborted,
            1 => XdpAction::Drop,
            2 => XdpAction::Pass,
            3 => XdpAction::Tx,
            4 => XdpAction::Redirect,
            other => return Err(DataplaneError::UnknownAction(other)),
        })
    }
}

/// The attach mode an interface got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    /// In the driver (native XDP).
    Native,
    /// In the kernel's generic path (slower; the driver has no XDP support).
    Generic,
}

/// Where the program object came from: loaded by us, or a pinned one adopted.
enum ProgramSource {
    Loaded(Box<Ebpf>),
    Pinned(Box<Xdp>),
}

/// An attached interface's XDP link: detached on drop unless pinned.
enum Attachment {
    /// Held only so that dropping it detaches.
    Owned(#[allow(dead_code)] XdpLink),
    Pinned(PinnedLink),
}

/// The loaded balancer and its maps.
pub struct Dataplane {
    program: ProgramSource,
    vips: HashMap<MapData, abi::VipKey, abi::VipMeta>,
    backends: Array<MapData, abi::Backend>,
    ring: Array<MapData, abi::RingChunk>,
    layout: Array<MapData, abi::Layout>,
    conns: Array<MapData, abi::ConnBucket>,
    ifaces: HashMap<MapData, u32, abi::Iface>,
    tx_ports: DevMapHash<MapData>,
    next_hops: PerCpuArray<MapData, abi::NextHop>,
    vip_filter: Array<MapData, abi::VipFilter>,
    vip_stats: PerCpuArray<MapData, abi::Traffic>,
    backend_stats: PerCpuArray<MapData, abi::Traffic>,
    counters: PerCpuArray<MapData, u64>,
    frags: HashMap<MapData, abi::FragKey, abi::FragDest>,
    vip_addrs: HashMap<MapData, u32, abi::VipAddr>,
    settings: Array<MapData, abi::Settings>,
    icmp_buckets: PerCpuArray<MapData, abi::IcmpBucket>,
    rr_cursors: PerCpuArray<MapData, u32>,
    free_rings: FreeRings,
    ring_size: u32,
    max_vips: u32,
    max_backends: u32,
    attachments: BTreeMap<String, Attachment>,
    pin_dir: Option<PathBuf>,
}

/// The maps, as named in maps.h (and as pinned).
const MAP_NAMES: [&str; 17] = [
    "vips",
    "backends",
    "ring",
    "layout",
    "conns",
    "ifaces",
    "tx_ports",
    "next_hops",
    "vip_filter",
    "vip_stats",
    "backend_stats",
    "counters",
    "frags",
    "vip_addrs",
    "settings",
    "icmp_buckets",
    "rr_cursors",
];

/// The maps by name, ready to be turned into typed handles.
struct Maps(BTreeMap<&'static str, Map>);

impl Maps {
    fn typed<T: TryFrom<Map, Error = aya::maps::MapError>>(
        &mut self,
        name: &'static str,
    ) -> Result<T> {
        let map = self.0.remove(name).ok_or_else(|| DataplaneError::Map {
            map: name,
            what: "finding it".into(),
            source: aya::maps::MapError::InvalidName { name: name.into() },
        })?;
        T::try_from(map).map_err(map_err(name, "checking its key and value types"))
    }
}

impl Dataplane {
    /// Loads the balancer with the given map sizes (and pins it if `pin_dir` is set).
    /// Nothing is attached yet.
    pub fn load(options: &LoadOptions) -> Result<Dataplane> {
        options.validate()?;
        if let Some(dir) = &options.pin_dir {
            pin::prepare_pin_dir(dir)?;
            if pin::holds_balancer(dir) {
                return Err(DataplaneError::AlreadyPinned { dir: dir.clone() });
            }
        }
        let ring_entries = ring_entries(options.max_vips, options.ring_size).expect("validated");
        let conn_buckets = abi::conn_buckets(options.conn_table_size);
        let mut ebpf = EbpfLoader::new()
            .override_global("ring_size", &options.ring_size, true)
            .override_global("conn_buckets", &conn_buckets, true)
            .map_max_entries("vips", options.max_vips)
            .map_max_entries("vip_addrs", options.max_vips)
            .map_max_entries("vip_stats", options.max_vips)
            .map_max_entries("rr_cursors", options.max_vips)
            .map_max_entries("backends", options.max_backends)
            .map_max_entries("backend_stats", options.max_backends)
            .map_max_entries("next_hops", options.max_backends)
            .map_max_entries("ring", ring_entries)
            .map_max_entries("conns", conn_buckets)
            .load(BALANCER_OBJECT)
            .map_err(|e| DataplaneError::Load(Box::new(e)))?;
        let program = balancer_program(&mut ebpf)?;
        program.load().map_err(|source| DataplaneError::Program {
            what: "loading it into the kernel (verifier)".into(),
            source,
        })?;
        if let Some(dir) = &options.pin_dir {
            program
                .pin(dir.join(pin::PROGRAM_PIN))
                .map_err(|e| pin_failed(dir, pin::PROGRAM_PIN, e))?;
        }

        let mut maps = Maps(BTreeMap::new());
        for name in MAP_NAMES {
            let map = ebpf.take_map(name).ok_or_else(|| DataplaneError::Map {
                map: name,
                what: "finding it in the object".into(),
                source: aya::maps::MapError::InvalidName { name: name.into() },
            })?;
            if let Some(dir) = &options.pin_dir {
                map.pin(dir.join(name))
                    .map_err(|e| pin_failed(dir, name, e))?;
            }
            maps.0.insert(name, map);
        }
        let mut dataplane = Self::from_maps(
            ProgramSource::Loaded(Box::new(ebpf)),
            maps,
            options.ring_size,
            options.pin_dir.clone(),
        )?;
        dataplane.set_icmp(&IcmpSettings::default())?;
        let layout = abi::Layout {
            version: abi::LAYOUT_VERSION,
            ring_size: options.ring_size,
        };
        dataplane
            .layout
            .set(0, layout, 0)
            .map_err(map_err("layout", "writing it"))?;
        Ok(dataplane)
    }

    /// Adopts a balancer pinned by an earlier [`Dataplane::load`] (e.g. by a
    /// previous daemon run): its program, maps and attached interfaces, with
    /// all VIPs, backends and flows as they are.
    pub fn open_pinned(pin_dir: &Path) -> Result<Dataplane> {
        let bad = |what: String| DataplaneError::BadPin {
            dir: pin_dir.to_path_buf(),
            what,
        };
        if !pin::holds_balancer(pin_dir) {
            return Err(bad(format!("no pinned program ({})", pin::PROGRAM_PIN)));
        }
        let program = Xdp::from_pin(
            pin_dir.join(pin::PROGRAM_PIN),
            aya_obj::programs::XdpAttachType::Interface,
        )
        .map_err(|source| DataplaneError::Program {
            what: format!("opening the pinned program in {}", pin_dir.display()),
            source,
        })?;
        let mut maps = Maps(BTreeMap::new());
        for name in MAP_NAMES {
            let data = MapData::from_pin(pin_dir.join(name)).map_err(map_err(
                name,
                format!("opening the pin in {}", pin_dir.display()),
            ))?;
            let map = Map::from_map_data(data).map_err(map_err(name, "checking its type"))?;
            maps.0.insert(name, map);
        }
        let layout = maps
            .0
            .get("layout")
            .map(Array::<&MapData, abi::Layout>::try_from)
            .expect("every map was opened")
            .map_err(map_err("layout", "checking its type"))?
            .get(&0, 0)
            .map_err(map_err("layout", "reading it"))?;
        if layout.version != abi::LAYOUT_VERSION {
            return Err(bad(format!(
                "map layout version {} (this build reads {})",
                layout.version,
                abi::LAYOUT_VERSION
            )));
        }
        let ring_size = layout.ring_size;
        let max_vips = map_max_entries(&maps, "vips")?;
        let ring_entries = map_max_entries(&maps, "ring")?;
        if Some(ring_entries) != self::ring_entries(max_vips, ring_size) {
            return Err(bad(format!(
                "ring map has {ring_entries} elements, not {} rings of {ring_size} slots",
                max_vips + abi::SPARE_RINGS
            )));
        }
        let mut dataplane = Self::from_maps(
            ProgramSource::Pinned(Box::new(program)),
            maps,
            ring_size,
            Some(pin_dir.to_path_buf()),
        )?;
        for ifname in pin::pinned_links(pin_dir)? {
            let link = PinnedLink::from_pin(pin::link_pin(pin_dir, &ifname)).map_err(|e| {
                DataplaneError::Link {
                    ifname: ifname.clone(),
                    what: "opening its pinned link",
                    source: Box::new(e),
                }
            })?;
            dataplane
                .attachments
                .insert(ifname, Attachment::Pinned(link));
        }
        Ok(dataplane)
    }

    fn from_maps(
        program: ProgramSource,
        mut maps: Maps,
        ring_size: u32,
        pin_dir: Option<PathBuf>,
    ) -> Result<Dataplane> {
        let vips: HashMap<MapData, abi::VipKey, abi::VipMeta> = maps.typed("vips")?;
        let backends: Array<MapData, abi::Backend> = maps.typed("backends")?;
        let max_vips = vips
            .map()
            .info()
            .map_err(map_err("vips", "reading its size"))?
            .max_entries();
        let max_backends = backends.len();
        let mut in_use = Vec::new();
        for entry in vips.iter() {
            let (_, meta) = entry.map_err(map_err("vips", "listing VIPs"))?;
            in_use.push(meta.ring);
        }
        Ok(Dataplane {
            program,
            vips,
            backends,
            ring: maps.typed("ring")?,
            layout: maps.typed("layout")?,
            conns: maps.typed("conns")?,
            ifaces: maps.typed("ifaces")?,
            tx_ports: maps.typed("tx_ports")?,
            next_hops: maps.typed("next_hops")?,
            vip_filter: maps.typed("vip_filter")?,
            vip_stats: maps.typed("vip_stats")?,
            backend_stats: maps.typed("backend_stats")?,
            counters: maps.typed("counters")?,
            frags: maps.typed("frags")?,
            vip_addrs: maps.typed("vip_addrs")?,
            settings: maps.typed("settings")?,
            icmp_buckets: maps.typed("icmp_buckets")?,
            rr_cursors: maps.typed("rr_cursors")?,
            free_rings: FreeRings::new(max_vips + abi::SPARE_RINGS, in_use),
            ring_size,
            max_vips,
            max_backends,
            attachments: BTreeMap::new(),
            pin_dir,
        })
    }

    /// Slots per Maglev ring.
    pub fn ring_size(&self) -> u32 {
        self.ring_size
    }

    pub fn max_vips(&self) -> u32 {
        self.max_vips
    }

    pub fn max_backends(&self) -> u32 {
        self.max_backends
    }

    fn program(&self) -> Result<&Xdp> {
        match &self.program {
            ProgramSource::Loaded(ebpf) => ebpf
                .program("balancer")
                .ok_or_else(no_program)?
                .try_into()
                .map_err(|source| DataplaneError::Program {
                    what: "checking its type".into(),
                    source,
                }),
            ProgramSource::Pinned(xdp) => Ok(xdp),
        }
    }

    fn program_mut(&mut self) -> Result<&mut Xdp> {
        match &mut self.program {
            ProgramSource::Loaded(ebpf) => balancer_program(ebpf),
            ProgramSource::Pinned(xdp) => Ok(xdp),
        }
    }

    // ----- interfaces -----

    /// Attaches the balancer to `ifname` (native mode, else generic with a
    /// warning) and registers it as an egress interface (see
    /// [`Dataplane::set_interface`]). Also turns on IPv4 forwarding on it (the
    /// balancer's FIB lookups are forwarding lookups, and the kernel must
    /// forward what the balancer hands it) and `accept_local`: what the
    /// balancer hands the kernel is IPIP whose source is this host's own
    /// address, which the kernel would otherwise drop as a martian.
    pub fn attach(&mut self, ifname: &str) -> Result<AttachMode> {
        let link = tula_net::link(ifname).map_err(|source| DataplaneError::Interface {
            ifname: ifname.into(),
            source,
        })?;
        self.set_interface(ifname, &InterfaceSpec::default())?;
        for (key, what) in [
            ("forwarding", "enabling IPv4 forwarding"),
            (
                "accept_local",
                "accepting its own addresses as source (accept_local)",
            ),
        ] {
            let path = format!("/proc/sys/net/ipv4/conf/{ifname}/{key}");
            std::fs::write(&path, "1").map_err(|e| DataplaneError::Link {
                ifname: ifname.into(),
                what,
                source: Box::new(e),
            })?;
        }

        let program = self.program_mut()?;
        let (id, mode) = match program.attach_to_if_index(link.index, XdpMode::Driver) {
            Ok(id) => (id, AttachMode::Native),
            Err(native_error) => {
                warn!(ifname, error = %native_error, "native XDP attach failed; attaching in generic (skb) mode, which is slower");
                let id = program
                    .attach_to_if_index(link.index, XdpMode::Skb)
                    .map_err(|source| DataplaneError::Program {
                        what: format!("attaching to {ifname} in generic mode"),
                        source,
                    })?;
                (id, AttachMode::Generic)
            }
        };
        let xdp_link = program
            .take_link(id)
            .map_err(|source| DataplaneError::Program {
                what: format!("taking the link on {ifname}"),
                source,
            })?;
        let attachment = match &self.pin_dir {
            None => Attachment::Owned(xdp_link),
            Some(dir) => {
                let link_error =
                    |what, e: Box<dyn std::error::Error + Send + Sync>| DataplaneError::Link {
                        ifname: ifname.into(),
                        what,
                        source: e,
                    };
                let fd_link: FdLink =
                    xdp_link
                        .try_into()
                        .map_err(|e: aya::programs::links::LinkError| {
                            link_error("making it a bpf_link", Box::new(e))
                        })?;
                let pinned = fd_link
                    .pin(pin::link_pin(dir, ifname))
                    .map_err(|e| link_error("pinning it", Box::new(e)))?;
                Attachment::Pinned(pinned)
            }
        };
        self.attachments.insert(ifname.to_string(), attachment);
        info!(ifname, ?mode, "balancer attached");
        Ok(mode)
    }

    /// Detaches the balancer from `ifname` (and removes its pinned link). The
    /// interface stays registered for egress.
    pub fn detach(&mut self, ifname: &str) -> Result<()> {
        let attachment =
            self.attachments
                .remove(ifname)
                .ok_or_else(|| DataplaneError::NotAttached {
                    ifname: ifname.into(),
                })?;
        if let Attachment::Pinned(link) = attachment {
            // Unpinning hands back the link; dropping it detaches.
            let _ = link.unpin().map_err(|e| DataplaneError::Link {
                ifname: ifname.into(),
                what: "unpinning it",
                source: Box::new(e),
            })?;
        }
        Ok(())
    }

    /// Detaches the balancer from every interface and removes its pins, so
    /// the kernel unloads it when this value drops (`tula down`).
    pub fn teardown(mut self) -> Result<()> {
        for ifname in self.attached() {
            self.detach(&ifname)?;
        }
        if let Some(dir) = self.pin_dir.take() {
            for name in MAP_NAMES.into_iter().chain([pin::PROGRAM_PIN]) {
                pin::remove(&dir, name)?;
            }
            std::fs::remove_dir(&dir).map_err(|source| DataplaneError::Pin {
                dir: dir.clone(),
                what: "removing it".into(),
                source,
            })?;
        }
        Ok(())
    }

    /// Interfaces the balancer is attached to.
    pub fn attached(&self) -> Vec<String> {
        self.attachments.keys().cloned().collect()
    }

    /// Registers `ifname` as an interface packets may leave by: its tunnel
    /// source, MTU and VLAN go into `ifaces`, and the device frames really
    /// leave by into `tx_ports`. Every interface a route to a backend can use
    /// must be registered (attached ones are, by [`Dataplane::attach`]).
    pub fn set_interface(&mut self, ifname: &str, spec: &InterfaceSpec) -> Result<()> {
        let net_error = |ifname: &str| {
            let ifname = ifname.to_string();
            move |source| DataplaneError::Interface { ifname, source }
        };
        let link = tula_net::link(ifname).map_err(net_error(ifname))?;
        let tunnel_src = match spec.tunnel_src {
            Some(addr) => Some(addr),
            None => tula_net::primary_ipv4(ifname).map_err(net_error(ifname))?,
        };
        if tunnel_src.is_none() {
            warn!(ifname, "no IPv4 address and no tunnel source given: L3 DSR packets routed out of it are dropped (no_iface)");
        }
        let (vlan_id, lower_ifindex) = match &spec.vlan {
            None => (0, link.index),
            Some(vlan) => (
                vlan.id,
                tula_net::link(&vlan.lower)
                    .map_err(net_error(&vlan.lower))?
                    .index,
            ),
        };
        let iface = abi::Iface {
            tunnel_src: tunnel_src.map(abi::addr_to_raw).unwrap_or(0),
            path_mtu: spec.path_mtu.unwrap_or(0),
            vlan_id,
            lower_ifindex,
        };
        self.tx_ports
            .insert(lower_ifindex, lower_ifindex, None, 0)
            .map_err(|e| DataplaneError::Link {
                ifname: ifname.into(),
                what: "adding it to tx_ports",
                source: Box::new(e),
            })?;
        self.ifaces.insert(link.index, iface, 0).map_err(map_err(
            "ifaces",
            format!("setting interface {ifname} (index {})", link.index),
        ))?;
        self.flush_next_hops()
    }

    /// Unregisters `ifname` as an egress interface.
    pub fn remove_interface(&mut self, ifname: &str) -> Result<()> {
        let link = tula_net::link(ifname).map_err(|source| DataplaneError::Interface {
            ifname: ifname.into(),
            source,
        })?;
        ignore_missing(self.ifaces.remove(&link.index))
            .map_err(map_err("ifaces", format!("removing interface {ifname}")))?;
        ignore_missing(self.tx_ports.remove(link.index))
            .map_err(map_err("tx_ports", format!("removing interface {ifname}")))?;
        self.flush_next_hops()
    }

    /// Forgets every cached next hop, so the next packet to each backend asks
    /// bpf_fib_lookup again. Entries also expire by themselves after 100 ms
    /// (`NEXT_HOP_TTL_NS`); interface changes flush them.
    pub fn flush_next_hops(&mut self) -> Result<()> {
        let cpus = aya::util::nr_cpus().map_err(|(what, e)| DataplaneError::Map {
            map: "next_hops",
            what: format!("counting CPUs ({what})"),
            source: aya::maps::MapError::SyscallError(aya::sys::SyscallError {
                call: "nr_cpus",
                io_error: e,
            }),
        })?;
        for id in 0..self.max_backends {
            let empty = aya::maps::PerCpuValues::try_from(vec![abi::NextHop::default(); cpus])
                .expect("one value per CPU");
            self.next_hops
                .set(id, empty, 0)
                .map_err(map_err("next_hops", format!("clearing backend {id}")))?;
        }
        Ok(())
    }

    // ----- VIPs and backends -----

    /// Adds or updates a VIP and replaces its ring. `ring` holds `ring_size`
    /// backend ids (`tula_maglev::Ring::slots()` for the hashing schedulers,
    /// [`round_robin_ring`](crate::round_robin_ring) for the round-robin
    /// ones), or is empty for a VIP with no backend. The new ring is written into a free ring first and the
    /// VIP switched to it in one map update, so packets never see a mix.
    pub fn set_vip(&mut self, key: &VipKey, spec: &VipSpec, ring: &[u32]) -> Result<()> {
        if spec.id >= self.max_vips {
            return Err(DataplaneError::VipIdOutOfRange {
                vip: key.to_string(),
                id: spec.id,
                max_vips: self.max_vips,
            });
        }
        let empty;
        let ring = if ring.is_empty() {
            empty = vec![EMPTY_SLOT; self.ring_size as usize];
            &empty[..]
        } else {
            ring
        };
        if ring.len() != self.ring_size as usize {
            return Err(DataplaneError::RingLength {
                vip: key.to_string(),
                len: ring.len(),
                ring_size: self.ring_size,
            });
        }
        if let Some((slot, &id)) = ring
            .iter()
            .enumerate()
            .find(|(_, &id)| id >= self.max_backends && id != EMPTY_SLOT)
        {
            return Err(DataplaneError::RingBackendOutOfRange {
                vip: key.to_string(),
                slot,
                id,
                max_backends: self.max_backends,
            });
        }

        let raw_key = key.to_abi();
        let old = match self.vips.get(&raw_key, 0) {
            Ok(meta) => Some(meta),
            Err(aya::maps::MapError::KeyNotFound) => None,
            Err(e) => return Err(map_err("vips", format!("reading VIP {key}"))(e)),
        };
        let new_ring = self
            .free_rings
            .take()
            .ok_or_else(|| DataplaneError::NoFreeRing {
                vip: key.to_string(),
                rings: self.max_vips + abi::SPARE_RINGS,
            })?;
        let chunks = rings::to_chunks(ring);
        let write = rings::write_batch(
            self.ring.map().fd(),
            new_ring * abi::ring_chunks(self.ring_size),
            &chunks,
        );
        if let Err(e) = write {
            self.free_rings.release(new_ring);
            return Err(DataplaneError::Map {
                map: "ring",
                what: format!("writing ring {new_ring} for VIP {key}"),
                source: aya::maps::MapError::SyscallError(aya::sys::SyscallError {
                    call: "BPF_MAP_UPDATE_BATCH",
                    io_error: e,
                }),
            });
        }
        let meta = abi::VipMeta {
            id: spec.id,
            flags: spec.flags(),
            ring: new_ring,
            pad: 0,
        };
        // The address must pass the filter before its VIP entry can be found.
        if old.is_none() {
            let mut filter = self.read_vip_filter()?;
            if !filter.contains(key.addr) {
                filter.insert(key.addr);
                self.write_vip_filter(&filter)?;
            }
        }
        if let Err(e) = self.vips.insert(raw_key, meta, 0) {
            self.free_rings.release(new_ring);
            return Err(map_err("vips", format!("setting VIP {key}"))(e));
        }
        if let Some(old) = old {
            self.free_rings.release(old.ring);
        }
        let echo_before = old.map(|meta| VipSpec::from_abi(&meta).icmp_echo);
        if echo_before != Some(spec.icmp_echo) {
            self.sync_vip_addr(key.addr, spec.icmp_echo)?;
        }
        Ok(())
    }

    /// Removes a VIP; its packets are passed to the kernel from now on.
    pub fn remove_vip(&mut self, key: &VipKey) -> Result<()> {
        let raw_key = key.to_abi();
        let meta = match self.vips.get(&raw_key, 0) {
            Ok(meta) => meta,
            Err(aya::maps::MapError::KeyNotFound) => {
                return Err(DataplaneError::NoSuchVip {
                    vip: key.to_string(),
                })
            }
            Err(e) => return Err(map_err("vips", format!("reading VIP {key}"))(e)),
        };
        self.vips
            .remove(&raw_key)
            .map_err(map_err("vips", format!("removing VIP {key}")))?;
        self.free_rings.release(meta.ring);
        // Rebuilt from the VIPs left; a bit shared with another address stays set.
        let mut filter = abi::VipFilter::default();
        for (key, _) in self.vips()? {
            filter.insert(key.addr);
        }
        self.write_vip_filter(&filter)?;
        self.sync_vip_addr(key.addr, false)
    }

    /// Brings `vip_addrs[addr]` in line with the VIPs on `addr`: echo requests
    /// are answered while any of them has `icmp_echo`. `echo` is what the VIP
    /// just set says; when it is on, no other VIP needs reading.
    fn sync_vip_addr(&mut self, addr: Ipv4Addr, echo: bool) -> Result<()> {
        let echo = echo
            || self
                .vips()?
                .iter()
                .any(|(key, spec)| key.addr == addr && spec.icmp_echo);
        let raw = abi::addr_to_raw(addr);
        if echo {
            let value = abi::VipAddr {
                flags: abi::VIP_ADDR_F_ECHO,
            };
            self.vip_addrs
                .insert(raw, value, 0)
                .map_err(map_err("vip_addrs", format!("setting address {addr}")))
        } else {
            ignore_missing(self.vip_addrs.remove(&raw))
                .map_err(map_err("vip_addrs", format!("removing address {addr}")))
        }
    }

    /// Whether echo requests to `addr` are answered in XDP.
    pub fn answers_echo(&self, addr: Ipv4Addr) -> Result<bool> {
        match self.vip_addrs.get(&abi::addr_to_raw(addr), 0) {
            Ok(value) => Ok(value.flags & abi::VIP_ADDR_F_ECHO != 0),
            Err(aya::maps::MapError::KeyNotFound) => Ok(false),
            Err(e) => Err(map_err("vip_addrs", format!("reading address {addr}"))(e)),
        }
    }

    // ----- MTU and ICMP -----

    /// Sets how too-big DF packets are answered (takes effect at once).
    pub fn set_icmp(&mut self, icmp: &IcmpSettings) -> Result<()> {
        self.settings
            .set(0, icmp.to_abi(), 0)
            .map_err(map_err("settings", "writing the ICMP settings"))
    }

    /// How too-big DF packets are answered now.
    pub fn icmp(&self) -> Result<IcmpSettings> {
        let raw = self
            .settings
            .get(&0, 0)
            .map_err(map_err("settings", "reading the ICMP settings"))?;
        Ok(IcmpSettings::from_abi(&raw))
    }

    /// The path MTU toward `backend` as the balancer sees it (what an
    /// encapsulated packet must fit; the tunnel MTU is 20 less): the MTU of
    /// the interface the route to it leaves by, lowered by that interface's
    /// `path_mtu`. `None` when no route leaves by a registered interface.
    /// (The balancer uses the route's MTU, which a route's own `mtu` may lower.)
    pub fn path_mtu(&self, backend: Ipv4Addr) -> Result<Option<u16>> {
        let Ok(route) = tula_net::route_get(backend) else {
            return Ok(None);
        };
        let iface = match self.ifaces.get(&route.index, 0) {
            Ok(iface) => iface,
            Err(aya::maps::MapError::KeyNotFound) => return Ok(None),
            Err(e) => {
                return Err(map_err(
                    "ifaces",
                    format!("reading interface {}", route.dev),
                )(e))
            }
        };
        let link = tula_net::link(&route.dev).map_err(|source| DataplaneError::Interface {
            ifname: route.dev.clone(),
            source,
        })?;
        let route_mtu = link.mtu.min(u16::MAX.into()) as u16;
        Ok(Some(match iface.path_mtu {
            0 => route_mtu,
            lower => lower.min(route_mtu),
        }))
    }

    fn read_vip_filter(&self) -> Result<abi::VipFilter> {
        self.vip_filter
            .get(&0, 0)
            .map_err(map_err("vip_filter", "reading it"))
    }

    fn write_vip_filter(&mut self, filter: &abi::VipFilter) -> Result<()> {
        self.vip_filter
            .set(0, filter, 0)
            .map_err(map_err("vip_filter", "writing it"))
    }

    /// The ring a VIP uses now: its index in the `ring` map and its slots.
    pub fn vip_ring(&self, key: &VipKey) -> Result<Option<(u32, Vec<u32>)>> {
        let meta = match self.vips.get(&key.to_abi(), 0) {
            Ok(meta) => meta,
            Err(aya::maps::MapError::KeyNotFound) => return Ok(None),
            Err(e) => return Err(map_err("vips", format!("reading VIP {key}"))(e)),
        };
        let chunks = abi::ring_chunks(self.ring_size);
        let slots = rings::read_batch(self.ring.map().fd(), meta.ring * chunks, chunks)
            .map(|chunks| rings::from_chunks(&chunks, self.ring_size))
            .map_err(|e| DataplaneError::Map {
                map: "ring",
                what: format!("reading ring {} of VIP {key}", meta.ring),
                source: aya::maps::MapError::SyscallError(aya::sys::SyscallError {
                    call: "BPF_MAP_LOOKUP_BATCH",
                    io_error: e,
                }),
            })?;
        Ok(Some((meta.ring, slots)))
    }

    /// Every VIP with its spec.
    pub fn vips(&self) -> Result<Vec<(VipKey, VipSpec)>> {
        let mut vips = Vec::new();
        for entry in self.vips.iter() {
            let (raw_key, meta) = entry.map_err(map_err("vips", "listing VIPs"))?;
            if let Some(key) = VipKey::from_abi(&raw_key) {
                vips.push((key, VipSpec::from_abi(&meta)));
            }
        }
        vips.sort_by_key(|(key, _)| *key);
        Ok(vips)
    }

    /// Sets backend `id`'s address and whether it is alive.
    pub fn set_backend(&mut self, id: u32, backend: &Backend) -> Result<()> {
        self.check_backend_id(id)?;
        let raw = abi::Backend {
            addr: abi::addr_to_raw(backend.addr),
            flags: if backend.alive {
                abi::BACKEND_F_ALIVE
            } else {
                0
            },
        };
        self.backends.set(id, raw, 0).map_err(map_err(
            "backends",
            format!("setting backend {id} ({})", backend.addr),
        ))
    }

    /// Clears backend `id`: flows stuck to it re-hash, ring slots naming it drop.
    pub fn remove_backend(&mut self, id: u32) -> Result<()> {
        self.check_backend_id(id)?;
        self.backends
            .set(id, abi::Backend::default(), 0)
            .map_err(map_err("backends", format!("removing backend {id}")))
    }

    /// Backend `id`, or `None` if it was never set (or removed).
    pub fn backend(&self, id: u32) -> Result<Option<Backend>> {
        self.check_backend_id(id)?;
        let raw = self
            .backends
            .get(&id, 0)
            .map_err(map_err("backends", format!("reading backend {id}")))?;
        Ok((raw != abi::Backend::default()).then(|| Backend {
            addr: abi::addr_from_raw(raw.addr),
            alive: raw.flags & abi::BACKEND_F_ALIVE != 0,
        }))
    }

    fn check_backend_id(&self, id: u32) -> Result<()> {
        if id >= self.max_backends {
            return Err(DataplaneError::BackendIdOutOfRange {
                id,
                max_backends: self.max_backends,
            });
        }
        Ok(())
    }

    // ----- connection table -----

    /// The backend `flow` sticks to, if the connection table has it (and its VIP exists).
    pub fn conn(&self, flow: &Flow) -> Result<Option<Conn>> {
        let raw = flow.to_abi();
        let index = conn_table::bucket_of(&raw, self.conns.len());
        let bucket = self
            .conns
            .get(&index, 0)
            .map_err(map_err("conns", format!("reading the bucket of flow {flow}")))?;
        let Some(way) = conn_table::find(&bucket, &raw) else {
            return Ok(None);
        };
        let vips = self.vip_ids()?;
        Ok(vip_of(&vips, &raw).map(|vip| Conn {
            backend: bucket.ways[way].backend,
            vip,
        }))
    }

    /// Every flow in the connection table of a VIP that exists ("active
    /// flows", up to replacement by newer flows), read in batches of buckets.
    pub fn conns(&self) -> Result<Vec<(Flow, Conn)>> {
        const BATCH: u32 = 1024;
        let vips = self.vip_ids()?;
        let buckets = self.conns.len();
        let mut flows = Vec::new();
        let mut first = 0;
        while first < buckets {
            let count = BATCH.min(buckets - first);
            let batch: Vec<abi::ConnBucket> =
                rings::read_batch(self.conns.map().fd(), first, count).map_err(|e| {
                    DataplaneError::Map {
                        map: "conns",
                        what: format!("reading buckets {first}..{}", first + count),
                        source: aya::maps::MapError::SyscallError(aya::sys::SyscallError {
                            call: "BPF_MAP_LOOKUP_BATCH",
                            io_error: e,
                        }),
                    }
                })?;
            for entry in batch.iter().flat_map(|bucket| &bucket.ways) {
                if !conn_table::valid(entry) {
                    continue;
                }
                let (Some(flow), Some(vip)) = (Flow::from_abi(&entry.flow), vip_of(&vips, &entry.flow))
                else {
                    continue;
                };
                flows.push((
                    flow,
                    Conn {
                        backend: entry.backend,
                        vip,
                    },
                ));
            }
            first += count;
        }
        Ok(flows)
    }

    /// Forgets `flow`: its next packet is placed by the scheduler again. (The
    /// bucket is read and written back whole: a flow the balancer placed in it
    /// in between is forgotten too, and placed again by its next packet.)
    pub fn remove_conn(&mut self, flow: &Flow) -> Result<()> {
        let raw = flow.to_abi();
        let index = conn_table::bucket_of(&raw, self.conns.len());
        let mut bucket = self
            .conns
            .get(&index, 0)
            .map_err(map_err("conns", format!("reading the bucket of flow {flow}")))?;
        let Some(way) = conn_table::find(&bucket, &raw) else {
            return Ok(());
        };
        bucket.ways[way] = abi::ConnEntry::default();
        self.conns
            .set(index, bucket, 0)
            .map_err(map_err("conns", format!("removing flow {flow}")))
    }

    /// Flows the connection table holds at most.
    pub fn conn_table_capacity(&self) -> u32 {
        self.conns.len() * abi::CONN_WAYS
    }

    /// VIP ids by VIP key, as the `vips` map has them.
    fn vip_ids(&self) -> Result<std::collections::HashMap<abi::VipKey, u32>> {
        let mut ids = std::collections::HashMap::new();
        for entry in self.vips.iter() {
            let (key, meta) = entry.map_err(map_err("vips", "listing VIPs"))?;
            ids.insert(key, meta.id);
        }
        Ok(ids)
    }

    // ----- counters -----

    /// Every global counter, summed over CPUs.
    pub fn counters(&self) -> Result<Counters> {
        let mut values = Vec::with_capacity(crate::Counter::ALL.len());
        for counter in crate::Counter::ALL {
            let slot = counter as u32;
            let per_cpu = self
                .counters
                .get(&slot, 0)
                .map_err(map_err("counters", format!("reading counter {counter}")))?;
            values.push(per_cpu.iter().sum::<u64>());
        }
        Ok(Counters::from_slots(|slot| values[slot as usize]))
    }

    /// Packets and bytes received for VIP id `id`.
    pub fn vip_traffic(&self, id: u32) -> Result<Traffic> {
        sum_traffic(&self.vip_stats, id)
            .map_err(map_err("vip_stats", format!("reading VIP id {id}")))
    }

    /// Packets and bytes sent to backend `id`.
    pub fn backend_traffic(&self, id: u32) -> Result<Traffic> {
        sum_traffic(&self.backend_stats, id)
            .map_err(map_err("backend_stats", format!("reading backend {id}")))
    }

    /// Kernel memory each map takes, as the kernel accounts it (`memlock` in
    /// the map's /proc fdinfo), in bytes.
    pub fn map_memory(&self) -> Result<Vec<(&'static str, u64)>> {
        let fds: [(&'static str, &MapData); 17] = [
            ("vips", self.vips.map()),
            ("backends", self.backends.map()),
            ("ring", self.ring.map()),
            ("layout", self.layout.map()),
            ("conns", self.conns.map()),
            ("ifaces", self.ifaces.map()),
            ("tx_ports", self.tx_ports.map()),
            ("next_hops", self.next_hops.map()),
            ("vip_filter", self.vip_filter.map()),
            ("vip_stats", self.vip_stats.map()),
            ("backend_stats", self.backend_stats.map()),
            ("counters", self.counters.map()),
            ("frags", self.frags.map()),
            ("vip_addrs", self.vip_addrs.map()),
            ("settings", self.settings.map()),
            ("icmp_buckets", self.icmp_buckets.map()),
            ("rr_cursors", self.rr_cursors.map()),
        ];
        fds.into_iter()
            .map(|(name, map)| {
                let fd = map.fd().as_fd().as_raw_fd();
                let path = format!("/proc/self/fdinfo/{fd}");
                let info = std::fs::read_to_string(&path).map_err(|e| DataplaneError::Map {
                    map: name,
                    what: format!("reading {path}"),
                    source: aya::maps::MapError::SyscallError(aya::sys::SyscallError {
                        call: "read",
                        io_error: e,
                    }),
                })?;
                let memlock = info
                    .lines()
                    .find_map(|line| line.strip_prefix("memlock:"))
                    .and_then(|value| value.trim().parse().ok())
                    .unwrap_or(0);
                Ok((name, memlock))
            })
            .collect()
    }

    /// Kernel memory of the `ring` map per ring slot it holds, in bytes.
    pub fn ring_bytes_per_slot(&self) -> Result<f64> {
        let memory = self.map_memory()?;
        let ring = memory
            .iter()
            .find(|(name, _)| *name == "ring")
            .map_or(0, |(_, bytes)| *bytes);
        let slots = f64::from(self.max_vips + abi::SPARE_RINGS) * f64::from(self.ring_size);
        Ok(ring as f64 / slots)
    }

    // ----- running the program on a frame -----

    /// Runs the balancer once on `frame` (BPF_PROG_TEST_RUN) and returns its
    /// verdict and the frame as it left. With `ingress_ifindex` the FIB lookup
    /// runs as if the frame arrived there: that index is looked up in the
    /// calling thread's network namespace, so enter it first.
    pub fn test_run(
        &self,
        frame: &[u8],
        ingress_ifindex: Option<u32>,
    ) -> Result<(XdpAction, Vec<u8>)> {
        let (action, frame, _) = self.run(frame, ingress_ifindex, 1, true)?;
        Ok((action, frame))
    }

    /// Runs the balancer `repeat` times on `frame` and returns the last verdict
    /// and the kernel's mean time per run. The kernel does not restore the
    /// frame between runs: from the second on, the program sees its own output.
    pub fn time_run(
        &self,
        frame: &[u8],
        ingress_ifindex: Option<u32>,
        repeat: u32,
    ) -> Result<(XdpAction, Duration)> {
        let (action, _, duration) = self.run(frame, ingress_ifindex, repeat, false)?;
        Ok((action, duration))
    }

    fn run(
        &self,
        frame: &[u8],
        ingress_ifindex: Option<u32>,
        repeat: u32,
        want_output: bool,
    ) -> Result<(XdpAction, Vec<u8>, Duration)> {
        let program = self.program()?;
        // Room for the head to grow by the kernel's whole XDP headroom.
        let mut out = if want_output {
            vec![0u8; frame.len() + 256]
        } else {
            Vec::new()
        };
        let ctx = ingress_ifindex.map(|index| xdp_md(frame.len(), index));
        let options = TestRunOptions {
            data_in: Some(frame),
            data_out: want_output.then_some(&mut out[..]),
            ctx_in: ctx.as_ref().map(|c| &c[..]),
            repeat,
            ..TestRunOptions::default()
        };
        let result = program
            .test_run(options)
            .map_err(|source| DataplaneError::Program {
                what: format!("test run on a {}-byte frame", frame.len()),
                source,
            })?;
        out.truncate(result.data_size_out as usize);
        Ok((
            XdpAction::from_code(result.return_value)?,
            out,
            result.duration,
        ))
    }
}

/// `struct xdp_md` for a test run: the whole frame is packet data, arriving on `ifindex`, queue 0.
pub fn xdp_md(frame_len: usize, ifindex: u32) -> [u8; 24] {
    let fields: [u32; 6] = [0, frame_len as u32, 0, ifindex, 0, 0];
    let mut bytes = [0u8; 24];
    for (chunk, field) in bytes.chunks_exact_mut(4).zip(fields) {
        chunk.copy_from_slice(&field.to_ne_bytes());
    }
    bytes
}

fn balancer_program(ebpf: &mut Ebpf) -> Result<&mut Xdp> {
    ebpf.program_mut("balancer")
        .ok_or_else(no_program)?
        .try_into()
        .map_err(|source| DataplaneError::Program {
            what: "checking its type".into(),
            source,
        })
}

fn no_program() -> DataplaneError {
    DataplaneError::Program {
        what: "finding program \"balancer\" in the object".into(),
        source: aya::programs::ProgramError::UnexpectedProgramType,
    }
}

fn pin_failed(dir: &Path, name: &str, e: aya::pin::PinError) -> DataplaneError {
    DataplaneError::Pin {
        dir: dir.to_path_buf(),
        what: format!("pinning {name}"),
        source: std::io::Error::other(e),
    }
}

fn map_max_entries(maps: &Maps, name: &'static str) -> Result<u32> {
    let map = maps.0.get(name).expect("every map was opened");
    let data: &MapData = match map {
        Map::Array(d) | Map::HashMap(d) => d,
        _ => unreachable!("only called for the vips and ring maps"),
    };
    Ok(data
        .info()
        .map_err(map_err(name, "reading its size"))?
        .max_entries())
}

fn sum_traffic(
    map: &PerCpuArray<MapData, abi::Traffic>,
    id: u32,
) -> Result<Traffic, aya::maps::MapError> {
    let per_cpu = map.get(&id, 0)?;
    Ok(per_cpu.iter().fold(Traffic::default(), |sum, t| Traffic {
        packets: sum.packets + t.packets,
        bytes: sum.bytes + t.bytes,
    }))
}

/// The id of the VIP a flow was sent to: its exact port, else the all-ports VIP.
fn vip_of(ids: &std::collections::HashMap<abi::VipKey, u32>, flow: &abi::Flow) -> Option<u32> {
    let key = abi::VipKey {
        addr: flow.dst,
        port: flow.dport,
        proto: flow.proto,
        pad: 0,
    };
    ids.get(&key)
        .or_else(|| ids.get(&abi::VipKey { port: 0, ..key }))
        .copied()
}

/// Deleting something already gone is fine.
fn ignore_missing(result: Result<(), aya::maps::MapError>) -> Result<(), aya::maps::MapError> {
    match result {
        Err(aya::maps::MapError::KeyNotFound) => Ok(()),
        Err(aya::maps::MapError::SyscallError(e))
            if e.io_error.raw_os_error() == Some(libc::ENOENT) =>
        {
            Ok(())
        }
        other => other,
    }
}
