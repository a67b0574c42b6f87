//! Per-VIP and per-backend status: the config's fields, traffic from the data
//! plane's per-CPU counters, and active flows from one pass over the
//! connection table.

use std::collections::HashMap;

use tula_config::Config;
use tula_dataplane::{Dataplane, Traffic};

use crate::ids::Ids;
use crate::plan::Health;
use crate::{BackendStatus, VipStatus};

pub(crate) fn status(
    config: &Config,
    ids: &Ids,
    health: &Health,
    dataplane: Option<&Dataplane>,
) -> Result<Vec<VipStatus>, String> {
    let text = |e: tula_dataplane::DataplaneError| e.to_string();
    // Connection-table entries by (VIP id, backend id), counted in one pass.
    let mut flows: HashMap<(u32, u32), u64> = HashMap::new();
    if let Some(dataplane) = dataplane {
        for (_, conn) in dataplane.conns().map_err(text)? {
            *flows.entry((conn.vip, conn.backend)).or_default() += 1;
        }
    }
    let traffic = |id: Option<u32>,
                   read: fn(&Dataplane, u32) -> tula_dataplane::Result<Traffic>|
     -> Result<Traffic, String> {
        match (dataplane, id) {
            (Some(dataplane), Some(id)) => read(dataplane, id).map_err(text),
            _ => Ok(Traffic::default()),
        }
    };
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
                healthy: health
                    .get(&(vip.name.clone(), backend.address))
                    .copied()
                    .unwrap_or(true),
                active_flows,
                packets: backend_traffic.packets,
                bytes: backend_traffic.bytes,
            });
        }
        vips.push(VipStatus {
            name: vip.name.clone(),
            address: vip.address,
            port: vip.port,
            protocol: vip.protocol,
            dsr_type: vip.dsr_type,
            scheduler: vip.scheduler,
            packets: vip_traffic.packets,
            bytes: vip_traffic.bytes,
            backends,
        });
    }
    Ok(vips)
}
