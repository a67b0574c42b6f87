//! The demo network in namespaces (`tula lab`): a client, a router, the load
//! balancer and backends on their own subnets, with real HTTP servers. It is
//! also the topology the end-to-end tests run on.
//!
//! [`Topology`] owns names, addresses and building the network; [`Lab`] owns
//! the processes running in it (balancer, backend HTTP servers) and the demo;
//! `cluster` the BIRD routers of a lab with two load balancers.

pub mod balancer;
pub mod capture;
pub mod cluster;
pub mod http;
mod lab;
pub mod topology;

pub use lab::{DemoReport, Lab, LabOptions, LinkCounters};
pub use topology::Topology;

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Net(#[from] tula_net::NetError),
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    #[error("{0}")]
    Process(String),
}
