//! Validation: every rule a config must pass before anything is applied.
//!
//! Rules that need to know the host (its interfaces, addresses and connected
//! subnets) take them from [`HostFacts`], so tests can state them; a fact left
//! out (`None`) skips the rules that need it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::address_set::AddressSet;
use crate::error::{join, vip_path, ConfigError, ConfigErrors};
use crate::model::{
    duration_text, AllDown, Backend, CheckType, Config, DsrType, HealthCheck, Protocol, Vip,
    MAX_WEIGHT,
};

/// What validation needs to know about the host that will run the config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostFacts {
    /// Names of the host's network interfaces.
    pub interfaces: Option<BTreeSet<String>>,
    /// Every address assigned on the host.
    pub local_addresses: Option<BTreeSet<IpAddr>>,
    /// The subnets directly connected to each interface, by interface name.
    pub connected_subnets: Option<BTreeMap<String, Vec<Subnet>>>,
}

/// An IPv4 or IPv6 subnet, written `198.18.20.0/24` or `2001:db8::/64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Subnet {
    pub address: IpAddr,
    pub prefix_len: u8,
}

impl Subnet {
    /// `None` when `prefix_len` is above the address's bits (32 or 128).
    pub fn new(address: impl Into<IpAddr>, prefix_len: u8) -> Option<Subnet> {
        let address = address.into();
        let bits = if address.is_ipv4() { 32 } else { 128 };
        (prefix_len <= bits).then_some(Subnet {
            address,
            prefix_len,
        })
    }

    /// Whether `address` is in the subnet (never, for an address of the other family).
    pub fn contains(&self, address: IpAddr) -> bool {
        let prefix = u32::from(self.prefix_len);
        match (self.address, address) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
                u32::from(a) & mask == u32::from(net) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
                u128::from(a) & mask == u128::from(net) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix_len)
    }
}

impl FromStr for Subnet {
    type Err = String;

    fn from_str(text: &str) -> Result<Subnet, String> {
        let bad = || {
            format!("invalid subnet {text:?}: expected an address and prefix length, like 198.18.20.0/24 or 2001:db8::/64")
        };
        let (address, prefix_len) = text.split_once('/').ok_or_else(bad)?;
        let address: IpAddr = address.parse().map_err(|_| bad())?;
        let prefix_len = prefix_len.parse().map_err(|_| bad())?;
        Subnet::new(address, prefix_len).ok_or_else(bad)
    }
}

impl TryFrom<String> for Subnet {
    type Error = String;
    fn try_from(text: String) -> Result<Subnet, String> {
        text.parse()
    }
}

impl From<Subnet> for String {
    fn from(subnet: Subnet) -> String {
        subnet.to_string()
    }
}

/// A letter, then up to 62 letters, digits, `-`, `_` or `.`.
pub fn is_valid_vip_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.len() <= 63
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Smallest `path_mtu` accepted: its tunnel MTU tells clients 556 bytes,
/// still above the 552 Linux accepts as a path MTU.
pub const MIN_PATH_MTU: u16 = 576;

/// Shortest API token accepted.
pub const MIN_TOKEN_LEN: usize = 16;

pub(crate) fn validate(config: &Config, host: &HostFacts) -> Result<(), ConfigErrors> {
    let every: Vec<usize> = (0..config.vips.len()).collect();
    validate_touched(config, host, &every)
}

/// [`validate`] of a config whose VIPs passed before except those at
/// `touched`: the global rules and the rules across VIPs in full, each VIP's
/// own rules for the touched ones only. Finds what [`validate`] would.
pub(crate) fn validate_touched(
    config: &Config,
    host: &HostFacts,
    touched: &[usize],
) -> Result<(), ConfigErrors> {
    let mut check = Checker {
        config,
        host,
        errors: Vec::new(),
    };
    check.globals();
    // Looked up once per backend: a map, so 100,000 backends are not 100,000 scans.
    let mut vip_addresses: HashMap<IpAddr, String> = HashMap::new();
    for (i, v) in config.vips.iter().enumerate() {
        vip_addresses
            .entry(v.address)
            .or_insert_with(|| vip_path(i, Some(&v.name)));
    }
    check.vip_names();
    check.vip_keys();
    check.vip_echo();
    let mut is_touched = vec![false; config.vips.len()];
    for &index in touched {
        if let Some(vip) = config.vips.get(index) {
            is_touched[index] = true;
            check.vip(&vip_path(index, Some(&vip.name)), vip, &vip_addresses);
        }
    }
    if touched.len() < config.vips.len() {
        check.backends_on_touched_vip_addresses(&is_touched, &vip_addresses);
    }
    ConfigErrors::check(check.errors)
}

struct Checker<'a> {
    config: &'a Config,
    host: &'a HostFacts,
    errors: Vec<ConfigError>,
}

impl Checker<'_> {
    fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError::new(path, message));
    }

    fn globals(&mut self) {
        let config = self.config;
        if config.interfaces.is_empty() {
            self.error("interfaces", "at least one interface is required");
        }
        let mut seen = BTreeSet::new();
        for (i, name) in config.interfaces.iter().enumerate() {
            let path = format!("interfaces[{i}]");
            if !is_valid_interface_name(name) {
                self.error(path, format!("{name:?} is not a valid interface name"));
            } else if !seen.insert(name) {
                self.error(path, format!("{name:?} is listed twice"));
            } else if self
                .host
                .interfaces
                .as_ref()
                .is_some_and(|known| !known.contains(name))
            {
                self.error(path, format!("no interface named {name:?} on this host"));
            }
        }

        if let Some(source) = config.tunnel_source {
            if let Some(why) = unusable(source) {
                self.error("tunnel_source", format!("{source} cannot be a tunnel source ({why})"));
            } else if self.host.local_addresses.as_ref().is_some_and(|local| !local.contains(&source)) {
                self.error("tunnel_source", format!("{source} is not an address of this host"));
            }
        }

        for (name, mtu) in &config.path_mtu {
            let path = format!("path_mtu.{name}");
            if !config.interfaces.contains(name) {
                self.error(
                    &path,
                    format!(
                        "{name:?} is not one of the interfaces ({})",
                        config.interfaces.join(", ")
                    ),
                );
            }
            if *mtu < MIN_PATH_MTU {
                self.error(
                    path,
                    format!("{mtu} is below {MIN_PATH_MTU}: clients could not be told an MTU they accept"),
                );
            }
        }
        for (key, value) in [
            ("icmp.rate", config.icmp.rate),
            ("icmp.burst", config.icmp.burst),
        ] {
            if value == 0 {
                self.error(key, "must be at least 1");
            }
        }

        if !tula_maglev::is_prime(config.ring_size) {
            self.error("ring_size", format!("{} is not prime", config.ring_size));
        }
        for (key, value) in [
            ("conn_table_size", config.conn_table_size),
            ("max_vips", config.max_vips),
            ("max_backends", config.max_backends),
            ("keep_revisions", config.keep_revisions),
        ] {
            if value == 0 {
                self.error(key, "must be at least 1");
            }
        }
        if config.max_backend_addresses == Some(0) {
            self.error("max_backend_addresses", "must be at least 1");
        }
        if config.keep_revisions_size.is_some_and(|size| size.bytes() == 0) {
            self.error("keep_revisions_size", "must be at least 1B");
        }
        if config.vips.len() > config.max_vips as usize {
            self.error(
                "vips",
                format!(
                    "{} VIPs exceed max_vips ({})",
                    config.vips.len(),
                    config.max_vips
                ),
            );
        }
        let backends: usize = config
            .vips
            .iter()
            .map(|v| v.backends.len() + v.sorry_backend.is_some() as usize)
            .sum();
        if backends > config.max_backends as usize {
            self.error(
                "vips",
                format!(
                    "{backends} backends in all (sorry backends included) exceed max_backends ({})",
                    config.max_backends
                ),
            );
        }
        // Unset, the limit is max_backends, which the backends' count already met.
        if let Some(limit) = config.max_backend_addresses {
            // Counted only when it could matter (every edit at 1,000 x 100: 100,000 in ~0.4 ms).
            if backends > limit as usize {
                let addresses = distinct_backend_addresses(config);
                if addresses > limit as usize {
                    self.error(
                        "vips",
                        format!(
                            "{addresses} distinct backend addresses (sorry backends included) exceed max_backend_addresses ({limit})"
                        ),
                    );
                }
            }
        }
        if !config.pin_dir.is_absolute() {
            self.error(
                "pin_dir",
                format!(
                    "{:?} must be an absolute path",
                    config.pin_dir.display().to_string()
                ),
            );
        }

        let api = &config.api;
        match &api.token {
            None if !api.listen.ip().is_loopback() => self.error(
                "api.token",
                format!(
                    "required because api.listen {} is not a loopback address",
                    api.listen
                ),
            ),
            Some(token) if token.chars().count() < MIN_TOKEN_LEN => self.error(
                "api.token",
                format!("must be at least {MIN_TOKEN_LEN} characters"),
            ),
            _ => {}
        }
        if let Some(cluster) = &config.cluster {
            self.cluster(cluster);
        }
    }

    fn cluster(&mut self, cluster: &crate::Cluster) {
        if cluster.etcd.is_empty() {
            self.error("cluster.etcd", "needs at least one etcd URL, e.g. [\"http://198.18.0.10:2379\"]");
        }
        for (i, url) in cluster.etcd.iter().enumerate() {
            let rest = url.strip_prefix("http://").unwrap_or("");
            let authority = rest.trim_end_matches('/');
            if authority.is_empty() || authority.contains('/') {
                self.error(
                    format!("cluster.etcd[{i}]"),
                    format!("{url:?} is not an etcd client URL: use http://HOST:PORT (https is not supported)"),
                );
            }
        }
        if !is_valid_vip_name(&cluster.node) {
            self.error(
                "cluster.node",
                format!("{:?} is not a valid node name: use a letter, then letters, digits, '-', '_' or '.', 63 at most", cluster.node),
            );
        }
        if !cluster.prefix.starts_with('/') || cluster.prefix.len() < 2 || cluster.prefix.ends_with('/') {
            self.error(
                "cluster.prefix",
                format!("{:?} must start with '/' and not end with one, e.g. \"/tula\"", cluster.prefix),
            );
        }
    }

    fn vip_names(&mut self) {
        let mut by_name: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (index, vip) in self.config.vips.iter().enumerate() {
            if is_valid_vip_name(&vip.name) {
                by_name.entry(&vip.name).or_default().push(index);
            } else {
                self.error(
                    join(&vip_path(index, None), "name"),
                    format!("{:?} is not a valid VIP name: use a letter, then letters, digits, '-', '_' or '.', 63 at most", vip.name),
                );
            }
        }
        for (name, positions) in by_name.into_iter().filter(|(_, p)| p.len() > 1) {
            let positions: Vec<String> = positions.iter().map(|p| p.to_string()).collect();
            self.error(
                format!("vips[{name}].name"),
                format!(
                    "{name:?} names more than one VIP (positions {} in file order, from 0)",
                    positions.join(", ")
                ),
            );
        }
    }

    /// VIPs sharing an address share its echo replies: they must agree on them.
    fn vip_echo(&mut self) {
        let mut first: BTreeMap<IpAddr, usize> = BTreeMap::new();
        for (index, vip) in self.config.vips.iter().enumerate() {
            match first.get(&vip.address) {
                Some(&earlier) if self.config.vips[earlier].icmp_echo != vip.icmp_echo => {
                    let other = &self.config.vips[earlier];
                    self.error(
                        join(&vip_path(index, Some(&vip.name)), "icmp_echo"),
                        format!(
                            "{} differs from {} ({}), which has the same address {}: ping answers for an address, so they must agree",
                            vip.icmp_echo,
                            vip_path(earlier, Some(&other.name)),
                            other.icmp_echo,
                            vip.address
                        ),
                    );
                }
                Some(_) => {}
                None => {
                    first.insert(vip.address, index);
                }
            }
        }
    }

    /// Two VIPs must not share address, port and protocol.
    fn vip_keys(&mut self) {
        let mut first: BTreeMap<(IpAddr, u16, Protocol), usize> = BTreeMap::new();
        for (index, vip) in self.config.vips.iter().enumerate() {
            let key = (vip.address, vip.port, vip.protocol);
            if let Some(&earlier) = first.get(&key) {
                let other = vip_path(earlier, Some(&self.config.vips[earlier].name));
                self.error(
                    vip_path(index, Some(&vip.name)),
                    format!(
                        "same address, port and protocol as {other} ({})",
                        socket_text(vip.address, vip.port, vip.protocol)
                    ),
                );
            } else {
                first.insert(key, index);
            }
        }
    }

    /// The one rule of an untouched VIP that a touched one can break: a
    /// backend (or sorry backend) on a touched VIP's address.
    fn backends_on_touched_vip_addresses(
        &mut self,
        is_touched: &[bool],
        vip_addresses: &HashMap<IpAddr, String>,
    ) {
        let config = self.config;
        let touched: BTreeSet<IpAddr> = config
            .vips
            .iter()
            .zip(is_touched)
            .filter(|(_, &t)| t)
            .map(|(v, _)| v.address)
            .collect();
        if touched.is_empty() {
            return;
        }
        for (index, vip) in config.vips.iter().enumerate() {
            if is_touched[index] {
                continue;
            }
            let path = vip_path(index, Some(&vip.name));
            let sorry = vip.sorry_backend.filter(|_| vip.all_down == AllDown::Sorry);
            let addresses = vip.backends.iter().map(|b| b.address).enumerate();
            for (i, address) in addresses
                .map(|(i, a)| (Some(i), a))
                .chain(sorry.map(|a| (None, a)))
            {
                if !touched.contains(&address) {
                    continue;
                }
                let where_ = match i {
                    Some(i) => format!("{path}.backends[{i}].address"),
                    None => join(&path, "sorry_backend"),
                };
                let owner = &vip_addresses[&address];
                self.error(
                    where_,
                    format!("{address} is the address of a VIP ({owner})"),
                );
            }
        }
    }

    fn vip(&mut self, path: &str, vip: &Vip, vip_addresses: &HashMap<IpAddr, String>) {
        let address_path = join(path, "address");
        if let Some(why) = unusable(vip.address) {
            self.error(
                &address_path,
                format!("{} cannot be a VIP ({why})", vip.address),
            );
        } else if self.config.tunnel_source == Some(vip.address) {
            self.error(
                &address_path,
                format!("{} is the tunnel source", vip.address),
            );
        } else if self.config.api.listen.ip() == vip.address {
            self.error(
                &address_path,
                format!("{} is the API listen address", vip.address),
            );
        } else if self
            .host
            .local_addresses
            .as_ref()
            .is_some_and(|local| local.contains(&vip.address))
        {
            self.error(
                &address_path,
                format!(
                    "{} is a local address of this host, in use for something else",
                    vip.address
                ),
            );
        }

        if vip.backends.len() >= self.config.ring_size as usize {
            self.error(
                join(path, "backends"),
                format!(
                    "{n} backends need a ring_size above {n} (ring_size is {})",
                    self.config.ring_size,
                    n = vip.backends.len()
                ),
            );
        }
        let mut first: BTreeMap<IpAddr, usize> = BTreeMap::new();
        for (i, backend) in vip.backends.iter().enumerate() {
            let backend_path = format!("{path}.backends[{i}]");
            self.backend(&backend_path, vip, backend, vip_addresses);
            if let Some(&earlier) = first.get(&backend.address) {
                self.error(
                    join(&backend_path, "address"),
                    format!(
                        "{} is listed twice (also backends[{earlier}])",
                        backend.address
                    ),
                );
            } else {
                first.insert(backend.address, i);
            }
        }

        let sorry_path = join(path, "sorry_backend");
        match (vip.all_down, vip.sorry_backend) {
            (AllDown::Sorry, None) => self.error(sorry_path, "required when all_down is \"sorry\""),
            (AllDown::Sorry, Some(sorry)) => {
                self.backend_address(&sorry_path, vip, sorry, vip_addresses);
                if let Some(i) = vip.backends.iter().position(|b| b.address == sorry) {
                    self.error(sorry_path, format!("{sorry} is also backends[{i}]; the sorry backend must be another server"));
                }
            }
            (policy, Some(_)) => self.error(
                sorry_path,
                format!(
                    "only used when all_down is \"sorry\" (it is \"{}\")",
                    all_down_text(policy)
                ),
            ),
            (_, None) => {}
        }

        self.health_check(&join(path, "health_check"), vip, &vip.health_check);
    }

    fn backend(
        &mut self,
        path: &str,
        vip: &Vip,
        backend: &Backend,
        vip_addresses: &HashMap<IpAddr, String>,
    ) {
        self.backend_address(&join(path, "address"), vip, backend.address, vip_addresses);
        match backend.port {
            Some(port) if vip.port == 0 => self.error(
                join(path, "port"),
                format!("{port} is set but the VIP serves all ports (port 0); DSR cannot translate ports"),
            ),
            Some(port) if port != vip.port => self.error(
                join(path, "port"),
                format!("{port} differs from the VIP port {}; DSR cannot translate ports", vip.port),
            ),
            _ => {}
        }
        if backend.weight > MAX_WEIGHT {
            self.error(
                join(path, "weight"),
                format!("{} is out of range 0..={MAX_WEIGHT}", backend.weight),
            );
        }
    }

    /// Rules for any address that receives a VIP's flows: real backends and the sorry backend.
    fn backend_address(
        &mut self,
        path: &str,
        vip: &Vip,
        address: IpAddr,
        vip_addresses: &HashMap<IpAddr, String>,
    ) {
        // An IPv4 VIP's packets reach an IPv6 backend in IPv4 in IPv6; there is no IPv6 in IPv4.
        match (vip.address, address) {
            (IpAddr::V6(_), IpAddr::V4(_)) => {
                return self.error(
                    path,
                    format!("IPv4 backend {address} for IPv6 VIP {}: IPv6 VIPs need IPv6 backends", vip.address),
                );
            }
            (IpAddr::V4(_), IpAddr::V6(_)) if vip.dsr_type == DsrType::L2 => {
                return self.error(
                    path,
                    format!("IPv6 backend {address} for IPv4 VIP {}: L2 DSR needs backends of the VIP's family", vip.address),
                );
            }
            _ => {}
        }
        if let Some(why) = unusable(address) {
            return self.error(path, format!("{address} cannot be a backend ({why})"));
        }
        if let Some(owner) = vip_addresses.get(&address) {
            return self.error(path, format!("{address} is the address of a VIP ({owner})"));
        }
        if vip.dsr_type == DsrType::L2 {
            self.on_connected_subnet(path, address);
        }
    }

    /// L2 DSR rewrites MAC addresses only, so the backend must be on a segment the balancer is on.
    fn on_connected_subnet(&mut self, path: &str, address: IpAddr) {
        let Some(connected) = &self.host.connected_subnets else {
            return;
        };
        let subnets: Vec<(&String, &Subnet)> = self
            .config
            .interfaces
            .iter()
            .flat_map(|name| {
                connected
                    .get(name)
                    .into_iter()
                    .flatten()
                    .map(move |subnet| (name, subnet))
            })
            .collect();
        if !subnets.iter().any(|(_, subnet)| subnet.contains(address)) {
            let listed: Vec<String> = subnets
                .iter()
                .map(|(name, subnet)| format!("{name} {subnet}"))
                .collect();
            let listed = if listed.is_empty() {
                "none".to_string()
            } else {
                listed.join(", ")
            };
            self.error(
                path,
                format!("{address} is not on a subnet connected to the interfaces ({listed}); L2 DSR needs backends on the balancer's segment"),
            );
        }
    }

    fn health_check(&mut self, path: &str, vip: &Vip, check: &HealthCheck) {
        let kind = check.kind;
        if kind != CheckType::None {
            match check.port_for(vip.port) {
                None => self.error(
                    join(path, "port"),
                    "required because the VIP serves all ports (port 0)",
                ),
                Some(0) => self.error(join(path, "port"), "0 is not a port to probe"),
                Some(_) => {}
            }
        }
        if check.interval.is_zero() {
            self.error(join(path, "interval"), "must be longer than 0");
        }
        if check.timeout.is_zero() {
            self.error(join(path, "timeout"), "must be longer than 0");
        } else if check.timeout > check.interval && !check.interval.is_zero() {
            self.error(
                join(path, "timeout"),
                format!(
                    "{} is longer than the interval {}",
                    duration_text::format(check.timeout),
                    duration_text::format(check.interval)
                ),
            );
        }
        for (key, value) in [("rise", check.rise), ("fall", check.fall)] {
            if value == 0 {
                self.error(join(path, key), "must be at least 1");
            }
        }

        let http_only = [
            ("path", check.path.is_some()),
            ("expect_status", check.expect_status.is_some()),
            ("expect_body", check.expect_body.is_some()),
            ("host", check.host.is_some()),
        ];
        for (key, set) in http_only {
            if set && !kind.is_http() {
                self.error(
                    join(path, key),
                    format!("only used by http and https checks (type is \"{kind}\")"),
                );
            }
        }
        if check.tls_verify.is_some() && kind != CheckType::Https {
            self.error(
                join(path, "tls_verify"),
                format!("only used by https checks (type is \"{kind}\")"),
            );
        }
        if let Some(p) = &check.path {
            if !p.starts_with('/') || p.contains(char::is_whitespace) {
                self.error(
                    join(path, "path"),
                    format!("{p:?} must start with \"/\" and contain no spaces"),
                );
            }
        }
        if let Some(range) = check.expect_status {
            if range.low < 100 || range.high > 599 || range.low > range.high {
                self.error(
                    join(path, "expect_status"),
                    format!("\"{range}\" is not a status range within 100-599"),
                );
            }
        }
        if let Some(host) = &check.host {
            if host.is_empty() || host.contains(char::is_whitespace) {
                self.error(
                    join(path, "host"),
                    format!("{host:?} is not a valid Host header"),
                );
            }
        }
    }
}

/// Why an IPv4 address can't carry traffic to or from a VIP, if it can't.
/// How many distinct addresses the backends of every VIP (sorry backends
/// included) have: the data plane keeps one set of next hops per address.
pub(crate) fn distinct_backend_addresses(config: &Config) -> usize {
    let mut seen = AddressSet::default();
    for vip in &config.vips {
        seen.extend(vip.backends.iter().map(|b| b.address).chain(vip.sorry_backend));
    }
    seen.len()
}

fn unusable(address: IpAddr) -> Option<&'static str> {
    if address.is_unspecified() {
        Some("unspecified")
    } else if address.is_loopback() {
        Some("loopback")
    } else if address.is_multicast() {
        Some("multicast")
    } else if matches!(address, IpAddr::V4(v4) if v4.is_broadcast()) {
        Some("broadcast")
    } else if matches!(address, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80) {
        Some("link-local: it names no host beyond one link")
    } else if matches!(address, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some()) {
        Some("an IPv4-mapped IPv6 address: write the IPv4 address")
    } else {
        None
    }
}

/// Linux interface names: 1 to 15 bytes, no '/', ':' or whitespace.
fn is_valid_interface_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
}

fn socket_text(address: IpAddr, port: u16, protocol: Protocol) -> String {
    let port = if port == 0 {
        "*".to_string()
    } else {
        port.to_string()
    };
    format!("{}/{protocol}", match address {
        IpAddr::V4(_) => format!("{address}:{port}"),
        IpAddr::V6(_) => format!("[{address}]:{port}"),
    })
}

fn all_down_text(policy: AllDown) -> &'static str {
    match policy {
        AllDown::Drop => "drop",
        AllDown::KeepLast => "keep-last",
        AllDown::Sorry => "sorry",
    }
}
