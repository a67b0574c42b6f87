//! From a config to what the data plane must hold, and from one such state to
//! another as an ordered list of operations that touch only what differs.
//!
//! A backend is in its VIP's Maglev ring when it is active, has a weight
//! above 0 and is healthy. It is *alive* in the backend table (flows stuck
//! to it keep going there) when it is active or draining and healthy; a
//! disabled or unhealthy backend is not alive, so its flows re-hash.
//!
//! When no backend of a VIP can take new flows, its `all_down` policy picks
//! the ring: `drop` leaves it empty, `keep-last` keeps the backends that were
//! up last (alive again, though unhealthy), `sorry` holds the sorry backend
//! alone. The sorry backend is always in the backend table and alive, so
//! flows that started on it finish there.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use tula_config::{AllDown, BackendState, Config, ConfigErrors, DsrType, Scheduler, Vip};
use tula_dataplane::{Backend, Dsr, IcmpSettings, InterfaceSpec, VipKey, VipSpec};
use tula_maglev::RingBackend;

use crate::health::Health;
use crate::ids::Ids;
use crate::NewFlows;

/// Everything the data plane holds for one config.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct DataplaneState {
    /// Attached interfaces and how they are set up as egress; `None` = not known
    /// (adopted from a pinned data plane), so it is set again.
    pub interfaces: BTreeMap<String, Option<InterfaceSpec>>,
    /// Shared with the states planned before while the VIP is unchanged, so
    /// copying a state of 1,000 VIPs copies 1,000 pointers, not their rings.
    pub vips: BTreeMap<VipKey, Arc<VipEntry>>,
    pub backends: BackendTable,
    /// How too-big DF packets are answered; `None` = not known, so it is set again.
    pub icmp: Option<IcmpSettings>,
}

/// Ids in one bucket of a [`BackendTable`].
const BUCKET_IDS: u32 = 1024;

/// Backends by id, in buckets of [`BUCKET_IDS`] ids shared between states:
/// a state planned from another copies ~100 pointers and one bucket per
/// backend it changes, and comparing two skips the buckets they share.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct BackendTable {
    buckets: BTreeMap<u32, Arc<BTreeMap<u32, Backend>>>,
}

impl BackendTable {
    pub(crate) fn get(&self, id: &u32) -> Option<&Backend> {
        self.buckets.get(&(id / BUCKET_IDS))?.get(id)
    }

    pub(crate) fn get_mut(&mut self, id: &u32) -> Option<&mut Backend> {
        Arc::make_mut(self.buckets.get_mut(&(id / BUCKET_IDS))?).get_mut(id)
    }

    pub(crate) fn insert(&mut self, id: u32, backend: Backend) {
        let bucket = self.buckets.entry(id / BUCKET_IDS).or_default();
        if bucket.get(&id) != Some(&backend) {
            Arc::make_mut(bucket).insert(id, backend);
        }
    }

    /// Every backend, in id order.
    pub(crate) fn values(&self) -> impl Iterator<Item = &Backend> {
        self.iter().map(|(_, backend)| backend)
    }

    /// Every backend with its id, in id order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&u32, &Backend)> {
        self.buckets.values().flat_map(|bucket| bucket.iter())
    }

    pub(crate) fn remove(&mut self, id: &u32) {
        let key = id / BUCKET_IDS;
        let Some(bucket) = self.buckets.get_mut(&key) else {
            return;
        };
        if bucket.contains_key(id) {
            Arc::make_mut(bucket).remove(id);
            if bucket.is_empty() {
                self.buckets.remove(&key);
            }
        }
    }

    /// (backends added or changed, ids removed) from `old` to `self`, in id
    /// order, looking only into the buckets the two do not share.
    pub(crate) fn differences<'a>(
        &'a self,
        old: &'a BackendTable,
    ) -> (Vec<(&'a u32, &'a Backend)>, Vec<&'a u32>) {
        static EMPTY: BTreeMap<u32, Backend> = BTreeMap::new();
        let (mut changed, mut removed) = (Vec::new(), Vec::new());
        let keys: std::collections::BTreeSet<&u32> =
            self.buckets.keys().chain(old.buckets.keys()).collect();
        for key in keys {
            let (held, wanted) = (old.buckets.get(key), self.buckets.get(key));
            if let (Some(held), Some(wanted)) = (held, wanted) {
                if Arc::ptr_eq(held, wanted) {
                    continue;
                }
            }
            let held = held.map_or(&EMPTY, |b| &**b);
            let wanted = wanted.map_or(&EMPTY, |b| &**b);
            let (c, r) = differences(held, wanted);
            changed.extend(c);
            removed.extend(r);
        }
        (changed, removed)
    }
}

impl std::ops::Index<&u32> for BackendTable {
    type Output = Backend;

    fn index(&self, id: &u32) -> &Backend {
        self.get(id).expect("no backend with this id")
    }
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
    let mut state = DataplaneState::default();
    plan_globals(config, &mut state);
    for vip in &config.vips {
        plan_vip(vip, ids, health, &mut state);
    }
    Ok(state)
}

/// `held` (what `old` VIPs were planned into) with only the touched VIPs
/// planned again: `old` are their declarations before (absent = added),
/// `new` after (absent = removed). The global settings are unchanged.
pub(crate) fn plan_touched(
    held: &DataplaneState,
    old: &[&Vip],
    new: &[&Vip],
    old_ids: &Ids,
    ids: &Ids,
    health: &Health,
) -> Result<DataplaneState, ConfigErrors> {
    let mut state = held.clone();
    for vip in old {
        if let Some(id) = old_ids.vip(&vip.name) {
            state.vips.retain(|_, entry| entry.spec.id != id);
        }
        let sorry = vip.sorry_backend.filter(|_| vip.all_down == AllDown::Sorry);
        for address in vip.backends.iter().map(|b| b.address).chain(sorry) {
            if let Some(id) = old_ids.backend(&vip.name, &address) {
                state.backends.remove(&id);
            }
        }
    }
    for vip in new {
        plan_vip(vip, ids, health, &mut state);
    }
    Ok(state)
}

/// Interfaces and ICMP settings.
fn plan_globals(config: &Config, state: &mut DataplaneState) {
    let (tunnel_src, tunnel_src6) = match config.tunnel_source {
        Some(IpAddr::V4(v4)) => (Some(v4), None),
        Some(IpAddr::V6(v6)) => (None, Some(v6)),
        None => (None, None),
    };
    for ifname in &config.interfaces {
        state.interfaces.insert(
            ifname.clone(),
            Some(InterfaceSpec {
                tunnel_src,
                tunnel_src6,
                vlan: None,
                path_mtu: config.path_mtu.get(ifname).copied(),
            }),
        );
    }
    state.icmp = Some(IcmpSettings {
        frag_needed: config.icmp.frag_needed,
        per_second: config.icmp.rate,
        burst: config.icmp.burst,
    });
}

/// One VIP's entry and backends (IPv4 or IPv6: validation refused the impossible mixes).
fn plan_vip(vip: &Vip, ids: &Ids, health: &Health, state: &mut DataplaneState) {
    let scheduler = match vip.scheduler {
        Scheduler::Maglev => tula_dataplane::Scheduler::Maglev,
        Scheduler::SourceHash => tula_dataplane::Scheduler::SourceHash,
        Scheduler::RoundRobin => tula_dataplane::Scheduler::RoundRobin,
        Scheduler::WeightedRoundRobin => tula_dataplane::Scheduler::WeightedRoundRobin,
    };
    let key = VipKey {
        addr: vip.address,
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
        icmp_echo: vip.icmp_echo,
    };
    for backend in &vip.backends {
        let addr = backend.address;
        let id = ids
            .backend(&vip.name, &backend.address)
            .expect("every backend has an id");
        let alive = health.is_up(&vip.name, backend.address)
            && backend.effective_state() != BackendState::Disabled;
        state.backends.insert(id, Backend { addr, alive });
    }
    if let (AllDown::Sorry, Some(sorry)) = (vip.all_down, vip.sorry_backend) {
        let id = ids
            .backend(&vip.name, &sorry)
            .expect("every sorry backend has an id");
        state.backends.insert(
            id,
            Backend {
                addr: sorry,
                alive: true,
            },
        );
    }
    let (new_flows, members) = ring_inputs(vip, health);
    let mut ring = Vec::with_capacity(members.len());
    for (address, weight) in members {
        let Some(id) = ids.backend(&vip.name, &address) else {
            continue;
        };
        if new_flows == NewFlows::KeptLast {
            // Kept in the ring though unhealthy: its packets must not be dropped as dead.
            if let Some(backend) = state.backends.get_mut(&id) {
                backend.alive = true;
            }
        }
        ring.push(RingBackend {
            id,
            key: address.to_string(),
            weight,
        });
    }
    ring.sort_by(|a, b| a.key.cmp(&b.key));
    state.vips.insert(
        key,
        Arc::new(VipEntry {
            name: vip.name.clone(),
            spec,
            ring,
        }),
    );
}

/// What `vip`'s ring is built from: [`ring_members`] with the weights the
/// ring uses. Two nodes with equal inputs (and ring size) build equal rings.
pub(crate) fn ring_inputs(vip: &Vip, health: &Health) -> (NewFlows, Vec<(IpAddr, u32)>) {
    let (new_flows, mut members) = ring_members(vip, health);
    if vip.scheduler == Scheduler::RoundRobin {
        // Plain round robin gives every member one turn whatever its weight.
        for member in &mut members {
            member.1 = 1;
        }
    }
    (new_flows, members)
}

/// Who takes `vip`'s new flows, as (address, weight) ring members, and which
/// rule chose them: the active, weighted backends that are up, or else the
/// VIP's all_down policy.
pub(crate) fn ring_members(vip: &Vip, health: &Health) -> (NewFlows, Vec<(IpAddr, u32)>) {
    let takes_new_flows = |b: &&tula_config::Backend| b.effective_state() == BackendState::Active;
    let up: Vec<(IpAddr, u32)> = vip
        .backends
        .iter()
        .filter(takes_new_flows)
        .filter(|b| health.is_up(&vip.name, b.address))
        .map(|b| (b.address, b.weight))
        .collect();
    if !up.is_empty() {
        return (NewFlows::Backends, up);
    }
    match (vip.all_down, vip.sorry_backend) {
        (AllDown::Drop, _) | (AllDown::Sorry, None) => (NewFlows::Dropped, Vec::new()),
        (AllDown::KeepLast, _) => {
            // Only backends the operator still has active: a drained one stays out.
            let kept: Vec<(IpAddr, u32)> = vip
                .backends
                .iter()
                .filter(takes_new_flows)
                .filter(|b| health.was_up_last(&vip.name, b.address))
                .map(|b| (b.address, b.weight))
                .collect();
            if kept.is_empty() {
                (NewFlows::Dropped, kept)
            } else {
                (NewFlows::KeptLast, kept)
            }
        }
        (AllDown::Sorry, Some(sorry)) => (NewFlows::Sorry, vec![(sorry, 1)]),
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
    SetVip(VipKey, Arc<VipEntry>),
    RemoveVip(VipKey, String),
    SetIcmp(IcmpSettings),
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Attach(ifname) => write!(f, "attaching to interface {ifname}"),
            Op::SetInterface(ifname, spec) => {
                match spec.tunnel_src {
                    Some(src) => write!(f, "setting interface {ifname} (tunnel source {src}")?,
                    None => write!(
                        f,
                        "setting interface {ifname} (tunnel source: its own address"
                    )?,
                }
                match spec.path_mtu {
                    Some(mtu) => write!(f, ", path MTU {mtu})"),
                    None => write!(f, ")"),
                }
            }
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
            Op::SetIcmp(icmp) if icmp.frag_needed => write!(
                f,
                "answering too-big packets with Fragmentation Needed ({} a second per CPU, burst {})",
                icmp.per_second, icmp.burst
            ),
            Op::SetIcmp(_) => write!(f, "dropping too-big packets unanswered"),
        }
    }
}

/// The operations that take the data plane from `old` to `new`, ordered so
/// that traffic never meets a half-made change: backends that start taking
/// flows are alive before a ring names them; rings stop naming a backend
/// before it stops being alive; a VIP goes before its backends do.
pub(crate) fn transition(old: &DataplaneState, new: &DataplaneState) -> Vec<Op> {
    let mut ops = Vec::new();
    if let Some(icmp) = new.icmp.filter(|icmp| old.icmp != Some(*icmp)) {
        ops.push(Op::SetIcmp(icmp));
    }
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
    let (changed_backends, removed_backends) = new.backends.differences(&old.backends);
    let (alive, not_alive): (Vec<_>, Vec<_>) =
        changed_backends.into_iter().partition(|(_, b)| b.alive);
    ops.extend(alive.into_iter().map(|(id, b)| Op::SetBackend(*id, *b)));
    for (key, entry) in &new.vips {
        let same = old
            .vips
            .get(key)
            .is_some_and(|held| Arc::ptr_eq(held, entry) || held == entry);
        if !same {
            ops.push(Op::SetVip(*key, entry.clone()));
        }
    }
    ops.extend(not_alive.into_iter().map(|(id, b)| Op::SetBackend(*id, *b)));
    for (key, entry) in &old.vips {
        if !new.vips.contains_key(key) {
            ops.push(Op::RemoveVip(*key, entry.name.clone()));
        }
    }
    ops.extend(
        removed_backends
            .into_iter()
            .map(|id| Op::RemoveBackend(*id)),
    );
    for ifname in old.interfaces.keys() {
        if !new.interfaces.contains_key(ifname) {
            ops.push(Op::Detach(ifname.clone()));
        }
    }
    ops
}

/// What differs from `old` to `new`: (entries added or changed, keys
/// removed), in key order. One pass over each map, not a lookup per key:
/// 100,000 backends cost a walk.
fn differences<'a, K: Ord, V: PartialEq>(
    old: &'a BTreeMap<K, V>,
    new: &'a BTreeMap<K, V>,
) -> (Vec<(&'a K, &'a V)>, Vec<&'a K>) {
    let (mut changed, mut removed) = (Vec::new(), Vec::new());
    let mut old = old.iter().peekable();
    for (key, value) in new {
        while let Some((gone, _)) = old.next_if(|(k, _)| *k < key) {
            removed.push(gone);
        }
        match old.next_if(|(k, _)| *k == key) {
            Some((_, held)) if held == value => {}
            _ => changed.push((key, value)),
        }
    }
    removed.extend(old.map(|(k, _)| k));
    (changed, removed)
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
        *ids = ids.assign(config, crate::ids::Limits::of(config)).unwrap();
        plan(config, ids, health).unwrap()
    }

    #[test]
    fn differences_walk_both_maps_once_and_miss_nothing() {
        let old: BTreeMap<u32, char> = [(1, 'a'), (2, 'b'), (4, 'd'), (6, 'f'), (9, 'i')].into();
        let new: BTreeMap<u32, char> = [(2, 'b'), (3, 'c'), (4, 'D'), (9, 'i'), (10, 'j')].into();
        let (changed, removed) = differences(&old, &new);
        assert_eq!(changed, [(&3, &'c'), (&4, &'D'), (&10, &'j')]);
        assert_eq!(removed, [&1, &6]);
        let empty = BTreeMap::new();
        let (changed, removed) = differences(&new, &empty);
        assert!(changed.is_empty());
        assert_eq!(removed, [&2, &3, &4, &9, &10]);
        let (changed, removed) = differences(&empty, &old);
        assert_eq!(changed.len(), 5);
        assert!(removed.is_empty());
    }

    #[test]
    fn backend_states_decide_ring_membership_and_liveness() {
        let config = config(
            r#"{ address = "198.18.3.2" }, { address = "198.18.3.3", state = "drain" },
               { address = "198.18.3.4", weight = 0 }, { address = "198.18.3.5", state = "disabled" },
               { address = "198.18.3.6", weight = 3 }"#,
        );
        let mut ids = Ids::default();
        let mut health = Health::default();
        health.set("web", "198.18.3.6".parse().unwrap(), false);
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
        let health = Health::default();
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
    fn round_robin_rings_ignore_weights_and_weighted_ones_keep_them() {
        let backends = r#"{ address = "198.18.3.2", weight = 3 }, { address = "198.18.3.3" }"#;
        let weights = |scheduler| {
            let mut config = config(backends);
            config.vips[0].scheduler = scheduler;
            let state = state(&config, &mut Ids::default(), &Health::default());
            let web = state
                .vips
                .values()
                .find(|v| v.name == "web")
                .unwrap()
                .clone();
            let weights: Vec<u32> = web.ring.iter().map(|b| b.weight).collect();
            (web.spec.scheduler, weights)
        };
        assert_eq!(
            weights(Scheduler::RoundRobin),
            (tula_dataplane::Scheduler::RoundRobin, vec![1, 1])
        );
        assert_eq!(
            weights(Scheduler::WeightedRoundRobin),
            (tula_dataplane::Scheduler::WeightedRoundRobin, vec![3, 1])
        );
        assert_eq!(
            weights(Scheduler::Maglev),
            (tula_dataplane::Scheduler::Maglev, vec![3, 1])
        );
    }

    /// The web VIP's ring members by address, and which rule chose them.
    fn web_ring(state: &DataplaneState) -> Vec<String> {
        let web = state.vips.values().find(|v| v.name == "web").unwrap();
        web.ring.iter().map(|b| b.key.clone()).collect()
    }

    fn with_policy(policy: &str) -> Config {
        let mut config = config(
            r#"{ address = "198.18.3.2" }, { address = "198.18.3.3" }, { address = "198.18.3.4", state = "drain" }"#,
        );
        config.vips[0].all_down = match policy {
            "drop" => AllDown::Drop,
            "keep-last" => AllDown::KeepLast,
            _ => AllDown::Sorry,
        };
        if policy == "sorry" {
            config.vips[0].sorry_backend = Some("198.18.9.9".parse().unwrap());
        }
        config
    }

    /// Marks `down` unhealthy one at a time, settling first (as an apply does) and after each.
    fn fail(config: &Config, health: &mut Health, down: &[&str]) {
        *health = health.settled(config);
        for address in down {
            health.set("web", address.parse().unwrap(), false);
            *health = health.settled(config);
        }
    }

    #[test]
    fn drop_leaves_the_ring_empty_when_all_are_down() {
        let config = with_policy("drop");
        let mut ids = Ids::default();
        let mut health = Health::default();
        fail(&config, &mut health, &["198.18.3.2", "198.18.3.3"]);
        let state = state(&config, &mut ids, &health);
        assert!(web_ring(&state).is_empty());
        assert_eq!(ring_members(&config.vips[0], &health).0, NewFlows::Dropped);
        let alive =
            |a: &str| state.backends[&ids.backend("web", &a.parse().unwrap()).unwrap()].alive;
        assert!(!alive("198.18.3.2") && !alive("198.18.3.3"));
        assert!(alive("198.18.3.4"), "the draining backend keeps its flows");
    }

    #[test]
    fn keep_last_keeps_the_backends_that_were_up_last() {
        let config = with_policy("keep-last");
        let mut ids = Ids::default();
        let mut health = Health::default();
        // .2 fails first, then .3, the last one up: .3 is kept.
        fail(&config, &mut health, &["198.18.3.2", "198.18.3.3"]);
        let state = state(&config, &mut ids, &health);
        assert_eq!(web_ring(&state), ["198.18.3.3"]);
        assert_eq!(ring_members(&config.vips[0], &health).0, NewFlows::KeptLast);
        let id = |a: &str| ids.backend("web", &a.parse().unwrap()).unwrap();
        assert!(
            state.backends[&id("198.18.3.3")].alive,
            "a kept backend must be alive"
        );
        assert!(!state.backends[&id("198.18.3.2")].alive);

        // Both fail in one batch (after an apply, which remembers who is up): both are kept.
        let mut health = Health::default().settled(&config);
        health.set("web", "198.18.3.2".parse().unwrap(), false);
        health.set("web", "198.18.3.3".parse().unwrap(), false);
        assert_eq!(
            web_ring(&plan(&config, &ids, &health).unwrap()),
            ["198.18.3.2", "198.18.3.3"]
        );

        // One comes back: the normal ring, and it is what is remembered next.
        let mut health = health.settled(&config);
        health.set("web", "198.18.3.2".parse().unwrap(), true);
        let health = health.settled(&config);
        assert_eq!(
            web_ring(&plan(&config, &ids, &health).unwrap()),
            ["198.18.3.2"]
        );
        assert_eq!(ring_members(&config.vips[0], &health).0, NewFlows::Backends);

        // A kept backend the operator then drains is not kept: nothing left, so drop.
        let mut health = Health::default();
        fail(&config, &mut health, &["198.18.3.2", "198.18.3.3"]);
        let mut drained = config.clone();
        drained.vips[0].backends[1].state = BackendState::Drain;
        let health = health.settled(&drained);
        assert!(web_ring(&plan(&drained, &ids, &health).unwrap()).is_empty());
        assert_eq!(ring_members(&drained.vips[0], &health).0, NewFlows::Dropped);
    }

    #[test]
    fn sorry_puts_the_sorry_backend_alone_in_the_ring() {
        let config = with_policy("sorry");
        let mut ids = Ids::default();
        let health = Health::default();
        let up = state(&config, &mut ids, &health);
        let sorry_id = ids
            .backend("web", &"198.18.9.9".parse().unwrap())
            .expect("the sorry backend has an id");
        assert_eq!(web_ring(&up), ["198.18.3.2", "198.18.3.3"]);
        assert_eq!(
            up.backends[&sorry_id],
            Backend {
                addr: "198.18.9.9".parse().unwrap(),
                alive: true
            },
            "the sorry backend is in the table, alive, even while unused"
        );
        let mut health = health;
        fail(&config, &mut health, &["198.18.3.2", "198.18.3.3"]);
        let down = state(&config, &mut ids, &health);
        assert_eq!(web_ring(&down), ["198.18.9.9"]);
        assert_eq!(ring_members(&config.vips[0], &health).0, NewFlows::Sorry);
        // Only the web ring and the two unhealthy backends change.
        let ops: Vec<String> = transition(&up, &down)
            .iter()
            .map(|op| op.to_string())
            .collect();
        assert_eq!(ops.len(), 3, "{ops:#?}");
        assert!(
            ops[0].starts_with("setting VIP web") && ops[0].ends_with("1 backends in the ring)"),
            "{ops:#?}"
        );

        // Draining every backend by config also sends new flows to the sorry backend.
        let mut drained = config.clone();
        for b in &mut drained.vips[0].backends {
            b.state = BackendState::Drain;
        }
        assert_eq!(
            web_ring(&state(&drained, &mut ids, &Health::default())),
            ["198.18.9.9"]
        );
    }

    /// A change planned from its delta (only the VIPs it touched) gives the
    /// same data-plane state, and the same change list, as the whole config.
    #[test]
    fn a_delta_plans_and_lists_what_the_whole_config_would() {
        use crate::diff::{diff, Delta};
        use crate::ids::Limits;
        use crate::snapshot::Model;
        type Change = fn(&mut Config);
        let cases: [(&str, Change, &[&str]); 6] = [
            ("weight", |c| c.vips[0].backends[1].weight = 4, &["web"]),
            (
                "replace a backend",
                |c| {
                    c.vips[0].backends.remove(0);
                    let mut added = c.vips[0].backends[0].clone();
                    added.address = "198.18.3.9".parse().unwrap();
                    c.vips[0].backends.push(added);
                },
                &["web"],
            ),
            ("remove a VIP", |c| drop(c.vips.remove(1)), &["dns"]),
            (
                "add a VIP",
                |c| {
                    let mut added = c.vips[0].clone();
                    added.name = "api".into();
                    added.address = "203.0.113.12".parse().unwrap();
                    c.vips.push(added);
                },
                &["api"],
            ),
            (
                "move a VIP",
                |c| c.vips[1].address = "203.0.113.20".parse().unwrap(),
                &["dns"],
            ),
            (
                "sorry backend",
                |c| {
                    c.vips[0].all_down = AllDown::Sorry;
                    c.vips[0].sorry_backend = Some("198.18.9.9".parse().unwrap());
                },
                &["web"],
            ),
        ];
        let base = config(r#"{ address = "198.18.3.2" }, { address = "198.18.3.3" }"#);
        let health = Health::default();
        let mut ids = Ids::default();
        let held = state(&base, &mut ids, &health);
        let old = Model::new(base.clone());
        for (name, change, touched) in cases {
            let mut changed = base.clone();
            change(&mut changed);
            let new = Model::new(changed);
            let delta = Delta::between(&old, &new);
            assert!(!delta.globals, "{name}");
            let mut names: Vec<&str> = delta
                .old
                .iter()
                .chain(&delta.new)
                .map(|v| v.name.as_str())
                .collect();
            names.dedup();
            assert_eq!(names, touched, "{name}: the touched VIPs");
            let new_ids = ids
                .assign_touched(&delta.old, &delta.new, Limits::of(&base))
                .unwrap();
            let new_health = health.settled_touched(&delta.new, &delta.removed);
            let planned =
                plan_touched(&held, &delta.old, &delta.new, &ids, &new_ids, &new_health).unwrap();
            assert_eq!(
                planned,
                plan(&new.config, &new_ids, &new_health).unwrap(),
                "{name}: the state planned from the delta"
            );
            assert_eq!(
                delta.diff(&old, &new).summary(),
                diff(&old.config, &new.config).summary(),
                "{name}: the change list"
            );
        }
    }
}
