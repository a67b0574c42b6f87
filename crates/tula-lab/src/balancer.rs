//! The lab's load balancer: runs in the lb namespace, loads the XDP data plane
//! on eth0 (routed side) and eth1 (shared segment), programs an L3 DSR VIP and
//! an L2 DSR VIP over the lab's backends, and follows the lab's "active
//! backends" file so tests can add and remove backends at run time.

use crate::topology::{Topology, VIP_L2, VIP_L3, VIP_PORT};
use crate::LabError;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;
use tula_dataplane::{Backend, Dataplane, Dsr, LoadOptions, Protocol, Scheduler, VipKey, VipSpec};
use tula_maglev::{Ring, RingBackend};

/// Backend ids: L3 backend i is id i, its L2 leg is id 100 + i.
const L2_ID_BASE: u32 = 100;
/// A small ring keeps the lab light; still prime, still Maglev.
const LAB_RING_SIZE: u32 = 4093;

fn dataplane_err(e: tula_dataplane::DataplaneError) -> LabError {
    LabError::Process(format!("lab balancer: {e}"))
}

/// The active backends file: one line, generation then backend numbers.
pub(crate) fn active_path(topology: &Topology) -> std::path::PathBuf {
    topology.run_dir().join("active")
}

pub(crate) fn parse_active(text: &str) -> Option<(u64, Vec<u8>)> {
    let mut words = text.split_whitespace();
    let generation = words.next()?.parse().ok()?;
    let backends = words.map(|w| w.parse().ok()).collect::<Option<Vec<u8>>>()?;
    Some((generation, backends))
}

/// Passes every frame; see bpf/xdp_pass.c.
const XDP_PASS_OBJ: &[u8] = include_bytes!("../../../bpf/obj/xdp_pass.o");

/// Puts the pass program on the router's ends of the balancer's links: a veth
/// drops XDP_TX and redirected frames unless its peer runs an XDP program.
/// They stay attached for as long as the returned object lives.
fn attach_peer_programs(topology: &Topology) -> Result<aya::Ebpf, LabError> {
    let fail = |what: String| move |e: &dyn std::fmt::Display| LabError::Process(format!("lab balancer: {what}: {e}"));
    let router = tula_net::Netns::open(&topology.ns_router())?;
    router.run(|| {
        let mut ebpf = aya::Ebpf::load(XDP_PASS_OBJ).map_err(|e| fail("loading xdp_pass".into())(&e))?;
        let program: &mut aya::programs::Xdp = ebpf
            .program_mut("xdp_pass")
            .ok_or_else(|| LabError::Process("xdp_pass.o has no xdp_pass program".into()))?
            .try_into()
            .map_err(|e| fail("xdp_pass".into())(&e))?;
        program.load().map_err(|e| fail("loading xdp_pass".into())(&e))?;
        for ifname in [Topology::ROUTER_LB_LINK, "lb-l2"] {
            program
                .attach(ifname, aya::programs::XdpMode::Driver)
                .map_err(|e| fail(format!("attaching xdp_pass to the router's {ifname}"))(&e))?;
        }
        Ok(ebpf)
    })?
}

/// Runs until killed.
pub fn run(topology: &Topology) -> Result<(), LabError> {
    let _peer_programs = attach_peer_programs(topology)?;
    let mut dp = Dataplane::load(&LoadOptions {
        max_vips: 8,
        max_backends: 256,
        ring_size: LAB_RING_SIZE,
        conn_table_size: 65536,
        pin_dir: None,
    })
    .map_err(dataplane_err)?;
    for ifname in ["eth0", "eth1"] {
        dp.attach(ifname).map_err(dataplane_err)?;
    }
    let all: Vec<u8> = (1..=topology.backends).collect();
    program(&mut dp, topology, &all)?;
    for i in &all {
        warm_next_hop(Topology::backend_addr(*i))?;
        warm_next_hop(Topology::backend_l2_addr(*i))?;
    }
    let run_dir = topology.run_dir();
    std::fs::write(run_dir.join("lb.ready"), "ready\n")
        .map_err(|e| LabError::Io("writing lb.ready".into(), e))?;
    println!("lab balancer ready: {VIP_L3}:{VIP_PORT} (L3 DSR) and {VIP_L2}:{VIP_PORT} (L2 DSR) over {} backends", all.len());

    let mut applied = 0;
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let Some((generation, active)) = read_active(topology) else { continue };
        if generation == applied {
            continue;
        }
        program(&mut dp, topology, &active)?;
        applied = generation;
        println!("generation {generation}: active backends {active:?}");
        write_atomically(&run_dir.join("active.ack"), &format!("{generation}\n"))?;
    }
}

fn read_active(topology: &Topology) -> Option<(u64, Vec<u8>)> {
    parse_active(&std::fs::read_to_string(active_path(topology)).ok()?)
}

pub(crate) fn write_atomically(path: &Path, text: &str) -> Result<(), LabError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(|e| LabError::Io(format!("writing {}", tmp.display()), e))?;
    std::fs::rename(&tmp, path).map_err(|e| LabError::Io(format!("renaming {}", tmp.display()), e))
}

/// Programs both VIPs with `active` as their backends; the others are marked
/// not alive so their flows move.
fn program(dp: &mut Dataplane, topology: &Topology, active: &[u8]) -> Result<(), LabError> {
    for i in 1..=topology.backends {
        let alive = active.contains(&i);
        dp.set_backend(u32::from(i), &Backend { addr: Topology::backend_addr(i), alive }).map_err(dataplane_err)?;
        dp.set_backend(L2_ID_BASE + u32::from(i), &Backend { addr: Topology::backend_l2_addr(i), alive })
            .map_err(dataplane_err)?;
    }
    for (vip_id, vip, dsr, id_base, addr_of) in [
        (0, VIP_L3, Dsr::L3Ipip, 0, Topology::backend_addr as fn(u8) -> Ipv4Addr),
        (1, VIP_L2, Dsr::L2, L2_ID_BASE, Topology::backend_l2_addr as fn(u8) -> Ipv4Addr),
    ] {
        let members: Vec<RingBackend> = active
            .iter()
            .map(|&i| RingBackend { id: id_base + u32::from(i), key: addr_of(i).to_string(), weight: 1 })
            .collect();
        let ring = Ring::build(&members, LAB_RING_SIZE).map_err(|e| LabError::Process(format!("lab balancer: {e}")))?;
        let key = VipKey { addr: vip, port: VIP_PORT, protocol: Protocol::Tcp };
        dp.set_vip(&key, &VipSpec { id: vip_id, dsr, scheduler: Scheduler::Maglev }, ring.slots())
            .map_err(dataplane_err)?;
    }
    Ok(())
}

/// Keeps the neighbour entry of `backend`'s next hop resolved, so the XDP
/// path's FIB lookups find a MAC from the first packet on.
fn warm_next_hop(backend: Ipv4Addr) -> Result<(), LabError> {
    let route = tula_net::route_get(backend)?;
    tula_net::keep_neighbour_resolved(&route.dev, route.gateway.unwrap_or(backend))?;
    Ok(())
}
