//! From a config to what the data plane must hold, and from one such state to
//! another as an ordered list of operations that touch only what differs.
//!
//! A backend is in its VIP's Maglev ring when it is active, has a weight
//! above 0 and is healthy. It is *alive* in the backend table (flows stuck
//! to it keep going there) when it is active or draining and healthy; a
//! disabled or unhealthy backend is not alive, so its flows re-hash.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use tula_config::{AllDown, BackendState, Config, ConfigError, ConfigErrors, DsrType, Scheduler};
use tula_dataplane::{Backend, Dsr, InterfaceSpec, VipKey, VipSpec};
use tula_maglev::RingBackend;

use crate::ids::Ids;

/// Health as the checker reports it, by (VIP name, backend address); absent = healthy.
pub(crate) type Health = BTreeMap<(String, IpAddr), bool>;

/// Everything the data plane holds for one config.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct DataplaneState {
    /// Attached interfaces and how they are set up as egress; `None` = not known
    /// (adopted from a pinned data plane), so it is set again.
    pub interfaces: BTreeMap<String, Option<InterfaceSpec>>,
    pub vips: BTreeMap<VipKey, VipEntry>,
    pub backends: BTreeMap<u32, Backend>,
}

/// A VIP as programmed: its spec and what its ring is built from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct VipEntry {
    pub name: String,
    pub spec: VipSpec,
    /// The ring's inputs, sorted by key: ring members with their weights.
    pub ring: Vec<RingBackend>,
}

/// The state `config` asks for, with `ids` assigned and `health` applied.
pub(crate) fn plan(
    config: &Config,
    ids: &Ids,
    health: &Health,
) -> Result<DataplaneState, ConfigErrors> {
    let mut errors = Vec::new();
    let mut state = DataplaneState::default();
    let tunnel_src = match config.tunnel_source {
        Some(IpAddr::V4(v4)) => Some(v4),
        _ => None,
    };
    for ifname in &config.interfaces {
        state.interfaces.insert(
            ifname.clone(),
            Some(InterfaceSpec {
                tunnel_src,
                vlan: None,
            }),
        );
    }
    for vip in &config.vips {
        let path = format!("vips[{}]", vip.name);
        let Some(addr) = ipv4(&path, vip.address, &mut errors) else {
            continue;
        };
        let scheduler = match vip.scheduler {
            Scheduler::Maglev => tula_dataplane::Scheduler::Maglev,
            Scheduler::SourceHash => tula_dataplane::Scheduler::SourceHash,
            other => {
                errors.push(unsupported_scheduler(&vip.name, other));
                continue;
            }
        };
        let key = VipKey {
            addr,
            port: vip.port,
            protocol: match vip.protocol {
                tula_config::Protocol::Tcp => tula_dataplane::Protocol::Tcp,
                tula_config::Protocol::Udp => tula_dataplane::Protocol::Udp,
            },
        };
        let spec = VipSpec {
            id: ids.vip(&vip.name).expect("every VIP has an id"),
            dsr: match vip.dsr_type {
                DsrType::L2 => Dsr::L2,
                DsrType::L3Ipip => Dsr::L3Ipip,
            },
            scheduler,
        };
        let mut ring = Vec::new();
        for (i, backend) in vip.backends.iter().enumerate() {
            let Some(addr) = ipv4(
                &format!("{path}.backends[{i}]"),
                backend.address,
                &mut errors,
            ) else {
                continue;
            };
            let id = ids
                .backend(&vip.name, &backend.address)
                .expect("every backend has an id");
            let healthy = health
                .get(&(vip.name.clone(), backend.address))
                .copied()
                .unwrap_or(true);
            let state_now = backend.effective_state();
            let alive = healthy && state_now != BackendState::Disabled;
            state.backends.insert(id, Backend { addr, alive });
            if healthy && state_now == BackendState::Active {
                ring.push(RingBackend {
                    id,
                    key: backend.address.to_string(),
                    weight: backend.weight,
                });
            }
        }
        if ring.is_empty() {
            // No backend can take new flows. What happens to them is the VIP's
            // all_down policy (issue 5); until then every policy drops them.
            match vip.all_down {
                AllDown::Drop | AllDown::KeepLast | AllDown::Sorry => {}
            }
        }
        ring.sort_by(|a, b| a.key.cmp(&b.key));
        state.vips.insert(
            key,
            VipEntry {
                name: vip.name.clone(),
                spec,
                ring,
            },
        );
    }
    ConfigErrors::check(errors)?;
    Ok(state)
}

/// What this data plane can run beyond what tula-config checks: problems as config errors.
pub(crate) fn unsupported(config: &Config) -> Vec<ConfigError> {
    config
        .vips
        .iter()
        .filter(|v| !matches!(v.scheduler, Scheduler::Maglev | Scheduler::SourceHash))
        .map(|v| unsupported_scheduler(&v.name, v.scheduler))
        .collect()
}

fn unsupported_scheduler(vip: &str, scheduler: Scheduler) -> ConfigError {
    let name = serde_json::to_value(scheduler)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    ConfigError::new(
        format!("vips[{vip}].scheduler"),
        format!(
            "\"{name}\" is not supported by the data plane yet; use \"maglev\" or \"source-hash\""
        ),
    )
}

fn ipv4(path: &str, address: IpAddr, errors: &mut Vec<ConfigError>) -> Option<Ipv4Addr> {
    match address {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(_) => {
            errors.push(ConfigError::new(
                format!("{path}.address"),
                format!("IPv6 address {address} is not supported yet (IPv4 only)"),
            ));
            None
        }
    }
}

/// One change to the data plane.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Op {
    /// Attach the balancer to an interface (it is then registered for egress with the default spec).
    Attach(String),
    SetInterface(String, InterfaceSpec),
    /// Detach the balancer and unregister the interface.
    Detach(String),
    SetBackend(u32, Backend),
    RemoveBackend(u32),
    /// Set the VIP and swap in a ring built from the entry.
    SetVip(VipKey, VipEntry),
    RemoveVip(VipKey, String),
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Attach(ifname) => write!(f, "attaching to interface {ifname}"),
            Op::SetInterface(ifname, spec) => match spec.tunnel_src {
                Some(src) => write!(f, "setting interface {ifname} (tunnel source {src})"),
                None => write!(
                    f,
                    "setting interface {ifname} (tunnel source: its own address)"
                ),
            },
            Op::Detach(ifname) => write!(f, "detaching from interface {ifname}"),
            Op::SetBackend(id, b) => write!(
                f,
                "setting backend {id} ({}, {})",
                b.addr,
                if b.alive { "alive" } else { "not alive" }
            ),
            Op::RemoveBackend(id) => write!(f, "removing backend {id}"),
            Op::SetVip(key, entry) => write!(
                f,
                "setting VIP {} ({key}, id {}, {} backends in the ring)",
                entry.name,
                entry.spec.id,
                entry.ring.len()
            ),
            Op::RemoveVip(key, name) => write!(f, "removing VIP {name} ({key})"),
        }
    }
}

/// The operations that take the data plane from `old` to `new`, ordered so
/// that traffic never meets a half-made change: backends that start taking
/// flows are alive before a ring names them; rings stop naming a backend
/// before it stops being alive; a VIP goes before its backends do.
pub(crate) fn transition(old: &DataplaneState, new: &DataplaneState) -> Vec<Op> {
    let mut ops = Vec::new();
    for (ifname, spec) in &new.interfaces {
        let spec = spec.clone().unwrap_or_default();
        match old.interfaces.get(ifname) {
            None => {
                ops.push(Op::Attach(ifname.clone()));
                if spec != InterfaceSpec::default() {
                    ops.push(Op::SetInterface(ifname.clone(), spec));
                }
            }
            Some(old_spec) if old_spec.as_ref() != Some(&spec) => {
                ops.push(Op::SetInterface(ifname.clone(), spec))
            }
            Some(_) => {}
        }
    }
    let changed_backends = new
        .backends
        .iter()
        .filter(|(id, b)| old.backends.get(id) != Some(b));
    let (alive, not_alive): (Vec<_>, Vec<_>) = changed_backends.partition(|(_, b)| b.alive);
    ops.extend(alive.into_iter().map(|(id, b)| Op::SetBackend(*id, *b)));
    for (key, entry) in &new.vips {
        if old.vips.get(key) != Some(entry) {
            ops.push(Op::SetVip(*key, entry.clone()));
        }
    }
    ops.extend(not_alive.into_iter().map(|(id, b)| Op::SetBackend(*id, *b)));
    for (key, entry) in &old.vips {
        if !new.vips.contains_key(key) {
            ops.push(Op::RemoveVip(*key, entry.name.clone()));
        }
    }
    for id in old.backends.keys() {
        if !new.backends.contains_key(id) {
            ops.push(Op::RemoveBackend(*id));
        }
    }
    for ifname in old.interfaces.keys() {
        if !new.interfaces.contains_key(ifname) {
            ops.push(Op::Detach(ifname.clone()));
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(backends: &str) -> Config {
        Config::from_toml_str(&format!(
            r#"
            interfaces = ["eth0"]
            [[vip]]
            name = "web"
            address = "203.0.113.10"
            port = 80
            backends = [{backends}]
            [[vip]]
            name = "dns"
            address = "203.0.113.11"
            port = 53
            protocol = "udp"
            backends = [{{ address = "198.18.4.2" }}]
            "#
        ))
        .unwrap()
    }

    fn state(config: &Config, ids: &mut Ids, health: &Health) -> DataplaneState {
        *ids = ids.assign(config).unwrap();
        plan(config, ids, health).unwrap()
    }

    #[test]
    fn backend_states_decide_ring_membership_and_liveness() {
        let config = config(
            r#"{ address = "198.18.3.2" }, { address = "198.18.3.3", state = "drain" },
               { address = "198.18.3.4", weight = 0 }, { address = "198.18.3.5", state = "disabled" },
               { address = "198.18.3.6", weight = 3 }"#,
        );
        let mut ids = Ids::default();
        let mut health = Health::new();
        health.insert(("web".into(), "198.18.3.6".parse().unwrap()), false);
        let state = state(&config, &mut ids, &health);
        let web = state.vips.values().find(|v| v.name == "web").unwrap();
        let ring: Vec<&str> = web.ring.iter().map(|b| b.key.as_str()).collect();
        assert_eq!(
            ring,
            ["198.18.3.2"],
            "only the active, weighted, healthy backend is in the ring"
        );
        let alive = |addr: &str| {
            let id = ids.backend("web", &addr.parse().unwrap()).unwrap();
            state.backends[&id].alive
        };
        assert!(alive("198.18.3.2") && alive("198.18.3.3") && alive("198.18.3.4"));
        assert!(!alive("198.18.3.5"), "disabled backends are not alive");
        assert!(!alive("198.18.3.6"), "unhealthy backends are not alive");
    }

    #[test]
    fn only_what_changed_is_touched_in_a_safe_order() {
        let mut ids = Ids::default();
        let health = Health::new();
        let old = state(
            &config(r#"{ address = "198.18.3.2" }, { address = "198.18.3.3" }"#),
            &mut ids,
            &health,
        );
        let new = state(
            &config(
                r#"{ address = "198.18.3.3", state = "disabled" }, { address = "198.18.3.9" }"#,
            ),
            &mut ids,
            &health,
        );
        let ops = transition(&old, &new);
        let text: Vec<String> = ops.iter().map(|op| op.to_string()).collect();
        let web_new = ids.backend("web", &"198.18.3.9".parse().unwrap()).unwrap();
        assert_eq!(web_new, 3, "a new backend takes a never-used id");
        assert_eq!(
            text,
            vec![
                "setting backend 3 (198.18.3.9, alive)".to_string(),
                "setting VIP web (tcp 203.0.113.10:80, id 0, 1 backends in the ring)".to_string(),
                "setting backend 1 (198.18.3.3, not alive)".to_string(),
                "removing backend 0".to_string(),
            ],
            "the dns VIP and the interface are untouched"
        );
        assert!(transition(&new, &new).is_empty());
    }

    #[test]
    fn unsupported_schedulers_are_config_errors() {
        let mut config = config(r#"{ address = "198.18.3.2" }"#);
        config.vips[0].scheduler = Scheduler::RoundRobin;
        let errors = unsupported(&config);
        assert_eq!(errors.len(), 1);
        assert_eq!(
            errors[0].to_string(),
            "vips[web].scheduler: \"round-robin\" is not supported by the data plane yet; use \"maglev\" or \"source-hash\""
        );
    }
}
