//! Shared fixtures for the Control tests: a private network namespace with a
//! veth the balancer attaches to, a unique bpffs pin directory and state
//! directory (all removed afterwards, whatever happens), configs in the test
//! topology, and reads of what the data plane holds.
//!
//! Topology inside the namespace (one per test):
//!   lb0 (198.18.0.1/24) <-veth-> nh0
//!   198.18.0.2           next-hop router, permanent neighbour NEXT_HOP_MAC
//!   198.18.0.10..        on-link addresses (L2 DSR backends)
//!   198.18.100.0/24      via 198.18.0.2 (L3 DSR backends)

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;

use tula_control::{Control, ControlOptions};
use tula_dataplane::{Backend, Dataplane, Flow, VipKey, VipSpec, XdpAction};
use tula_net::Netns;

pub const LB_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const NEXT_HOP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
pub const NEXT_HOP_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x02];
pub const CLIENT_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0xc1];

/// Routed backend `n` in 198.18.100.0/24.
pub fn routed(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 100, n)
}

/// A test's namespace, pin directory and state directory.
pub struct Lab {
    pub ns: Netns,
    pub pin_dir: PathBuf,
    pub state: PathBuf,
}

impl Lab {
    /// Namespace `tc-<name>-<pid>` with the topology above, pin directory
    /// `/sys/fs/bpf/tula-test-<name>-<pid>`, state under the temp directory.
    pub fn new(name: &str) -> Lab {
        let pid = std::process::id();
        let ns = Netns::create(&format!("tc-{name}-{pid}")).expect("creating the test namespace");
        let lab = Lab {
            ns,
            pin_dir: PathBuf::from(format!("/sys/fs/bpf/tula-test-{name}-{pid}")),
            state: std::env::temp_dir().join(format!("tula-control-test-{name}-{pid}")),
        };
        let _ = std::fs::remove_dir_all(&lab.pin_dir);
        let _ = std::fs::remove_dir_all(&lab.state);
        lab.run(build_topology);
        lab
    }

    /// Runs `f` on a thread inside the namespace.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        self.ns.run(f).expect("entering the test namespace")
    }

    pub fn options(&self) -> ControlOptions {
        ControlOptions {
            config_path: self.state.join("etc/tula.toml"),
            state_dir: self.state.join("lib"),
        }
    }

    /// `Control::start` inside the namespace.
    pub fn start(&self) -> Control {
        self.run(|| Control::start(self.options()))
            .expect("starting Control")
    }

    /// A config for this lab: lb0, small maps, this test's pin directory, then `vips` (TOML `[[vip]]` tables).
    pub fn config(&self, vips: &str) -> tula_config::Config {
        self.config_with("", vips)
    }

    /// Like [`Lab::config`], with extra global keys (which override the small sizes).
    pub fn config_with(&self, globals: &str, vips: &str) -> tula_config::Config {
        tula_config::Config::from_toml_str(&self.config_text(globals, vips))
            .expect("test config decodes")
    }

    pub fn config_text(&self, globals: &str, vips: &str) -> String {
        let mut sizes = String::new();
        for (key, value) in [
            ("ring_size", "4093"),
            ("conn_table_size", "4096"),
            ("max_vips", "16"),
            ("max_backends", "256"),
        ] {
            if !globals.contains(key) {
                sizes.push_str(&format!("{key} = {value}\n"));
            }
        }
        format!(
            "interfaces = [\"lb0\"]\npin_dir = \"{}\"\n{sizes}{globals}\n{vips}",
            self.pin_dir.display()
        )
    }

    /// A second handle on the pinned data plane, to read what it holds.
    pub fn dataplane(&self) -> Dataplane {
        Dataplane::open_pinned(&self.pin_dir).expect("opening the pinned data plane")
    }

    pub fn pinned(&self) -> bool {
        self.pin_dir.join("balancer").exists()
    }

    /// Everything the data plane holds that Control programs.
    pub fn snapshot(&self) -> Snapshot {
        let dataplane = self.dataplane();
        let mut vips = BTreeMap::new();
        for (key, spec) in dataplane.vips().unwrap() {
            let (ring_index, slots) = dataplane
                .vip_ring(&key)
                .unwrap()
                .expect("the VIP has a ring");
            vips.insert(
                key,
                HeldVip {
                    spec,
                    ring_index,
                    slots,
                },
            );
        }
        let mut backends = BTreeMap::new();
        for id in 0..dataplane.max_backends() {
            if let Some(backend) = dataplane.backend(id).unwrap() {
                backends.insert(id, backend);
            }
        }
        Snapshot {
            attached: dataplane.attached(),
            vips,
            backends,
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Removing the pins (links included) unloads whatever the test left loaded.
        let _ = std::fs::remove_dir_all(&self.pin_dir);
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

fn build_topology() {
    tula_net::add_veth("lb0", "nh0", None).unwrap();
    tula_net::set_up("lb0").unwrap();
    tula_net::set_up("nh0").unwrap();
    tula_net::add_address("lb0", LB_ADDR.into(), 24).unwrap();
    tula_net::add_neighbour("lb0", NEXT_HOP, NEXT_HOP_MAC).unwrap();
    tula_net::add_route(Ipv4Addr::new(198, 18, 100, 0), 24, Some(NEXT_HOP), None).unwrap();
}

/// What the data plane holds. Compare with [`Snapshot::assert_same`] (short messages).
#[derive(Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub attached: Vec<String>,
    pub vips: BTreeMap<VipKey, HeldVip>,
    pub backends: BTreeMap<u32, Backend>,
}

#[derive(Clone, PartialEq, Eq)]
pub struct HeldVip {
    pub spec: VipSpec,
    pub ring_index: u32,
    pub slots: Vec<u32>,
}

/// How closely two snapshots must agree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Same {
    /// Everything, ring indices included (nothing was rewritten).
    Exactly,
    /// Everything but ring indices (a rewritten ring moves to a free index even with equal slots).
    Contents,
    /// The same VIPs, rings and backends by address, whatever their ids.
    ByAddress,
}

impl Snapshot {
    /// What differs from `other` at level `same`, one short line per difference.
    pub fn differences(&self, other: &Snapshot, same: Same) -> Vec<String> {
        let mut found = Vec::new();
        if self.attached != other.attached {
            found.push(format!(
                "attached {:?} vs {:?}",
                self.attached, other.attached
            ));
        }
        let keys: std::collections::BTreeSet<&VipKey> =
            self.vips.keys().chain(other.vips.keys()).collect();
        for key in keys {
            let (Some(a), Some(b)) = (self.vips.get(key), other.vips.get(key)) else {
                found.push(format!("VIP {key} only on one side"));
                continue;
            };
            let spec_differs = match same {
                Same::ByAddress => (a.spec.dsr, a.spec.scheduler) != (b.spec.dsr, b.spec.scheduler),
                _ => a.spec != b.spec,
            };
            if spec_differs {
                found.push(format!("VIP {key}: spec {:?} vs {:?}", a.spec, b.spec));
            }
            if same == Same::Exactly && a.ring_index != b.ring_index {
                found.push(format!(
                    "VIP {key}: ring index {} vs {}",
                    a.ring_index, b.ring_index
                ));
            }
            let slots = |s: &Snapshot, v: &HeldVip| -> Vec<Option<std::net::IpAddr>> {
                match same {
                    Same::ByAddress => v
                        .slots
                        .iter()
                        .map(|id| s.backends.get(id).map(|b| b.addr))
                        .collect(),
                    _ => v.slots.iter().map(|&id| Some(Ipv4Addr::from(id).into())).collect(),
                }
            };
            let moved = changed_len(&slots(self, a), &slots(other, b));
            if moved > 0 {
                found.push(format!(
                    "VIP {key}: {moved} of {} ring slots differ",
                    a.slots.len()
                ));
            }
        }
        let backends = |s: &Snapshot| -> Vec<String> {
            let mut list: Vec<String> = s
                .backends
                .iter()
                .map(|(id, b)| match same {
                    Same::ByAddress => format!("{} alive={}", b.addr, b.alive),
                    _ => format!("{id}: {} alive={}", b.addr, b.alive),
                })
                .collect();
            list.sort();
            list
        };
        if backends(self) != backends(other) {
            found.push(format!(
                "backends {:?} vs {:?}",
                backends(self),
                backends(other)
            ));
        }
        found
    }

    /// Panics with the differences if `self` and `other` differ at level `same`.
    pub fn assert_same(&self, other: &Snapshot, same: Same, what: &str) {
        let differences = self.differences(other, same);
        assert!(differences.is_empty(), "{what}: {differences:#?}");
    }

    /// The id of the backend with address `addr` (addresses are unique in these tests).
    pub fn id_of(&self, addr: Ipv4Addr) -> u32 {
        let ids: Vec<u32> = self
            .backends
            .iter()
            .filter(|(_, b)| b.addr == addr)
            .map(|(id, _)| *id)
            .collect();
        assert_eq!(ids.len(), 1, "backend {addr}: ids {ids:?}");
        ids[0]
    }

    pub fn vip(&self, addr: Ipv4Addr, port: u16) -> &HeldVip {
        self.vips
            .iter()
            .find(|(k, _)| k.addr == addr && k.port == port)
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("no VIP {addr}:{port} in the data plane"))
    }
}

/// Slots held by backend `id` in `slots`.
pub fn share(slots: &[u32], id: u32) -> usize {
    slots.iter().filter(|&&s| s == id).count()
}

fn changed_len<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    a.iter().zip(b).filter(|(x, y)| x != y).count() + a.len().abs_diff(b.len())
}

/// Slots that differ between two rings.
pub fn changed(before: &[u32], after: &[u32]) -> Vec<usize> {
    assert_eq!(before.len(), after.len());
    (0..before.len())
        .filter(|&i| before[i] != after[i])
        .collect()
}

/// A client TCP SYN from `client` to `vip`, arriving at lb0 (MAC `lb_mac`).
pub fn syn(lb_mac: [u8; 6], client: SocketAddrV4, vip: SocketAddrV4) -> Vec<u8> {
    let mut frame = Vec::new();
    etherparse::PacketBuilder::ethernet2(CLIENT_MAC, lb_mac)
        .ipv4(client.ip().octets(), vip.ip().octets(), 61)
        .tcp(client.port(), vip.port(), 1000, 64_000)
        .syn()
        .write_to_vec(&mut frame, b"hello")
        .unwrap();
    frame
}

/// The handshake's ACK from `client` to `vip`: the connection's second packet.
pub fn ack(lb_mac: [u8; 6], client: SocketAddrV4, vip: SocketAddrV4) -> Vec<u8> {
    let mut frame = Vec::new();
    etherparse::PacketBuilder::ethernet2(CLIENT_MAC, lb_mac)
        .ipv4(client.ip().octets(), vip.ip().octets(), 61)
        .tcp(client.port(), vip.port(), 1001, 64_000)
        .ack(1)
        .write_to_vec(&mut frame, &[])
        .unwrap();
    frame
}

/// Opens a connection from `client` to `vip` through the balancer (call
/// inside the namespace): its SYN, then the handshake's ACK, which moves the
/// SYN from this CPU's SYN table into the connection table. Returns the
/// backend both IPIP packets went to.
pub fn send(dataplane: &Dataplane, client: SocketAddrV4, vip: SocketAddrV4) -> Ipv4Addr {
    let lb0 = tula_net::link("lb0").unwrap();
    // The SYN waits in the SYN table of the CPU that ran it: keep both on one CPU, as RSS does.
    tula_dataplane::stay_on_this_cpu();
    let to = |frame: &[u8], what: &str| {
        let (action, out) = dataplane.test_run(frame, Some(lb0.index)).unwrap();
        assert_eq!(
            action,
            XdpAction::Tx,
            "{what} from {client} to {vip} was not forwarded; counters:\n{}",
            dataplane.counters().unwrap()
        );
        Ipv4Addr::new(out[30], out[31], out[32], out[33])
    };
    let backend = to(&syn(lb0.mac, client, vip), "a SYN");
    assert_eq!(to(&ack(lb0.mac, client, vip), "an ACK"), backend, "the ACK did not follow the SYN");
    backend
}

/// The connection table, sorted.
pub fn conns(dataplane: &Dataplane) -> Vec<(Flow, u32, u32)> {
    let mut conns: Vec<(Flow, u32, u32)> = dataplane
        .conns()
        .unwrap()
        .into_iter()
        .map(|(f, c)| (f, c.backend, c.vip))
        .collect();
    conns.sort_by_key(|(f, _, _)| (*f.client.ip(), f.client.port(), *f.vip.ip(), f.vip.port()));
    conns
}

/// Whether `ip link` shows an XDP program on `ifname` (call inside the namespace).
pub fn xdp_attached(ifname: &str) -> bool {
    let out = std::process::Command::new("ip")
        .args(["-d", "link", "show", ifname])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).contains("prog/xdp")
}
