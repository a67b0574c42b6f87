//! What the end-to-end tests share: a lab of their own, taken down when the
//! test ends, pass or fail.

#![allow(dead_code)]

use tula_lab::{Lab, LabOptions};

/// A lab named after the test (and this process), so tests run in parallel.
pub struct TestLab {
    pub lab: Lab,
    pub options: LabOptions,
}

impl TestLab {
    pub fn up(tag: &str, backends: u8) -> TestLab {
        TestLab::cluster(tag, backends, 1)
    }

    /// A lab with `lbs` load-balancer nodes (two: BGP through BIRD, ECMP in the router).
    pub fn cluster(tag: &str, backends: u8, lbs: u8) -> TestLab {
        TestLab::start(tag, backends, lbs, false, &[])
    }

    /// Two nodes whose config lives in the lab's etcd (`tula lab --lbs 2 --cluster`).
    pub fn cluster_with_etcd(tag: &str, backends: u8) -> TestLab {
        TestLab::start(tag, backends, 2, true, &[])
    }

    /// A lab whose balancers run `tula serve` with `serve_args` added.
    pub fn with_serve_args(tag: &str, backends: u8, lbs: u8, serve_args: &[&str]) -> TestLab {
        TestLab::start(tag, backends, lbs, false, serve_args)
    }

    fn start(tag: &str, backends: u8, lbs: u8, etcd: bool, serve_args: &[&str]) -> TestLab {
        let options = LabOptions {
            name: format!("t{}-{tag}", std::process::id() % 100_000),
            backends,
            tula_bin: env!("CARGO_BIN_EXE_tula").into(),
            etcd,
        };
        let lab = Lab::cluster(&options, lbs).unwrap().with_serve_args(serve_args);
        let _ = lab.down();
        lab.up().unwrap_or_else(|e| panic!("lab {tag} did not come up: {e}"));
        TestLab { lab, options }
    }

    /// Saves and applies `toml` through the daemon, as `tula apply -f` does.
    pub fn apply_toml(&self, toml: &str, file_name: &str) {
        let path = self.topology.run_dir().join(file_name);
        std::fs::write(&path, toml).unwrap();
        self.tula(&["apply", "-f", &path.to_string_lossy()]).unwrap();
    }
}

impl Drop for TestLab {
    fn drop(&mut self) {
        if let Err(e) = self.lab.down() {
            eprintln!("taking lab {} down: {e}", self.lab.topology.prefix);
        }
    }
}

impl std::ops::Deref for TestLab {
    type Target = Lab;
    fn deref(&self) -> &Lab {
        &self.lab
    }
}

/// Attaches bpf/xdp_pass.o to `ifname` in `ns` with iproute2, as
/// docs/OPERATIONS.md tells operators to do on a veth's peer.
pub fn attach_xdp_pass(ns: &tula_net::Netns, ifname: &str) {
    let attached = ns
        .command("ip")
        .args(["link", "set", "dev", ifname, "xdp", "obj"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../../bpf/obj/xdp_pass.o"))
        .args(["sec", "xdp"])
        .status()
        .unwrap();
    assert!(attached.success(), "attaching xdp_pass to {ifname}");
}
