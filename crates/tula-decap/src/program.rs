//! The decapsulation XDP program (`bpf/decap.c`): loading it, filling its
//! maps, reading its counters, and keeping it attached to an interface after
//! the command exits (a pinned link and pinned maps under bpffs).
//!
//! The map names, key types and counter slots mirror `bpf/include/decap_maps.h`.

use crate::DecapError;
use aya::maps::{HashMap, Map, MapData, PerCpuArray};
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::{TestRun, TestRunOptions, Xdp, XdpMode};
use aya::Ebpf;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// bpf/obj/decap.o, built by `make bpf` and committed.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!("../../../bpf/obj/decap.o");

const PROGRAM: &str = "decap";
/// This host's tunnel endpoint addresses (outer destinations to decapsulate).
pub const LOCAL_MAP: &str = "decap_local";
/// The VIPs an inner packet may be addressed to.
pub const VIPS_MAP: &str = "decap_vips";
/// This host's IPv6 tunnel endpoint addresses (outer IPv6 destinations of
/// IP6IP6 and IPv4-in-IPv6 packets to decapsulate).
pub const LOCAL6_MAP: &str = "decap_local6";
/// The IPv6 VIPs an inner IPv6 packet may be addressed to.
pub const VIPS6_MAP: &str = "decap_vips6";
/// Per-CPU counters, one `u64` per [`Counter`].
pub const STATS_MAP: &str = "decap_stats";
const LINK_PIN: &str = "link";

/// Where bpffs is mounted; tula keeps its pins in `tula-decap` under it.
pub const BPFFS: &str = "/sys/fs/bpf";
const PIN_DIR: &str = "tula-decap";

/// Slots of `decap_stats`, as `enum decap_counter` in decap_maps.h.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Counter {
    Packets = 0,
    Bytes,
    Passed,
    Malformed,
    NotVip,
    Fragment,
    AdjustFail,
    EcnDrop,
}

/// Number of counter slots.
pub const COUNTERS: u32 = 8;

/// What the program did, summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecapCounters {
    /// Packets decapsulated and passed up.
    pub decapsulated_packets: u64,
    /// Bytes of inner packets passed up.
    pub decapsulated_bytes: u64,
    /// Packets that were not a tunnel packet (IPIP, IP6IP6, IPv4 in IPv6) for this host, passed untouched.
    pub passed: u64,
    /// IPIP for this host with a bad outer or inner header: dropped.
    pub malformed: u64,
    /// IPIP for this host whose inner destination is not a VIP: dropped.
    pub not_vip: u64,
    /// Outer fragments, which XDP cannot reassemble: passed to the kernel.
    pub fragments: u64,
    /// `bpf_xdp_adjust_head` refused: dropped.
    pub adjust_failed: u64,
    /// Outer CE mark on a not-ECN-capable inner packet (RFC 6040): dropped.
    pub ecn_dropped: u64,
}

impl DecapCounters {
    fn from_slots(slots: &[u64; COUNTERS as usize]) -> Self {
        DecapCounters {
            decapsulated_packets: slots[Counter::Packets as usize],
            decapsulated_bytes: slots[Counter::Bytes as usize],
            passed: slots[Counter::Passed as usize],
            malformed: slots[Counter::Malformed as usize],
            not_vip: slots[Counter::NotVip as usize],
            fragments: slots[Counter::Fragment as usize],
            adjust_failed: slots[Counter::AdjustFail as usize],
            ecn_dropped: slots[Counter::EcnDrop as usize],
        }
    }
}

impl std::fmt::Display for DecapCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "decapsulated {} packets ({} bytes), passed {}, dropped: malformed {}, not a VIP {}, ECN {}; \
             outer fragments passed {}",
            self.decapsulated_packets,
            self.decapsulated_bytes,
            self.passed,
            self.malformed,
            self.not_vip,
            self.ecn_dropped,
            self.fragments
        )
    }
}

/// The program loaded into the kernel, not attached anywhere yet.
pub struct DecapProgram {
    ebpf: Ebpf,
}

impl DecapProgram {
    /// Loads bpf/obj/decap.o and its program (needs CAP_BPF / root).
    pub fn load() -> Result<DecapProgram, DecapError> {
        let mut ebpf = Ebpf::load(OBJECT).map_err(|e| DecapError::bpf("loading bpf/obj/decap.o", e))?;
        let program: &mut Xdp = ebpf
            .program_mut(PROGRAM)
            .ok_or_else(|| DecapError::bpf("decap.o", "has no program named decap"))?
            .try_into()
            .map_err(|e| DecapError::bpf("decap.o program decap", e))?;
        program
            .load()
            .map_err(|e| DecapError::bpf("loading the XDP program decap (verifier)", verifier_detail(&e)))?;
        Ok(DecapProgram { ebpf })
    }

    /// Sets the tunnel endpoint addresses to exactly `addrs`.
    pub fn set_local_addresses(&mut self, addrs: &[Ipv4Addr]) -> Result<(), DecapError> {
        set_address_map(self.map_mut(LOCAL_MAP)?, LOCAL_MAP, addrs)
    }

    /// Sets the VIPs to exactly `vips`.
    pub fn set_vips(&mut self, vips: &[Ipv4Addr]) -> Result<(), DecapError> {
        set_address_map(self.map_mut(VIPS_MAP)?, VIPS_MAP, vips)
    }

    /// Sets the IPv6 tunnel endpoint addresses to exactly `addrs`.
    pub fn set_local_addresses6(&mut self, addrs: &[Ipv6Addr]) -> Result<(), DecapError> {
        set_address6_map(self.map_mut(LOCAL6_MAP)?, LOCAL6_MAP, addrs)
    }

    /// Sets the IPv6 VIPs to exactly `vips`.
    pub fn set_vips6(&mut self, vips: &[Ipv6Addr]) -> Result<(), DecapError> {
        set_address6_map(self.map_mut(VIPS6_MAP)?, VIPS6_MAP, vips)
    }

    /// Sets the tunnel addresses and VIPs of both families to exactly these.
    pub fn set_addresses(&mut self, local: &[IpAddr], vips: &[IpAddr]) -> Result<(), DecapError> {
        let (local4, local6) = split(local);
        let (vips4, vips6) = split(vips);
        self.set_local_addresses(&local4)?;
        self.set_local_addresses6(&local6)?;
        self.set_vips(&vips4)?;
        self.set_vips6(&vips6)
    }

    /// Runs the program once on `packet` (BPF_PROG_TEST_RUN) and returns the
    /// XDP verdict and the packet as the program left it.
    pub fn test_run(&self, packet: &[u8]) -> Result<(u32, Vec<u8>), DecapError> {
        let program: &Xdp = self
            .ebpf
            .program(PROGRAM)
            .expect("checked at load")
            .try_into()
            .expect("checked at load");
        let mut out = vec![0u8; packet.len() + 256];
        let opts = TestRunOptions { data_in: Some(packet), data_out: Some(&mut out), ..Default::default() };
        let result = program.test_run(opts).map_err(|e| DecapError::bpf("test-running decap", e))?;
        out.truncate(result.data_size_out as usize);
        Ok((result.return_value, out))
    }

    /// The counters so far.
    pub fn counters(&self) -> Result<DecapCounters, DecapError> {
        let map = self.ebpf.map(STATS_MAP).ok_or_else(|| missing_map(STATS_MAP))?;
        read_counters(map)
    }

    /// Attaches the program to `interface` for as long as this value lives.
    pub fn attach(&mut self, interface: &str) -> Result<(), DecapError> {
        self.xdp_mut().attach(interface, XdpMode::default()).map_err(|e| attach_error(interface, e))?;
        Ok(())
    }

    /// Pins the maps, attaches the program to `interface` and pins the link
    /// in `pin_dir`, so it stays attached after this process exits.
    pub fn attach_pinned(mut self, interface: &str, pin_dir: &Path) -> Result<(), DecapError> {
        create_pin_dir(pin_dir)?;
        for name in [LOCAL_MAP, VIPS_MAP, LOCAL6_MAP, VIPS6_MAP, STATS_MAP] {
            let path = pin_dir.join(name);
            self.ebpf
                .map(name)
                .ok_or_else(|| missing_map(name))?
                .pin(&path)
                .map_err(|e| DecapError::bpf(format!("pinning map {name} at {}", path.display()), e))?;
        }
        let program = self.xdp_mut();
        let link_id = program.attach(interface, XdpMode::default()).map_err(|e| attach_error(interface, e))?;
        let link = program.take_link(link_id).map_err(|e| DecapError::bpf("taking the XDP link", e))?;
        let link: FdLink = link.try_into().map_err(|e| {
            DecapError::bpf(format!("pinning the XDP link on {interface} (kernel lacks bpf links for XDP)"), e)
        })?;
        let path = pin_dir.join(LINK_PIN);
        link.pin(&path).map_err(|e| DecapError::bpf(format!("pinning the XDP link at {}", path.display()), e))?;
        Ok(())
    }

    fn xdp_mut(&mut self) -> &mut Xdp {
        self.ebpf.program_mut(PROGRAM).expect("checked at load").try_into().expect("checked at load")
    }

    fn map_mut(&mut self, name: &str) -> Result<&mut Map, DecapError> {
        self.ebpf.map_mut(name).ok_or_else(|| missing_map(name))
    }
}

/// The program as left attached by an earlier `tula decap setup`.
pub struct PinnedDecap {
    dir: PathBuf,
}

impl PinnedDecap {
    /// Opens the pins in `dir`, or `None` if there are none.
    pub fn open(dir: &Path) -> Option<PinnedDecap> {
        dir.join(LINK_PIN).exists().then(|| PinnedDecap { dir: dir.to_path_buf() })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The interface index the pinned XDP link is attached to (0 once its
    /// interface is gone).
    pub fn attached_ifindex(&self) -> Result<u32, DecapError> {
        let path = self.dir.join(LINK_PIN);
        let fd = bpf_obj_get(&path)?;
        Ok(bpf_link_info(&fd).map_err(|e| DecapError::io(format!("reading XDP link {}", path.display()), e))?.ifindex)
    }

    /// The program id behind the pinned link.
    pub fn program_id(&self) -> Result<u32, DecapError> {
        let path = self.dir.join(LINK_PIN);
        let fd = bpf_obj_get(&path)?;
        Ok(bpf_link_info(&fd).map_err(|e| DecapError::io(format!("reading XDP link {}", path.display()), e))?.prog_id)
    }

    pub fn local_addresses(&self) -> Result<Vec<Ipv4Addr>, DecapError> {
        read_address_map(&self.map(LOCAL_MAP)?, LOCAL_MAP)
    }

    pub fn vips(&self) -> Result<Vec<Ipv4Addr>, DecapError> {
        read_address_map(&self.map(VIPS_MAP)?, VIPS_MAP)
    }

    pub fn set_local_addresses(&self, addrs: &[Ipv4Addr]) -> Result<(), DecapError> {
        set_address_map(&mut self.map(LOCAL_MAP)?, LOCAL_MAP, addrs)
    }

    pub fn set_vips(&self, vips: &[Ipv4Addr]) -> Result<(), DecapError> {
        set_address_map(&mut self.map(VIPS_MAP)?, VIPS_MAP, vips)
    }

    pub fn local_addresses6(&self) -> Result<Vec<Ipv6Addr>, DecapError> {
        read_address6_map(&self.map(LOCAL6_MAP)?, LOCAL6_MAP)
    }

    pub fn vips6(&self) -> Result<Vec<Ipv6Addr>, DecapError> {
        read_address6_map(&self.map(VIPS6_MAP)?, VIPS6_MAP)
    }

    /// The tunnel addresses of both families, sorted (IPv4 first).
    pub fn all_local_addresses(&self) -> Result<Vec<IpAddr>, DecapError> {
        Ok(joined(self.local_addresses()?, self.local_addresses6()?))
    }

    /// The VIPs of both families, sorted (IPv4 first).
    pub fn all_vips(&self) -> Result<Vec<IpAddr>, DecapError> {
        Ok(joined(self.vips()?, self.vips6()?))
    }

    /// Sets the tunnel addresses and VIPs of both families to exactly these.
    pub fn set_addresses(&self, local: &[IpAddr], vips: &[IpAddr]) -> Result<(), DecapError> {
        let (local4, local6) = split(local);
        let (vips4, vips6) = split(vips);
        set_address_map(&mut self.map(LOCAL_MAP)?, LOCAL_MAP, &local4)?;
        set_address6_map(&mut self.map(LOCAL6_MAP)?, LOCAL6_MAP, &local6)?;
        set_address_map(&mut self.map(VIPS_MAP)?, VIPS_MAP, &vips4)?;
        set_address6_map(&mut self.map(VIPS6_MAP)?, VIPS6_MAP, &vips6)
    }

    pub fn counters(&self) -> Result<DecapCounters, DecapError> {
        read_counters(&self.map(STATS_MAP)?)
    }

    /// Detaches the program (removing the last reference to the link does)
    /// and removes every pin and the directory.
    pub fn remove(self) -> Result<(), DecapError> {
        remove_pins(&self.dir)
    }

    fn map(&self, name: &str) -> Result<Map, DecapError> {
        let path = self.dir.join(name);
        let data = MapData::from_pin(&path).map_err(|e| DecapError::bpf(format!("opening pinned map {}", path.display()), e))?;
        Map::from_map_data(data).map_err(|e| DecapError::bpf(format!("pinned map {}", path.display()), e))
    }
}

/// Creates `dir` and its parents. The shared tula-decap directory may vanish
/// between the two (the last [`remove_pins`] of another namespace removes it
/// when empty): then it is made again.
fn create_pin_dir(dir: &Path) -> Result<(), DecapError> {
    let mut tries = 0;
    loop {
        match std::fs::create_dir_all(dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && tries < 5 => tries += 1,
            result => return result.map_err(|e| DecapError::io(format!("creating {}", dir.display()), e)),
        }
    }
}

/// Removes the pins in `dir` (link first, which detaches the program), then
/// `dir`, then the shared tula-decap directory if no other namespace's pins
/// are left in it. Missing pins are fine.
pub(crate) fn remove_pins(dir: &Path) -> Result<(), DecapError> {
    let link = dir.join(LINK_PIN);
    if link.exists() {
        let pinned = PinnedLink::from_pin(&link).map_err(|e| DecapError::bpf(format!("opening {}", link.display()), e))?;
        // Dropping the unpinned link closes its last reference: the kernel detaches it.
        drop(pinned.unpin().map_err(|e| DecapError::io(format!("removing {}", link.display()), e))?);
    }
    for name in [LOCAL_MAP, VIPS_MAP, LOCAL6_MAP, VIPS6_MAP, STATS_MAP] {
        let path = dir.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(DecapError::io(format!("removing {}", path.display()), e)),
        }
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(DecapError::io(format!("removing {}", dir.display()), e)),
    }
    match dir.parent() {
        Some(shared) if shared.file_name() == Some(PIN_DIR.as_ref()) => remove_if_empty(shared),
        _ => Ok(()),
    }
}

/// Removes directory `dir` unless something is in it (or it is gone already).
fn remove_if_empty(dir: &Path) -> Result<(), DecapError> {
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => Ok(()),
        Err(e) => Err(DecapError::io(format!("removing {}", dir.display()), e)),
    }
}

/// `/sys/fs/bpf/tula-decap/<netns inode>-<interface>`: one per namespace
/// and interface, so backends in several namespaces of one host do not collide.
pub fn pin_dir(interface: &str) -> Result<PathBuf, DecapError> {
    // thread-self, not self: a namespace entered by this thread only.
    let meta = std::fs::metadata("/proc/thread-self/ns/net")
        .map_err(|e| DecapError::io("reading this thread's network namespace", e))?;
    Ok(Path::new(BPFFS).join(PIN_DIR).join(format!("{}-{interface}", meta.ino())))
}

/// Pin directories of every namespace whose XDP link lost its interface.
pub fn stale_pin_dirs() -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(Path::new(BPFFS).join(PIN_DIR)) else {
        return Vec::new();
    };
    let mut stale: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        // A directory without a link may be a setup half-way: not stale.
        .filter(|dir| PinnedDecap::open(dir).is_some_and(|p| p.attached_ifindex().is_ok_and(|index| index == 0)))
        .collect();
    stale.sort();
    stale
}

/// Whether a bpffs is mounted at /sys/fs/bpf.
pub fn bpffs_mounted() -> Result<bool, DecapError> {
    match nix::sys::statfs::statfs(BPFFS) {
        Ok(fs) => Ok(fs.filesystem_type().0 == libc::BPF_FS_MAGIC),
        Err(nix::errno::Errno::ENOENT) => Ok(false),
        Err(e) => Err(DecapError::io(format!("checking {BPFFS}"), e.into())),
    }
}

/// The error for [`tula_net::under_ip_netns_exec`], with the fix.
pub(crate) fn netns_exec_error(netns: &str) -> DecapError {
    DecapError::Bpf {
        what: format!("running under `ip netns exec {netns}`"),
        message: format!(
            "it gives this command a private /sys, where the host's bpffs (and tula's pins) cannot be seen \
             and new pins would not outlive the command; enter only the network namespace instead: \
             `nsenter --net=/run/netns/{netns} tula decap ...`"
        ),
    }
}

/// Mounts bpffs at /sys/fs/bpf (`mount -t bpf bpf /sys/fs/bpf`).
pub fn mount_bpffs() -> Result<(), DecapError> {
    // Tests in one process may race here; serialize so only one mounts.
    static MOUNT: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = MOUNT.lock().unwrap_or_else(|p| p.into_inner());
    if bpffs_mounted()? {
        return Ok(());
    }
    if let Some(netns) = tula_net::under_ip_netns_exec() {
        return Err(netns_exec_error(&netns));
    }
    nix::mount::mount(Some("bpf"), BPFFS, Some("bpf"), nix::mount::MsFlags::empty(), None::<&str>)
        .map_err(|e| DecapError::io(format!("mounting bpffs at {BPFFS}"), e.into()))
}

fn attach_error(interface: &str, e: aya::programs::ProgramError) -> DecapError {
    let busy = matches!(&e, aya::programs::ProgramError::SyscallError(s) if s.io_error.raw_os_error() == Some(libc::EBUSY));
    let hint = if busy {
        format!(" (another XDP program is attached to {interface}: detach it first, `ip link set dev {interface} xdp off`)")
    } else {
        String::new()
    };
    DecapError::bpf(format!("attaching XDP program decap to {interface}{hint}"), e)
}

fn missing_map(name: &str) -> DecapError {
    DecapError::bpf("decap.o", format!("has no map named {name}"))
}

fn verifier_detail(e: &aya::programs::ProgramError) -> String {
    match e {
        aya::programs::ProgramError::LoadError { io_error, verifier_log } => format!("{io_error}\n{verifier_log}"),
        other => other.to_string(),
    }
}

/// Keys are addresses in network byte order, as the program reads them from
/// the packet; values are unused (1).
fn address_key(addr: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(addr.octets())
}

fn set_address_map(map: &mut Map, name: &str, addrs: &[Ipv4Addr]) -> Result<(), DecapError> {
    let mut hash: HashMap<&mut MapData, u32, u32> =
        HashMap::try_from(map).map_err(|e| DecapError::bpf(format!("map {name}"), e))?;
    let present: Vec<u32> = hash.keys().filter_map(Result::ok).collect();
    let wanted: Vec<u32> = addrs.iter().copied().map(address_key).collect();
    for key in present.iter().filter(|k| !wanted.contains(k)) {
        hash.remove(key).map_err(|e| DecapError::bpf(format!("removing from map {name}"), e))?;
    }
    for key in wanted {
        hash.insert(key, 1, 0).map_err(|e| DecapError::bpf(format!("writing map {name}"), e))?;
    }
    Ok(())
}

/// The IPv6 counterpart: keys are the 16 address bytes as in the packet.
fn set_address6_map(map: &mut Map, name: &str, addrs: &[Ipv6Addr]) -> Result<(), DecapError> {
    let mut hash: HashMap<&mut MapData, [u8; 16], u32> =
        HashMap::try_from(map).map_err(|e| DecapError::bpf(format!("map {name}"), e))?;
    let present: Vec<[u8; 16]> = hash.keys().filter_map(Result::ok).collect();
    let wanted: Vec<[u8; 16]> = addrs.iter().map(Ipv6Addr::octets).collect();
    for key in present.iter().filter(|k| !wanted.contains(k)) {
        hash.remove(key).map_err(|e| DecapError::bpf(format!("removing from map {name}"), e))?;
    }
    for key in wanted {
        hash.insert(key, 1, 0).map_err(|e| DecapError::bpf(format!("writing map {name}"), e))?;
    }
    Ok(())
}

fn read_address_map(map: &Map, name: &str) -> Result<Vec<Ipv4Addr>, DecapError> {
    let hash: HashMap<&MapData, u32, u32> = HashMap::try_from(map).map_err(|e| DecapError::bpf(format!("map {name}"), e))?;
    let mut addrs: Vec<Ipv4Addr> = hash
        .keys()
        .map(|k| k.map(|k| Ipv4Addr::from(k.to_ne_bytes())))
        .collect::<Result<_, _>>()
        .map_err(|e| DecapError::bpf(format!("reading map {name}"), e))?;
    addrs.sort();
    Ok(addrs)
}

fn read_address6_map(map: &Map, name: &str) -> Result<Vec<Ipv6Addr>, DecapError> {
    let hash: HashMap<&MapData, [u8; 16], u32> =
        HashMap::try_from(map).map_err(|e| DecapError::bpf(format!("map {name}"), e))?;
    let mut addrs: Vec<Ipv6Addr> = hash
        .keys()
        .map(|k| k.map(Ipv6Addr::from))
        .collect::<Result<_, _>>()
        .map_err(|e| DecapError::bpf(format!("reading map {name}"), e))?;
    addrs.sort();
    Ok(addrs)
}

/// Addresses split by family, for the per-family maps.
fn split(addrs: &[IpAddr]) -> (Vec<Ipv4Addr>, Vec<Ipv6Addr>) {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for addr in addrs {
        match addr {
            IpAddr::V4(a) => v4.push(*a),
            IpAddr::V6(a) => v6.push(*a),
        }
    }
    (v4, v6)
}

fn joined(v4: Vec<Ipv4Addr>, v6: Vec<Ipv6Addr>) -> Vec<IpAddr> {
    v4.into_iter().map(IpAddr::V4).chain(v6.into_iter().map(IpAddr::V6)).collect()
}

fn read_counters(map: &Map) -> Result<DecapCounters, DecapError> {
    let array: PerCpuArray<&MapData, u64> =
        PerCpuArray::try_from(map).map_err(|e| DecapError::bpf(format!("map {STATS_MAP}"), e))?;
    let mut slots = [0u64; COUNTERS as usize];
    for (slot, total) in slots.iter_mut().enumerate() {
        let values = array.get(&(slot as u32), 0).map_err(|e| DecapError::bpf(format!("reading map {STATS_MAP}"), e))?;
        *total = values.iter().sum();
    }
    Ok(DecapCounters::from_slots(&slots))
}

// Two bpf(2) commands aya does not expose for links: opening a pin as a raw fd
// and reading the XDP link's interface index.
const BPF_OBJ_GET: libc::c_long = 7;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;

fn bpf_obj_get(path: &Path) -> Result<OwnedFd, DecapError> {
    use std::os::unix::ffi::OsStrExt;
    let cpath = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| DecapError::bpf(format!("pin path {}", path.display()), "contains a NUL byte"))?;
    #[repr(C)]
    struct ObjGetAttr {
        pathname: u64,
        bpf_fd: u32,
        file_flags: u32,
        path_fd: i32,
    }
    let attr = ObjGetAttr { pathname: cpath.as_ptr() as u64, bpf_fd: 0, file_flags: 0, path_fd: 0 };
    // SAFETY: attr is a valid bpf_attr prefix for BPF_OBJ_GET; the kernel returns a new fd.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, BPF_OBJ_GET, &attr as *const ObjGetAttr, size_of::<ObjGetAttr>()) };
    if fd < 0 {
        return Err(DecapError::io(format!("opening pin {}", path.display()), std::io::Error::last_os_error()));
    }
    // SAFETY: the fd was just returned to us and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

struct XdpLinkInfo {
    prog_id: u32,
    ifindex: u32,
}

fn bpf_link_info(fd: &OwnedFd) -> std::io::Result<XdpLinkInfo> {
    // struct bpf_link_info: type, id, prog_id, then a union (8-byte aligned)
    // whose xdp member starts with ifindex.
    let mut info = [0u8; 64];
    #[repr(C)]
    struct InfoAttr {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }
    let attr = InfoAttr { bpf_fd: fd.as_raw_fd() as u32, info_len: info.len() as u32, info: info.as_mut_ptr() as u64 };
    // SAFETY: attr points at a buffer of info_len bytes that outlives the call.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, BPF_OBJ_GET_INFO_BY_FD, &attr as *const InfoAttr, size_of::<InfoAttr>()) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let word = |at: usize| u32::from_ne_bytes(info[at..at + 4].try_into().expect("4 bytes"));
    Ok(XdpLinkInfo { prog_id: word(8), ifindex: word(16) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shared_pin_directory_goes_with_the_last_namespace_pins() {
        let root = std::env::temp_dir().join(format!("tula-decap-pins-{}", std::process::id()));
        let shared = root.join(PIN_DIR);
        let (first, second) = (shared.join("1-eth0"), shared.join("2-eth0"));
        for dir in [&first, &second] {
            create_pin_dir(dir).unwrap();
            std::fs::write(dir.join(STATS_MAP), "").unwrap();
        }
        remove_pins(&first).unwrap();
        assert!(!first.exists() && second.exists(), "another namespace's pins stay");
        remove_pins(&second).unwrap();
        assert!(!shared.exists(), "the shared directory goes with the last pins");
        assert!(root.exists(), "only tula-decap itself is removed");
        std::fs::remove_dir(&root).unwrap();
    }
}
