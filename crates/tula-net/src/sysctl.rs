//! Kernel parameters through `/proc/sys`, in the calling thread's namespace.
//!
//! `/proc/sys/net` resolves against the namespace of the thread that opens it,
//! so these work from inside [`crate::Netns::run`].

use crate::NetError;
use std::path::PathBuf;

/// `/proc/sys/...` path of a dotted key such as `net.ipv4.conf.all.rp_filter`.
pub fn path(key: &str) -> PathBuf {
    PathBuf::from("/proc/sys").join(key.replace('.', "/"))
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
