//! [`Dataplane`]: one loaded balancer (program + maps) and its life: loading
//! or adopting a pinned one, attaching it to interfaces, tearing it down.
//! The typed API that programs its maps is in `programming`, what it counted
//! in `readings`; the API's value types live in `spec`, the test-run harness
//! in `test_run`.

mod hops;
mod programming;
mod readings;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};

use aya::maps::{Array, DevMapHash, HashMap, IterableMap, Map, MapData, PerCpuArray};
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::xdp::XdpLink;
use aya::programs::{Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader};
use tracing::{info, warn};

use crate::abi;
use crate::counters::{Counters, Traffic};
use crate::error::{map_err, syscall_err, DataplaneError, Result};
use crate::pin;
use crate::spec::{
    AttachMode, Backend, IcmpSettings, InterfaceSpec, RawVipKey, VipKey, VipSpec,
};
use crate::rings::{self, FreeRings};
pub(crate) use hops::{backend_addr, Hops};
pub use hops::NextHops;

/// The compiled balancer, built by `make bpf` from bpf/balancer.c.
pub(crate) static BALANCER_OBJECT: &[u8] = include_bytes!("../../../bpf/obj/balancer.o");

/// Slot value meaning "no backend" (the same as tula_maglev::EMPTY_SLOT).
pub const EMPTY_SLOT: u32 = tula_maglev::EMPTY_SLOT;

/// Map sizes and where to pin. The defaults are the limits stated in docs/DATAPLANE.md.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadOptions {
    /// VIP entries ({address, port, protocol}); also the range of VIP ids.
    pub max_vips: u32,
    /// Backend ids are 0..max_backends.
    pub max_backends: u32,
    /// Distinct backend addresses: backends with one address share its next
    /// hops, one `paths` line per CPU (at most max_backends are used).
    pub max_backend_addresses: u32,
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
            max_backend_addresses: 4096,
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
        if self.max_backend_addresses == 0 {
            return invalid(
                "max_backend_addresses",
                self.max_backend_addresses,
                "must be at least 1",
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

    /// Hops (paths per CPU) a balancer of map layout `layout_version` loaded
    /// with these options has: one per backend address from layout 6 on,
    /// one per backend id before.
    pub(crate) fn hops(&self, layout_version: u32) -> u32 {
        if layout_version >= 6 {
            self.max_backend_addresses.min(self.max_backends)
        } else {
            self.max_backends
        }
    }
}

/// Elements of the `ring` map: (max_vips + SPARE_RINGS) rings of ring_size slots, in chunks.
fn ring_entries(max_vips: u32, ring_size: u32) -> Option<u32> {
    max_vips
        .checked_add(abi::SPARE_RINGS)?
        .checked_mul(abi::ring_chunks(ring_size))
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
    pub(crate) vips: HashMap<MapData, abi::VipKey, abi::VipMeta>,
    backends: Array<MapData, abi::Backend>,
    cpu_backends: Array<MapData, abi::CpuBackend>,
    ring: Array<MapData, abi::RingChunk>,
    layout: Array<MapData, abi::Layout>,
    pub(crate) conns: Array<MapData, abi::ConnBucket>,
    /// Each CPU's SYN tables (see maps.h).
    pub(crate) syns: Array<MapData, abi::ConnEntry>,
    syns6: Array<MapData, abi::Conn6Entry>,
    ifaces: HashMap<MapData, u32, abi::Iface>,
    tx_ports: DevMapHash<MapData>,
    paths: Array<MapData, abi::Path>,
    paths6: Array<MapData, abi::Path6>,
    vip_filter: Array<MapData, abi::VipFilter>,
    vip_stats: PerCpuArray<MapData, abi::Traffic>,
    counters: PerCpuArray<MapData, u64>,
    frags: HashMap<MapData, abi::FragKey, abi::FragDest>,
    vip_addrs: HashMap<MapData, u32, abi::VipAddr>,
    settings: Array<MapData, abi::Settings>,
    icmp_buckets: PerCpuArray<MapData, abi::IcmpBucket>,
    rr_cursors: PerCpuArray<MapData, u32>,
    pub(crate) vips6: HashMap<MapData, abi::Vip6Key, abi::VipMeta>,
    backends6: Array<MapData, abi::Backend6>,
    pub(crate) conns6: Array<MapData, abi::Conn6Bucket>,
    ifaces6: HashMap<MapData, u32, abi::Iface6>,
    frags6: HashMap<MapData, abi::Frag6Key, abi::FragDest>,
    vip_addrs6: HashMap<MapData, abi::Vip6AddrKey, abi::VipAddr>,
    free_rings: FreeRings,
    ring_size: u32,
    max_vips: u32,
    max_backends: u32,
    /// Copies per backend in `cpu_backends` (and paths per hop in `paths`): the possible CPUs.
    path_cpus: u32,
    /// Hops (one per backend address) each CPU has paths for.
    max_hops: u32,
    /// The epoch last given to a hop (see `struct backend`).
    epoch: u16,
    /// The `paths` element each backend address uses.
    hops: Hops,
    /// What `settings` holds (this is its only writer): the ICMP settings and
    /// the `backend_generation`, moved on after every write to `backends`.
    raw_settings: abi::Settings,
    attachments: BTreeMap<String, Attachment>,
    pin_dir: Option<PathBuf>,
}

/// The maps, as named in maps.h (and as pinned). `syns` and `syns6` came
/// with map layout 7, `cpu_backends` with 6, the last ones
/// ([`IPV6_MAP_NAMES`]) with 4.
pub(crate) const MAP_NAMES: [&str; 26] = [
    "vips",
    "backends",
    "cpu_backends",
    "syns",
    "syns6",
    "ring",
    "layout",
    "conns",
    "ifaces",
    "tx_ports",
    "paths",
    "paths6",
    "vip_filter",
    "vip_stats",
    "counters",
    "frags",
    "vip_addrs",
    "settings",
    "icmp_buckets",
    "rr_cursors",
    "vips6",
    "backends6",
    "conns6",
    "ifaces6",
    "frags6",
    "vip_addrs6",
];

/// The IPv6 maps, which a balancer pinned with map layout 3 or older lacks.
pub(crate) const IPV6_MAP_NAMES: &[&str] = MAP_NAMES.split_at(20).1;

/// The maps layouts 2 to 4 had where layout 5 has `paths` and `paths6`
/// (`next_hops6` from layout 4 on).
pub(crate) const PRE_PATHS_MAP_NAMES: [&str; 3] = ["next_hops", "backend_stats", "next_hops6"];

/// The maps a build of map layout `version` has.
pub(crate) fn map_names(version: u32) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = MAP_NAMES
        .iter()
        .copied()
        .filter(|name| version >= 4 || !IPV6_MAP_NAMES.contains(name))
        .filter(|name| version >= 5 || !["paths", "paths6"].contains(name))
        .filter(|name| version >= 6 || *name != "cpu_backends")
        .filter(|name| version >= 7 || !["syns", "syns6"].contains(name))
        .collect();
    if version < 5 {
        names.extend(&PRE_PATHS_MAP_NAMES[..if version >= 4 { 3 } else { 2 }]);
    }
    names
}

/// The possible CPUs: how many paths each backend has.
pub(crate) fn possible_cpus(map: &'static str) -> Result<u32> {
    let cpus = aya::util::nr_cpus()
        .map_err(|(what, e)| map_err(map, format!("counting CPUs ({what})"))(syscall_err("nr_cpus", e)))?;
    Ok(cpus as u32)
}

/// The maps by name, ready to be turned into typed handles.
pub(crate) struct Maps(pub(crate) BTreeMap<&'static str, Map>);

impl Maps {
    pub(crate) fn typed<T: TryFrom<Map, Error = aya::maps::MapError>>(
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
        let (ebpf, maps) = load_object(BALANCER_OBJECT, abi::LAYOUT_VERSION, options)?;
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
    /// all VIPs, backends and flows as they are. One pinned by an older build
    /// whose map layout this build converts is first moved onto this build
    /// (see [`crate::switch_build`]), flows and counters included.
    pub fn open_pinned(pin_dir: &Path) -> Result<Dataplane> {
        let bad = |what: String| DataplaneError::BadPin {
            dir: pin_dir.to_path_buf(),
            what,
        };
        if !pin::holds_balancer(pin_dir) {
            return Err(bad(format!("no pinned program ({})", pin::PROGRAM_PIN)));
        }
        crate::upgrade::upgrade_if_older(pin_dir)?;
        let program = Xdp::from_pin(
            pin_dir.join(pin::PROGRAM_PIN),
            aya_obj::programs::XdpAttachType::Interface,
        )
        .map_err(|source| DataplaneError::Program {
            what: format!("opening the pinned program in {}", pin_dir.display()),
            source,
        })?;
        let pinned = crate::upgrade::pinned_build(pin_dir)?
            .ok_or_else(|| bad(format!("no pinned program ({})", pin::PROGRAM_PIN)))?;
        if !pinned.matches_this_build() {
            return Err(bad(format!(
                "map layout version {} (this build reads {})",
                pinned.layout_version,
                abi::LAYOUT_VERSION
            )));
        }
        let ring_size = pinned.ring_size.expect("layouts 2 and up record ring_size");
        let maps = open_pinned_maps(pin_dir, abi::LAYOUT_VERSION)?;
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
        let paths: Array<MapData, abi::Path> = maps.typed("paths")?;
        let cpu_backends: Array<MapData, abi::CpuBackend> = maps.typed("cpu_backends")?;
        let path_cpus = cpu_backends.len() / max_backends.max(1);
        let max_hops = paths.len() / path_cpus.max(1);
        let settings: Array<MapData, abi::Settings> = maps.typed("settings")?;
        let raw_settings = settings
            .get(&0, 0)
            .map_err(map_err("settings", "reading it"))?;
        let vips6: HashMap<MapData, abi::Vip6Key, abi::VipMeta> = maps.typed("vips6")?;
        let mut in_use = Vec::new();
        for entry in vips.iter() {
            let (_, meta) = entry.map_err(map_err("vips", "listing VIPs"))?;
            in_use.push(meta.ring);
        }
        for entry in vips6.iter() {
            let (_, meta) = entry.map_err(map_err("vips6", "listing VIPs"))?;
            in_use.push(meta.ring);
        }
        let ring: Array<MapData, abi::RingChunk> = maps.typed("ring")?;
        let mut dataplane = Dataplane {
            program,
            vips,
            backends,
            ring,
            cpu_backends,
            layout: maps.typed("layout")?,
            conns: maps.typed("conns")?,
            syns: maps.typed("syns")?,
            syns6: maps.typed("syns6")?,
            ifaces: maps.typed("ifaces")?,
            tx_ports: maps.typed("tx_ports")?,
            paths,
            paths6: maps.typed("paths6")?,
            vip_filter: maps.typed("vip_filter")?,
            vip_stats: maps.typed("vip_stats")?,
            counters: maps.typed("counters")?,
            frags: maps.typed("frags")?,
            vip_addrs: maps.typed("vip_addrs")?,
            settings,
            icmp_buckets: maps.typed("icmp_buckets")?,
            rr_cursors: maps.typed("rr_cursors")?,
            vips6,
            backends6: maps.typed("backends6")?,
            conns6: maps.typed("conns6")?,
            ifaces6: maps.typed("ifaces6")?,
            frags6: maps.typed("frags6")?,
            vip_addrs6: maps.typed("vip_addrs6")?,
            free_rings: FreeRings::new(max_vips + abi::SPARE_RINGS, in_use),
            ring_size,
            max_vips,
            max_backends,
            path_cpus,
            max_hops,
            epoch: 0,
            hops: Hops::new(max_hops),
            raw_settings,
            attachments: BTreeMap::new(),
            pin_dir,
        };
        dataplane.read_hops()?;
        Ok(dataplane)
    }

    /// Takes `hops` from the map: the hops its entries name, if they agree
    /// (writing nothing, so a second, read-only handle renumbers nothing),
    /// else numbered afresh. Opening a pinned balancer does this, and so does
    /// a write refused before it wrote an entry.
    pub(crate) fn read_hops(&mut self) -> Result<()> {
        let backends = read_array(&self.backends, "backends", 0, self.max_backends)?;
        let addrs = self.backend_addrs(&backends)?;
        // New epochs start past every one in use, so no path filled before matches them.
        self.epoch = self
            .epoch
            .max(backends.iter().map(|b| b.epoch).max().unwrap_or(0));
        match Hops::from_entries(&backends, &addrs, self.max_hops) {
            Some(hops) => {
                self.hops = hops;
                Ok(())
            }
            None => self.renumber_hops(backends, &addrs),
        }
    }

    /// Gives every backend its address's hop, numbered afresh under new
    /// epochs, so that `hops` matches the map (after a failed write); then
    /// publishes them.
    pub(crate) fn assign_hops(&mut self) -> Result<()> {
        let backends = read_array(&self.backends, "backends", 0, self.max_backends)?;
        let addrs = self.backend_addrs(&backends)?;
        self.renumber_hops(backends, &addrs)
    }

    /// [`assign_hops`](Self::assign_hops) on entries (and their addresses)
    /// the caller has read: opening entries whose hops disagree reads them once.
    fn renumber_hops(&mut self, mut backends: Vec<abi::Backend>, addrs: &[Option<IpAddr>]) -> Result<()> {
        // New epochs start past every one in use, so no path filled before matches them.
        self.epoch = self
            .epoch
            .max(backends.iter().map(|b| b.epoch).max().unwrap_or(0));
        let epoch = &mut self.epoch;
        self.hops = Hops::assign(&mut backends, addrs, self.max_hops, || {
            *epoch = epoch.wrapping_add(1);
            *epoch
        })
        .map_err(|full| DataplaneError::InvalidOption {
            option: "max_backend_addresses",
            value: full.limit.into(),
            reason: "is fewer than the distinct addresses of the backends written",
        })?;
        if !self.hops.is_empty() {
            rings::write_batch(self.backends.map().fd().as_fd(), 0, &backends)
                .map_err(|e| map_err("backends", "giving every backend its hop")(batch_error(e)))?;
        }
        self.publish_backends()
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

    /// Distinct backend addresses it keeps next hops for (see [`LoadOptions`]).
    pub fn max_backend_addresses(&self) -> u32 {
        self.max_hops
    }

    /// Distinct addresses of the backends set now: the next hops in use.
    pub fn backend_addresses(&self) -> usize {
        self.hops.len()
    }

    /// Whether a backend set now has address `addr` (so its next hop is in use).
    pub fn holds_backend_address(&self, addr: IpAddr) -> bool {
        self.hops.holds(addr)
    }

    pub(crate) fn program(&self) -> Result<&Xdp> {
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

    // ----- attaching -----

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
            ("ipv4/conf/{}/forwarding", "enabling IPv4 forwarding"),
            (
                "ipv4/conf/{}/accept_local",
                "accepting its own addresses as source (accept_local)",
            ),
            ("ipv6/conf/{}/forwarding", "enabling IPv6 forwarding"),
        ] {
            let path = format!("/proc/sys/net/{}", key.replace("{}", ifname));
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

}

pub(crate) fn balancer_program(ebpf: &mut Ebpf) -> Result<&mut Xdp> {
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

/// Loads a balancer object compiled with map layout `layout_version` at
/// `options`' sizes, pinning its program and maps if `options.pin_dir` is
/// set: this build's, or another build's for an upgrade (layout 2 sized its
/// connection table in flows, later layouts in buckets). The layout map is
/// left for the caller to write.
pub(crate) fn load_object(
    object: &[u8],
    layout_version: u32,
    options: &LoadOptions,
) -> Result<(Ebpf, Maps)> {
    options.validate()?;
    if let Some(dir) = &options.pin_dir {
        pin::prepare_pin_dir(dir)?;
        if pin::holds_balancer(dir) {
            return Err(DataplaneError::AlreadyPinned { dir: dir.clone() });
        }
    }
    let ring_entries = ring_entries(options.max_vips, options.ring_size).expect("validated");
    let conn_buckets = abi::conn_buckets(options.conn_table_size);
    let (conns_entries, has_conn_buckets) = if layout_version <= 2 {
        (options.conn_table_size, false)
    } else {
        (conn_buckets, true)
    };
    let path_cpus = possible_cpus("paths")?;
    let hops = options.hops(layout_version);
    let copies = options
        .max_backends
        .checked_mul(path_cpus)
        .ok_or(DataplaneError::InvalidOption {
            option: "max_backends",
            value: options.max_backends.into(),
            reason: "times the possible CPUs exceeds 2^32 copies",
        })?;
    let path_entries = hops.checked_mul(path_cpus).expect("at most max_backends");
    let mut ebpf = EbpfLoader::new()
        .override_global("ring_size", &options.ring_size, true)
        .override_global("conn_buckets", &conn_buckets, has_conn_buckets)
        .override_global("conn6_buckets", &conn_buckets, layout_version >= 4)
        .override_global("path_backends", &options.max_backends, layout_version >= 5)
        .override_global("path_hops", &hops, layout_version >= 6)
        .map_max_entries("vips", options.max_vips)
        .map_max_entries("vip_addrs", options.max_vips)
        .map_max_entries("vip_stats", options.max_vips)
        .map_max_entries("rr_cursors", options.max_vips)
        .map_max_entries("backends", options.max_backends)
        .map_max_entries("cpu_backends", copies)
        .map_max_entries("syns", abi::SYN_SLOTS * path_cpus)
        .map_max_entries("syns6", abi::SYN_SLOTS * path_cpus)
        .map_max_entries("backend_stats", options.max_backends)
        .map_max_entries("next_hops", options.max_backends)
        .map_max_entries("paths", path_entries)
        .map_max_entries("paths6", path_entries)
        .map_max_entries("ring", ring_entries)
        .map_max_entries("conns", conns_entries)
        .map_max_entries("vips6", options.max_vips)
        .map_max_entries("vip_addrs6", options.max_vips)
        .map_max_entries("backends6", options.max_backends)
        .map_max_entries("next_hops6", options.max_backends)
        .map_max_entries("conns6", conn_buckets)
        .load(object)
        .map_err(|e| DataplaneError::Load(Box::new(e)))?;
    let program = balancer_program(&mut ebpf)?;
    // The verifier gives up with EAGAIN when a signal reaches the loading thread; libbpf retries too.
    let mut attempts = 1;
    while let Err(source) = program.load() {
        match &source {
            aya::programs::ProgramError::LoadError { io_error, .. }
                if io_error.raw_os_error() == Some(libc::EAGAIN) && attempts < 5 =>
            {
                attempts += 1
            }
            _ => {
                return Err(DataplaneError::Program {
                    what: format!("loading it into the kernel (verifier, attempt {attempts})"),
                    source,
                })
            }
        }
    }
    if let Some(dir) = &options.pin_dir {
        program
            .pin(dir.join(pin::PROGRAM_PIN))
            .map_err(|e| pin_failed(dir, pin::PROGRAM_PIN, e))?;
    }
    let mut maps = Maps(BTreeMap::new());
    for name in map_names(layout_version) {
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
    Ok((ebpf, maps))
}

/// Every map pinned in `pin_dir`, by name, as the build of map layout
/// `version` pinned them.
pub(crate) fn open_pinned_maps(pin_dir: &Path, version: u32) -> Result<Maps> {
    let mut maps = Maps(BTreeMap::new());
    for name in map_names(version) {
        let data = MapData::from_pin(pin_dir.join(name)).map_err(map_err(
            name,
            format!("opening the pin in {}", pin_dir.display()),
        ))?;
        let map = Map::from_map_data(data).map_err(map_err(name, "checking its type"))?;
        maps.0.insert(name, map);
    }
    Ok(maps)
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

/// Elements `first..first + count` of an array map, in one batch.
pub(crate) fn read_array<T: aya::Pod + Default>(
    map: &Array<MapData, T>,
    name: &'static str,
    first: u32,
    count: u32,
) -> Result<Vec<T>> {
    rings::read_batch(map.map().fd().as_fd(), first, count)
        .map_err(|e| map_err(name, format!("reading elements {first} to {}", first + count))(batch_error(e)))
}

pub(crate) fn batch_error(e: std::io::Error) -> aya::maps::MapError {
    syscall_err("BPF_MAP_*_BATCH", e)
}


/// Deleting something already gone is fine.
pub(crate) fn ignore_missing(result: Result<(), aya::maps::MapError>) -> Result<(), aya::maps::MapError> {
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
