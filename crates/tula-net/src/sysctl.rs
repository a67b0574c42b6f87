//! Kernel parameters through `/proc/sys`, in the calling thread's namespace.
//!
//! `/proc/sys/net` resolves against the namespace of the thread that opens it,
//! so these work from inside [`crate::Netns::run`].

use crate::NetError;
use std::path::PathBuf;

/// `/proc/sys/...` path of a dotted key such as `net.ipv4.conf.all.rp_filter`.
/// As in sysctl(8), a `/` in the key stands for a literal dot, so
/// `net.ipv4.conf.eth0/100.rp_filter` names interface `eth0.100`.
pub fn path(key: &str) -> PathBuf {
    let mut path = PathBuf::from("/proc/sys");
    for part in key.split('.') {
        path.push(part.replace('/', "."));
    }
    path
}

/// The key for a per-interface setting, e.g. `conf_key("eth0.100", "rp_filter")`.
pub fn conf_key(interface: &str, setting: &str) -> String {
    format!("net.ipv4.conf.{}.{setting}", interface.replace('.', "/"))
}

/// The value of a sysctl, trimmed.
pub fn read(key: &str) -> Result<String, NetError> {
    std::fs::read_to_string(path(key))
        .map(|v| v.trim().to_string())
        .map_err(|e| NetError::io(format!("reading sysctl {key}"), e))
}

/// Sets a sysctl.
pub fn write(key: &str, value: &str) -> Result<(), NetError> {
    std::fs::write(path(key), value)
        .map_err(|e| NetError::io(format!("setting sysctl {key} = {value}"), e))
}
