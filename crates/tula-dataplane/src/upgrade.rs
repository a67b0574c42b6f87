//! Builds and their pinned data planes: which map layout a pinned balancer
//! was loaded with (its `layout` map), read without adopting it, and moving a
//! pinned balancer onto another build without dropping a flow.
//!
//! A switch loads the other build's program and maps beside the pinned ones
//! (in `<pin_dir>-upgrade`), copies every map whose layout both builds share,
//! converts the connection table, swaps the program under each pinned XDP
//! link in one step (BPF_LINK_UPDATE: no packet sees no program), copies the
//! flows the old program placed meanwhile, adds the old counters to the new,
//! and renames the new pins over the old ones; the old maps are freed when
//! the last descriptor closes.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use aya::maps::{Array, DevMapHash, HashMap, IterableMap, Map, MapData, PerCpuArray, PerCpuValues};
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::xdp::XdpLink;
use tracing::{info, warn};

use crate::abi;
use crate::conn_table;
use crate::dataplane::{self, LoadOptions, Maps, BALANCER_OBJECT};
use crate::error::{map_err, syscall_err, DataplaneError, Result};
use crate::flow::{conn_check, hash64_abi};
use crate::pin;
use crate::rings;

/// Map layouts a switch converts between: 2 (connection table an LRU hash of
/// flows), 3 (set-associative buckets), 4 (the IPv6 maps beside them), 5
/// (next hops and backend counters in one `paths` entry per backend and CPU),
/// 6 (paths per hop, counters beside each CPU's copy of a backend) and 7
/// (each CPU's SYN tables, `syns` and `syns6`, which start empty: a handshake under way
/// across a switch finds its SYN gone and is placed by the ring again).
const CONVERTIBLE: [u32; 6] = [2, 3, 4, 5, 6, 7];

/// A build's balancer object and the map layout it was compiled with.
#[derive(Clone, Copy, Debug)]
pub struct Build<'a> {
    pub object: &'a [u8],
    pub layout_version: u32,
}

impl Build<'static> {
    /// This build: the balancer it embeds, at [`abi::LAYOUT_VERSION`].
    pub fn this() -> Build<'static> {
        Build {
            object: BALANCER_OBJECT,
            layout_version: abi::LAYOUT_VERSION,
        }
    }
}

/// What [`switch_build`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Switched {
    pub from_layout: u32,
    pub to_layout: u32,
    /// Interfaces whose XDP link now runs the new program.
    pub interfaces: Vec<String>,
    /// Flows copied into the new connection table.
    pub flows: usize,
    /// Flows that found no free way in their new bucket (placed again by the
    /// scheduler at their next packet).
    pub flows_without_room: usize,
}

/// What a pin directory holds, as `tula dataplane status` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinnedBuild {
    /// The map layout (ABI) version the pinned balancer was loaded with; 1
    /// for one pinned before the `layout` map existed.
    pub layout_version: u32,
    /// Slots per ring, if the layout map records it.
    pub ring_size: Option<u32>,
    /// Interfaces with a pinned XDP link.
    pub interfaces: Vec<String>,
}

impl PinnedBuild {
    /// True when this build reads the pinned maps as they are.
    pub fn matches_this_build(&self) -> bool {
        self.layout_version == abi::LAYOUT_VERSION
    }
}

/// What is pinned in `pin_dir`, or `None` when no balancer is.
pub fn pinned_build(pin_dir: &Path) -> Result<Option<PinnedBuild>> {
    if !pin::holds_balancer(pin_dir) {
        return Ok(None);
    }
    let interfaces = pin::pinned_links(pin_dir)?;
    let layout_pin = pin_dir.join("layout");
    if !layout_pin.exists() {
        return Ok(Some(PinnedBuild {
            layout_version: 1,
            ring_size: None,
            interfaces,
        }));
    }
    let data = MapData::from_pin(&layout_pin).map_err(map_err(
        "layout",
        format!("opening the pin in {}", pin_dir.display()),
    ))?;
    let map = Map::from_map_data(data).map_err(map_err("layout", "checking its type"))?;
    let layout: abi::Layout = Array::<MapData, abi::Layout>::try_from(map)
        .map_err(map_err("layout", "checking its type"))?
        .get(&0, 0)
        .map_err(map_err("layout", "reading it"))?;
    if layout.version == 0 {
        return Err(DataplaneError::BadPin {
            dir: pin_dir.to_path_buf(),
            what: "the layout map was never written (version 0)".into(),
        });
    }
    Ok(Some(PinnedBuild {
        layout_version: layout.version,
        ring_size: Some(layout.ring_size),
        interfaces,
    }))
}

/// True when a pinned balancer of map layout `version` can be moved onto this build.
pub fn converts_from(version: u32) -> bool {
    CONVERTIBLE.contains(&version)
}

/// Moves a balancer of an older build pinned in `pin_dir` onto this build, if
/// its layout differs and can be converted; anything else is left to
/// `open_pinned`'s checks.
pub(crate) fn upgrade_if_older(pin_dir: &Path) -> Result<()> {
    let Some(pinned) = pinned_build(pin_dir)? else {
        return Ok(());
    };
    if pinned.matches_this_build() || !converts_from(pinned.layout_version) {
        return Ok(());
    }
    info!(
        pin_dir = %pin_dir.display(),
        from = pinned.layout_version,
        to = abi::LAYOUT_VERSION,
        "the pinned data plane has an older map layout: moving it onto this build, flows and counters included"
    );
    let switched = switch_build(pin_dir, &Build::this())?;
    info!(?switched, "moved the pinned data plane onto this build");
    Ok(())
}

/// Moves the balancer pinned in `pin_dir` onto `build` (program, maps and the
/// links of its interfaces), keeping its VIPs, backends, interfaces, flows
/// and counters. Both map layouts must be in the convertible set (2 to 6).
/// Run it in the network namespace of the balancer's interfaces (the
/// `tx_ports` entries name them by index), with no daemon programming the
/// pinned maps (the daemon runs it at start, before it adopts them).
pub fn switch_build(pin_dir: &Path, build: &Build) -> Result<Switched> {
    let switched = switch_via_staging(pin_dir, build);
    if switched.is_err() {
        // What is pinned in pin_dir still runs (old pins, or a switch to redo).
        let _ = remove_dir(&staging_dir(pin_dir));
    }
    switched
}

fn switch_via_staging(pin_dir: &Path, build: &Build) -> Result<Switched> {
    let bad = |what: String| DataplaneError::BadPin {
        dir: pin_dir.to_path_buf(),
        what,
    };
    let pinned = pinned_build(pin_dir)?.ok_or_else(|| bad("no balancer is pinned".into()))?;
    let from = pinned.layout_version;
    let to = build.layout_version;
    if !converts_from(from) || !converts_from(to) {
        return Err(bad(format!(
            "cannot move map layout {from} onto layout {to} (convertible: {CONVERTIBLE:?})"
        )));
    }
    let ring_size = pinned.ring_size.expect("layouts 2 and up record ring_size");
    let mut old = dataplane::open_pinned_maps(pin_dir, from)?;
    let old_vips: HashMap<MapData, abi::VipKey, abi::VipMeta> = old.typed("vips")?;
    let old_backends = read_backends(&mut old, from)?;
    let old_conns = old.0.remove("conns").expect("every map was opened");
    let conn_table_size = match &old_conns {
        Map::LruHashMap(data) | Map::HashMap(data) => max_entries(data, "conns")?,
        Map::Array(data) => max_entries(data, "conns")? * abi::CONN_WAYS,
        _ => return Err(bad("the conns map is neither a hash nor an array".into())),
    };
    let max_backends = old_backends.len() as u32;
    // Layout 6 on has a path per CPU and backend address, earlier ones per id.
    let max_backend_addresses = match old.0.get("paths") {
        Some(Map::Array(paths)) if from >= 6 => {
            max_entries(paths, "paths")? / dataplane::possible_cpus("paths")?.max(1)
        }
        _ => max_backends,
    };
    let options = LoadOptions {
        max_vips: max_entries(old_vips.map(), "vips")?,
        max_backends,
        max_backend_addresses,
        ring_size,
        conn_table_size,
        pin_dir: Some(staging_dir(pin_dir)),
    };
    let staging = staging_dir(pin_dir);
    remove_dir(&staging)?;
    let (mut ebpf, mut new) = dataplane::load_object(build.object, to, &options)?;
    let mut layout: Array<MapData, abi::Layout> = new.typed("layout")?;
    layout
        .set(
            0,
            abi::Layout {
                version: to,
                ring_size,
            },
            0,
        )
        .map_err(map_err("layout", "writing it"))?;

    let mut new_vips: HashMap<MapData, abi::VipKey, abi::VipMeta> = new.typed("vips")?;
    copy_hash(&old_vips, &mut new_vips, "vips")?;
    let backend_addrs = backend_addrs(&mut old, &old_backends)?;
    write_backends(&mut new, to, options.hops(to), old_backends, &backend_addrs)?;
    copy_array_map::<abi::RingChunk>(&mut old, &mut new, "ring")?;
    copy_array_map::<abi::VipFilter>(&mut old, &mut new, "vip_filter")?;
    copy_array_map::<abi::Settings>(&mut old, &mut new, "settings")?;
    copy_hash_map::<u32, abi::VipAddr>(&mut old, &mut new, "vip_addrs")?;
    copy_hash_map::<u32, abi::Iface>(&mut old, &mut new, "ifaces")?;
    copy_hash_map::<abi::FragKey, abi::FragDest>(&mut old, &mut new, "frags")?;
    // The IPv6 maps, when both builds have them (layout 4 on both sides).
    if dataplane::IPV6_MAP_NAMES
        .iter()
        .all(|name| old.0.contains_key(name) && new.0.contains_key(name))
    {
        copy_hash_map::<abi::Vip6Key, abi::VipMeta>(&mut old, &mut new, "vips6")?;
        copy_array_map::<abi::Backend6>(&mut old, &mut new, "backends6")?;
        copy_array_map::<abi::Conn6Bucket>(&mut old, &mut new, "conns6")?;
        copy_hash_map::<u32, abi::Iface6>(&mut old, &mut new, "ifaces6")?;
        copy_hash_map::<abi::Frag6Key, abi::FragDest>(&mut old, &mut new, "frags6")?;
        copy_hash_map::<abi::Vip6AddrKey, abi::VipAddr>(&mut old, &mut new, "vip_addrs6")?;
    }
    copy_per_cpu(
        &mut old,
        &mut new,
        "rr_cursors",
        |new: &mut u32, old: u32| *new = old,
    )?;
    let old_tx: DevMapHash<MapData> = old.typed("tx_ports")?;
    let mut new_tx: DevMapHash<MapData> = new.typed("tx_ports")?;
    for entry in old_tx.iter() {
        let (key, value) = entry.map_err(map_err("tx_ports", "reading it"))?;
        new_tx
            .insert(key, value.if_index, None, 0)
            .map_err(|e| DataplaneError::Link {
                ifname: format!("ifindex {}", value.if_index),
                what: "copying its tx_ports entry",
                source: Box::new(e),
            })?;
    }
    // Next hops and icmp_buckets are caches and rate-limit credit: they refill.

    let vip_ids = vip_ids(&old_vips)?;
    let mut new_conns = new.0.remove("conns").expect("every map was loaded");
    let mut flows = convert_conns(&old_conns, &mut new_conns, &vip_ids)?;

    let program = dataplane::balancer_program(&mut ebpf)?;
    for ifname in &pinned.interfaces {
        let link_error = |what, e: Box<dyn std::error::Error + Send + Sync>| DataplaneError::Link {
            ifname: ifname.clone(),
            what,
            source: e,
        };
        let pinned_link = PinnedLink::from_pin(pin::link_pin(pin_dir, ifname))
            .map_err(|e| link_error("opening its pinned link", Box::new(e)))?;
        let link = XdpLink::try_from(FdLink::from(pinned_link))
            .map_err(|e| link_error("checking its pinned link is an XDP link", Box::new(e)))?;
        program
            .attach_to_link(link)
            .map_err(|e| link_error("swapping the program under its link", Box::new(e)))?;
    }
    // The old program ran until the swap: copy the flows it placed meanwhile,
    // and add its counters to the new program's.
    let late = convert_conns(&old_conns, &mut new_conns, &vip_ids)?;
    flows.flows += late.flows;
    flows.without_room = late.without_room.max(flows.without_room);
    let sum_u64 = |new: &mut u64, old: u64| *new += old;
    let sum_traffic = |new: &mut abi::Traffic, old: abi::Traffic| {
        new.packets += old.packets;
        new.bytes += old.bytes;
    };
    copy_per_cpu(&mut old, &mut new, "counters", sum_u64)?;
    copy_per_cpu(&mut old, &mut new, "vip_stats", sum_traffic)?;
    let traffic = backend_traffic(&mut old, options.max_backends)?;
    add_backend_traffic(&mut new, options.max_backends, &traffic)?;

    // The program, then the layout map, go last: until the layout is renamed
    // the pin directory says "older build", and a start redoes the switch
    // (reading the connection table in whichever layout it finds).
    let new_names = dataplane::map_names(to);
    let names = new_names
        .iter()
        .filter(|n| **n != "layout" && staging.join(n).exists());
    for name in names.chain([&pin::PROGRAM_PIN, &"layout"]) {
        std::fs::rename(staging.join(name), pin_dir.join(name)).map_err(|source| {
            DataplaneError::Pin {
                dir: pin_dir.to_path_buf(),
                what: format!("replacing the pin {name} with the new build's"),
                source,
            }
        })?;
    }
    // The old build's maps that the new one lacks (e.g. next_hops for paths).
    for name in dataplane::map_names(from).iter().filter(|n| !new_names.contains(n)) {
        pin::remove(pin_dir, name)?;
    }
    remove_dir(&staging)?;
    if flows.without_room > 0 {
        warn!(
            flows = flows.without_room,
            "flows found no free way in the new connection table; their next packet places them again"
        );
    }
    Ok(Switched {
        from_layout: from,
        to_layout: to,
        interfaces: pinned.interfaces,
        flows: flows.flows,
        flows_without_room: flows.without_room,
    })
}

/// Where a switch pins the new build before it replaces the old pins.
fn staging_dir(pin_dir: &Path) -> PathBuf {
    let mut name = pin_dir.file_name().unwrap_or_default().to_os_string();
    // bpffs refuses names with a dot.
    name.push("-upgrade");
    pin_dir.with_file_name(name)
}

fn remove_dir(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(DataplaneError::Pin {
            dir: dir.to_path_buf(),
            what: "removing what an interrupted upgrade left".into(),
            source: e,
        }),
        _ => Ok(()),
    }
}

fn max_entries(data: &MapData, name: &'static str) -> Result<u32> {
    Ok(data
        .info()
        .map_err(map_err(name, "reading its size"))?
        .max_entries())
}

fn vip_ids(
    vips: &HashMap<MapData, abi::VipKey, abi::VipMeta>,
) -> Result<std::collections::HashMap<abi::VipKey, u32>> {
    let mut ids = std::collections::HashMap::new();
    for entry in vips.iter() {
        let (key, meta) = entry.map_err(map_err("vips", "listing VIPs"))?;
        ids.insert(key, meta.id);
    }
    Ok(ids)
}

fn copy_hash<K: aya::Pod, V: aya::Pod>(
    old: &HashMap<MapData, K, V>,
    new: &mut HashMap<MapData, K, V>,
    name: &'static str,
) -> Result<()> {
    for entry in old.iter() {
        let (key, value) = entry.map_err(map_err(name, "reading the pinned map"))?;
        new.insert(key, value, 0)
            .map_err(map_err(name, "copying an entry into the new map"))?;
    }
    Ok(())
}

fn copy_hash_map<K: aya::Pod, V: aya::Pod>(
    old: &mut Maps,
    new: &mut Maps,
    name: &'static str,
) -> Result<()> {
    let from: HashMap<MapData, K, V> = old.typed(name)?;
    let mut to: HashMap<MapData, K, V> = new.typed(name)?;
    copy_hash(&from, &mut to, name)
}

/// Copies an array map in batches of elements.
fn copy_array<T: aya::Pod + Default>(
    old: &Array<MapData, T>,
    new: &mut Array<MapData, T>,
    name: &'static str,
) -> Result<()> {
    const BATCH: u32 = 1024;
    let len = old.len().min(new.len());
    let mut first = 0;
    while first < len {
        let count = BATCH.min(len - first);
        let values: Vec<T> = rings::read_batch(old.map().fd().as_fd(), first, count)
            .map_err(|e| map_err(name, "reading the pinned map")(dataplane::batch_error(e)))?;
        rings::write_batch(new.map().fd().as_fd(), first, &values)
            .map_err(|e| map_err(name, "copying into the new map")(dataplane::batch_error(e)))?;
        first += count;
    }
    Ok(())
}

fn copy_array_map<T: aya::Pod + Default>(
    old: &mut Maps,
    new: &mut Maps,
    name: &'static str,
) -> Result<()> {
    let from: Array<MapData, T> = old.typed(name)?;
    let mut to: Array<MapData, T> = new.typed(name)?;
    copy_array(&from, &mut to, name)
}

/// Merges every CPU's value of every element of a per-CPU array into the new
/// map's with `merge(new, old)`.
fn copy_per_cpu<T: aya::Pod + Default>(
    old: &mut Maps,
    new: &mut Maps,
    name: &'static str,
    merge: impl Fn(&mut T, T),
) -> Result<()> {
    let from: PerCpuArray<MapData, T> = old.typed(name)?;
    let mut to: PerCpuArray<MapData, T> = new.typed(name)?;
    for index in 0..from.len().min(to.len()) {
        let old_values = from
            .get(&index, 0)
            .map_err(map_err(name, format!("reading element {index}")))?;
        let mut values: Vec<T> = to
            .get(&index, 0)
            .map_err(map_err(
                name,
                format!("reading element {index} of the new map"),
            ))?
            .to_vec();
        for (value, old_value) in values.iter_mut().zip(old_values.iter()) {
            merge(value, *old_value);
        }
        let values = PerCpuValues::try_from(values)
            .map_err(|e| map_err(name, format!("copying element {index}"))(syscall_err("nr_cpus", e)))?;
        to.set(index, values, 0)
            .map_err(map_err(name, format!("copying element {index}")))?;
    }
    Ok(())
}

/// The `backends` entries of a build of map layout `version`, as this build's.
fn read_backends(maps: &mut Maps, version: u32) -> Result<Vec<abi::Backend>> {
    if version >= 6 {
        let backends: Array<MapData, abi::Backend> = maps.typed("backends")?;
        return dataplane::read_array(&backends, "backends", 0, backends.len());
    }
    let backends: Array<MapData, abi::BackendLayout5> = maps.typed("backends")?;
    Ok(dataplane::read_array(&backends, "backends", 0, backends.len())?
        .into_iter()
        .map(|b| abi::Backend {
            addr: b.addr,
            flags: b.flags,
            epoch: b.epoch,
            ..Default::default()
        })
        .collect())
}

/// Each backend's address, from `backends` and (layouts 4 and up) `backends6`.
fn backend_addrs(maps: &mut Maps, backends: &[abi::Backend]) -> Result<Vec<Option<IpAddr>>> {
    // Read in place: the map is copied to the new build later.
    let backends6: Vec<abi::Backend6> = match maps.0.get("backends6") {
        Some(Map::Array(data)) => rings::read_batch(data.fd().as_fd(), 0, max_entries(data, "backends6")?)
            .map_err(|e| map_err("backends6", "reading the pinned map")(dataplane::batch_error(e)))?,
        _ => Vec::new(),
    };
    Ok(backends
        .iter()
        .enumerate()
        .map(|(id, b)| dataplane::backend_addr(b, backends6.get(id)))
        .collect())
}

/// Writes `backends` into the `backends` map of a build of map layout
/// `version`: from layout 6 on, each with its address's hop (below `hops`).
fn write_backends(
    maps: &mut Maps,
    version: u32,
    hops: u32,
    mut backends: Vec<abi::Backend>,
    addrs: &[Option<IpAddr>],
) -> Result<()> {
    fn write<T: aya::Pod>(map: &MapData, values: &[T]) -> Result<()> {
        rings::write_batch(map.fd().as_fd(), 0, values)
            .map_err(|e| map_err("backends", "copying into the new map")(dataplane::batch_error(e)))
    }
    if version >= 6 {
        // An IPv6 backend's addr is its address's tag from layout 6 on.
        for (backend, addr) in backends.iter_mut().zip(addrs) {
            if let Some(IpAddr::V6(v6)) = addr {
                backend.addr = crate::flow::addr6_tag(*v6);
            }
        }
        // The new paths are empty: any epochs will do.
        let mut epoch = 0u16;
        dataplane::Hops::assign(&mut backends, addrs, hops, || {
            epoch = epoch.wrapping_add(1);
            epoch
        })
        .map_err(|full| DataplaneError::InvalidOption {
            option: "max_backend_addresses",
            value: full.limit.into(),
            reason: "is fewer than the distinct addresses of the pinned backends",
        })?;
        let map: Array<MapData, abi::Backend> = maps.typed("backends")?;
        return write(map.map(), &backends);
    }
    let old: Vec<abi::BackendLayout5> = backends
        .iter()
        .map(|b| abi::BackendLayout5 {
            // Layout 5 keeps 0 for an IPv6 backend.
            addr: if b.flags & abi::BACKEND_F_IPV6 != 0 { 0 } else { b.addr },
            flags: b.flags,
            epoch: b.epoch,
        })
        .collect();
    let map: Array<MapData, abi::BackendLayout5> = maps.typed("backends")?;
    write(map.map(), &old)
}

/// Every backend's traffic, per CPU (`[id][cpu]`), from wherever a build
/// keeps it: `backend_stats` (per-CPU, layouts 2 to 4), `paths` (layout 5) or
/// `cpu_backends` (layout 6).
fn backend_traffic(maps: &mut Maps, backends: u32) -> Result<Vec<Vec<abi::Traffic>>> {
    if maps.0.contains_key("backend_stats") {
        let stats: PerCpuArray<MapData, abi::Traffic> = maps.typed("backend_stats")?;
        return (0..backends.min(stats.len()))
            .map(|id| {
                let values = stats
                    .get(&id, 0)
                    .map_err(map_err("backend_stats", format!("reading backend {id}")))?;
                Ok(values.to_vec())
            })
            .collect();
    }
    let per_cpu_traffic: Vec<abi::Traffic> = if maps.0.contains_key("cpu_backends") {
        let copies: Array<MapData, abi::CpuBackend> = maps.typed("cpu_backends")?;
        let all = dataplane::read_array(&copies, "cpu_backends", 0, copies.len())?;
        all.iter().map(|c| c.traffic).collect()
    } else {
        let paths: Array<MapData, abi::PathLayout5> = maps.typed("paths")?;
        let all = dataplane::read_array(&paths, "paths", 0, paths.len())?;
        all.iter().map(|p| p.traffic).collect()
    };
    // Element cpu * backends + id.
    let per_cpu: Vec<&[abi::Traffic]> = per_cpu_traffic.chunks(backends.max(1) as usize).collect();
    Ok((0..backends as usize)
        .map(|id| per_cpu.iter().map(|traffic| traffic[id]).collect())
        .collect())
}

/// Adds `traffic` (from [`backend_traffic`]) to the backends' counters in
/// `maps`, wherever its build keeps them.
fn add_backend_traffic(maps: &mut Maps, backends: u32, traffic: &[Vec<abi::Traffic>]) -> Result<()> {
    let add = |to: &mut abi::Traffic, from: &abi::Traffic| {
        to.packets += from.packets;
        to.bytes += from.bytes;
    };
    if maps.0.contains_key("backend_stats") {
        let mut stats: PerCpuArray<MapData, abi::Traffic> = maps.typed("backend_stats")?;
        for (id, old) in (0..stats.len()).zip(traffic) {
            if old.iter().all(|t| *t == abi::Traffic::default()) {
                continue;
            }
            let mut values = stats
                .get(&id, 0)
                .map_err(map_err("backend_stats", format!("reading backend {id}")))?
                .to_vec();
            // One CPU's counts go to one CPU; a machine with fewer CPUs now gets the rest on its first.
            let last = values.len() - 1;
            for (cpu, t) in old.iter().enumerate() {
                add(&mut values[cpu.min(last)], t);
            }
            let values = PerCpuValues::try_from(values).expect("as many values as read");
            stats
                .set(id, values, 0)
                .map_err(map_err("backend_stats", format!("adding to backend {id}")))?;
        }
        return Ok(());
    }
    let per_backend = backends.max(1) as usize;
    // Element cpu * backends + id, as for reading.
    fn add_all<T: aya::Pod + Default>(
        map: &Array<MapData, T>,
        name: &'static str,
        per_backend: usize,
        traffic: &[Vec<abi::Traffic>],
        counts: impl Fn(&mut T) -> &mut abi::Traffic,
    ) -> Result<()> {
        let mut all = dataplane::read_array(map, name, 0, map.len())?;
        let last = all.len() / per_backend - 1;
        for (id, old) in traffic.iter().enumerate().take(per_backend) {
            for (cpu, t) in old.iter().enumerate() {
                let to = counts(&mut all[cpu.min(last) * per_backend + id]);
                to.packets += t.packets;
                to.bytes += t.bytes;
            }
        }
        rings::write_batch(map.map().fd().as_fd(), 0, &all)
            .map_err(|e| map_err(name, "adding the old backend counters")(dataplane::batch_error(e)))
    }
    if maps.0.contains_key("cpu_backends") {
        let copies: Array<MapData, abi::CpuBackend> = maps.typed("cpu_backends")?;
        return add_all(&copies, "cpu_backends", per_backend, traffic, |c| &mut c.traffic);
    }
    let paths: Array<MapData, abi::PathLayout5> = maps.typed("paths")?;
    add_all(&paths, "paths", per_backend, traffic, |p| &mut p.traffic)
}

/// BPF_NOEXIST: an update that only inserts.
const NO_EXIST: u64 = 1;

#[derive(Default)]
struct Converted {
    flows: usize,
    without_room: usize,
}

/// Copies the flows of `old` into `new`, each map in its own layout (an LRU
/// hash of flows for layout 2, buckets of ways after), skipping flows `new`
/// already has.
fn convert_conns(
    old: &Map,
    new: &mut Map,
    vip_ids: &std::collections::HashMap<abi::VipKey, u32>,
) -> Result<Converted> {
    let flows = read_conns(old)?;
    let mut converted = Converted::default();
    match new {
        Map::LruHashMap(_) | Map::HashMap(_) => {
            let mut table: HashMap<&mut MapData, abi::Flow, abi::ConnLayout2> =
                HashMap::try_from(new).map_err(map_err("conns", "checking its type"))?;
            for (flow, backend) in flows {
                let Some(vip) = conn_table::vip_of(vip_ids, &flow) else {
                    continue;
                };
                let value = abi::ConnLayout2 { backend, vip };
                match table.insert(flow, value, NO_EXIST) {
                    Ok(()) => converted.flows += 1,
                    Err(aya::maps::MapError::SyscallError(e))
                        if e.io_error.raw_os_error() == Some(libc::EEXIST) => {}
                    Err(e) => return Err(map_err("conns", "copying a flow")(e)),
                }
            }
        }
        Map::Array(_) => {
            let mut table: Array<&mut MapData, abi::ConnBucket> =
                Array::try_from(new).map_err(map_err("conns", "checking its type"))?;
            let buckets = table.len();
            let mut by_bucket: BTreeMap<u32, Vec<(abi::Flow, u32)>> = BTreeMap::new();
            for (flow, backend) in flows {
                by_bucket
                    .entry(conn_table::bucket_of(&flow, buckets))
                    .or_default()
                    .push((flow, backend));
            }
            for (index, flows) in by_bucket {
                let mut bucket = table
                    .get(&index, 0)
                    .map_err(map_err("conns", format!("reading bucket {index}")))?;
                for (flow, backend) in flows {
                    if conn_table::find(&bucket, &flow).is_some() {
                        continue;
                    }
                    let Some(way) = bucket.ways.iter_mut().find(|w| !conn_table::valid(w)) else {
                        converted.without_room += 1;
                        continue;
                    };
                    // Stamp 0: the least recently seen of the flows with more
                    // than one packet, until its next packet stamps it.
                    *way = abi::ConnEntry {
                        flow,
                        backend,
                        check: conn_check(hash64_abi(&flow), backend),
                        stamp: abi::CONN_STAMP_HIT,
                    };
                    converted.flows += 1;
                }
                table
                    .set(index, bucket, 0)
                    .map_err(map_err("conns", format!("writing bucket {index}")))?;
            }
        }
        _ => unreachable!("the loaded object's conns map is a hash or an array"),
    }
    Ok(converted)
}

/// Every flow of a connection table in either layout, with its backend.
fn read_conns(map: &Map) -> Result<Vec<(abi::Flow, u32)>> {
    let mut flows = Vec::new();
    match map {
        Map::LruHashMap(_) | Map::HashMap(_) => {
            let table: HashMap<&MapData, abi::Flow, abi::ConnLayout2> =
                HashMap::try_from(map).map_err(map_err("conns", "checking its type"))?;
            for entry in table.iter() {
                match entry {
                    Ok((flow, conn)) => flows.push((flow, conn.backend)),
                    // An LRU entry evicted while listed.
                    Err(aya::maps::MapError::KeyNotFound) => {}
                    Err(e) => return Err(map_err("conns", "listing flows")(e)),
                }
            }
        }
        Map::Array(_) => {
            let table: Array<&MapData, abi::ConnBucket> =
                Array::try_from(map).map_err(map_err("conns", "checking its type"))?;
            for index in 0..table.len() {
                let bucket = table
                    .get(&index, 0)
                    .map_err(map_err("conns", format!("reading bucket {index}")))?;
                let valid = bucket.ways.iter().filter(|w| conn_table::valid(w));
                flows.extend(valid.map(|w| (w.flow, w.backend)));
            }
        }
        _ => unreachable!("the pinned conns map is a hash or an array"),
    }
    Ok(flows)
}
