//! Reading a VIP's ring back from a pinned data plane, through the pinned
//! `vips` and `ring` maps (layout: tula_dataplane::abi).
//!
//! Stopgap until tula-dataplane offers `Dataplane::vip_ring` (requested):
//! one lookup per slot, fine for restarts of small configs.

use std::path::Path;

use aya::maps::{Array, HashMap, Map, MapData, MapError};
use tula_dataplane::{abi, VipKey};

/// The ring index and slots of `key`'s ring; `None` if the VIP is not set.
pub(crate) fn vip_ring(
    pin_dir: &Path,
    ring_size: u32,
    key: &VipKey,
) -> Result<Option<(u32, Vec<u32>)>, String> {
    let open = |name: &str| -> Result<Map, String> {
        let path = pin_dir.join(name);
        let data = MapData::from_pin(&path)
            .map_err(|e| format!("opening pinned map {}: {e}", path.display()))?;
        Map::from_map_data(data).map_err(|e| format!("opening pinned map {}: {e}", path.display()))
    };
    let vips: HashMap<MapData, abi::VipKey, abi::VipMeta> = open("vips")?
        .try_into()
        .map_err(|e: MapError| format!("map vips: {e}"))?;
    let raw_key = abi::VipKey {
        addr: abi::addr_to_raw(key.addr),
        port: key.port.to_be(),
        proto: key.protocol.number(),
        pad: 0,
    };
    let meta = match vips.get(&raw_key, 0) {
        Ok(meta) => meta,
        Err(MapError::KeyNotFound) => return Ok(None),
        Err(e) => return Err(format!("map vips: reading VIP {key}: {e}")),
    };
    let ring: Array<MapData, u32> = open("ring")?
        .try_into()
        .map_err(|e: MapError| format!("map ring: {e}"))?;
    let first = meta.ring * ring_size;
    let slots = (first..first + ring_size)
        .map(|slot| ring.get(&slot, 0))
        .collect::<Result<Vec<u32>, _>>()
        .map_err(|e| format!("map ring: reading ring {} of VIP {key}: {e}", meta.ring))?;
    Ok(Some((meta.ring, slots)))
}
