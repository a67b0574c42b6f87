//! Loads tula's XDP balancer (`bpf/balancer.c`, embedded as an object built by
//! `make bpf`), attaches it to interfaces, and programs its maps through a
//! typed API: VIPs and their rings (Maglev or round-robin), backends, egress
//! interfaces, the connection table and the counters. docs/DATAPLANE.md
//! describes the packet path and the maps.
//!
//! Modules:
//! - [`abi`]: `#[repr(C)]` mirrors of the structs in `bpf/include/maps.h`.
//! - `dataplane`: [`Dataplane`], the loaded program and its typed API.
//! - `flow`: flows and the flow hash, the Rust twin of the balancer's.
//! - `conn_table`: the set-associative connection table's buckets and checks.
//! - `counters`: the global counters and per-VIP/backend traffic.
//! - `rings`: free-ring bookkeeping, batched ring reads and writes, and the
//!   layout of round-robin rings.
//! - `pin`: the bpffs layout of a pinned balancer.
//! - `upgrade`: the map layout a pinned balancer was loaded with, and
//!   whether this build adopts it.
//! - [`model`]: the reference model of the per-packet decision that the
//!   differential fuzzer checks the program against.

pub mod abi;
mod conn_table;
mod counters;
mod dataplane;
mod error;
mod flow;
pub mod model;
mod pin;
mod rings;
mod upgrade;

pub use counters::{Counter, Counters, Traffic};
pub use dataplane::{
    xdp_md, AttachMode, Backend, Conn, Dataplane, Dsr, IcmpSettings, InterfaceSpec, LoadOptions,
    Scheduler, VipKey, VipSpec, Vlan, XdpAction, EMPTY_SLOT,
};
pub use error::{DataplaneError, Result};
pub use flow::{flow_hash, ring_index, source_hash, Flow, Protocol};
pub use pin::{is_bpffs, prepare_pin_dir, DEFAULT_PIN_DIR, PROGRAM_PIN};
pub use rings::round_robin_ring;
pub use upgrade::{pinned_build, PinnedBuild};
