//! The etcd client and the writer's cluster store against a real etcd
//! (Debian's etcd-server; scripts/setup.sh installs it) that the test starts
//! in a network namespace of its own, listening only on a lab address, its
//! data in a temporary directory. Needs root.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tula_cluster::etcd::Event;
use tula_cluster::{Etcd, EtcdStore, Keys, Link, SharedRevision};
use tula_config::Config;
use tula_control::{ClusterStore, ControlError, RevisionInfo};
use tula_net::Netns;

const ADDRESS: Ipv4Addr = Ipv4Addr::new(198, 18, 250, 1);

/// One etcd in namespace `tcl-etcd-PID`, killed and removed when dropped.
struct TestEtcd {
    ns: Netns,
    binary: &'static str,
    child: Option<Child>,
    dir: PathBuf,
}

impl TestEtcd {
    fn start() -> TestEtcd {
        let name = format!("tcl-etcd-{}", std::process::id());
        let _ = Netns::open(&name).map(|ns| ns.delete());
        let ns = Netns::create(&name).unwrap();
        ns.run(|| {
            tula_net::set_up("lo").unwrap();
            tula_net::add_address("lo", IpAddr::V4(ADDRESS), 32).unwrap();
        })
        .unwrap();
        let dir = std::env::temp_dir().join(format!("tula-cluster-etcd-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let binary = ["/usr/bin/etcd", "/usr/local/bin/etcd"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("etcd is not installed: run scripts/setup.sh (Debian package etcd-server)");
        let mut etcd = TestEtcd { ns, binary, child: None, dir };
        etcd.run();
        etcd
    }

    /// Starts etcd (again, on the same data); returns once it answers.
    fn run(&mut self) {
        let client = url();
        let peer = format!("http://{ADDRESS}:2380");
        let log = std::fs::File::create(self.dir.join("etcd.log")).unwrap();
        let child = self
            .ns
            .command(self.binary)
            .args(["--name", "t", "--data-dir"])
            .arg(self.dir.join("data"))
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("t={peer}")])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let etcd = Etcd::new(&[url()]);
        let started = Instant::now();
        while self.ns.run(|| etcd.get("/").is_err()).unwrap() {
            assert!(started.elapsed() < Duration::from_secs(20), "etcd did not start: {}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("etcd.log")).unwrap_or_default()
    }
}

impl Drop for TestEtcd {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn url() -> String {
    format!("http://{ADDRESS}:2379")
}

fn info(number: u64, source: &str) -> RevisionInfo {
    RevisionInfo {
        number,
        time: SystemTime::now(),
        source: source.into(),
        summary: vec![],
    }
}

fn config(ring_size: u32) -> Config {
    let text = format!("interfaces = [\"eth0\"]\nring_size = {ring_size}\npin_dir = \"/sys/fs/bpf/mine\"\n");
    Config::from_toml_str(&text).unwrap()
}

#[test]
fn revisions_are_compared_and_swapped_watched_and_refused_without_etcd() {
    let mut server = TestEtcd::start();
    // Every call from here goes out of the test's namespace only.
    server.ns.enter().unwrap();
    let etcd = Arc::new(Etcd::new(&[url()]));
    let keys = Keys::new("/test");
    let link = Arc::new(Link::new(&etcd));
    let mut store = EtcdStore::new("a", etcd.clone(), keys.clone(), link.clone());

    // An empty cluster takes revision 1 on "nothing"; a second one based on nothing conflicts.
    store.propose(0, &info(1, "first"), &config(251)).unwrap();
    assert!(link.connected());
    let (read_at, held) = etcd.get(&keys.config()).unwrap();
    let (shared, decoded) = SharedRevision::decode(&held.unwrap()).unwrap();
    assert_eq!((shared.info.number, shared.node.as_str()), (1, "a"));
    assert_eq!(decoded.ring_size, 251);
    assert_eq!(decoded.pin_dir, Config::default().pin_dir, "a node's pin_dir is its own");
    match store.propose(0, &info(1, "also first"), &config(509)) {
        Err(ControlError::Conflict { based_on, running, since }) => {
            assert_eq!((based_on, running), (0, 1));
            assert_eq!(since.iter().map(|r| r.source.as_str()).collect::<Vec<_>>(), ["first"]);
        }
        other => panic!("expected a conflict, got {other:?}"),
    }

    // A watcher sees the next revision; a second change on the same base loses to it.
    let mut watch = etcd.watch(&keys.config(), false, read_at + 1).unwrap();
    let mut other = EtcdStore::new("b", etcd.clone(), keys.clone(), link.clone());
    other.propose(1, &info(2, "from b"), &config(509)).unwrap();
    match store.propose(1, &info(2, "from a"), &config(1021)) {
        Err(ControlError::Conflict { running: 2, since, .. }) => assert_eq!(since[0].source, "from b"),
        other => panic!("expected a conflict with revision 2, got {other:?}"),
    }
    let (_, events) = watch.next_events().unwrap().expect("the watch ended");
    let [Event::Put(kv)] = events.as_slice() else { panic!("expected one put, got {events:?}") };
    let (shared, decoded) = SharedRevision::decode(kv).unwrap();
    assert_eq!((shared.info.number, shared.node.as_str(), decoded.ring_size), (2, "b", 509));

    // A node's key lives as long as its lease.
    let lease = etcd.grant(Duration::from_secs(1)).unwrap();
    etcd.put(&keys.node("a"), b"{}", Some(lease)).unwrap();
    assert!(etcd.keep_alive(lease).unwrap());
    assert_eq!(etcd.get_prefix(&keys.nodes()).unwrap().1.len(), 1);
    let started = Instant::now();
    while !etcd.get_prefix(&keys.nodes()).unwrap().1.is_empty() {
        assert!(started.elapsed() < Duration::from_secs(5), "the node's key outlived its lease");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!etcd.keep_alive(lease).unwrap(), "an expired lease renewed");

    // etcd gone: a change is refused as not saved, and the link says so; back, it is agreed again.
    server.kill();
    match store.propose(2, &info(3, "while down"), &config(251)) {
        Err(ControlError::ClusterUnavailable(message)) => assert!(message.contains("did not answer"), "{message}"),
        other => panic!("expected the change refused, got {other:?}"),
    }
    assert!(!link.connected());
    server.run();
    store.propose(2, &info(3, "after"), &config(251)).unwrap();
    assert!(link.connected());
}
