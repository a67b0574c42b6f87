//! tula's declarative config: the model an operator writes (TOML, by default at
//! [`DEFAULT_CONFIG_PATH`]), its decoding with every problem reported at once,
//! and the validation rules that run before anything is applied.
//!
//! ```
//! let config = tula_config::Config::from_toml_str(r#"
//!     interfaces = ["eth0"]
//!
//!     [[vip]]
//!     name = "web"
//!     address = "203.0.113.10"
//!     port = 80
//!     backends = [{ address = "198.18.3.2" }, { address = "198.18.3.3", weight = 3 }]
//! "#).unwrap();
//! config.validate(&tula_config::HostFacts::default()).unwrap();
//! assert_eq!(config.vips[0].backends[1].weight, 3);
//! ```
//!
//! Problems are reported as `path: message`, the path naming VIPs by name:
//! `vips[web].backends[2].weight: 1001 is out of range 0..=1000`.

mod address_set;
mod decode;
mod error;
mod model;
mod validate;

pub use address_set::AddressSet;
pub use error::{ConfigError, ConfigErrors};
pub use model::{
    duration_text, AllDown, Api, Backend, BackendState, ByteSize, CheckType, Cluster, Config, DsrType, HealthCheck,
    Icmp, Mode, Protocol, Scheduler, StatusRange, Vip, DEFAULT_CONFIG_PATH, MAX_WEIGHT,
};
pub use validate::{is_valid_vip_name, HostFacts, Subnet, MIN_PATH_MTU, MIN_TOKEN_LEN};

impl Config {
    /// Decodes TOML, reporting every syntax error, wrong type and unknown key at once.
    /// Does not validate: call [`Config::validate`] before using the result.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigErrors> {
        decode::decode(text)
    }

    /// The config as TOML that [`Config::from_toml_str`] reads back to an equal config.
    pub fn to_toml_string(&self) -> String {
        toml::to_string(self).expect("every config value has a TOML form")
    }

    /// One VIP as a `[[vip]]` table: a config's settings without VIPs
    /// ([`Config::to_toml_string`]) followed by each VIP's table reads back
    /// to the same config, so a VIP's text can be kept while it is unchanged.
    pub fn vip_toml_string(vip: &Vip) -> String {
        #[derive(serde::Serialize)]
        struct OneVip<'a> {
            vip: [&'a Vip; 1],
        }
        toml::to_string(&OneVip { vip: [vip] }).expect("every VIP has a TOML form")
    }

    /// Checks every rule, reporting every problem at once. Rules that need a fact
    /// about the host run only when `host` provides it.
    pub fn validate(&self, host: &HostFacts) -> Result<(), ConfigErrors> {
        validate::validate(self, host)
    }

    /// The next hops a data plane loaded with this config keeps:
    /// `max_backend_addresses`, or when it is not set `max_backends` (one
    /// next hop per backend id always fits, whatever a change holds
    /// meanwhile); never more than `max_backends`, which bounds the addresses.
    pub fn backend_address_limit(&self) -> u32 {
        self.max_backend_addresses.unwrap_or(self.max_backends).min(self.max_backends)
    }

    /// [`Config::validate`] after a change to the VIPs at positions `touched`
    /// only, the others having passed before: every global rule and every
    /// rule across VIPs, but each VIP's own rules only for the touched ones.
    /// What a change of one VIP costs then follows that VIP's size.
    pub fn validate_touched(
        &self,
        host: &HostFacts,
        touched: &[usize],
    ) -> Result<(), ConfigErrors> {
        validate::validate_touched(self, host, touched)
    }

    /// This config as a cluster shares it: without the settings each node
    /// keeps for itself (`[cluster]`, and `pin_dir`, which is where this
    /// host's data plane is pinned).
    pub fn shared(&self) -> Config {
        let mut shared = self.clone();
        shared.cluster = None;
        shared.pin_dir = Config::default().pin_dir;
        shared
    }

    /// Takes `node`'s own settings (see [`Config::shared`]) in place of this config's.
    pub fn keep_node_settings(&mut self, node: &Config) {
        self.cluster = node.cluster.clone();
        self.pin_dir = node.pin_dir.clone();
    }

    /// Whether two configs are the same but for each node's own settings.
    pub fn same_shared(&self, other: &Config) -> bool {
        let mut other = other.clone();
        other.keep_node_settings(self);
        *self == other
    }

    /// The VIP named `name`.
    pub fn vip(&self, name: &str) -> Option<&Vip> {
        self.vips.iter().find(|v| v.name == name)
    }

    /// A copy safe to show: the API token replaced by `"********"`.
    pub fn redacted(&self) -> Config {
        let mut copy = self.clone();
        if copy.api.token.is_some() {
            copy.api.token = Some("********".to_string());
        }
        copy
    }
}
