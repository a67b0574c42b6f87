//! Tunnel probes: the tc egress program `bpf/probe_encap.c` and its
//! `probe_targets` map. Each tunnel-checked (VIP, backend) pair gets a slot;
//! its probe socket carries the mark [`PROBE_MARK_BASE`] | slot, and the
//! program sends that socket's packets to the VIP down the DSR path to the
//! slot's backend (encapsulated for l3-ipip: IPIP, IP6IP6 or IPv4 in IPv6 as
//! the VIP's and backend's families say; to its MAC for l2).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use aya::maps::{Array, MapData};
use aya::programs::tc::{qdisc_add_clsact, SchedClassifierLinkId, TcAttachType};
use aya::programs::SchedClassifier;
use aya::{Ebpf, Pod};
use tracing::{debug, info};

use crate::target::TunnelProbe;

/// The compiled program, built by `make bpf` from bpf/probe_encap.c.
static PROBE_ENCAP_OBJECT: &[u8] = include_bytes!("../../../bpf/obj/probe_encap.o");
const PROGRAM: &str = "probe_encap";
const MAP: &str = "probe_targets";

/// SO_MARK of tunnel probe sockets: this base in the bits of
/// [`PROBE_MARK_MASK`], the slot below. Other users of socket marks on the
/// balancer must leave this range alone.
pub const PROBE_MARK_BASE: u32 = 0x7a1a_0000;
pub const PROBE_MARK_MASK: u32 = 0xffff_0000;
/// Slots in `probe_targets`: tunnel-checked (VIP, backend) pairs at once.
const SLOTS: u32 = 1 << 16;
const PROBE_F_L2: u32 = 0x1;
const PROBE_F_VIP6: u32 = 0x2;
const PROBE_F_BACKEND6: u32 = 0x4;

/// `struct probe_target` of bpf/probe_encap.c.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct RawTarget {
    vip: u32,
    backend: u32,
    tunnel_src: u32,
    flags: u32,
    packets: u64,
    vip6: [u8; 16],
    backend6: [u8; 16],
    tunnel_src6: [u8; 16],
}

// SAFETY: plain integers and bytes, no padding (4 x u32, a u64 at offset 16, 3 x 16 bytes from 24).
unsafe impl Pod for RawTarget {}

/// Addresses as the program compares them: network byte order in memory.
fn raw(addr: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(addr.octets())
}

/// Where an address goes in the struct: its IPv4 field or its IPv6 field, and
/// whether it was IPv6.
fn split(addr: IpAddr) -> (u32, [u8; 16], bool) {
    match addr {
        IpAddr::V4(v4) => (raw(v4), [0; 16], false),
        IpAddr::V6(v6) => (0, v6.octets(), true),
    }
}

/// The loaded program, where it is attached, and the slots in use.
pub(crate) struct TunnelProbes {
    ebpf: Ebpf,
    targets: Array<MapData, RawTarget>,
    attached: BTreeMap<String, SchedClassifierLinkId>,
    slots: BTreeMap<(String, IpAddr), (u32, TunnelProbe)>,
}

impl TunnelProbes {
    /// Loads the program (needs CAP_BPF / root); attaches nothing yet.
    pub(crate) fn load() -> Result<TunnelProbes, String> {
        let mut ebpf = Ebpf::load(PROBE_ENCAP_OBJECT)
            .map_err(|e| format!("loading bpf/obj/probe_encap.o: {e}"))?;
        let program: &mut SchedClassifier = ebpf
            .program_mut(PROGRAM)
            .ok_or("probe_encap.o has no program probe_encap")?
            .try_into()
            .map_err(|e| format!("probe_encap.o program probe_encap: {e}"))?;
        program
            .load()
            .map_err(|e| format!("loading the tc program probe_encap: {e}"))?;
        let map = ebpf
            .take_map(MAP)
            .ok_or("probe_encap.o has no map probe_targets")?;
        let targets = Array::try_from(map).map_err(|e| format!("map probe_targets: {e}"))?;
        Ok(TunnelProbes {
            ebpf,
            targets,
            attached: BTreeMap::new(),
            slots: BTreeMap::new(),
        })
    }

    /// Attaches to exactly `interfaces` at tc egress (in this thread's network namespace).
    pub(crate) fn attach_to(&mut self, interfaces: &[String]) -> Result<(), String> {
        let program: &mut SchedClassifier = self
            .ebpf
            .program_mut(PROGRAM)
            .expect("checked at load")
            .try_into()
            .expect("checked at load");
        let gone: Vec<String> = self
            .attached
            .keys()
            .filter(|i| !interfaces.contains(i))
            .cloned()
            .collect();
        for ifname in gone {
            let link = self.attached.remove(&ifname).expect("listed above");
            // The interface may be gone already, and its link with it.
            if let Err(e) = program.detach(link) {
                debug!(ifname, error = %e, "detaching the tunnel probe program");
            }
        }
        for ifname in interfaces {
            if self.attached.contains_key(ifname) {
                continue;
            }
            let link = match program.attach(ifname, TcAttachType::Egress) {
                Ok(link) => link,
                // Before tcx links (Linux 6.6), tc programs need a clsact qdisc.
                Err(_) => {
                    let _ = qdisc_add_clsact(ifname);
                    program.attach(ifname, TcAttachType::Egress).map_err(|e| {
                        format!("attaching the tunnel probe program to {ifname} (tc egress): {e}")
                    })?
                }
            };
            info!(ifname, "tunnel probes: attached probe_encap at tc egress");
            self.attached.insert(ifname.clone(), link);
        }
        Ok(())
    }

    /// Makes the slots exactly `wanted`: a pair keeps its slot, new pairs
    /// take free ones, and the slots of pairs no longer wanted are cleared.
    /// Returns each pair's mark.
    pub(crate) fn set_targets(
        &mut self,
        wanted: &[((String, IpAddr), TunnelProbe)],
    ) -> Result<BTreeMap<(String, IpAddr), u32>, String> {
        let keep: BTreeMap<&(String, IpAddr), &TunnelProbe> =
            wanted.iter().map(|(k, p)| (k, p)).collect();
        let gone: Vec<(String, IpAddr)> = self
            .slots
            .keys()
            .filter(|k| !keep.contains_key(k))
            .cloned()
            .collect();
        for key in gone {
            let (slot, _) = self.slots.remove(&key).expect("listed above");
            self.write(slot, RawTarget::default())?;
        }
        let mut used: Vec<bool> = vec![false; SLOTS as usize];
        for (slot, _) in self.slots.values() {
            used[*slot as usize] = true;
        }
        let mut free = (0..SLOTS).filter(|s| !used[*s as usize]);
        let mut marks = BTreeMap::new();
        for (key, probe) in wanted {
            let slot = match self.slots.get(key) {
                Some((slot, held)) if held == probe => *slot,
                Some((slot, _)) => {
                    let slot = *slot;
                    self.write(slot, raw_target(probe))?;
                    self.slots.insert(key.clone(), (slot, probe.clone()));
                    slot
                }
                None => {
                    let slot = free.next().ok_or_else(|| {
                        format!(
                            "more than {SLOTS} tunnel-checked backends; {}/{} is not checked",
                            key.0, key.1
                        )
                    })?;
                    self.write(slot, raw_target(probe))?;
                    self.slots.insert(key.clone(), (slot, probe.clone()));
                    slot
                }
            };
            marks.insert(key.clone(), PROBE_MARK_BASE | slot);
        }
        Ok(marks)
    }

    /// Packets of probes with `mark` that the program sent down the tunnel so far.
    pub(crate) fn packets(&self, mark: u32) -> Result<u64, String> {
        let slot = mark & !PROBE_MARK_MASK;
        self.targets
            .get(&slot, 0)
            .map(|t| t.packets)
            .map_err(|e| format!("reading probe_targets[{slot}]: {e}"))
    }

    fn write(&mut self, slot: u32, target: RawTarget) -> Result<(), String> {
        self.targets
            .set(slot, target, 0)
            .map_err(|e| format!("writing probe_targets[{slot}]: {e}"))
    }
}

fn raw_target(probe: &TunnelProbe) -> RawTarget {
    let (vip, vip6, vip_is_6) = split(probe.vip.ip());
    let (backend, backend6, backend_is_6) = split(probe.backend);
    let unspecified = if backend_is_6 { Ipv6Addr::UNSPECIFIED.into() } else { Ipv4Addr::UNSPECIFIED.into() };
    let (tunnel_src, tunnel_src6, _) = split(probe.tunnel_src.unwrap_or(unspecified));
    let flag = |set: bool, flag: u32| if set { flag } else { 0 };
    RawTarget {
        vip,
        backend,
        tunnel_src,
        flags: flag(probe.l2, PROBE_F_L2) | flag(vip_is_6, PROBE_F_VIP6) | flag(backend_is_6, PROBE_F_BACKEND6),
        packets: 0,
        vip6,
        backend6,
        tunnel_src6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_raw_target_matches_the_c_struct() {
        assert_eq!(std::mem::size_of::<RawTarget>(), 72);
        assert_eq!(std::mem::offset_of!(RawTarget, packets), 16);
        assert_eq!(std::mem::offset_of!(RawTarget, vip6), 24);
        assert_eq!(std::mem::offset_of!(RawTarget, tunnel_src6), 56);
        assert_eq!(
            raw(Ipv4Addr::new(203, 0, 113, 10)).to_ne_bytes(),
            [203, 0, 113, 10]
        );
    }
}
