//! The writer's logic against the recording fake data plane: coalescing,
//! conflicts, retention, capacity, rollback and store consistency after a
//! failure at each step. No kernel, no root.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use tula_config::{BackendState, Config};

use crate::control::{ClusterStore, Command, Control, Edit, EditRefused};
use crate::fake::{Fake, FakeLog};
use crate::{ControlError, ControlOptions, IdKind, RevisionInfo};

struct Setup {
    dir: PathBuf,
    log: Arc<Mutex<FakeLog>>,
    control: Option<Control>,
    /// With [`Setup::in_cluster`], the cluster's newest revision number.
    cluster: Option<Arc<Mutex<FakeCluster>>>,
}

impl Setup {
    fn new(name: &str, max_backends: u32) -> Setup {
        let dir = std::env::temp_dir().join(format!("tula-writer-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let log: Arc<Mutex<FakeLog>> = Arc::default();
        let mut setup = Setup {
            dir,
            log,
            control: None,
            cluster: None,
        };
        setup.start(max_backends);
        setup
    }

    /// A node of a cluster whose store is a [`FakeCluster`].
    fn in_cluster(name: &str) -> Setup {
        let mut setup = Setup::new(name, 4096);
        drop(setup.control.take());
        setup.cluster = Some(Arc::default());
        setup.start(4096);
        setup
    }

    fn cluster(&self) -> std::sync::MutexGuard<'_, FakeCluster> {
        self.cluster
            .as_ref()
            .expect("a cluster setup")
            .lock()
            .unwrap()
    }

    fn start(&mut self, max_backends: u32) {
        self.start_with_addresses(max_backends, max_backends)
    }

    /// [`Setup::start`] with a data plane of `max_backend_addresses` next hops.
    fn start_with_addresses(&mut self, max_backends: u32, max_backend_addresses: u32) {
        self.start_with_data_plane(max_backends, max_backend_addresses, false)
    }

    /// `adopted`: the loader finds the fake's data plane pinned, holding
    /// what the log holds.
    fn start_with_data_plane(
        &mut self,
        max_backends: u32,
        max_backend_addresses: u32,
        adopted: bool,
    ) {
        let control = self.try_start(max_backends, max_backend_addresses, adopted);
        self.control = Some(control.unwrap());
    }

    fn try_start(
        &self,
        max_backends: u32,
        max_backend_addresses: u32,
        adopted: bool,
    ) -> Result<Control, ControlError> {
        let log = self.log.clone();
        let loader = Box::new(move |_: &Config| {
            log.lock().unwrap().loads += 1;
            let fake = Fake {
                log: log.clone(),
                max_vips: 64,
                max_backends,
                max_backend_addresses,
            };
            Ok((Box::new(fake) as Box<dyn crate::program::Programmer>, adopted))
        });
        let cluster = self
            .cluster
            .clone()
            .map(|c| Box::new(SharedFake(c)) as Box<dyn ClusterStore>);
        Control::start_with(self.options(), loader, cluster)
    }

    fn options(&self) -> ControlOptions {
        ControlOptions {
            config_path: self.dir.join("etc/tula.toml"),
            state_dir: self.dir.join("state"),
        }
    }

    fn control(&self) -> &Control {
        self.control.as_ref().unwrap()
    }

    fn ops(&self) -> Vec<String> {
        self.log.lock().unwrap().ops.clone()
    }

    /// The config file, once it holds the newest revision (it is written
    /// after changes settle).
    fn config_file(&self) -> String {
        if let Some(control) = &self.control {
            control.flush_config_file().unwrap();
        }
        std::fs::read_to_string(self.dir.join("etc/tula.toml")).unwrap_or_default()
    }

    /// The config file as the daemon would read it at its next start.
    fn saved_config(&self) -> Config {
        Config::from_toml_str(&self.config_file()).unwrap()
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        drop(self.control.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `vips` VIPs of `backends` backends each, with extra global keys.
fn config(vips: u32, backends: u32, globals: &str) -> Config {
    let mut text = format!("interfaces = [\"lo\"]\n{globals}\n");
    for v in 0..vips {
        text.push_str(&format!(
            "[[vip]]\nname = \"web{v}\"\naddress = \"203.0.113.{}\"\nport = 80\nbackends = [",
            v + 1
        ));
        for b in 0..backends {
            text.push_str(&format!("{{ address = \"198.18.{v}.{}\" }}, ", b + 2));
        }
        text.push_str("]\n");
    }
    Config::from_toml_str(&text).unwrap()
}

fn backend(v: u32, b: u32) -> IpAddr {
    format!("198.18.{v}.{}", b + 2).parse().unwrap()
}

/// An edit that drains backend `b` of VIP `web{v}`.
fn drain(v: u32, b: u32, based_on: Option<u64>) -> Edit {
    let address = backend(v, b);
    Edit {
        source: format!("drain web{v}/{address}"),
        ..try_edit_vip(v, based_on, move |declared| {
            let backend = declared
                .backends
                .iter_mut()
                .find(|x| x.address == address)
                .ok_or_else(|| EditRefused(format!("no backend {address}")))?;
            backend.state = BackendState::Drain;
            Ok(())
        })
    }
}

/// Holds the writer busy until the returned sender is dropped or sent to.
fn hold_writer(control: &Control) -> mpsc::Sender<()> {
    let (release, gate) = mpsc::channel::<()>();
    let (started, busy) = mpsc::channel();
    control.submit(Command::Health {
        verdicts: Vec::new(),
        reply: Box::new(move |_| {
            started.send(()).unwrap();
            let _ = gate.recv();
        }),
    });
    busy.recv().unwrap();
    release
}

/// Submits `edits` while the writer is held, then lets it go: they wait together.
fn submit_together(control: &Control, edits: Vec<Edit>) -> Vec<Result<RevisionInfo, ControlError>> {
    let release = hold_writer(control);
    let (sender, replies) = mpsc::channel();
    for (i, edit) in edits.into_iter().enumerate() {
        let sender = sender.clone();
        control.submit(Command::Edit(
            edit,
            Box::new(move |r| sender.send((i, r)).unwrap()),
        ));
    }
    drop(sender);
    release.send(()).unwrap();
    let mut replies: Vec<_> = replies.iter().collect();
    replies.sort_by_key(|(i, _)| *i);
    replies.into_iter().map(|(_, r)| r).collect()
}

const DRAINS: [(u32, u32); 6] = [(0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (3, 6)];

#[test]
fn coalesced_concurrent_edits_all_land_in_one_revision() {
    let setup = Setup::new("coalesce", 4096);
    let control = setup.control();
    let first = control.apply(config(6, 10, ""), "test").unwrap();
    let before = setup.ops().len();
    let edits = DRAINS.iter().map(|&(v, b)| drain(v, b, None)).collect();
    let replies = submit_together(control, edits);
    let numbers: Vec<u64> = replies.iter().map(|r| r.as_ref().unwrap().number).collect();
    assert_eq!(numbers, vec![first.number + 1; DRAINS.len()]);
    let snapshot = control.snapshot();
    assert_eq!(snapshot.revision(), first.number + 1);
    for (v, b) in DRAINS {
        let state = snapshot
            .backend(&format!("web{v}"), backend(v, b))
            .unwrap()
            .state;
        assert_eq!(state, BackendState::Drain, "web{v}/{}", backend(v, b));
    }
    let history = control.history().unwrap();
    assert_eq!(history.len(), 2);
    assert!(
        history[1].source.starts_with("6 edits: drain web0/"),
        "{}",
        history[1].source
    );
    assert_eq!(history[1].summary.len(), 6, "{:?}", history[1].summary);
    // Only the four touched VIPs' rings were set again; web4 and web5 were not touched.
    let programmed = setup.ops()[before..].to_vec();
    let rings: Vec<&String> = programmed
        .iter()
        .filter(|op| op.starts_with("setting VIP"))
        .collect();
    assert_eq!(rings.len(), 4, "{programmed:#?}");
    assert!(!programmed
        .iter()
        .any(|op| op.contains("web4") || op.contains("web5")));
    // The file and the revision say the same.
    assert_eq!(&setup.saved_config(), snapshot.config());
}

#[test]
fn edits_of_one_vip_based_on_one_revision_conflict_instead_of_overwriting() {
    let setup = Setup::new("overlap", 4096);
    let control = setup.control();
    let first = control.apply(config(2, 4, ""), "test").unwrap();
    let base = Some(first.number);
    let replies = submit_together(
        control,
        vec![drain(0, 1, base), drain(0, 2, base), drain(1, 1, base)],
    );
    let landed = replies[0].as_ref().unwrap().number;
    assert_eq!(
        replies[2].as_ref().unwrap().number,
        landed,
        "another VIP's edit coalesces"
    );
    match &replies[1] {
        Err(ControlError::Conflict {
            based_on,
            running,
            since,
        }) => {
            assert_eq!((*based_on, *running), (first.number, landed));
            assert_eq!(since.iter().map(|r| r.number).collect::<Vec<_>>(), [landed]);
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    let state = control
        .snapshot()
        .backend("web0", backend(0, 2))
        .unwrap()
        .state;
    assert_eq!(
        state,
        BackendState::Active,
        "the conflicting edit changed nothing"
    );
}

#[test]
fn a_stale_based_on_changes_nothing() {
    let setup = Setup::new("stale", 4096);
    let control = setup.control();
    let first = control.apply(config(1, 4, ""), "test").unwrap();
    let second = control.apply(config(2, 4, ""), "test").unwrap();
    let ops = setup.ops();
    let file = setup.config_file();
    for result in [
        control.edit(drain(0, 1, Some(first.number))),
        control.apply_based_on(config(3, 4, ""), "test", Some(first.number)),
        control.rollback_based_on(first.number, Some(first.number)),
    ] {
        match result {
            Err(ControlError::Conflict { running, since, .. }) => {
                assert_eq!(running, second.number);
                assert_eq!(since, vec![second.clone()]);
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
    }
    assert_eq!(setup.ops(), ops, "nothing was programmed");
    assert_eq!(setup.config_file(), file);
    assert_eq!(control.history().unwrap().len(), 2);
    // Based on the running revision, it lands.
    control.edit(drain(0, 1, Some(second.number))).unwrap();
}

#[test]
fn retention_prunes_the_oldest_and_rollback_to_a_kept_revision_works() {
    let setup = Setup::new("retention", 4096);
    let control = setup.control();
    for n in 1..=6 {
        control
            .apply(config(n, 2, "keep_revisions = 3"), "test")
            .unwrap();
    }
    let kept: Vec<u64> = control
        .history()
        .unwrap()
        .iter()
        .map(|r| r.number)
        .collect();
    assert_eq!(kept, [4, 5, 6]);
    let rolled = control.rollback(4).unwrap();
    assert_eq!(rolled.number, 7);
    assert_eq!(control.snapshot().config().vips.len(), 4);
    assert!(matches!(
        control.rollback(2),
        Err(ControlError::NoSuchRevision(2))
    ));
    let kept: Vec<u64> = control
        .history()
        .unwrap()
        .iter()
        .map(|r| r.number)
        .collect();
    assert_eq!(kept, [5, 6, 7], "the running revision is never pruned");
}

#[test]
fn a_size_budget_prunes_what_does_not_fit_and_rollback_to_a_kept_revision_works() {
    let mut setup = Setup::new("retention-size", 4096);
    // Room for the whole config about three times.
    let whole = config(8, 8, "").to_toml_string().len();
    let globals = format!("keep_revisions_size = \"{}B\"", 3 * whole);
    setup.control().apply(config(8, 8, &globals), "test").unwrap();
    for n in 0..40 {
        setup.control().edit(drain(n % 8, n / 8, None)).unwrap();
    }
    let history = setup.control().history().unwrap();
    // One whole config and a drain's VIP table each: more than a few, far from all 41.
    assert!(
        history.len() > 3 && history.len() < 30,
        "{} revisions kept",
        history.len()
    );
    assert_eq!(history.last().unwrap().number, 41);
    let oldest = history[0].number;
    let kept = setup.control().revision(oldest).unwrap();
    setup.control().rollback(oldest).unwrap();
    assert_eq!(setup.control().snapshot().config(), &kept);
    assert!(matches!(
        setup.control().rollback(1),
        Err(ControlError::NoSuchRevision(1))
    ));
    // Without the budget, nothing more goes than the count says.
    drop(setup.control.take());
    setup.start(4096);
    let unlimited = config(8, 8, "");
    setup.control().apply(unlimited, "test").unwrap();
    let before = setup.control().history().unwrap().len();
    for n in 0..8 {
        setup.control().edit(drain(n, 7, None)).unwrap();
    }
    assert_eq!(setup.control().history().unwrap().len(), before + 8);
}

#[test]
fn running_out_of_backend_ids_is_a_capacity_error_naming_the_limit() {
    // The loaded data plane has room for 6 backends; the config allows more.
    let setup = Setup::new("capacity", 6);
    let control = setup.control();
    control.apply(config(1, 6, ""), "test").unwrap();
    let ops = setup.ops();
    let error = capacity_error(control.apply(config(2, 4, ""), "test"));
    assert_eq!((error.kind, error.limit), (IdKind::Backend, 6));
    assert!(error.to_string().contains("max_backends"), "{error}");
    assert_eq!(setup.ops(), ops);
    assert_eq!(control.running_revision(), 1);
}

#[test]
fn more_backend_addresses_than_the_loaded_next_hops_is_a_capacity_error() {
    // The config allows max_backends (4,096) addresses; the loaded data plane keeps next hops for 6.
    let mut setup = Setup::new("addresses", 64);
    drop(setup.control.take());
    setup.start_with_addresses(64, 6);
    let control = setup.control();
    control.apply(config(2, 3, ""), "test").unwrap();
    let ops = setup.ops();
    let refused = |result: Result<RevisionInfo, ControlError>| {
        let error = capacity_error(result);
        assert_eq!((error.kind, error.limit), (IdKind::BackendAddress, 6));
        assert!(error.to_string().contains("7 distinct backend addresses"), "{error}");
        assert!(error.to_string().contains("max_backend_addresses"), "{error}");
    };
    // A whole config, then an edit, each one address too many.
    refused(control.apply(config(1, 7, ""), "test"));
    let mut one_more = config(2, 3, "");
    let mut extra = one_more.vips[1].backends[0].clone();
    extra.address = "198.18.9.9".parse().unwrap();
    one_more.vips[1].backends.push(extra);
    refused(control.apply(one_more, "test"));
    assert_eq!(setup.ops(), ops, "nothing was programmed");
    assert_eq!(control.running_revision(), 1);
    // Shared addresses take one next hop: 6 backends of each VIP on the same 6 servers fit
    // (from web0's 3 alone: from web0's and web1's 3 each, 9 would be held meanwhile).
    control.apply(config(1, 3, ""), "test").unwrap();
    let mut shared = config(2, 6, "");
    shared.vips[1].backends = shared.vips[0].backends.clone();
    control.apply(shared, "test").unwrap();
}

#[test]
fn a_change_whose_old_and_new_addresses_overflow_the_next_hops_is_refused_before_programming() {
    // 6 next hops, all taken by web0's and web1's 3 backends each.
    let mut setup = Setup::new("swap", 64);
    drop(setup.control.take());
    setup.start_with_addresses(64, 6);
    let control = setup.control();
    let running = config(2, 3, "");
    control.apply(running.clone(), "test").unwrap();
    let held = setup.log.lock().unwrap().held.clone();
    let ops = setup.ops();
    // web1 moves to 3 new servers: 6 addresses after, but old and new are held together meanwhile.
    let mut swapped = running.clone();
    move_to_new_servers(&mut swapped.vips[1]);
    let error = capacity_error(control.apply(swapped.clone(), "test"));
    assert_eq!((error.kind, error.limit), (IdKind::BackendAddress, 6));
    assert_eq!(error.once_applied, Some(6));
    let text = error.to_string();
    let needs = "may hold 9 distinct backend addresses while it is programmed";
    assert!(text.contains(needs), "{text}");
    assert!(text.contains("6 once applied"), "{text}");
    assert!(text.contains("make it in two steps"), "{text}");
    assert_eq!(setup.ops(), ops, "nothing was programmed");
    assert_unchanged(&setup, 1, &running, &held);
    // In two steps (web1 out, then back on its new servers) it fits.
    let mut without = running.clone();
    without.vips.truncate(1);
    control.apply(without, "test").unwrap();
    control.apply(swapped, "test").unwrap();
    assert_eq!(control.running_revision(), 3);
}

/// VIPs named by their backends' addresses: `[("a", &["198.18.0.2"]), ...]`.
fn vips_on(vips: &[(&str, &[&str])]) -> Config {
    let mut text = String::from("interfaces = [\"lo\"]\n");
    for (v, (name, backends)) in vips.iter().enumerate() {
        let backends: Vec<String> = backends
            .iter()
            .map(|a| format!("{{ address = \"{a}\" }}"))
            .collect();
        text.push_str(&format!(
            "[[vip]]\nname = \"{name}\"\naddress = \"203.0.113.{}\"\nport = 80\nbackends = [{}]\n",
            v + 1,
            backends.join(", ")
        ));
    }
    Config::from_toml_str(&text).unwrap()
}

/// The capacity error `result` must be.
fn capacity_error<T>(result: Result<T, ControlError>) -> crate::CapacityError {
    match result {
        Err(ControlError::Capacity(error)) => error,
        Err(other) => panic!("expected a capacity error, got {other:?}"),
        Ok(_) => panic!("expected a capacity error, it went through"),
    }
}

/// Moves every backend of `vip` to a server of 198.18.9.0/24 (none in `config`).
fn move_to_new_servers(vip: &mut tula_config::Vip) {
    for (b, backend) in vip.backends.iter_mut().enumerate() {
        backend.address = format!("198.18.9.{}", b + 2).parse().unwrap();
    }
}

/// Backends `ids` (id, last byte of 198.18.5.x) held by the fake's data
/// plane, as if pinned by a config this node no longer has.
fn hold_pinned(setup: &Setup, ids: &[(u32, u8)]) {
    let mut log = setup.log.lock().unwrap();
    for &(id, last) in ids {
        let backend = tula_dataplane::Backend {
            addr: IpAddr::from([198, 18, 5, last]),
            alive: true,
        };
        log.held.backends.insert(id, backend);
    }
}

fn expect_needs_two_steps(result: Result<RevisionInfo, ControlError>, during: usize, after: usize) {
    let error = capacity_error(result);
    assert_eq!(error.kind, IdKind::BackendAddress);
    assert_eq!(error.once_applied, Some(after), "{error}");
    assert_eq!(error.key, format!("{during} distinct backend addresses"));
}

#[test]
fn an_id_given_again_in_one_change_counts_its_old_address_too() {
    // 3 backend ids and 2 next hops: ids freed by a change are given again in it.
    let mut setup = Setup::new("reused", 3);
    drop(setup.control.take());
    setup.start_with_addresses(3, 2);
    let control = setup.control();
    let (x, y, z) = ("198.18.0.2", "198.18.0.3", "198.18.0.4");
    control.apply(vips_on(&[("a", &[x]), ("b", &[y]), ("c", &[x])]), "test").unwrap();
    let running = vips_on(&[("b", &[y]), ("c", &[x])]);
    control.apply(running.clone(), "test").unwrap();
    let held = setup.log.lock().unwrap().held.clone();
    let ops = setup.ops();
    // b moves to z and d joins on x: b's old id goes to d, and z would join while y is still held.
    let next = vips_on(&[("b", &[z]), ("c", &[x]), ("d", &[x])]);
    expect_needs_two_steps(control.apply(next.clone(), "test"), 3, 2);
    assert_eq!(setup.ops(), ops, "nothing was programmed");
    assert_unchanged(&setup, 2, &running, &held);
    control.apply(vips_on(&[("c", &[x])]), "test").unwrap();
    control.apply(next, "test").unwrap();
}

#[test]
fn a_data_plane_with_a_next_hop_per_backend_id_takes_any_change() {
    // 3 ids, 3 next hops, all in use: b's old id goes to d while b moves to a fourth address.
    let setup = Setup::new("per-id", 3);
    let control = setup.control();
    let (w, x, y, z) = ("198.18.0.2", "198.18.0.3", "198.18.0.4", "198.18.0.5");
    control.apply(vips_on(&[("a", &[x]), ("b", &[y]), ("c", &[w])]), "test").unwrap();
    control.apply(vips_on(&[("b", &[y]), ("c", &[w])]), "test").unwrap();
    // Held now and set by the change: w, x, y, z. But an id holds one address at a time.
    control.apply(vips_on(&[("b", &[z]), ("c", &[w]), ("d", &[x])]), "test").unwrap();
    let held = setup.log.lock().unwrap().held.clone();
    let mut addresses: Vec<String> = held.backends.values().map(|b| b.addr.to_string()).collect();
    addresses.sort();
    assert_eq!(addresses, [w, x, z]);
}

#[test]
fn an_adopted_data_plane_with_a_next_hop_per_backend_id_takes_any_config() {
    // 4 ids, 4 next hops; ids 0 and 1 hold two addresses the config no longer has.
    let mut setup = Setup::new("adopted-per-id", 4);
    drop(setup.control.take());
    hold_pinned(&setup, &[(0, 7), (1, 8)]);
    setup.start_with_data_plane(4, 4, true);
    // 2 held and 3 set would be 5, but ids 0 and 1 give their addresses back as they move.
    setup.control().apply(config(1, 3, ""), "test").unwrap();
    assert_eq!(setup.log.lock().unwrap().held.backends.values().count(), 3);
}

#[test]
fn a_start_onto_a_pinned_data_plane_counts_what_it_holds() {
    // The data plane runs web0 on 3 servers; 4 next hops.
    let mut setup = Setup::new("start-held", 64);
    drop(setup.control.take());
    setup.start_with_addresses(64, 4);
    setup.control().apply(config(1, 3, ""), "test").unwrap();
    setup.control().flush_config_file().unwrap();
    drop(setup.control.take());
    let held = setup.log.lock().unwrap().held.clone();
    // Edited while the daemon was down: web0 moves to 3 other servers.
    let mut moved = config(1, 3, "");
    move_to_new_servers(&mut moved.vips[0]);
    let path = setup.dir.join("etc/tula.toml");
    std::fs::write(&path, moved.to_toml_string()).unwrap();
    // Newer than the last revision beyond the clock's grain, so the file wins.
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(10);
    let file = std::fs::File::options().write(true).open(&path).unwrap();
    file.set_modified(later).unwrap();
    let error = capacity_error(setup.try_start(64, 4, true));
    assert_eq!(error.key, "6 distinct backend addresses", "{error}");
    assert_eq!(error.once_applied, Some(3), "{error}");
    assert!(error.to_string().contains("tula dataplane unload"), "{error}");
    assert_eq!(setup.log.lock().unwrap().held, held, "the pinned data plane is unchanged");
}

#[test]
fn a_first_apply_onto_an_adopted_data_plane_counts_what_it_holds() {
    // A pinned data plane holds 3 backends (ids 10-12) of a config this node no longer has.
    let mut setup = Setup::new("adopted", 64);
    drop(setup.control.take());
    hold_pinned(&setup, &[(10, 7), (11, 8), (12, 9)]);
    setup.start_with_data_plane(64, 4, true);
    let control = setup.control();
    // 3 new addresses beside the 3 held: 6 meanwhile, 3 once applied, 4 next hops.
    expect_needs_two_steps(control.apply(config(1, 3, ""), "test"), 6, 3);
    assert!(setup.ops().is_empty(), "nothing was programmed: {:?}", setup.ops());
    // One new address beside them fits (4), and the change then removes them.
    control.apply(config(1, 1, ""), "test").unwrap();
    assert_eq!(setup.log.lock().unwrap().held.backends.values().count(), 1);
}

/// After a failed change, the file, the revisions, the snapshot and the
/// data plane all still say revision `number` with `config`.
fn assert_unchanged(
    setup: &Setup,
    number: u64,
    config: &Config,
    held: &crate::plan::DataplaneState,
) {
    let control = setup.control();
    assert_eq!(control.running_revision(), number);
    assert_eq!(control.snapshot().config(), config);
    assert_eq!(control.history().unwrap().last().unwrap().number, number);
    assert_eq!(&setup.saved_config(), config);
    assert_eq!(&control.revision(number).unwrap(), config);
    assert_eq!(
        &setup.log.lock().unwrap().held,
        held,
        "the data plane holds the old state"
    );
}

#[test]
fn an_invalid_first_apply_removes_the_data_plane_loaded_beside_its_checks() {
    let setup = Setup::new("invalid-first", 4096);
    let control = setup.control();
    // The first apply loads the data plane while it validates: this config fails validation.
    let mut invalid = config(2, 3, "");
    invalid.interfaces = vec!["tula-missing0".into()];
    match control.apply(invalid, "test") {
        Err(ControlError::Invalid(errors)) => {
            assert!(errors.to_string().contains("tula-missing0"), "{errors}")
        }
        other => panic!("expected the config's errors, got {other:?}"),
    }
    assert_eq!(setup.log.lock().unwrap().loads, 1);
    assert!(setup.ops().is_empty(), "nothing programmed: {:?}", setup.ops());
    // It was removed again: the next apply loads a fresh one.
    control.apply(config(2, 3, ""), "test").unwrap();
    assert_eq!(setup.log.lock().unwrap().loads, 2);
}

#[test]
fn a_failed_data_plane_step_leaves_file_store_and_data_plane_as_before() {
    let setup = Setup::new("program-fails", 4096);
    let control = setup.control();
    let old = config(2, 3, "");
    let first = control.apply(old.clone(), "test").unwrap();
    let held = setup.log.lock().unwrap().held.clone();
    // Each step of the change fails in turn: a new backend, the new VIP's ring, an existing ring.
    for step in ["setting backend", "setting VIP web2", "setting VIP web0"] {
        setup.log.lock().unwrap().fail_on = Some(step.to_string());
        let mut new = config(3, 3, "");
        new.vips[0].backends[0].weight = 5;
        match control.apply(new, "test") {
            Err(ControlError::Dataplane { rolled_back_to, .. }) => assert_eq!(rolled_back_to, 1),
            other => panic!("{step}: expected a data-plane error, got {other:?}"),
        }
        setup.log.lock().unwrap().fail_on = None;
        assert_unchanged(&setup, first.number, &old, &held);
    }
    control.apply(config(3, 3, ""), "test").unwrap();
}

#[test]
fn an_unwritable_store_leaves_file_store_and_data_plane_as_before() {
    let setup = Setup::new("store-fails", 4096);
    let control = setup.control();
    let old = config(2, 3, "");
    let first = control.apply(old.clone(), "test").unwrap();
    let held = setup.log.lock().unwrap().held.clone();
    // A file where the revisions directory was: even root cannot write a revision into it.
    let revisions = setup.dir.join("state/revisions");
    let aside = setup.dir.join("state/revisions.aside");
    std::fs::rename(&revisions, &aside).unwrap();
    std::fs::write(&revisions, "not a directory").unwrap();
    let result = control.edit(drain(0, 1, None));
    std::fs::remove_file(&revisions).unwrap();
    std::fs::rename(&aside, &revisions).unwrap();
    assert!(matches!(result, Err(ControlError::Io { .. })), "{result:?}");
    assert_unchanged(&setup, first.number, &old, &held);
    // With the store back, the same edit lands.
    let ops = setup.ops().len();
    let info = control.edit(drain(0, 1, None)).unwrap();
    assert_eq!(info.number, first.number + 1);
    assert!(setup.ops().len() > ops);
}

#[test]
fn a_restart_after_a_failed_store_runs_the_same_ids() {
    let mut setup = Setup::new("restart", 4096);
    let old = config(2, 3, "");
    setup.control().apply(old.clone(), "test").unwrap();
    let held = setup.log.lock().unwrap().held.clone();
    drop(setup.control.take());
    setup.log.lock().unwrap().held = Default::default();
    setup.start(4096);
    assert_eq!(setup.control().running_revision(), 1);
    assert_eq!(setup.log.lock().unwrap().held, held, "same ids, same rings");
}

/// An edit of VIP `web{v}` made by `change`.
fn edit_vip(
    v: u32,
    based_on: Option<u64>,
    change: impl Fn(&mut tula_config::Vip) + Send + 'static,
) -> Edit {
    try_edit_vip(v, based_on, move |declared| {
        change(declared);
        Ok(())
    })
}

/// An edit of VIP `web{v}` made by `change`, which may refuse it.
fn try_edit_vip(
    v: u32,
    based_on: Option<u64>,
    change: impl Fn(&mut tula_config::Vip) -> Result<(), EditRefused> + Send + 'static,
) -> Edit {
    let vip = format!("web{v}");
    Edit {
        source: format!("edit {vip}"),
        based_on,
        vip: Some(vip.clone()),
        change: Box::new(move |config: &mut Config| {
            let declared = config
                .vips
                .iter_mut()
                .find(|x| x.name == vip)
                .ok_or_else(|| EditRefused(format!("no VIP {vip}")))?;
            change(declared)
        }),
    }
}

#[test]
fn a_one_backend_change_programs_only_that_vips_ring() {
    let setup = Setup::new("one-backend", 4096);
    let control = setup.control();
    control.apply(config(10, 10, ""), "test").unwrap();
    let ids = |v: u32| {
        control
            .snapshot()
            .backend_id(&format!("web{v}"), backend(v, 4))
    };
    let cases: [(&str, Edit, &str, usize); 3] = [
        ("drain", drain(3, 4, None), "web3", 9),
        (
            "weight",
            edit_vip(7, None, |vip| vip.backends[4].weight = 3),
            "web7",
            10,
        ),
        (
            "remove",
            edit_vip(5, None, |vip| drop(vip.backends.remove(4))),
            "web5",
            9,
        ),
    ];
    let removed_id = ids(5).unwrap();
    for (name, edit, vip, members) in cases {
        let before = setup.ops().len();
        control.edit(edit).unwrap();
        let ops = setup.ops()[before..].to_vec();
        let ring = format!("setting VIP {vip} (");
        assert!(
            ops[0].starts_with(&ring)
                && ops[0].ends_with(&format!(", {members} backends in the ring)")),
            "{name}: {ops:#?}"
        );
        let rest: Vec<&String> = ops[1..].iter().collect();
        let expected_rest = match name {
            "remove" => vec![format!("removing backend {removed_id}")],
            _ => Vec::new(),
        };
        assert_eq!(
            rest,
            expected_rest.iter().collect::<Vec<_>>(),
            "{name}: {ops:#?}"
        );
    }
}

#[test]
fn readers_never_wait_for_the_writer() {
    let setup = Setup::new("readers", 4096);
    let control = setup.control();
    let first = control.apply(config(3, 4, ""), "test").unwrap();
    let before = control.snapshot();
    let release = hold_writer(control);
    // A change waits behind the busy writer.
    let (sender, queued) = mpsc::channel();
    control.submit(Command::Edit(
        drain(0, 1, None),
        Box::new(move |r| sender.send(r).unwrap()),
    ));
    let read = std::thread::scope(|scope| {
        let (done, finished) = mpsc::channel();
        scope.spawn(move || {
            let snapshot = control.snapshot();
            done.send((
                snapshot.revision(),
                control.status().unwrap().len(),
                control.counters().is_ok(),
                control.running().0,
                control.history().unwrap().len(),
                control.revision(first.number).is_ok(),
            ))
            .unwrap();
        });
        let read = finished.recv_timeout(std::time::Duration::from_secs(10));
        // Let the writer go before judging, so a failing reader does not hang the test.
        release.send(()).unwrap();
        read
    });
    let read = read.expect("a reader waited for the busy writer");
    assert_eq!(read, (first.number, 3, true, first.number, 1, true));
    let info = queued.recv().unwrap().unwrap();
    assert_eq!(control.snapshot().revision(), info.number);
    // A snapshot taken before the change still shows its own revision, unchanged.
    assert_eq!(before.revision(), first.number);
    assert_eq!(
        before.backend("web0", backend(0, 1)).unwrap().state,
        BackendState::Active
    );
}

#[test]
fn a_hundred_concurrent_drains_all_land() {
    let setup = Setup::new("hundred", 4096);
    let control = setup.control();
    let first = control.apply(config(10, 10, ""), "test").unwrap();
    std::thread::scope(|scope| {
        for v in 0..10 {
            for b in 0..10 {
                scope.spawn(move || control.edit(drain(v, b, None)).unwrap());
            }
        }
    });
    let snapshot = control.snapshot();
    for v in 0..10 {
        for b in 0..10 {
            let declared = snapshot.backend(&format!("web{v}"), backend(v, b)).unwrap();
            assert_eq!(
                declared.state,
                BackendState::Drain,
                "web{v}/{}",
                backend(v, b)
            );
        }
    }
    let made = snapshot.revision() - first.number;
    assert!((1..=100).contains(&made), "{made} revisions");
    assert_eq!(&setup.saved_config(), snapshot.config());
}

/// The lost update: a form rendered at revision N, a drain by
/// another operator, then the unchanged form saved.
#[test]
fn saving_a_form_of_an_old_revision_does_not_undo_a_drain_made_since() {
    let setup = Setup::new("lost-update", 4096);
    let control = setup.control();
    let rendered = control.apply(config(2, 4, ""), "test").unwrap();
    let form = control.snapshot().vip("web0").unwrap().clone();
    control.edit(drain(0, 1, None)).unwrap();
    let saved = form.clone();
    let result = control.edit(edit_vip(0, Some(rendered.number), move |vip| {
        *vip = saved.clone()
    }));
    assert!(
        matches!(result, Err(ControlError::Conflict { based_on, .. }) if based_on == rendered.number),
        "{result:?}"
    );
    assert_eq!(
        control
            .snapshot()
            .backend("web0", backend(0, 1))
            .unwrap()
            .state,
        BackendState::Drain,
        "the drain stays"
    );
}

#[test]
fn an_edit_is_validated_where_it_can_break_something() {
    let setup = Setup::new("validate-touched", 4096);
    let control = setup.control();
    let first = control.apply(config(5, 4, ""), "test").unwrap();
    let refusal = |edit: Edit| match control.edit(edit) {
        Err(ControlError::Invalid(errors)) => errors.to_string(),
        other => panic!("expected the edit refused as invalid, got {other:?}"),
    };
    // The edited VIP's own rules (web3 is not the first VIP: its position is found by name).
    let text = refusal(edit_vip(3, None, |vip| vip.backends[1].weight = 1_000_000));
    assert!(text.contains("vips[web3].backends[1].weight"), "{text}");
    // A rule of an untouched VIP the edit breaks: web1's backend now on web3's address.
    let text = refusal(edit_vip(3, None, |vip| {
        vip.address = "198.18.1.2".parse().unwrap()
    }));
    assert!(
        text.contains(
            "vips[web1].backends[0].address: 198.18.1.2 is the address of a VIP (vips[web3])"
        ),
        "{text}"
    );
    // Across VIPs: a name another VIP has.
    let text = refusal(edit_vip(3, None, |vip| vip.name = "web0".into()));
    assert!(text.contains("names more than one VIP"), "{text}");
    assert_eq!(
        control.running_revision(),
        first.number,
        "nothing was applied"
    );
    assert_eq!(setup.saved_config(), config(5, 4, ""));
}

/// A cluster's store as etcd's guard key behaves: the newest number, swapped
/// only by a change based on it; or unreachable.
#[derive(Default)]
struct FakeCluster {
    newest: u64,
    unreachable: bool,
    proposed: Vec<u64>,
}

struct SharedFake(Arc<Mutex<FakeCluster>>);

impl ClusterStore for SharedFake {
    fn propose(
        &mut self,
        based_on: u64,
        info: &RevisionInfo,
        _config: &Config,
    ) -> Result<(), ControlError> {
        let mut cluster = self.0.lock().unwrap();
        if cluster.unreachable {
            return Err(ControlError::ClusterUnavailable(
                "etcd did not answer".into(),
            ));
        }
        if cluster.newest != based_on {
            return Err(ControlError::Conflict {
                based_on,
                running: cluster.newest,
                since: Vec::new(),
            });
        }
        cluster.newest = info.number;
        cluster.proposed.push(info.number);
        Ok(())
    }
}

#[test]
fn in_a_cluster_a_change_another_node_was_first_to_conflicts_and_programs_nothing() {
    let setup = Setup::in_cluster("cluster-conflict");
    let control = setup.control();
    let first = control.apply(config(2, 4, ""), "test").unwrap();
    assert_eq!(setup.cluster().proposed, vec![first.number]);
    // Another node saves revision 2 before this node has heard of it.
    setup.cluster().newest = first.number + 1;
    let (ops, file) = (setup.ops().len(), setup.config_file());
    match control.edit(drain(0, 1, None)) {
        Err(ControlError::Conflict {
            based_on, running, ..
        }) => {
            assert_eq!((based_on, running), (first.number, first.number + 1))
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(setup.ops().len(), ops, "the loser programmed something");
    assert_eq!(setup.config_file(), file, "the loser saved its change");
    assert_eq!(control.running_revision(), first.number);

    // Then the other node's revision arrives and runs here under its number and record.
    let mut theirs = config(2, 4, "");
    theirs.vips[1].backends[0].weight = 7;
    let info = RevisionInfo {
        number: first.number + 1,
        time: std::time::SystemTime::now(),
        source: "api: weight (node b)".into(),
        summary: vec!["~ vips[web1].backends[198.18.1.2].weight".into()],
    };
    let followed = control.follow(info.clone(), theirs).unwrap();
    assert_eq!(followed, info);
    assert_eq!(control.running_revision(), info.number);
    assert_eq!(control.snapshot().config().vips[1].backends[0].weight, 7);
    assert_eq!(control.history().unwrap().last(), Some(&info));
    assert_eq!(setup.saved_config().vips[1].backends[0].weight, 7);
    // The same revision again (a watch echo) changes nothing.
    let ops = setup.ops().len();
    control
        .follow(info.clone(), control.snapshot().config().clone())
        .unwrap();
    assert_eq!(
        (setup.ops().len(), control.history().unwrap().len()),
        (ops, 2)
    );

    // Based on the cluster's newest, the edit lands as the next number.
    let landed = control.edit(drain(0, 1, Some(info.number))).unwrap();
    assert_eq!(landed.number, info.number + 1);
    assert_eq!(setup.cluster().newest, landed.number);
}

#[test]
fn in_a_cluster_an_unreachable_store_refuses_the_change_and_keeps_the_running_revision() {
    let setup = Setup::in_cluster("cluster-unreachable");
    let control = setup.control();
    let first = control.apply(config(1, 2, ""), "test").unwrap();
    setup.cluster().unreachable = true;
    let (ops, file) = (setup.ops().len(), setup.config_file());
    let refused = control.edit(drain(0, 1, None));
    assert!(
        matches!(refused, Err(ControlError::ClusterUnavailable(_))),
        "{refused:?}"
    );
    assert_eq!((setup.ops().len(), setup.config_file()), (ops, file));
    assert_eq!(control.running_revision(), first.number);
    // A node's own settings stay its own whatever a followed revision says.
    setup.cluster().unreachable = false;
    let mut theirs = config(1, 2, "pin_dir = \"/sys/fs/bpf/elsewhere\"");
    theirs.vips[0].backends[0].weight = 3;
    let info = RevisionInfo {
        number: first.number + 1,
        time: std::time::SystemTime::now(),
        source: "other node".into(),
        summary: vec![],
    };
    control.follow(info, theirs).unwrap();
    assert_eq!(
        control.snapshot().config().pin_dir,
        config(1, 2, "").pin_dir
    );
    assert_eq!(control.snapshot().config().vips[0].backends[0].weight, 3);
}

/// Run by `a_kill_during_a_coalesced_apply_leaves_the_old_or_the_new_config`
/// in a child process, which aborts where `TULA_CRASH_AT` says.
#[test]
#[ignore = "run as a child process by the crash test"]
fn coalesced_drains_in_child() {
    let Ok(dir) = std::env::var("TULA_CRASH_DIR") else {
        return;
    };
    let mut setup = Setup {
        dir: PathBuf::from(dir),
        log: Arc::default(),
        control: None,
        cluster: None,
    };
    setup.start(4096);
    let results = submit_together(
        setup.control(),
        DRAINS.iter().map(|&(v, b)| drain(v, b, None)).collect(),
    );
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    // Now rather than after the changes settle, which the test's end would not wait for.
    setup.control().flush_config_file().unwrap();
    // Not reached when the crash point is hit; never remove the parent's directory.
    std::mem::forget(setup);
}

#[test]
fn a_kill_during_a_coalesced_apply_leaves_the_old_or_the_new_config() {
    use crate::files::{crash_in_child, APPEND_CRASH_STEPS, CRASH_STEPS};

    let before = config(4, 8, "");
    let mut after = before.clone();
    for &(v, b) in &DRAINS {
        after.vips[v as usize].backends[b as usize].state = BackendState::Drain;
    }
    let mut outcomes = Vec::new();
    let steps = CRASH_STEPS
        .iter()
        .map(|step| ("tula.toml", step))
        .chain(
            APPEND_CRASH_STEPS
                .iter()
                .map(|step| ("revisions.log", step)),
        );
    for (file, step) in steps {
        {
            let mut setup = Setup::new(&format!("kill-{}-{step}", file.replace('.', "-")), 4096);
            setup.control().apply(before.clone(), "test").unwrap();
            drop(setup.control.take());
            crash_in_child(
                "writer_tests::coalesced_drains_in_child",
                &setup.dir,
                &format!("{file}/{step}"),
            );
            // Started again, as after kill -9: every drain or none, in the file and in what runs.
            setup.start(4096);
            let control = setup.control();
            let running = control.snapshot().config().clone();
            let all = running == after;
            assert!(
                all || running == before,
                "{file}/{step}: the running config is a mix of old and new"
            );
            assert_eq!(setup.saved_config(), running, "{file}/{step}");
            let history: Vec<(u64, Config)> = control
                .history()
                .unwrap()
                .iter()
                .map(|r| (r.number, control.revision(r.number).unwrap()))
                .collect();
            assert_eq!(history[0], (1, before.clone()), "{file}/{step}");
            assert_eq!(
                history.last().map(|(_, c)| c),
                Some(&running),
                "{file}/{step}: the newest revision is what runs"
            );
            outcomes.push(all);
        }
    }
    // Both happen: a kill before the file is replaced keeps the old config, after it the new.
    assert!(
        outcomes.contains(&true) && outcomes.contains(&false),
        "{outcomes:?}"
    );
}

/// The bytes of every file that holds revisions.
fn revision_bytes(setup: &Setup) -> u64 {
    let files = std::fs::read_dir(setup.dir.join("state/revisions")).unwrap();
    files.map(|f| f.unwrap().metadata().unwrap().len()).sum()
}

#[test]
fn a_change_records_what_changed_not_the_whole_config() {
    let setup = Setup::new("delta-size", 4096);
    let control = setup.control();
    control.apply(config(40, 20, ""), "test").unwrap();
    let before = revision_bytes(&setup);
    control.edit(drain(7, 3, None)).unwrap();
    let grown = revision_bytes(&setup) - before;
    let whole = setup.config_file().len() as u64;
    assert!(
        grown < whole / 10,
        "one drain added {grown} bytes of revisions for a {whole}-byte config"
    );
}

#[test]
fn a_restart_after_many_changes_runs_the_same_config_and_rolls_back_across_compaction() {
    let mut setup = Setup::new("delta-restart", 4096);
    let keep = 3;
    let first = config(6, 4, &format!("keep_revisions = {keep}"));
    setup.control().apply(first, "test").unwrap();
    // Drains, VIPs added and removed, a global setting: more changes than the log keeps before compacting.
    for n in 0..(crate::store::COMPACT_SLACK as u32 + 10) {
        let control = setup.control();
        match n % 4 {
            0 => control.edit(drain(n % 6, n % 4, None)).unwrap(),
            1 => control
                .apply(
                    config(6 + n % 3, 4, &format!("keep_revisions = {keep}")),
                    "test",
                )
                .unwrap(),
            2 => control
                .apply(
                    config(
                        6,
                        4,
                        &format!("keep_revisions = {keep}\nmax_backends = {}", 5000 + n),
                    ),
                    "test",
                )
                .unwrap(),
            _ => control.edit(drain((n + 1) % 5, 0, None)).unwrap(),
        };
    }
    let log = std::fs::read_to_string(setup.dir.join("state/revisions/revisions.log")).unwrap();
    let lines = log.lines().count();
    assert!(
        lines <= keep as usize + crate::store::COMPACT_SLACK + 1,
        "{lines} lines: not compacted"
    );
    let running = setup.control().snapshot().config().clone();
    let history = setup.control().history().unwrap();
    assert_eq!(history.len(), keep as usize);
    let rollback_to = history[0].number;
    let kept: Vec<Config> = history
        .iter()
        .map(|r| setup.control().revision(r.number).unwrap())
        .collect();
    assert_eq!(kept.last(), Some(&running));
    drop(setup.control.take());
    setup.start(4096);
    let control = setup.control();
    assert_eq!(
        control.snapshot().config(),
        &running,
        "the restart runs the newest revision"
    );
    assert_eq!(
        control.history().unwrap(),
        history,
        "no revision recorded at restart"
    );
    for (info, config) in history.iter().zip(&kept) {
        assert_eq!(&control.revision(info.number).unwrap(), config);
    }
    let rolled = control.rollback(rollback_to).unwrap();
    assert_eq!(control.snapshot().config(), &kept[0]);
    assert_eq!(setup.saved_config(), kept[0]);
    assert_eq!(&control.revision(rolled.number).unwrap(), &kept[0]);
}

#[test]
fn a_config_file_whose_write_was_lost_is_written_again_from_the_revision() {
    let mut setup = Setup::new("lost-write", 4096);
    let old = config(2, 3, "");
    setup.control().apply(old.clone(), "test").unwrap();
    let old_file = setup.config_file();
    setup.control().edit(drain(0, 1, None)).unwrap();
    let new = setup.control().snapshot().config().clone();
    drop(setup.control.take());
    // As after a machine crash that kept the synced revision but not the file's rename.
    let path = setup.dir.join("etc/tula.toml");
    std::fs::write(&path, &old_file).unwrap();
    let long_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(long_ago)
        .unwrap();
    setup.start(4096);
    let control = setup.control();
    assert_eq!(control.snapshot().config(), &new);
    assert_eq!(setup.saved_config(), new);
    assert_eq!(control.history().unwrap().len(), 2, "nothing recorded");
    // A file edited after the revision still wins.
    drop(setup.control.take());
    std::fs::write(&path, &old_file).unwrap();
    setup.start(4096);
    assert_eq!(setup.control().snapshot().config(), &old);
    assert_eq!(setup.control().history().unwrap().len(), 3);
}

#[test]
fn the_config_file_is_written_after_changes_settle_not_by_each_change() {
    let setup = Setup::new("file-settles", 4096);
    let control = setup.control();
    let path = setup.dir.join("etc/tula.toml");
    control.apply(config(4, 8, ""), "test").unwrap();
    control.flush_config_file().unwrap();
    let inode = || std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&path).unwrap());
    let mut inodes = vec![inode()];
    // Each write replaces the file by a rename: a new inode.
    for n in 0..8 {
        control.edit(drain(n % 4, n % 8, None)).unwrap();
        inodes.push(inode());
    }
    inodes.dedup();
    assert!(
        inodes.len() < 5,
        "8 changes in a row replaced the file {} times",
        inodes.len() - 1
    );
    // No flush: the file writer writes it once the changes settle.
    let running = control.snapshot().config().clone();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while Config::from_toml_str(&std::fs::read_to_string(&path).unwrap()).unwrap() != running {
        assert!(
            std::time::Instant::now() < deadline,
            "the config file was not written 10 s after the last change"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
