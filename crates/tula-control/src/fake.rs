//! A recording fake of the data plane for unit tests: it keeps what it was
//! told to hold, logs every operation, and fails the operations a test names,
//! or, as the kernel's does, a backend whose new address finds every next
//! hop taken. Unlike the kernel's, which refuses a run of backends whole,
//! it keeps the operations before the refused one: the control plane rolls
//! back either way.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tula_dataplane::{Dataplane, DataplaneError};

use crate::plan::{DataplaneState, Op};
use crate::program::{ProgramError, Programmer};

/// What a test sees of its fake (shared with the fake the writer owns).
#[derive(Default)]
pub(crate) struct FakeLog {
    /// Every operation run, as `tula` logs it.
    pub ops: Vec<String>,
    /// What the fake holds now.
    pub held: DataplaneState,
    /// An operation whose text contains this fails (once per match).
    pub fail_on: Option<String>,
    /// How many times the data plane was loaded.
    pub loads: usize,
}

pub(crate) struct Fake {
    pub log: Arc<Mutex<FakeLog>>,
    pub max_vips: u32,
    pub max_backends: u32,
    pub max_backend_addresses: u32,
}

impl Programmer for Fake {
    fn run(&mut self, ops: &[Op]) -> Result<(), ProgramError> {
        let mut log = self.log.lock().unwrap();
        let mut users = address_users(&log.held);
        for op in ops {
            let text = op.to_string();
            if log.fail_on.as_deref().is_some_and(|f| text.contains(f)) {
                return Err(ProgramError::Injected {
                    op: text,
                    message: "injected failure".into(),
                });
            }
            let held = &mut log.held;
            // Next hops as the kernel counts them (tula-dataplane's hops.rs).
            let old = match op {
                Op::SetBackend(id, _) | Op::RemoveBackend(id) => {
                    held.backends.get(id).map(|b| b.addr)
                }
                _ => None,
            };
            let new = match op {
                Op::SetBackend(_, backend) => Some(backend.addr),
                _ => None,
            };
            if old != new {
                if let (Op::SetBackend(id, _), Some(addr)) = (op, new) {
                    let frees_its_own = old.is_some_and(|old| users[&old] == 1);
                    if !users.contains_key(&addr)
                        && users.len() >= self.max_backend_addresses as usize
                        && !frees_its_own
                    {
                        return Err(ProgramError::Op {
                            op: text,
                            source: DataplaneError::TooManyBackendAddresses {
                                id: *id,
                                addr,
                                max_backend_addresses: self.max_backend_addresses,
                            },
                        });
                    }
                }
                if let Some(old) = old {
                    let left = users.get_mut(&old).expect("every held address is counted");
                    *left -= 1;
                    if *left == 0 {
                        users.remove(&old);
                    }
                }
                if let Some(new) = new {
                    *users.entry(new).or_default() += 1;
                }
            }
            match op {
                Op::Attach(ifname) => {
                    held.interfaces
                        .insert(ifname.clone(), Some(Default::default()));
                }
                Op::SetInterface(ifname, spec) => {
                    held.interfaces.insert(ifname.clone(), Some(spec.clone()));
                }
                Op::Detach(ifname) => {
                    held.interfaces.remove(ifname);
                }
                Op::SetBackend(id, backend) => {
                    held.backends.insert(*id, *backend);
                }
                Op::RemoveBackend(id) => {
                    held.backends.remove(id);
                }
                Op::SetVip(key, entry) => {
                    held.vips.insert(*key, entry.clone());
                }
                Op::RemoveVip(key, _) => {
                    held.vips.remove(key);
                }
                Op::SetIcmp(icmp) => held.icmp = Some(*icmp),
            }
            log.ops.push(text);
        }
        Ok(())
    }

    fn read_state(&self, _wanted: &DataplaneState) -> Result<DataplaneState, ProgramError> {
        Ok(self.log.lock().unwrap().held.clone())
    }

    fn ring_size(&self) -> u32 {
        251
    }

    fn max_vips(&self) -> u32 {
        self.max_vips
    }

    fn max_backends(&self) -> u32 {
        self.max_backends
    }

    fn max_backend_addresses(&self) -> u32 {
        self.max_backend_addresses
    }

    fn backend_addresses(&self) -> usize {
        address_users(&self.log.lock().unwrap().held).len()
    }

    fn holds_backend_address(&self, addr: IpAddr) -> bool {
        address_users(&self.log.lock().unwrap().held).contains_key(&addr)
    }

    fn attached(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .held
            .interfaces
            .keys()
            .cloned()
            .collect()
    }

    fn reader(&self) -> Option<Arc<Dataplane>> {
        None
    }

    fn teardown(self: Box<Self>) -> Result<(), DataplaneError> {
        self.log.lock().unwrap().held = DataplaneState::default();
        Ok(())
    }
}

/// How many backends `held` has at each address.
fn address_users(held: &DataplaneState) -> HashMap<IpAddr, u32> {
    let mut users = HashMap::new();
    for backend in held.backends.values() {
        *users.entry(backend.addr).or_default() += 1;
    }
    users
}

#[cfg(test)]
mod tests {
    use super::*;
    use tula_dataplane::Backend;

    #[test]
    fn a_new_address_finding_every_next_hop_taken_is_refused_as_the_kernel_refuses_it() {
        let mut fake = Fake {
            log: Arc::default(),
            max_vips: 4,
            max_backends: 8,
            max_backend_addresses: 2,
        };
        let at = |last: u8| Backend {
            addr: IpAddr::from([198, 18, 0, last]),
            alive: true,
        };
        fake.run(&[Op::SetBackend(0, at(1)), Op::SetBackend(1, at(2))])
            .unwrap();
        match fake.run(&[Op::SetBackend(2, at(3))]) {
            Err(ProgramError::Op {
                source: DataplaneError::TooManyBackendAddresses { id: 2, .. },
                ..
            }) => {}
            other => panic!("expected the kernel's refusal, got {other:?}"),
        }
        // A shared address needs no next hop; a backend that moves gives its own back.
        fake.run(&[Op::SetBackend(2, at(1)), Op::SetBackend(1, at(3))])
            .unwrap();
        assert_eq!(fake.backend_addresses(), 2);
        assert!(fake.holds_backend_address(at(3).addr) && !fake.holds_backend_address(at(2).addr));
        fake.run(&[Op::RemoveBackend(0), Op::RemoveBackend(2)])
            .unwrap();
        fake.run(&[Op::SetBackend(0, at(4))]).unwrap();
    }
}
