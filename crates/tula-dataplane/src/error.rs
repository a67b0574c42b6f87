//! What can go wrong loading, attaching or programming the balancer. Every
//! variant names the object (map, interface, VIP, backend, path) and the value.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("load option {option} = {value} is invalid: {reason}")]
    InvalidOption {
        option: &'static str,
        value: u64,
        reason: &'static str,
    },

    #[error("loading the balancer object: {0}")]
    Load(#[source] Box<aya::EbpfError>),

    #[error("balancer program: {what}: {source}")]
    Program {
        what: String,
        #[source]
        source: aya::programs::ProgramError,
    },

    #[error("balancer link on {ifname}: {what}: {source}")]
    Link {
        ifname: String,
        what: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    #[error("map {map}: {what}: {source}")]
    Map {
        map: &'static str,
        what: String,
        #[source]
        source: aya::maps::MapError,
    },

    #[error("interface {ifname}: {source}")]
    Interface {
        ifname: String,
        #[source]
        source: tula_net::NetError,
    },

    #[error("interface {ifname} is not attached")]
    NotAttached { ifname: String },

    #[error("VIP {vip}: id {id} is out of range (max_vips is {max_vips})")]
    VipIdOutOfRange { vip: String, id: u32, max_vips: u32 },

    #[error("VIP {vip}: ring has {len} slots but the data plane's ring size is {ring_size}")]
    RingLength {
        vip: String,
        len: usize,
        ring_size: u32,
    },

    #[error("VIP {vip}: ring slot {slot} holds backend id {id}, out of range (max_backends is {max_backends})")]
    RingBackendOutOfRange {
        vip: String,
        slot: usize,
        id: u32,
        max_backends: u32,
    },

    #[error("VIP {vip}: no free ring (all {rings} are in use)")]
    NoFreeRing { vip: String, rings: u32 },

    #[error("VIP {vip} is not configured")]
    NoSuchVip { vip: String },

    #[error("backend id {id} is out of range (max_backends is {max_backends})")]
    BackendIdOutOfRange { id: u32, max_backends: u32 },

    #[error("backend {id} ({addr}): every next-hop slot is taken, by other addresses (max_backend_addresses is {max_backend_addresses}; backends that share an address share a slot)")]
    TooManyBackendAddresses {
        id: u32,
        addr: std::net::IpAddr,
        max_backend_addresses: u32,
    },

    #[error("pin directory {}: {what}: {source}", dir.display())]
    Pin {
        dir: PathBuf,
        what: String,
        #[source]
        source: std::io::Error,
    },

    #[error("pin directory {} already holds a pinned balancer; adopt it with Dataplane::open_pinned", dir.display())]
    AlreadyPinned { dir: PathBuf },

    #[error("pinned balancer in {}: {what}", dir.display())]
    BadPin { dir: PathBuf, what: String },

    #[error("test run: the program returned {0}, which is no XDP action")]
    UnknownAction(u32),
}

pub type Result<T, E = DataplaneError> = std::result::Result<T, E>;

/// A failed system call on a map, as aya reports one: `call` names it.
pub(crate) fn syscall_err(call: &'static str, io_error: std::io::Error) -> aya::maps::MapError {
    aya::maps::MapError::SyscallError(aya::sys::SyscallError { call, io_error })
}

/// Shorthand for wrapping a map error with the map's name and the operation.
pub(crate) fn map_err(
    map: &'static str,
    what: impl Into<String>,
) -> impl FnOnce(aya::maps::MapError) -> DataplaneError {
    let what = what.into();
    move |source| DataplaneError::Map { map, what, source }
}
