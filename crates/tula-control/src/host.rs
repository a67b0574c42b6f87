//! What validation needs to know about this host, read over netlink in the
//! calling thread's network namespace: interface names, local addresses and
//! the IPv4 and IPv6 subnets connected to each interface.

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
        if let Some(subnet) = Subnet::new(network(address.addr, address.prefix), address.prefix) {
            subnets
                .entry(address.link.clone())
                .or_default()
                .push(subnet);
        }
    }
    Ok(HostFacts {
        interfaces: Some(interfaces),
        local_addresses: Some(addresses.iter().map(|a| a.addr).collect()),
        connected_subnets: Some(subnets),
    })
}

/// `address` with the host bits of a `prefix`-bit network cleared.
fn network(address: IpAddr, prefix: u8) -> IpAddr {
    match address {
        IpAddr::V4(v4) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(prefix.min(32)))
                .unwrap_or(0);
            Ipv4Addr::from(u32::from(v4) & mask).into()
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(prefix.min(128)))
                .unwrap_or(0);
            std::net::Ipv6Addr::from(u128::from(v6) & mask).into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_clears_host_bits() {
        let net = |address: &str, prefix| network(address.parse().unwrap(), prefix).to_string();
        assert_eq!(net("198.18.3.77", 24), "198.18.3.0");
        assert_eq!(net("198.18.3.77", 0), "0.0.0.0");
        assert_eq!(net("198.18.3.77", 32), "198.18.3.77");
        assert_eq!(net("2001:db8:3::77", 64), "2001:db8:3::");
        assert_eq!(net("2001:db8:3::77", 0), "::");
        assert_eq!(net("2001:db8:3::77", 128), "2001:db8:3::77");
    }
}
