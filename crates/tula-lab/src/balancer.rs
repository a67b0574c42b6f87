//! The lab's load balancer: the real daemon (`tula serve`) in the lb
//! namespace, with a config that puts an L3 DSR VIP (TCP, and UDP on the same
//! address), an L2 DSR VIP, an IPv6 VIP (IP6IP6) and an IPv4 VIP served over
//! IPv6 (IPv4 in IPv6) over the lab's backends; and the small XDP programs
//! the router's ends of the balancer's links need.

use crate::topology::{Topology, VIP6, VIP_L2, VIP_L3, VIP_MIXED, VIP_PORT, VIP_UDP_PORT};
use crate::LabError;
use std::net::IpAddr;
use std::path::PathBuf;

/// Passes every frame; see bpf/xdp_pass.c.
const XDP_PASS_OBJ: &[u8] = include_bytes!("../../../bpf/obj/xdp_pass.o");

/// Where the lab's (first) daemon pins its data plane.
pub fn pin_dir(topology: &Topology) -> PathBuf {
    node_pin_dir(topology, 1)
}

/// Where node `n`'s daemon pins its data plane.
pub fn node_pin_dir(topology: &Topology, n: u8) -> PathBuf {
    match n {
        1 => PathBuf::from(format!("/sys/fs/bpf/tula-lab-{}", topology.prefix)),
        n => PathBuf::from(format!("/sys/fs/bpf/tula-lab-{}-{}", topology.prefix, Topology::node_label(n))),
    }
}

fn peers_pin_dir(topology: &Topology) -> PathBuf {
    PathBuf::from(format!("/sys/fs/bpf/tula-lab-{}-peers", topology.prefix))
}

/// The daemon's config: the VIPs over the `active` backends (numbers from 1).
/// No VIP is health checked: the checks' packets would mix with the traffic
/// the demo counts on the balancer's links.
pub fn config_toml(topology: &Topology, active: &[u8]) -> String {
    config_toml_with(topology, active, NO_CHECK)
}

pub(crate) const NO_CHECK: &str = "health_check = { type = \"none\" }";

/// [`config_toml`] with `web` (TOML keys, one per line, such as `health_check
/// = { type = "tcp", interval = "500ms" }` and `all_down = "keep-last"`) as
/// the L3 TCP VIP `web`'s health check and policy; the other VIPs stay unchecked.
pub fn config_toml_with(topology: &Topology, active: &[u8], web: &str) -> String {
    node_config_toml(topology, 1, active, web)
}

/// Node `n`'s config: every node's is the same but for where it pins its
/// data plane, so every node's rings agree and a flow keeps its backend
/// whichever node the router sends it to.
pub fn node_config_toml(topology: &Topology, n: u8, active: &[u8], web: &str) -> String {
    let backends = |addr: fn(u8) -> IpAddr| {
        active.iter().map(|&i| format!("  {{ address = \"{}\" }},\n", addr(i))).collect::<String>()
    };
    let l3 = backends(|i| Topology::backend_addr(i).into());
    let l2 = backends(|i| Topology::backend_l2_addr(i).into());
    let l3_6 = backends(|i| Topology::backend_addr6(i).into());
    let mut toml = format!(
        r#"# The lab's load balancer, written by `tula lab`.
interfaces = ["eth0", "eth1"]
ring_size = 65537
conn_table_size = 65536
max_vips = 16
max_backends = 256
pin_dir = "{pin_dir}"

[api]
listen = "127.0.0.1:9100"
"#,
        pin_dir = node_pin_dir(topology, n).display(),
    );
    let vips: [(&str, IpAddr, u16, &str, &str, &str, &str); 5] = [
        ("web", VIP_L3.into(), VIP_PORT, "tcp", "l3-ipip", web, &l3),
        ("udp", VIP_L3.into(), VIP_UDP_PORT, "udp", "l3-ipip", NO_CHECK, &l3),
        ("web-l2", VIP_L2.into(), VIP_PORT, "tcp", "l2", NO_CHECK, &l2),
        ("web6", VIP6.into(), VIP_PORT, "tcp", "l3-ipip", NO_CHECK, &l3_6),
        ("web-4in6", VIP_MIXED.into(), VIP_PORT, "tcp", "l3-ipip", NO_CHECK, &l3_6),
    ];
    for (name, address, port, protocol, dsr_type, check, backends) in vips {
        toml.push_str(&format!(
            r#"
[[vip]]
name = "{name}"
address = "{address}"
port = {port}
protocol = "{protocol}"
mode = "dsr"
dsr_type = "{dsr_type}"
scheduler = "maglev"
{check}
backends = [
{backends}]
"#
        ));
    }
    toml
}

/// Puts the pass program on the router's ends of the balancer's links, pinned
/// so it stays while the lab is up: a veth drops XDP_TX and redirected frames
/// unless its peer runs an XDP program.
pub fn attach_peer_programs(topology: &Topology) -> Result<(), LabError> {
    let fail = |what: String| move |e: &dyn std::fmt::Display| LabError::Process(format!("{what}: {e}"));
    let dir = peers_pin_dir(topology);
    std::fs::create_dir_all(&dir).map_err(|e| LabError::Io(format!("creating {}", dir.display()), e))?;
    let router = tula_net::Netns::open(&topology.ns_router())?;
    router.run(|| {
        let mut ebpf = aya::Ebpf::load(XDP_PASS_OBJ).map_err(|e| fail("loading xdp_pass".into())(&e))?;
        let program: &mut aya::programs::Xdp = ebpf
            .program_mut("xdp_pass")
            .ok_or_else(|| LabError::Process("xdp_pass.o has no xdp_pass program".into()))?
            .try_into()
            .map_err(|e| fail("xdp_pass".into())(&e))?;
        program.load().map_err(|e| fail("loading xdp_pass".into())(&e))?;
        for ifname in topology.nodes().flat_map(Topology::router_node_links) {
            let ifname = ifname.as_str();
            let what = format!("attaching xdp_pass to the router's {ifname}");
            let id = program.attach(ifname, aya::programs::XdpMode::Driver).map_err(|e| fail(what.clone())(&e))?;
            let link = program.take_link(id).map_err(|e| fail(what.clone())(&e))?;
            let link: aya::programs::links::FdLink = link.try_into().map_err(|e| fail(what.clone())(&e))?;
            link.pin(dir.join(ifname)).map_err(|e| fail(what.clone())(&e))?;
        }
        Ok(())
    })?
}

/// Unpins the peer programs (detaching them, if their links still exist).
pub fn remove_peer_programs(topology: &Topology) -> Result<(), LabError> {
    let dir = peers_pin_dir(topology);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| LabError::Io(format!("removing {}", dir.display()), e))?;
    }
    Ok(())
}
