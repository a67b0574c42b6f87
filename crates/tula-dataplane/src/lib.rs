//! Loads tula's XDP balancer (`bpf/balancer.c`, embedded as an object built by
//! `make bpf`), attaches it to interfaces, and programs its maps through a
//! typed API: VIPs and their rings (Maglev or round-robin), backends, egress
//! interfaces, the connection table and the counters. docs/DATAPLANE.md
//! describes the packet path and the maps.
//!
//! Modules:
//! - [`abi`]: `#[repr(C)]` mirrors of the structs in `bpf/include/maps.h`.
//! - `dataplane`: [`Dataplane`]: loading, adopting a pinned one, attaching,
//!   and the map writes and reads of its typed API; [`NextHops`], its rules
//!   for backend addresses' next hops, without a data plane.
//! - `spec`: the API's value types (VIP keys and specs, backends, settings,
//!   verdicts) and their conversion to the `abi` structs.
//! - `test_run`: running the balancer on a frame (BPF_PROG_TEST_RUN).
//! - `flow`: flows and the flow hash, the Rust twin of the balancer's.
//! - `conn_table`: the set-associative connection table's buckets and checks.
//! - [`clock`]: the kernel's jiffies from user space, to age the table's stamps.
//! - `counters`: the global counters and per-VIP/backend traffic.
//! - `rings`: free-ring bookkeeping, batched ring reads and writes, and the
//!   layout of round-robin rings.
//! - `pin`: the bpffs layout of a pinned balancer.
//! - `upgrade`: the map layout a pinned balancer was loaded with, and moving
//!   a pinned balancer of another build onto this one, flows included.
//! - [`model`]: the reference model of the per-packet decision that the
//!   differential fuzzer checks the program against.

pub mod abi;
pub mod clock;
mod conn_table;
mod counters;
mod dataplane;
mod error;
mod flow;
pub mod model;
mod pin;
mod rings;
mod spec;
mod test_run;
mod upgrade;

pub use clock::{ClockError, KernelClock};
pub use conn_table::ConnTally;
pub use counters::{Counter, Counters, Traffic};
pub use dataplane::{Dataplane, LoadOptions, NextHops, EMPTY_SLOT};
pub use spec::{
    AttachMode, Backend, Conn, Dsr, IcmpSettings, InterfaceSpec, Scheduler, VipKey, VipSpec, Vlan,
    XdpAction,
};
pub use test_run::{stay_on_cpu, stay_on_this_cpu, xdp_md};
pub use error::{DataplaneError, Result};
pub use flow::{
    flow6_hash, flow6_label, flow_hash, flow_label, ring_index, source_hash, Flow, Protocol,
};
pub use pin::{is_bpffs, prepare_pin_dir, DEFAULT_PIN_DIR, PROGRAM_PIN};
pub use rings::round_robin_ring;
pub use upgrade::{converts_from, pinned_build, switch_build, Build, PinnedBuild, Switched};
