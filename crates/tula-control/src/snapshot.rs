//! [`Snapshot`]: the running model of one revision, built once when it is
//! published and shared by every reader (API handlers, the UI, `/metrics`,
//! the health checker) without a lock: the config, indexes over it, the
//! backend ids, health, and a read handle on the data plane. Readers hold an
//! `Arc` and never clone or re-serialise the whole config: its JSON is
//! encoded at most once per revision.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use tula_config::{Backend, Config, Protocol, Vip};
use tula_dataplane::{Counters, Dataplane};

use crate::flows::{FlowBoard, FlowSample};
use crate::health::Health;
use crate::ids::{IdKind, Ids};
use crate::plan::ring_members;
use crate::status::{MapReads, Sources};
use crate::store::ConfigText;
use crate::{status, ControlError, NewFlows, Serving, VipServing, VipStatus};

/// A config with its indexes, shared by every snapshot of the same revision
/// (a health change publishes a new snapshot over the same model).
pub(crate) struct Model {
    pub config: Config,
    /// The redacted settings outside the VIPs, as JSON (what a delta compares).
    pub globals: serde_json::Map<String, serde_json::Value>,
    by_name: HashMap<String, usize>,
    by_socket: HashMap<(IpAddr, u16, Protocol), usize>,
    /// Per VIP (same positions as `config.vips`), its backends by address,
    /// indexed at the first lookup: a change indexes none of 100,000 backends.
    backends: Vec<OnceLock<HashMap<IpAddr, usize>>>,
    config_json: OnceLock<Arc<str>>,
    vips_json: OnceLock<Arc<str>>,
    /// `vips_json` gzip-compressed, for clients that accept it.
    vips_gzip: OnceLock<Arc<[u8]>>,
    /// The settings outside the VIPs as TOML.
    globals_toml: Arc<str>,
    /// Each VIP's `[[vip]]` table as TOML (same positions as `config.vips`),
    /// made once and handed on to the next model while the VIP is unchanged.
    vip_toml: Vec<OnceLock<Arc<str>>>,
    /// Each VIP as JSON, kept the same way: `vips_json` of a revision that
    /// changed one VIP encodes that one and copies the others.
    vip_json: Vec<OnceLock<Arc<str>>>,
}

impl Model {
    pub(crate) fn new(mut config: Config) -> Model {
        let globals = crate::diff::globals_tree(&mut config);
        let vips = std::mem::take(&mut config.vips);
        let globals_toml = config.to_toml_string().into();
        config.vips = vips;
        let vip_toml = config.vips.iter().map(|_| OnceLock::new()).collect();
        let vip_json = config.vips.iter().map(|_| OnceLock::new()).collect();
        let by_name = config
            .vips
            .iter()
            .enumerate()
            .map(|(i, v)| (v.name.clone(), i))
            .collect();
        let by_socket = config
            .vips
            .iter()
            .enumerate()
            .map(|(i, v)| ((v.address, v.port, v.protocol), i))
            .collect();
        let backends = config.vips.iter().map(|_| OnceLock::new()).collect();
        Model {
            config,
            globals,
            by_name,
            by_socket,
            backends,
            config_json: OnceLock::new(),
            vips_json: OnceLock::new(),
            vips_gzip: OnceLock::new(),
            globals_toml,
            vip_toml,
            vip_json,
        }
    }

    /// Takes `previous`'s TOML and JSON of every VIP that is the same in both.
    pub(crate) fn inherit_text(&self, previous: &Model) {
        for (j, vip) in self.config.vips.iter().enumerate() {
            let Some(i) = previous.vip_index(&vip.name) else {
                continue;
            };
            if previous.config.vips[i] == *vip {
                for (from, to) in [
                    (&previous.vip_toml, &self.vip_toml),
                    (&previous.vip_json, &self.vip_json),
                ] {
                    if let Some(text) = from[i].get() {
                        let _ = to[j].set(text.clone());
                    }
                }
            }
        }
    }

    /// The config as TOML, table by table (what the file and the revision
    /// hold): only the VIPs whose text is not kept yet are serialised.
    pub(crate) fn config_text(&self) -> ConfigText {
        let vips = self.config.vips.iter().zip(&self.vip_toml);
        ConfigText {
            globals: self.globals_toml.clone(),
            vips: vips
                .map(|(vip, slot)| {
                    let table = slot.get_or_init(|| Config::vip_toml_string(vip).into());
                    (vip.name.clone(), table.clone())
                })
                .collect(),
        }
    }

    pub(crate) fn vip_index(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    pub(crate) fn vip(&self, name: &str) -> Option<&Vip> {
        self.vip_index(name).map(|i| &self.config.vips[i])
    }

    pub(crate) fn backend(&self, vip: &str, address: IpAddr) -> Option<&Backend> {
        let i = self.vip_index(vip)?;
        let declared = &self.config.vips[i];
        let by_address = self.backends[i].get_or_init(|| {
            let addresses = declared.backends.iter().map(|b| b.address);
            addresses.enumerate().map(|(j, a)| (a, j)).collect()
        });
        Some(&declared.backends[*by_address.get(&address)?])
    }
}

/// One size of the loaded data plane (`kind.setting()` names it) and how
/// much of it the running config uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub kind: IdKind,
    pub used: usize,
    pub limit: u32,
}

/// What runs now: one revision's config, indexed, with health and ids.
pub struct Snapshot {
    revision: u64,
    pub(crate) model: Arc<Model>,
    pub(crate) ids: Arc<Ids>,
    pub(crate) health: Arc<Health>,
    /// A second handle on the pinned maps, for reading counters and the
    /// connection table without the writer.
    pub(crate) reader: Option<Arc<Dataplane>>,
    /// Whether a data plane is loaded or adopted.
    loaded: bool,
    /// Active flows, sampled by their own thread (shared by every snapshot).
    flows: Arc<FlowBoard>,
}

impl Snapshot {
    pub(crate) fn new(
        revision: u64,
        model: Arc<Model>,
        ids: Arc<Ids>,
        health: Arc<Health>,
        reader: Option<Arc<Dataplane>>,
        loaded: bool,
        flows: Arc<FlowBoard>,
    ) -> Snapshot {
        Snapshot {
            revision,
            model,
            ids,
            health,
            reader,
            loaded,
            flows,
        }
    }

    /// The running revision (0 = nothing applied yet).
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// The running config.
    pub fn config(&self) -> &Config {
        &self.model.config
    }

    /// VIP `name`, found through the index.
    pub fn vip(&self, name: &str) -> Option<&Vip> {
        self.model.vip(name)
    }

    /// The VIP listening on `address:port/protocol`.
    pub fn vip_at(&self, address: IpAddr, port: u16, protocol: Protocol) -> Option<&Vip> {
        let i = *self.model.by_socket.get(&(address, port, protocol))?;
        Some(&self.model.config.vips[i])
    }

    /// Backend `address` of VIP `vip`.
    pub fn backend(&self, vip: &str, address: IpAddr) -> Option<&Backend> {
        self.model.backend(vip, address)
    }

    /// Backend `address` of VIP `vip`'s data-plane id.
    pub fn backend_id(&self, vip: &str, address: IpAddr) -> Option<u32> {
        self.ids.backend(vip, &address)
    }

    /// Whether the health checker last saw the backend up (true until it reports).
    pub fn is_healthy(&self, vip: &str, address: IpAddr) -> bool {
        self.health.is_up(vip, address)
    }

    /// The config as JSON, the API token redacted: encoded once per revision.
    pub fn config_json(&self) -> Arc<str> {
        self.model
            .config_json
            .get_or_init(|| {
                serde_json::to_string(&self.model.config.redacted())
                    .expect("a config always encodes")
                    .into()
            })
            .clone()
    }

    /// The VIPs as a JSON array: encoded once per revision.
    pub fn vips_json(&self) -> Arc<str> {
        self.model
            .vips_json
            .get_or_init(|| {
                let model = &self.model;
                let vips = model.config.vips.iter().zip(&model.vip_json);
                let tables: Vec<Arc<str>> = vips
                    .map(|(vip, slot)| {
                        let text = || serde_json::to_string(vip).expect("a VIP always encodes");
                        slot.get_or_init(|| text().into()).clone()
                    })
                    .collect();
                let mut text =
                    String::with_capacity(tables.iter().map(|t| t.len() + 1).sum::<usize>() + 2);
                text.push('[');
                for (i, table) in tables.iter().enumerate() {
                    if i > 0 {
                        text.push(',');
                    }
                    text.push_str(table);
                }
                text.push(']');
                text.into()
            })
            .clone()
    }

    /// [`Snapshot::vips_json`] gzip-compressed: compressed once per revision
    /// (a 1,000 x 100 answer is 5.6 MB, too much to send 100 times at once).
    pub fn vips_gzip(&self) -> Arc<[u8]> {
        self.model
            .vips_gzip
            .get_or_init(|| {
                use std::io::Write;
                let mut encoder =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                encoder
                    .write_all(self.vips_json().as_bytes())
                    .and_then(|()| encoder.finish())
                    .expect("compressing into memory cannot fail")
                    .into()
            })
            .clone()
    }

    /// Per-VIP and per-backend status of every VIP, traffic included.
    pub fn status(&self) -> Result<Vec<VipStatus>, ControlError> {
        self.status_where(|_| true, MapReads::Traffic)
    }

    /// Status of the VIPs `keep` keeps: their traffic counters are read (by
    /// the caller, no lock held) when `reads` says so; flows come from the
    /// latest sample ([`Snapshot::flows`]), so they cost nothing here.
    pub fn status_where(
        &self,
        keep: impl Fn(&Vip) -> bool,
        reads: MapReads,
    ) -> Result<Vec<VipStatus>, ControlError> {
        let flows = self.flows.latest();
        let sources = Sources {
            config: &self.model.config,
            ids: &self.ids,
            health: &self.health,
            flows: &flows,
            window: match flows.taken_at {
                Some(_) => flows.window,
                None => self.flows.options().window,
            },
            dataplane: self.reader.as_deref(),
        };
        status::status(&sources, keep, reads).map_err(|source| ControlError::DataplaneIo {
            pin_dir: self.model.config.pin_dir.clone(),
            message: source.to_string(),
        })
    }

    /// The latest walk of the connection table.
    pub fn flows(&self) -> Arc<FlowSample> {
        self.flows.latest()
    }

    /// What this node can serve, without reading any map: whether a data
    /// plane is loaded, where it is attached, and where each VIP's new flows
    /// go. Cheap enough to poll (the BGP announcer does).
    pub fn serving(&self) -> Serving {
        let config = &self.model.config;
        Serving {
            loaded: self.loaded,
            interfaces: config.interfaces.clone(),
            vips: config
                .vips
                .iter()
                .map(|vip| VipServing {
                    name: vip.name.clone(),
                    address: vip.address,
                    new_flows: ring_members(vip, &self.health).0,
                })
                .collect(),
        }
    }

    /// What VIP `name`'s Maglev ring is built from here: where its new flows
    /// go and the (address, weight) members, sorted by address. With the
    /// ring size, this decides the ring (slots are keyed by address, not by
    /// this node's ids), so nodes compare rings by comparing these.
    pub fn ring_inputs(&self, name: &str) -> Option<(NewFlows, Vec<(IpAddr, u32)>)> {
        let (new_flows, mut members) =
            crate::plan::ring_inputs(self.model.vip(name)?, &self.health);
        members.sort_unstable();
        Some((new_flows, members))
    }

    /// Each size of the loaded data plane with what the running config uses
    /// of it (VIP ids, backend ids, backend addresses); none before a data
    /// plane is loaded.
    pub fn usage(&self) -> Vec<Usage> {
        let Some(reader) = &self.reader else {
            return Vec::new();
        };
        [
            (IdKind::Vip, reader.max_vips()),
            (IdKind::Backend, reader.max_backends()),
            (IdKind::BackendAddress, reader.max_backend_addresses()),
        ]
        .into_iter()
        .map(|(kind, limit)| Usage {
            kind,
            used: self.ids.in_use(kind),
            limit,
        })
        .collect()
    }

    /// The data plane's global counters (all zero before anything is loaded).
    pub fn counters(&self) -> Result<Counters, ControlError> {
        match &self.reader {
            None => Ok(Counters::default()),
            Some(reader) => reader
                .counters()
                .map_err(|source| ControlError::DataplaneIo {
                    pin_dir: self.model.config.pin_dir.clone(),
                    message: source.to_string(),
                }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two VIPs, one of each protocol, with most keys set.
    const CONFIG: &str = r#"
            interfaces = ["lo"]
            path_mtu = { lo = 1400 }
            keep_revisions = 7
            [api]
            token = "0123456789abcdef"
            [[vip]]
            name = "web"
            address = "203.0.113.10"
            port = 80
            all_down = "sorry"
            sorry_backend = "198.18.9.9"
            health_check = { type = "http", path = "/ready", interval = "5s" }
            backends = [{ address = "198.18.3.2" }, { address = "198.18.3.3", weight = 2, state = "drain" }]
            [[vip]]
            name = "dns"
            address = "203.0.113.11"
            port = 53
            protocol = "udp"
            backends = [{ address = "198.18.4.2" }]
        "#;

    #[test]
    fn the_toml_made_vip_by_vip_reads_back_to_the_same_config() {
        let text = CONFIG;
        let config = Config::from_toml_str(text).unwrap();
        let first = Model::new(config.clone());
        assert_eq!(
            Config::from_toml_str(&first.config_text().join()).unwrap(),
            config
        );
        // The next model keeps the unchanged VIP's text and makes the changed one's.
        let mut changed = config.clone();
        changed.vips[1].backends[0].weight = 9;
        let next = Model::new(changed.clone());
        next.inherit_text(&first);
        assert!(next.vip_toml[0].get().is_some() && next.vip_toml[1].get().is_none());
        assert_eq!(
            Config::from_toml_str(&next.config_text().join()).unwrap(),
            changed
        );
        let empty = Model::new(Config::default());
        assert_eq!(
            Config::from_toml_str(&empty.config_text().join()).unwrap(),
            Config::default()
        );
    }

    #[test]
    fn the_vips_json_made_vip_by_vip_is_the_list_encoded_whole_and_kept_per_vip() {
        let text = CONFIG;
        let snapshot = |model: Arc<Model>| {
            let none = Arc::new(FlowBoard::default());
            Snapshot::new(1, model, Arc::default(), Arc::default(), None, false, none)
        };
        let config = Config::from_toml_str(text).unwrap();
        let first = Arc::new(Model::new(config.clone()));
        let json = snapshot(first.clone()).vips_json();
        assert_eq!(&*json, serde_json::to_string(&config.vips).unwrap());
        let mut changed = config;
        changed.vips[1].backends[0].weight = 9;
        let next = Arc::new(Model::new(changed.clone()));
        next.inherit_text(&first);
        let kept = next.vip_json[0]
            .get()
            .expect("the unchanged VIP's JSON is kept");
        assert!(Arc::ptr_eq(kept, first.vip_json[0].get().unwrap()));
        assert!(next.vip_json[1].get().is_none());
        let json = snapshot(next).vips_json();
        assert_eq!(&*json, serde_json::to_string(&changed.vips).unwrap());
        let empty = snapshot(Arc::new(Model::new(Config::default())));
        assert_eq!(&*empty.vips_json(), "[]");
    }
}
