//! The checks that read this host's kernel: each interface's XDP mode and
//! veth peer, the sysctls the balancer needs, bpffs and the pins, a route
//! (and, when running, a resolved neighbour) toward each backend, and the
//! tunnel MTU each egress interface leaves. All act in the calling thread's
//! network namespace.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use tula_config::{Config, DsrType};
use tula_net::{LinkXdpState, XdpMode};

use crate::{Finding, Stage, Verdict};

/// The outer IPv4 header of L3 DSR.
const IPIP_HEADER: u32 = 20;
/// Below this tunnel MTU a full-size IPv6-minimum packet no longer fits.
const MIN_TUNNEL_MTU: u32 = 1280;
const BPFFS_ROOT: &str = "/sys/fs/bpf";

/// Every host check for `config`, interfaces first, in a stable order.
pub fn host_checks(config: &Config, stage: Stage) -> Vec<Finding> {
    let mut findings = Vec::new();
    for ifname in &config.interfaces {
        interface_checks(ifname, stage, &mut findings);
    }
    bpffs_checks(config, stage, &mut findings);
    ipv6_forwarding_check(config, &mut findings);
    backend_checks(config, stage, &mut findings);
    findings
}

/// With IPv6 backends, the kernel must forward IPv6: what the balancer hands
/// it (a next hop without an ND entry yet) is forwarded only with the global
/// switch on; a per-interface `forwarding` does not forward IPv6.
fn ipv6_forwarding_check(config: &Config, findings: &mut Vec<Finding>) {
    let ipv6 = config.vips.iter().flat_map(|v| v.backends.iter().map(|b| b.address)).any(|a| a.is_ipv6());
    if !ipv6 {
        return;
    }
    const KEY: &str = "net.ipv6.conf.all.forwarding";
    let value = tula_net::sysctl::read(KEY).unwrap_or_else(|e| e.to_string());
    findings.push(if value == "1" {
        Finding::pass("sysctl", "ipv6", format!("{KEY} = 1"))
    } else {
        Finding::with(
            Verdict::Fail,
            "sysctl",
            "ipv6",
            format!(
                "{KEY} = {value}: packets to IPv6 backends whose next hop has no neighbour entry yet are handed to \
                 the kernel, which drops them instead of forwarding them and resolving the neighbour"
            ),
            format!(
                "sysctl -w {KEY}=1 and persist it in /etc/sysctl.d (it stops router advertisements being accepted: \
                 set net.ipv6.conf.IF.accept_ra=2 where the host learns its route from them)"
            ),
        )
    });
}

/// The veth black hole on `ifname`, as a warning the daemon logs at attach:
/// `None` when the interface is not a veth or its peer runs XDP.
pub fn veth_black_hole(ifname: &str) -> Option<String> {
    let state = tula_net::link_xdp(ifname).ok()?;
    state.xdp_tx_black_hole().then(|| black_hole_text(&state))
}

/// `ifname`'s XDP mode, veth peer and warnings, as `GET /api/interfaces` reports them.
pub fn interface_status(ifname: &str) -> tula_client::InterfaceStatus {
    let state = match tula_net::link_xdp(ifname) {
        Ok(state) => state,
        Err(e) => {
            return tula_client::InterfaceStatus {
                name: ifname.to_string(),
                xdp_mode: "missing".into(),
                veth_peer: None,
                warnings: vec![e.to_string()],
            }
        }
    };
    let mut warnings = Vec::new();
    match state.xdp {
        XdpMode::Native if state.xdp_tx_black_hole() => warnings.push(black_hole_text(&state)),
        XdpMode::Generic => warnings.push(format!(
            "{ifname} runs the balancer in generic (skb) mode, several times slower than native"
        )),
        XdpMode::None => warnings.push(format!("no XDP program is attached to {ifname}")),
        _ => {}
    }
    tula_client::InterfaceStatus {
        name: state.name.clone(),
        xdp_mode: state.xdp.name().to_string(),
        veth_peer: state.peer.as_ref().map(|peer| tula_client::VethPeerStatus {
            name: peer.name.clone(),
            netnsid: peer.netnsid,
            xdp_mode: peer.xdp.map(|m| m.name().to_string()),
        }),
        warnings,
    }
}

fn peer_text(state: &LinkXdpState) -> String {
    let Some(peer) = &state.peer else {
        return String::new();
    };
    let name = peer
        .name
        .clone()
        .unwrap_or_else(|| format!("interface {}", peer.index));
    match peer.netnsid {
        Some(id) => format!("{name} (in the namespace with id {id})"),
        None => name,
    }
}

fn black_hole_text(state: &LinkXdpState) -> String {
    format!(
        "{} is a veth whose peer {} runs no XDP program: every frame the balancer sends back out with XDP_TX is dropped while the tx counters grow",
        state.name,
        peer_text(state)
    )
}

fn black_hole_fix(state: &LinkXdpState) -> String {
    let peer = state
        .peer
        .as_ref()
        .and_then(|p| p.name.clone())
        .unwrap_or_else(|| "the peer".into());
    format!("attach any XDP program that returns XDP_PASS to {peer}, in its namespace (e.g. `ip link set dev {peer} xdp obj xdp_pass.o sec xdp`; see docs/OPERATIONS.md, \"veth\")")
}

fn interface_checks(ifname: &str, stage: Stage, findings: &mut Vec<Finding>) {
    let state = match tula_net::link_xdp(ifname) {
        Ok(state) => state,
        // Offline, validation already reports a missing interface with its path.
        Err(_) if stage == Stage::Offline => return,
        Err(e) => {
            findings.push(Finding::with(
                Verdict::Fail,
                "interface",
                ifname,
                e.to_string(),
                "create the interface or remove it from `interfaces`, then apply again",
            ));
            return;
        }
    };
    let native = match stage {
        Stage::Offline => xdp_support(&state, findings),
        Stage::Running => xdp_mode(&state, findings),
    };
    if native && state.peer.is_some() {
        findings.push(if state.xdp_tx_black_hole() {
            Finding::with(
                Verdict::Fail,
                "veth-peer",
                ifname,
                black_hole_text(&state),
                black_hole_fix(&state),
            )
        } else if state.peer.as_ref().is_some_and(|p| p.xdp.is_none()) {
            Finding::with(
                Verdict::Warn,
                "veth-peer",
                ifname,
                format!("cannot see the peer {} of this veth", peer_text(&state)),
                "make sure the peer runs an XDP program, or XDP_TX frames vanish",
            )
        } else {
            Finding::pass(
                "veth-peer",
                ifname,
                format!(
                    "its peer {} runs XDP, so XDP_TX frames arrive",
                    peer_text(&state)
                ),
            )
        });
    }
    for setting in ["forwarding", "accept_local"] {
        let key = tula_net::sysctl::conf_key(ifname, setting);
        let value = tula_net::sysctl::read(&key).unwrap_or_else(|e| e.to_string());
        findings.push(match (value.as_str(), stage) {
            ("1", _) => Finding::pass("sysctl", ifname, format!("{key} = 1")),
            (_, Stage::Offline) => Finding::with(
                Verdict::Warn,
                "sysctl",
                ifname,
                format!("{key} = {value}"),
                "tula serve sets it to 1 when it attaches (and leaves it on)",
            ),
            (_, Stage::Running) => Finding::with(
                Verdict::Fail,
                "sysctl",
                ifname,
                format!("{key} = {value}: the kernel drops what the balancer hands it"),
                format!("sysctl -w {key}=1 (something turned it off after tula serve attached)"),
            ),
        });
    }
}

/// Offline: whether the driver can run XDP natively. True when it can (or may).
fn xdp_support(state: &LinkXdpState, findings: &mut Vec<Finding>) -> bool {
    let ifname = &state.name;
    let finding = match (state.xdp, tula_net::native_xdp_supported(state.index)) {
        (XdpMode::Native, _) => Finding::pass(
            "xdp-mode",
            ifname,
            "an XDP program already runs natively here",
        ),
        (_, Some(true)) => Finding::pass("xdp-mode", ifname, "its driver supports native XDP"),
        (_, Some(false)) => {
            findings.push(Finding::with(
                Verdict::Warn,
                "xdp-mode",
                ifname,
                "its driver declares no native XDP: tula serve will attach in generic mode, several times slower",
                "use an interface whose driver has native XDP (virtio_net, veth, mlx5, i40e, ice, ixgbe, ...)",
            ));
            return false;
        }
        (_, None) => Finding::with(
            Verdict::Warn,
            "xdp-mode",
            ifname,
            "the kernel does not say whether its driver has native XDP (Linux 6.3+ does)",
            "after starting tula serve, `tula doctor` shows the mode it got",
        ),
    };
    findings.push(finding);
    true
}

/// Running: the mode the balancer got. True when native.
fn xdp_mode(state: &LinkXdpState, findings: &mut Vec<Finding>) -> bool {
    let ifname = &state.name;
    findings.push(match state.xdp {
        XdpMode::Native => Finding::pass(
            "xdp-mode",
            ifname,
            "the balancer runs in native (driver) mode",
        ),
        XdpMode::Generic => Finding::with(
            Verdict::Fail,
            "xdp-mode",
            ifname,
            "the balancer runs in generic (skb) mode, several times slower than native",
            "use an interface whose driver has native XDP (the daemon log says why native failed)",
        ),
        XdpMode::None => Finding::with(
            Verdict::Fail,
            "xdp-mode",
            ifname,
            "no XDP program is attached: nothing is balanced on this interface",
            "start tula serve (or apply a config listing this interface); see its log",
        ),
        other => Finding::with(
            Verdict::Warn,
            "xdp-mode",
            ifname,
            format!("XDP is attached in {} mode", other.name()),
            "detach other XDP programs from this interface",
        ),
    });
    state.xdp == XdpMode::Native
}

fn bpffs_checks(config: &Config, stage: Stage, findings: &mut Vec<Finding>) {
    let dir = &config.pin_dir;
    let subject = dir.display().to_string();
    let under_root = dir.starts_with(BPFFS_ROOT);
    let existing = dir
        .ancestors()
        .find(|a| a.exists())
        .unwrap_or(Path::new("/"));
    let on_bpffs = tula_dataplane::is_bpffs(existing).unwrap_or(false);
    if !on_bpffs {
        findings.push(if under_root && stage == Stage::Offline {
            Finding::with(
                Verdict::Warn,
                "bpffs",
                subject,
                format!("bpffs is not mounted on {BPFFS_ROOT}"),
                format!("tula serve mounts it; to have it at boot: `bpffs {BPFFS_ROOT} bpf defaults 0 0` in /etc/fstab"),
            )
        } else {
            Finding::with(
                Verdict::Fail,
                "bpffs",
                subject,
                format!("pin_dir is not on a bpffs ({} is not one)", existing.display()),
                format!("set pin_dir under {BPFFS_ROOT}, or `mount -t bpf bpf DIR` above it"),
            )
        });
        return;
    }
    findings.push(Finding::pass("bpffs", &subject, "pin_dir is on a bpffs"));
    if stage == Stage::Offline {
        return;
    }
    let mut problems = Vec::new();
    match std::fs::metadata(dir) {
        Err(e) => problems.push(format!("cannot read it ({e})")),
        Ok(meta) => {
            if meta.uid() != 0 {
                problems.push(format!("owned by uid {}, not root", meta.uid()));
            }
            if meta.mode() & 0o022 != 0 {
                problems.push(format!(
                    "writable by others (mode {:o})",
                    meta.mode() & 0o777
                ));
            }
        }
    }
    let mut pins = vec![tula_dataplane::PROGRAM_PIN.to_string()];
    pins.extend(config.interfaces.iter().map(|i| format!("link_{i}")));
    for pin in pins {
        if !dir.join(&pin).exists() {
            problems.push(format!("{pin} is not pinned"));
        }
    }
    findings.push(if problems.is_empty() {
        Finding::pass(
            "pins",
            subject,
            "owned by root, the program and every interface's link pinned",
        )
    } else {
        Finding::with(
            Verdict::Fail,
            "pins",
            subject,
            problems.join("; "),
            "only root may write pin_dir (chown root, chmod go-w); restart tula serve to pin again",
        )
    });
}

/// The route (and, running, the next hop's neighbour entry) toward every
/// backend, and one MTU finding per interface backends are reached by.
fn backend_checks(config: &Config, stage: Stage, findings: &mut Vec<Finding>) {
    let mut l3_devices: BTreeMap<String, u32> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for vip in &config.vips {
        let addresses = vip
            .backends
            .iter()
            .map(|b| b.address)
            .chain(vip.sorry_backend);
        for address in addresses {
            let IpAddr::V4(v4) = address else { continue };
            if !seen.insert(v4) {
                continue;
            }
            let Some(route) = route_finding(v4, stage, findings) else {
                continue;
            };
            if vip.dsr_type == DsrType::L3Ipip {
                if let Ok(link) = tula_net::link(&route.dev) {
                    l3_devices.insert(route.dev.clone(), link.mtu);
                }
            }
        }
    }
    for (dev, mtu) in l3_devices {
        let path_mtu = config
            .path_mtu
            .get(&dev)
            .map(|m| u32::from(*m))
            .unwrap_or(mtu)
            .min(mtu);
        let tunnel = path_mtu.saturating_sub(IPIP_HEADER);
        findings.push(if tunnel < MIN_TUNNEL_MTU {
            Finding::with(
                Verdict::Fail,
                "mtu",
                &dev,
                format!("MTU {path_mtu} leaves a tunnel MTU of {tunnel}, below {MIN_TUNNEL_MTU}: clients' full-size packets must be fragmented or answered with ICMP"),
                format!("raise the MTU of {dev} and the path beyond it to at least {}", MIN_TUNNEL_MTU + IPIP_HEADER),
            )
        } else {
            Finding::pass(
                "mtu",
                &dev,
                format!(
                    "MTU {path_mtu}: tunnel MTU {tunnel}; clamp the backends' MSS to {} (`tula decap setup --mss-clamp={}`)",
                    tunnel - 40,
                    tunnel - 40
                ),
            )
        });
    }
}

fn route_finding(
    backend: Ipv4Addr,
    stage: Stage,
    findings: &mut Vec<Finding>,
) -> Option<tula_net::RouteInfo> {
    let subject = backend.to_string();
    let route = match tula_net::route_get(backend) {
        Ok(route) => route,
        Err(e) => {
            findings.push(Finding::with(
                Verdict::Fail,
                "route",
                subject,
                format!("no route to this backend ({e})"),
                format!("add a route toward {backend} (ip route add {backend}/32 via GATEWAY)"),
            ));
            return None;
        }
    };
    let next_hop = route.gateway.unwrap_or(backend);
    let via = match route.gateway {
        Some(gateway) => format!("via {gateway} dev {}", route.dev),
        None => format!("dev {}", route.dev),
    };
    if stage == Stage::Offline {
        findings.push(Finding::pass("route", subject, via));
        return Some(route);
    }
    let state = tula_net::neighbour_state(route.index, next_hop).unwrap_or_default();
    findings.push(match state.as_deref() {
        Some("reachable" | "permanent" | "noarp" | "stale" | "delay" | "probe") => Finding::pass(
            "neighbour",
            subject,
            format!(
                "{via}; next hop {next_hop} is {}",
                state.unwrap_or_default()
            ),
        ),
        Some(other) => Finding::with(
            Verdict::Fail,
            "neighbour",
            subject,
            format!("{via}; next hop {next_hop} is {other}: it does not answer ARP"),
            format!(
                "check that {next_hop} is up and on {}'s segment (`ip neigh show {next_hop}`)",
                route.dev
            ),
        ),
        None => Finding::with(
            Verdict::Warn,
            "neighbour",
            subject,
            format!("{via}; no neighbour entry for next hop {next_hop} yet"),
            "the daemon asks the kernel to resolve it; if it stays missing, check the segment",
        ),
    });
    Some(route)
}
