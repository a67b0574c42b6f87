//! Builds and their pinned data planes: which map layout a pinned balancer
//! was loaded with (its `layout` map), read without adopting it, and whether
//! this build can adopt it.

use std::path::Path;

use aya::maps::{Array, Map, MapData};

use crate::abi;
use crate::error::{map_err, DataplaneError, Result};
use crate::pin;

/// What a pin directory holds, as `tula dataplane status` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinnedBuild {
    /// The map layout (ABI) version the pinned balancer was loaded with; 1
    /// for one pinned before the `layout` map existed.
    pub layout_version: u32,
    /// Slots per ring, if the layout map records it.
    pub ring_size: Option<u32>,
    /// Interfaces with a pinned XDP link.
    pub interfaces: Vec<String>,
}

impl PinnedBuild {
    /// True when this build reads the pinned maps as they are.
    pub fn matches_this_build(&self) -> bool {
        self.layout_version == abi::LAYOUT_VERSION
    }
}

/// What is pinned in `pin_dir`, or `None` when no balancer is.
pub fn pinned_build(pin_dir: &Path) -> Result<Option<PinnedBuild>> {
    if !pin::holds_balancer(pin_dir) {
        return Ok(None);
    }
    let interfaces = pin::pinned_links(pin_dir)?;
    let layout_pin = pin_dir.join("layout");
    if !layout_pin.exists() {
        return Ok(Some(PinnedBuild {
            layout_version: 1,
            ring_size: None,
            interfaces,
        }));
    }
    let data = MapData::from_pin(&layout_pin).map_err(map_err(
        "layout",
        format!("opening the pin in {}", pin_dir.display()),
    ))?;
    let map = Map::from_map_data(data).map_err(map_err("layout", "checking its type"))?;
    let layout: abi::Layout = Array::<MapData, abi::Layout>::try_from(map)
        .map_err(map_err("layout", "checking its type"))?
        .get(&0, 0)
        .map_err(map_err("layout", "reading it"))?;
    if layout.version == 0 {
        return Err(DataplaneError::BadPin {
            dir: pin_dir.to_path_buf(),
            what: "the layout map was never written (version 0)".into(),
        });
    }
    Ok(Some(PinnedBuild {
        layout_version: layout.version,
        ring_size: Some(layout.ring_size),
        interfaces,
    }))
}
