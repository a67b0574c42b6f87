//! The state file (`<root>/var/lib/tula/decap.json`): what setup changed on
//! this host, in order, so teardown can undo exactly that.

use crate::persist::Persist;
use crate::plan::Method;
use crate::{Change, DecapError};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

pub const STATE_FILE: &str = "var/lib/tula/decap.json";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub method: Option<Method>,
    pub interface: Option<String>,
    pub persist: Option<Persist>,
    /// Every VIP any setup asked for, IPv4 and IPv6.
    pub vips: Vec<IpAddr>,
    /// The MSS of `--mss-clamp`, once a setup asked for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mss_clamp: Option<u16>,
    /// The MSS the IPv6 VIPs are clamped to, once a setup clamped them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mss_clamp6: Option<u16>,
    /// Changes made, oldest first; one per object (see [`Change::same_object`]).
    pub changes: Vec<Change>,
}

impl State {
    pub fn path(root: &Path) -> PathBuf {
        root.join(STATE_FILE)
    }

    /// The state under `root`, or `None` if setup never ran there.
    pub fn load(root: &Path) -> Result<Option<State>, DecapError> {
        let path = State::path(root);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(DecapError::io(format!("reading {}", path.display()), e)),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| DecapError::State { path, message: format!("not valid tula state ({e}); fix or remove it") })
    }

    pub fn save(&self, root: &Path) -> Result<(), DecapError> {
        let path = State::path(root);
        let text = serde_json::to_string_pretty(self).expect("state serializes");
        crate::change::write_file(&path, &(text + "\n"), 0o644)
    }

    pub fn remove(root: &Path) -> Result<(), DecapError> {
        let path = State::path(root);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(DecapError::io(format!("removing {}", path.display()), e)),
        }
    }

    /// Records a change just made, unless an earlier one to the same object
    /// is already recorded (that one knows the value from before any setup).
    pub fn record(&mut self, change: Change) {
        if change.recorded() && !self.changes.iter().any(|c| c.same_object(&change)) {
            self.changes.push(change);
        }
    }
}
