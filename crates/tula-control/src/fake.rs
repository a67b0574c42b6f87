//! A recording fake of the data plane for unit tests: it keeps what it was
//! told to hold, logs every operation, and fails the operations a test names,
//! or, as the kernel's does, a backend whose new address finds every next
//! hop taken (by the data plane's own rules, `tula_dataplane::NextHops`).
//! Unlike the kernel's, which refuses a run of backends whole, it keeps the
//! operations before the refused one: the control plane rolls back either way.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tula_dataplane::{Dataplane, DataplaneError, NextHops};

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
        let mut next_hops = next_hops(&log.held, self.max_backend_addresses);
        for op in ops {
            let text = op.to_string();
            if log.fail_on.as_deref().is_some_and(|f| text.contains(f)) {
                return Err(ProgramError::Injected {
                    op: text,
                    message: "injected failure".into(),
                });
            }
            let held = &mut log.held;
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
                    // Next hops as the kernel takes them, by its own rules.
                    if let Err(source) = next_hops.set(*id, backend.addr) {
                        return Err(ProgramError::Op { op: text, source });
                    }
                    held.backends.insert(*id, *backend);
                }
                Op::RemoveBackend(id) => {
                    next_hops.remove(*id);
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
        next_hops(&self.log.lock().unwrap().held, self.max_backend_addresses).len()
    }

    fn holds_backend_address(&self, addr: IpAddr) -> bool {
        next_hops(&self.log.lock().unwrap().held, self.max_backend_addresses).holds(addr)
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

/// The next hops the backends of `held` take.
fn next_hops(held: &DataplaneState, max_backend_addresses: u32) -> NextHops {
    let mut next_hops = NextHops::new(max_backend_addresses);
    for (id, backend) in held.backends.iter() {
        if let Err(e) = next_hops.set(*id, backend.addr) {
            panic!("a test made the fake hold more than it could: {e}");
        }
    }
    next_hops
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
