//! What validation needs to know about this host, read over netlink in the
//! calling thread's network namespace: interface names, local addresses and
//! the IPv4 subnets connected to each interface.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use tula_config::{HostFacts, Subnet};
use tula_net::NetError;

/// Interface names, local addresses and connected subnets of the calling thread's namespace.
pub fn host_facts() -> Result<HostFacts, NetError> {
    let interfaces: BTreeSet<String> = tula_net::links()?.into_iter().map(|l| l.name).collect();
    let addresses = tula_net::addresses()?;
    let mut subnets: BTreeMap<String, Vec<Subnet>> = BTreeMap::new();
    for address in &addresses {
        if let IpAddr::V4(v4) = address.addr {
            if let Some(subnet) = Subnet::new(network(v4, address.prefix), address.prefix) {
                subnets
                    .entry(address.link.clone())
                    .or_default()
                    .push(subnet);
            }
        }
    }
    Ok(HostFacts {
        interfaces: Some(interfaces),
        local_addresses: Some(addresses.iter().map(|a| a.addr).collect()),
        connected_subnets: Some(subnets),
    })
}

/// `address` with the host bits of a `prefix`-bit network cleared.
fn network(address: Ipv4Addr, prefix: u8) -> Ipv4Addr {
    let mask = u32::MAX
        .checked_shl(32 - u32::from(prefix.min(32)))
        .unwrap_or(0);
    Ipv4Addr::from(u32::from(address) & mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_clears_host_bits() {
        assert_eq!(
            network(Ipv4Addr::new(198, 18, 3, 77), 24),
            Ipv4Addr::new(198, 18, 3, 0)
        );
        assert_eq!(
            network(Ipv4Addr::new(198, 18, 3, 77), 0),
            Ipv4Addr::UNSPECIFIED
        );
        assert_eq!(
            network(Ipv4Addr::new(198, 18, 3, 77), 32),
            Ipv4Addr::new(198, 18, 3, 77)
        );
    }
}
