//! Per-VIP and per-backend status: the config's fields, traffic from the data
//! plane's per-CPU counters (of the VIPs asked for only), flows from the
//! latest sample of the connection table (`flows`), and the MTU the path to
//! each VIP's backends allows.

use std::collections::HashMap;
use std::net::IpAddr;

use tula_config::{Config, DsrType, Vip};
use tula_dataplane::{Dataplane, DataplaneError, Traffic};

use crate::flows::FlowSample;
use crate::health::Health;
use crate::ids::Ids;
use crate::plan::ring_members;
use crate::{BackendStatus, VipStatus};

/// What a status read takes from the data plane besides the flow sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapReads {
    /// Packets and bytes per VIP and backend, and each VIP's path MTU.
    Traffic,
    /// Nothing: config, health and flows only (cheap for every VIP at once).
    None,
}

pub(crate) struct Sources<'a> {
    pub config: &'a Config,
    pub ids: &'a Ids,
    pub health: &'a Health,
    pub flows: &'a FlowSample,
    /// The active-flow window in force (the sample's, or before the first one, the one set).
    pub window: std::time::Duration,
    pub dataplane: Option<&'a Dataplane>,
}

pub(crate) fn status(
    sources: &Sources,
    keep: impl Fn(&Vip) -> bool,
    reads: MapReads,
) -> Result<Vec<VipStatus>, DataplaneError> {
    let Sources { config, ids, health, flows, .. } = *sources;
    let dataplane = sources.dataplane.filter(|_| reads == MapReads::Traffic);
    let traffic = |id: Option<u32>,
                   read: fn(&Dataplane, u32) -> tula_dataplane::Result<Traffic>|
     -> Result<Traffic, DataplaneError> {
        match (dataplane, id) {
            (Some(dataplane), Some(id)) => read(dataplane, id),
            _ => Ok(Traffic::default()),
        }
    };
    let mut path_mtus = HashMap::new();
    let mut vips = Vec::new();
    for vip in config.vips.iter().filter(|v| keep(v)) {
        let vip_id = ids.vip(&vip.name);
        let vip_traffic = traffic(vip_id, Dataplane::vip_traffic)?;
        let mut backends = Vec::with_capacity(vip.backends.len());
        for backend in &vip.backends {
            let id = ids.backend(&vip.name, &backend.address);
            let backend_traffic = traffic(id, Dataplane::backend_traffic)?;
            let seen = flows.backend(&vip.name, backend.address);
            backends.push(BackendStatus {
                address: backend.address,
                weight: backend.weight,
                state: backend.state,
                healthy: health.is_up(&vip.name, backend.address),
                active_flows: seen.active,
                table_entries: seen.entries,
                last_flow_seen: seen.last_seen,
                packets: backend_traffic.packets,
                bytes: backend_traffic.bytes,
            });
        }
        let path_mtu = match dataplane {
            Some(dataplane) => vip_path_mtu(vip, dataplane, &mut path_mtus)?,
            None => None,
        };
        let tunnel_mtu = path_mtu.map(|mtu| match vip.dsr_type {
            DsrType::L3Ipip => mtu.saturating_sub(IPIP_HEADER),
            DsrType::L2 => mtu,
        });
        vips.push(VipStatus {
            name: vip.name.clone(),
            address: vip.address,
            port: vip.port,
            protocol: vip.protocol,
            dsr_type: vip.dsr_type,
            scheduler: vip.scheduler,
            packets: vip_traffic.packets,
            bytes: vip_traffic.bytes,
            active_flows: backends.iter().map(|b| b.active_flows).sum(),
            table_entries: backends.iter().map(|b| b.table_entries).sum(),
            active_window_s: sources.window.as_secs(),
            flows_sampled_at: flows.taken_at,
            new_flows: ring_members(vip, health).0,
            icmp_echo: vip.icmp_echo,
            tunnel_mtu,
            mss: tunnel_mtu.map(|mtu| mtu.saturating_sub(IPV4_TCP_HEADERS)),
            backends,
        });
    }
    Ok(vips)
}

/// The outer IPv4 header of L3 DSR.
const IPIP_HEADER: u16 = 20;
/// IPv4 and TCP headers without options: what an MSS leaves out of an MTU.
const IPV4_TCP_HEADERS: u16 = 40;

/// The smallest path MTU toward `vip`'s backends (sorry backend included),
/// each looked up once per status (`seen`).
fn vip_path_mtu(
    vip: &Vip,
    dataplane: &Dataplane,
    seen: &mut HashMap<IpAddr, Option<u16>>,
) -> Result<Option<u16>, DataplaneError> {
    let mut smallest: Option<u16> = None;
    let addresses = vip
        .backends
        .iter()
        .map(|b| b.address)
        .chain(vip.sorry_backend);
    for address in addresses {
        let IpAddr::V4(v4) = address else { continue };
        let mtu = match seen.get(&address) {
            Some(mtu) => *mtu,
            None => {
                let mtu = dataplane.path_mtu(v4)?;
                seen.insert(address, mtu);
                mtu
            }
        };
        smallest = match (smallest, mtu) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    Ok(smallest)
}
