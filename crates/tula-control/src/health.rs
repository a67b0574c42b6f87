//! Backend health as the health checker reports it (tula-health), and what
//! the `keep-last` all-down policy remembers: the backends that were up last.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use tula_config::{Config, Vip};

use crate::plan::ring_members;
use crate::NewFlows;

/// Not a config: a restart starts with every backend up and nothing remembered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Health {
    /// Backends reported down, by (VIP name, backend address); all others are up.
    down: BTreeSet<(String, IpAddr)>,
    /// Per VIP, its ring members the last time one of them was up.
    last_up: BTreeMap<String, BTreeSet<IpAddr>>,
}

impl Health {
    pub(crate) fn is_up(&self, vip: &str, address: IpAddr) -> bool {
        !self.down.contains(&(vip.to_string(), address))
    }

    /// Records a verdict; true if it changed anything.
    pub(crate) fn set(&mut self, vip: &str, address: IpAddr, up: bool) -> bool {
        let key = (vip.to_string(), address);
        if up {
            self.down.remove(&key)
        } else {
            self.down.insert(key)
        }
    }

    /// Whether `address` was in VIP `vip`'s ring the last time one of its members was up.
    pub(crate) fn was_up_last(&self, vip: &str, address: IpAddr) -> bool {
        self.last_up
            .get(vip)
            .is_some_and(|members| members.contains(&address))
    }

    /// After `config` was programmed with this health: forgets VIPs and
    /// backends no longer in it, and remembers each VIP's ring members while
    /// some are up (what `keep-last` keeps once none is).
    pub(crate) fn settled(&self, config: &Config) -> Health {
        let vips: Vec<&Vip> = config.vips.iter().collect();
        let names: BTreeSet<&str> = vips.iter().map(|v| v.name.as_str()).collect();
        let mut settled = self.clone();
        settled.down.retain(|(vip, _)| names.contains(vip.as_str()));
        settled
            .last_up
            .retain(|vip, _| names.contains(vip.as_str()));
        settled.settle(&vips);
        settled
    }

    /// [`Health::settled`] for a change that touched only `vips` (as they
    /// are now) and removed the VIPs named `removed`.
    pub(crate) fn settled_touched(&self, vips: &[&Vip], removed: &[&str]) -> Health {
        let mut settled = self.clone();
        if !removed.is_empty() {
            settled
                .down
                .retain(|(vip, _)| !removed.contains(&vip.as_str()));
            for name in removed {
                settled.last_up.remove(*name);
            }
        }
        settled.settle(vips);
        settled
    }

    /// Forgets the backends `vips` no longer declare and remembers their ring members.
    fn settle(&mut self, vips: &[&Vip]) {
        for vip in vips {
            let declared: BTreeSet<IpAddr> = vip.backends.iter().map(|b| b.address).collect();
            let name = vip.name.clone();
            self.down
                .retain(|(v, address)| *v != name || declared.contains(address));
            let (new_flows, members) = ring_members(vip, self);
            let remembered: BTreeSet<IpAddr> = match new_flows {
                NewFlows::Backends => members.iter().map(|(address, _)| *address).collect(),
                _ => self.last_up.get(&vip.name).cloned().unwrap_or_default(),
            };
            let remembered: BTreeSet<IpAddr> = remembered
                .into_iter()
                .filter(|address| declared.contains(address))
                .collect();
            if remembered.is_empty() {
                self.last_up.remove(&vip.name);
            } else {
                self.last_up.insert(vip.name.clone(), remembered);
            }
        }
    }
}
