//! Per-VIP and per-backend status: the config's fields, traffic from the data
//! plane's per-CPU counters, active flows from one pass over the connection
//! table, and the MTU the path to each VIP's backends allows.

use std::collections::HashMap;
use std::net::IpAddr;

use tula_config::{Config, DsrType, Vip};
use tula_dataplane::{Dataplane, DataplaneError, Traffic};

use crate::health::Health;
use crate::ids::Ids;
use crate::plan::ring_members;
use crate::{BackendStatus, VipStatus};

pub(crate) fn status(
    config: &Config,
    ids: &Ids,
    health: &Health,
    dataplane: Option<&Dataplane>,
) -> Result<Vec<VipStatus>, DataplaneError> {
    // Connection-table entries by (VIP id, backend id), counted in one pass.
    let mut flows: HashMap<(u32, u32), u64> = HashMap::new();
    if let Some(dataplane) = dataplane {
        for (_, conn) in dataplane.conns()? {
            *flows.entry((conn.vip, conn.backend)).or_default() += 1;
        }
    }
    let traffic = |id: Option<u32>,
                   read: fn(&Dataplane, u32) -> tula_dataplane::Result<Traffic>|
     -> Result<Traffic, DataplaneError> {
        match (dataplane, id) {
            (Some(dataplane), Some(id)) => read(dataplane, id),
            _ => Ok(Traffic::default()),
        }
    };
    let mut path_mtus = HashMap::new();
    let mut vips = Vec::with_capacity(config.vips.len());
    for vip in &config.vips {
        let vip_id = ids.vip(&vip.name);
        let vip_traffic = traffic(vip_id, Dataplane::vip_traffic)?;
        let mut backends = Vec::with_capacity(vip.backends.len());
        for backend in &vip.backends {
            let id = ids.backend(&vip.name, &backend.address);
            let backend_traffic = traffic(id, Dataplane::backend_traffic)?;
            let active_flows = match (vip_id, id) {
                (Some(vip_id), Some(id)) => flows.get(&(vip_id, id)).copied().unwrap_or(0),
                _ => 0,
            };
            backends.push(BackendStatus {
                address: backend.address,
                weight: backend.weight,
                state: backend.state,
                healthy: health.is_up(&vip.name, backend.address),
                active_flows,
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
