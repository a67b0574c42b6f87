//! The config model: what an operator declares, with its defaults, as serde types
//! shared by the TOML file and the JSON of the REST API.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Where the daemon reads its config unless told otherwise.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/tula/tula.toml";

/// The whole declared state of one load balancer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Interfaces the balancer attaches to (clients arrive and encapsulated packets leave here).
    #[serde(default)]
    pub interfaces: Vec<String>,
    /// Outer source address of IPIP packets; absent = the address of each egress interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel_source: Option<IpAddr>,
    /// By interface, `{ eth1 = 1500 }`: the MTU of the path beyond it toward
    /// the backends, when smaller than the interface's own. Encapsulated
    /// packets must fit it: the tunnel MTU is 20 less. Absent = the route's
    /// MTU, which it can only lower.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub path_mtu: BTreeMap<String, u16>,
    /// The ICMP the balancer sends itself for packets too big for the tunnel.
    #[serde(default, skip_serializing_if = "Icmp::is_default")]
    pub icmp: Icmp,
    /// Maglev ring slots per VIP; a prime.
    #[serde(default = "default_ring_size")]
    pub ring_size: u32,
    /// Entries of the connection (LRU) table.
    #[serde(default = "default_conn_table_size")]
    pub conn_table_size: u32,
    #[serde(default = "default_max_vips")]
    pub max_vips: u32,
    /// Capacity of the data plane's backend table; every backend of every VIP takes one entry.
    #[serde(default = "default_max_backends")]
    pub max_backends: u32,
    /// Distinct backend addresses the data plane keeps next hops for (one
    /// path per CPU each); backends that share an address share one.
    /// Absent: `max_backends` (see [`Config::backend_address_limit`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_backend_addresses: Option<u32>,
    /// bpffs directory where programs, links and maps are pinned.
    #[serde(default = "default_pin_dir")]
    pub pin_dir: PathBuf,
    /// How many revisions the daemon keeps on disk; older ones are pruned
    /// (never the running one).
    #[serde(default = "default_keep_revisions")]
    pub keep_revisions: u32,
    /// Besides `keep_revisions`, about the most bytes the kept revisions may
    /// take on disk; older ones are pruned (never the running one). Absent:
    /// no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_revisions_size: Option<ByteSize>,
    #[serde(default)]
    pub api: Api,
    /// This node's membership of a cluster whose config lives in etcd
    /// (docs/CLUSTER.md). This node's own: never shared with the others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<Cluster>,
    /// The `[[vip]]` tables, in file order. Error paths call them `vips[NAME]`.
    #[serde(rename = "vip", default, skip_serializing_if = "Vec::is_empty")]
    pub vips: Vec<Vip>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            interfaces: Vec::new(),
            tunnel_source: None,
            path_mtu: BTreeMap::new(),
            icmp: Icmp::default(),
            ring_size: default_ring_size(),
            conn_table_size: default_conn_table_size(),
            max_vips: default_max_vips(),
            max_backends: default_max_backends(),
            max_backend_addresses: None,
            keep_revisions: default_keep_revisions(),
            keep_revisions_size: None,
            pin_dir: default_pin_dir(),
            api: Api::default(),
            cluster: None,
            vips: Vec::new(),
        }
    }
}

fn default_ring_size() -> u32 {
    tula_maglev::DEFAULT_RING_SIZE
}
fn default_conn_table_size() -> u32 {
    1_000_000
}
fn default_max_vips() -> u32 {
    512
}
fn default_max_backends() -> u32 {
    4096
}
fn default_keep_revisions() -> u32 {
    200
}
fn default_pin_dir() -> PathBuf {
    PathBuf::from("/sys/fs/bpf/tula")
}

/// How a DF packet too big for the tunnel is answered: ICMP Fragmentation
/// Needed from the VIP, so the client's Path MTU Discovery works.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Icmp {
    /// Answer with Fragmentation Needed; false drops such packets unanswered.
    #[serde(default = "yes")]
    pub frag_needed: bool,
    /// Replies per second, per CPU.
    #[serde(default = "default_icmp_rate")]
    pub rate: u32,
    /// Replies a CPU may send at once after a quiet spell.
    #[serde(default = "default_icmp_burst")]
    pub burst: u32,
}

impl Default for Icmp {
    fn default() -> Icmp {
        Icmp {
            frag_needed: true,
            rate: default_icmp_rate(),
            burst: default_icmp_burst(),
        }
    }
}

impl Icmp {
    fn is_default(&self) -> bool {
        *self == Icmp::default()
    }
}

fn yes() -> bool {
    true
}
fn is_true(value: &bool) -> bool {
    *value
}
fn default_icmp_rate() -> u32 {
    100
}
fn default_icmp_burst() -> u32 {
    50
}

/// The REST API's socket and credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Api {
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Bearer token; required unless `listen` is a loopback address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl Default for Api {
    fn default() -> Api {
        Api {
            listen: default_listen(),
            token: None,
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 9100))
}

/// `[cluster]`: where the cluster's config and revisions live, and this node's name there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    /// etcd client URLs, e.g. `["http://198.18.0.10:2379"]` (the v3 JSON gateway; plain HTTP).
    pub etcd: Vec<String>,
    /// This node's name in the cluster: unique, the same across restarts.
    pub node: String,
    /// The etcd key prefix the cluster's keys live under.
    #[serde(default = "default_cluster_prefix")]
    pub prefix: String,
}

fn default_cluster_prefix() -> String {
    "/tula".to_string()
}

/// A virtual IP: the address, port and protocol clients connect to, and who serves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vip {
    /// Identifies the VIP in paths, the API and the CLI: a letter, then letters, digits, `-`, `_` or `.`.
    pub name: String,
    pub address: IpAddr,
    /// 0 = all ports.
    #[serde(default)]
    pub port: u16,
    #[serde(default)]
    pub protocol: Protocol,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub dsr_type: DsrType,
    #[serde(default)]
    pub scheduler: Scheduler,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<Backend>,
    #[serde(default)]
    pub health_check: HealthCheck,
    /// What to do with new flows when no backend is up.
    #[serde(default)]
    pub all_down: AllDown,
    /// The backend that takes every flow while all others are down; only with `all_down = "sorry"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sorry_backend: Option<IpAddr>,
    /// Answer ICMP echo (ping) to the VIP's address in the balancer. VIPs
    /// sharing an address must agree.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub icmp_echo: bool,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// Forwarding mode. Only Direct Server Return exists: replies bypass the balancer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Dsr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum DsrType {
    /// Rewrite MAC addresses only; backends share a segment with the balancer.
    #[serde(rename = "l2")]
    L2,
    /// Encapsulate in IPIP to the backend's routable address.
    #[default]
    #[serde(rename = "l3-ipip")]
    L3Ipip,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scheduler {
    /// Consistent hashing of the 5-tuple over a weighted Maglev ring.
    #[default]
    Maglev,
    /// Consistent hashing of the client address only.
    SourceHash,
    /// The backends take turns, per CPU of the balancer; weights above 0 are ignored.
    RoundRobin,
    /// Turns in proportion to the weights, per CPU of the balancer.
    WeightedRoundRobin,
}

/// One real server of a VIP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backend {
    pub address: IpAddr,
    /// Must equal the VIP's port if given: DSR cannot translate ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Relative share of new flows, 0..=1000; 0 drains the backend, like `state = "drain"`.
    #[serde(default = "default_weight")]
    pub weight: u32,
    #[serde(default)]
    pub state: BackendState,
}

/// Largest backend weight.
pub const MAX_WEIGHT: u32 = 1000;

fn default_weight() -> u32 {
    1
}

impl Backend {
    /// The state that counts: weight 0 drains an otherwise active backend.
    pub fn effective_state(&self) -> BackendState {
        match self.state {
            BackendState::Active if self.weight == 0 => BackendState::Drain,
            state => state,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendState {
    /// Takes new flows (when healthy).
    #[default]
    Active,
    /// Takes no new flows; its existing flows continue.
    Drain,
    /// Takes nothing; its existing flows move to other backends.
    Disabled,
}

/// How a VIP's backends are probed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    #[serde(rename = "type", default)]
    pub kind: CheckType,
    /// Probe port; absent = the VIP port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default = "default_interval", with = "duration_text")]
    pub interval: Duration,
    #[serde(default = "default_timeout", with = "duration_text")]
    pub timeout: Duration,
    /// Consecutive successes that bring a backend up.
    #[serde(default = "default_rise")]
    pub rise: u32,
    /// Consecutive failures that take a backend down.
    #[serde(default = "default_fall")]
    pub fall: u32,
    /// http/https: the path to GET (default "/").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// http/https: accepted status or range (default 200-399).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_status: Option<StatusRange>,
    /// http/https: a substring the response body must contain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_body: Option<String>,
    /// http/https: the Host header (default: the backend address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// https: verify the backend's certificate (default false: the probe checks liveness, not identity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_verify: Option<bool>,
}

impl Default for HealthCheck {
    fn default() -> HealthCheck {
        HealthCheck {
            kind: CheckType::default(),
            port: None,
            interval: default_interval(),
            timeout: default_timeout(),
            rise: default_rise(),
            fall: default_fall(),
            path: None,
            expect_status: None,
            expect_body: None,
            host: None,
            tls_verify: None,
        }
    }
}

impl HealthCheck {
    pub const DEFAULT_PATH: &'static str = "/";
    pub const DEFAULT_EXPECT_STATUS: StatusRange = StatusRange {
        low: 200,
        high: 399,
    };

    /// The probe port for a VIP on `vip_port` (None when neither names one).
    pub fn port_for(&self, vip_port: u16) -> Option<u16> {
        self.port.or((vip_port != 0).then_some(vip_port))
    }

    pub fn path_or_default(&self) -> &str {
        self.path.as_deref().unwrap_or(Self::DEFAULT_PATH)
    }

    pub fn expect_status_or_default(&self) -> StatusRange {
        self.expect_status.unwrap_or(Self::DEFAULT_EXPECT_STATUS)
    }
}

fn default_interval() -> Duration {
    Duration::from_secs(2)
}
fn default_timeout() -> Duration {
    Duration::from_secs(1)
}
fn default_rise() -> u32 {
    2
}
fn default_fall() -> u32 {
    3
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckType {
    /// A TCP connect to the backend address.
    #[default]
    Tcp,
    /// An HTTP GET; checks the status and optionally the body.
    Http,
    /// Like http, over TLS.
    Https,
    /// A TCP connect to the VIP, sent through the same DSR path as client traffic.
    Tunnel,
    /// No probing: backends count as up.
    None,
}

impl CheckType {
    pub fn is_http(self) -> bool {
        matches!(self, CheckType::Http | CheckType::Https)
    }
}

impl fmt::Display for CheckType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CheckType::Tcp => "tcp",
            CheckType::Http => "http",
            CheckType::Https => "https",
            CheckType::Tunnel => "tunnel",
            CheckType::None => "none",
        })
    }
}

/// Policy for new flows when no backend of a VIP is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AllDown {
    /// Drop them (fail closed).
    #[default]
    Drop,
    /// Keep sending them to the backends that were up last (fail open).
    KeepLast,
    /// Send them to `sorry_backend`.
    Sorry,
}

/// Accepted HTTP statuses, inclusive. Written "200", 200 or "200-399".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusRange {
    pub low: u16,
    pub high: u16,
}

impl StatusRange {
    pub fn contains(&self, status: u16) -> bool {
        (self.low..=self.high).contains(&status)
    }
}

impl fmt::Display for StatusRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.low == self.high {
            write!(f, "{}", self.low)
        } else {
            write!(f, "{}-{}", self.low, self.high)
        }
    }
}

impl std::str::FromStr for StatusRange {
    type Err = String;

    fn from_str(text: &str) -> Result<StatusRange, String> {
        let bad = || {
            format!(
                "invalid status {text:?}: expected a status like 200 or a range like \"200-399\""
            )
        };
        let (low, high) = text.split_once('-').unwrap_or((text, text));
        let low = low.trim().parse().map_err(|_| bad())?;
        let high = high.trim().parse().map_err(|_| bad())?;
        Ok(StatusRange { low, high })
    }
}

impl Serialize for StatusRange {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for StatusRange {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<StatusRange, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = StatusRange;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a status like 200 or a range like \"200-399\"")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<StatusRange, E> {
                let status =
                    u16::try_from(v).map_err(|_| E::custom(format!("invalid status {v}")))?;
                Ok(StatusRange {
                    low: status,
                    high: status,
                })
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<StatusRange, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(-1))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<StatusRange, E> {
                v.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// A size in bytes, written as a whole number with a unit: `B`, `KiB`,
/// `MiB` or `GiB` ("512KiB", "64MiB").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    const UNITS: [(&'static str, u64); 4] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10), ("B", 1)];

    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl std::str::FromStr for ByteSize {
    type Err = String;

    fn from_str(text: &str) -> Result<ByteSize, String> {
        let bad = || {
            format!("invalid size {text:?}: expected a whole number and a unit B, KiB, MiB or GiB, like \"64MiB\"")
        };
        let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let (number, unit) = text.split_at(split);
        let number: u64 = number.parse().map_err(|_| bad())?;
        let (_, scale) = ByteSize::UNITS.iter().find(|(name, _)| *name == unit).ok_or_else(bad)?;
        number.checked_mul(*scale).map(ByteSize).ok_or_else(bad)
    }
}

impl fmt::Display for ByteSize {
    /// The largest unit that states the size exactly.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (name, scale) = ByteSize::UNITS
            .iter()
            .find(|(_, scale)| self.0 != 0 && self.0.is_multiple_of(*scale))
            .unwrap_or(&("B", 1));
        write!(f, "{}{name}", self.0 / scale)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ByteSize, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Durations as text: a whole number with a unit, `ms`, `s` or `m` ("500ms", "2s", "1m").
pub mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn parse(text: &str) -> Result<Duration, String> {
        let bad = || {
            format!("invalid duration {text:?}: expected a whole number and a unit ms, s or m, like \"2s\"")
        };
        let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let (number, unit) = text.split_at(split);
        let number: u64 = number.parse().map_err(|_| bad())?;
        let millis = match unit {
            "ms" => Some(number),
            "s" => number.checked_mul(1000),
            "m" => number.checked_mul(60_000),
            _ => None,
        };
        millis.map(Duration::from_millis).ok_or_else(bad)
    }

    /// The shortest exact text for `duration` (whole milliseconds).
    pub fn format(duration: Duration) -> String {
        let millis = duration.as_millis();
        if millis != 0 && millis.is_multiple_of(60_000) {
            format!("{}m", millis / 60_000)
        } else if millis.is_multiple_of(1000) {
            format!("{}s", millis / 1000)
        } else {
            format!("{millis}ms")
        }
    }

    pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format(*duration))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse(&text).map_err(serde::de::Error::custom)
    }
}
