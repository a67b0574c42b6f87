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

#[cfg(test)]
mod tests {
    use super::*;

    /// A state file written before IPv6 (IPv4 addresses only) still loads.
    #[test]
    fn a_state_file_from_before_ipv6_loads() {
        let root = std::env::temp_dir().join(format!("tula-decap-state-{}", std::process::id()));
        let text = r#"{
  "method": "xdp",
  "interface": "eth0",
  "persist": "networkd",
  "vips": ["203.0.113.10"],
  "mss_clamp": 1440,
  "changes": [
    {"change": "add_address", "link": "lo", "addr": "203.0.113.10", "prefix": 32},
    {"change": "attach_decap", "interface": "eth0", "pin_dir": "/sys/fs/bpf/tula-decap/1-eth0", "local": ["198.18.1.2"], "vips": ["203.0.113.10"]},
    {"change": "clamp_mss", "vips": ["203.0.113.10"], "mss": 1440}
  ]
}
"#;
        crate::change::write_file(&State::path(&root), text, 0o644).unwrap();
        let state = State::load(&root).unwrap().expect("a state");
        std::fs::remove_dir_all(&root).unwrap();
        let vip: IpAddr = "203.0.113.10".parse().unwrap();
        assert_eq!((state.vips.as_slice(), state.mss_clamp, state.mss_clamp6), (&[vip][..], Some(1440), None));
        assert_eq!(state.changes[0], Change::AddAddress { link: "lo".into(), addr: vip, prefix: 32 });
        assert!(matches!(&state.changes[1], Change::AttachDecap { local, .. } if local == &["198.18.1.2".parse::<IpAddr>().unwrap()]));
    }
}
