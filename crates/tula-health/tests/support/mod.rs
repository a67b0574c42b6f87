//! Shared fixtures for the checker tests: a load balancer namespace running
//! tula-control's data plane and a backend namespace holding the backends'
//! addresses and servers, all removed afterwards whatever happens.
//!
//! Topology (one per test):
//!   LB namespace                         backend namespace
//!   lb0 198.18.0.1/24  <---- veth ---->  bk0 198.18.0.2/24, 198.18.0.10-39/32
//!   203.0.113.0/24 via 198.18.0.2        (the servers of each test)
//!   198.18.0.99: permanent neighbour with a MAC nobody has (probes to it get no answer)
//!   lb0 2001:db8::1/64                   bk0 2001:db8::2/64, 2001:db8::a-13/128 (n = 10..=19)
//!   2001:db8:ff::/64 via 2001:db8::2     (IPv6 VIPs)

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, TcpListener};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tula_control::{Control, ControlOptions};
use tula_dataplane::{Dataplane, XdpAction};
use tula_net::Netns;

pub const LB_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const BACKEND_HOST: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
pub const LB_ADDR6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
pub const BACKEND_HOST6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);
/// SYNs to it leave and are never answered.
pub const SILENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 99);
pub const CLIENT_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0xc1];

/// Backend address `n` (10..=39) in the backend namespace.
pub fn backend(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, n)
}

/// IPv6 backend address `n` (10..=19) in the backend namespace: 2001:db8::n (n in hex).
pub fn backend6(n: u8) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, n.into())
}

pub struct Lab {
    pub lb: Netns,
    pub backends: Netns,
    pub pin_dir: PathBuf,
    pub state: PathBuf,
}

impl Lab {
    pub fn new(name: &str) -> Lab {
        let pid = std::process::id();
        let lb = Netns::create(&format!("th-{name}-{pid}")).expect("creating the LB namespace");
        let backends =
            Netns::create(&format!("thb-{name}-{pid}")).expect("creating the backend namespace");
        let lab = Lab {
            lb,
            backends,
            pin_dir: PathBuf::from(format!("/sys/fs/bpf/tula-health-test-{name}-{pid}")),
            state: std::env::temp_dir().join(format!("tula-health-test-{name}-{pid}")),
        };
        let _ = std::fs::remove_dir_all(&lab.pin_dir);
        let _ = std::fs::remove_dir_all(&lab.state);
        lab.lb
            .run(|| -> Result<(), tula_net::NetError> {
                tula_net::add_veth("lb0", "bk0", Some(&lab.backends))?;
                tula_net::add_address("lb0", LB_ADDR.into(), 24)?;
                tula_net::set_up("lb0")?;
                // LAB-NOTES: partial checksums do not survive XDP on a veth's far side.
                tula_net::set_offload("lb0", tula_net::Offload::TxChecksum, false)?;
                tula_net::add_route(Ipv4Addr::new(203, 0, 113, 0), 24, Some(BACKEND_HOST), None)?;
                tula_net::add_neighbour("lb0", SILENT, [0x02, 0, 0, 0, 0, 0x99])?;
                tula_net::add_address("lb0", LB_ADDR6.into(), 64)?;
                tula_net::add_route(Ipv6Addr::new(0x2001, 0xdb8, 0xff, 0, 0, 0, 0, 0), 64, Some(BACKEND_HOST6), None)?;
                Ok(())
            })
            .unwrap()
            .expect("building the LB side");
        lab.backends
            .run(|| -> Result<(), tula_net::NetError> {
                tula_net::add_address("bk0", BACKEND_HOST.into(), 24)?;
                for n in 10..=39 {
                    tula_net::add_address("bk0", backend(n).into(), 32)?;
                }
                tula_net::add_address("bk0", BACKEND_HOST6.into(), 64)?;
                for n in 10..=19 {
                    tula_net::add_address("bk0", backend6(n).into(), 128)?;
                }
                tula_net::set_up("bk0")?;
                tula_net::add_route(Ipv4Addr::UNSPECIFIED, 0, Some(LB_ADDR), Some("bk0"))?;
                tula_net::add_route(Ipv6Addr::UNSPECIFIED, 0, Some(LB_ADDR6), Some("bk0"))?;
                Ok(())
            })
            .unwrap()
            .expect("building the backend side");
        lab
    }

    /// tula-control started in the LB namespace.
    pub fn start_control(&self) -> Arc<Control> {
        let options = ControlOptions {
            config_path: self.state.join("etc/tula.toml"),
            state_dir: self.state.join("lib"),
        };
        Arc::new(
            self.lb
                .run(|| Control::start(options))
                .unwrap()
                .expect("starting Control"),
        )
    }

    /// A config for this lab: lb0, small maps, this test's pin directory, then `vips`.
    pub fn config(&self, vips: &str) -> tula_config::Config {
        let text = format!(
            "interfaces = [\"lb0\"]\npin_dir = \"{}\"\nring_size = 1021\nconn_table_size = 4096\nmax_vips = 16\nmax_backends = 128\n{vips}",
            self.pin_dir.display()
        );
        tula_config::Config::from_toml_str(&text).expect("test config decodes")
    }

    pub fn apply(&self, control: &Control, vips: &str) {
        let config = self.config(vips);
        self.lb
            .run(|| control.apply(config, "test"))
            .unwrap()
            .expect("applying the test config");
    }

    /// A tokio runtime whose threads live in the LB namespace (probe sockets are made there).
    pub fn runtime(&self) -> tokio::runtime::Runtime {
        self.lb
            .run(|| {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
            })
            .unwrap()
            .expect("building the runtime")
    }

    /// Opens a connection from 198.18.200.7:`client_port` to `vip` through the
    /// balancer (BPF test runs): its SYN, then the handshake's ACK, which moves
    /// the SYN from the CPU's SYN table into the connection table. The backend
    /// the SYN was sent to, or `None` if it was not forwarded.
    pub fn send(&self, client_port: u16, vip: SocketAddrV4) -> Option<Ipv4Addr> {
        self.send_tcp(client_port, vip, &[true, false])
    }

    /// Runs a packet of an established connection (ACK) through the balancer.
    pub fn send_established(&self, client_port: u16, vip: SocketAddrV4) -> Option<Ipv4Addr> {
        self.send_tcp(client_port, vip, &[false])
    }

    /// Runs one TCP segment per entry of `syns` (SYN or ACK) on one CPU, as RSS
    /// would; the backend the first went to.
    fn send_tcp(&self, client_port: u16, vip: SocketAddrV4, syns: &[bool]) -> Option<Ipv4Addr> {
        self.lb
            .run(|| {
                tula_dataplane::stay_on_this_cpu();
                let dataplane =
                    Dataplane::open_pinned(&self.pin_dir).expect("opening the pinned data plane");
                let lb0 = tula_net::link("lb0").unwrap();
                let sent: Vec<Option<Ipv4Addr>> = syns
                    .iter()
                    .map(|&syn| {
                        let mut frame = Vec::new();
                        let builder = etherparse::PacketBuilder::ethernet2(CLIENT_MAC, lb0.mac)
                            .ipv4([198, 18, 200, 7], vip.ip().octets(), 61)
                            .tcp(client_port, vip.port(), 1000, 64_000);
                        let builder = if syn { builder.syn() } else { builder.ack(1) };
                        builder.write_to_vec(&mut frame, b"").unwrap();
                        let (action, out) = dataplane.test_run(&frame, Some(lb0.index)).unwrap();
                        (action == XdpAction::Tx).then(|| Ipv4Addr::new(out[30], out[31], out[32], out[33]))
                    })
                    .collect();
                assert!(sent.windows(2).all(|w| w[0] == w[1]), "the ACK did not follow the SYN: {sent:?}");
                sent[0]
            })
            .unwrap()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Removing the pins (links included) unloads the data plane; the namespaces go after.
        let _ = std::fs::remove_dir_all(&self.pin_dir);
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

/// Polls `done` every 5 ms for up to `limit`; how long it took, or `None`.
pub fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    done().then(|| start.elapsed())
}

/// Whether Control has backend `address` of `vip` healthy.
pub fn healthy(control: &Control, vip: &str, address: impl Into<IpAddr>) -> bool {
    let address = address.into();
    control
        .status()
        .unwrap()
        .iter()
        .find(|v| v.name == vip)
        .and_then(|v| v.backends.iter().find(|b| b.address == address))
        .unwrap_or_else(|| panic!("no backend {address} of {vip} in the status"))
        .healthy
}

/// A small HTTP/1.1 server in a namespace: one thread, one connection at a
/// time, each answered by `respond(request head)` (a whole HTTP response) and
/// closed. Dropping it closes the listener: new connections are refused.
pub struct HttpServer {
    listener: Option<Arc<TcpListener>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

pub type Respond = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// `200 OK` with `body` (Content-Length framing).
pub fn ok(body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

impl HttpServer {
    pub fn start(ns: &Netns, addr: SocketAddr, respond: Respond) -> HttpServer {
        let listener = Arc::new(
            ns.run(|| TcpListener::bind(addr))
                .unwrap()
                .unwrap_or_else(|e| panic!("binding {addr}: {e}")),
        );
        let accepting = listener.clone();
        let thread = std::thread::spawn(move || {
            // accept() fails once the listener is shut down.
            while let Ok((stream, _)) = accepting.accept() {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let mut reader = BufReader::new(&stream);
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    match reader.read_line(&mut line) {
                        Ok(0) | Err(_) => break,
                        Ok(_) if line == "\r\n" => break,
                        Ok(_) => head.push_str(&line),
                    }
                }
                let _ = (&stream).write_all(respond(&head).as_bytes());
            }
        });
        HttpServer {
            listener: Some(listener),
            thread: Some(thread),
        }
    }

    /// Answers `200 OK` with body `ok`.
    pub fn healthy(ns: &Netns, addr: SocketAddr) -> HttpServer {
        HttpServer::start(ns, addr, Arc::new(|_| ok("ok")))
    }

    pub fn stop(&mut self) {
        if let Some(listener) = self.listener.take() {
            // SAFETY: shutdown on a socket fd that stays open until the Arc drops.
            unsafe { libc::shutdown(listener.as_raw_fd(), libc::SHUT_RDWR) };
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The Host header of a request head.
pub fn host_header(head: &str) -> String {
    head.lines()
        .find_map(|l| l.strip_prefix("Host: "))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// An HTTPS server in a namespace with a self-signed certificate for
/// `backend.test`: answers every request `200 OK` with body `secure ok`.
/// Stops when dropped.
pub struct TlsServer {
    runtime: Option<tokio::runtime::Runtime>,
}

impl TlsServer {
    pub fn start(ns: &Netns, addr: SocketAddr) -> TlsServer {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["backend.test".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(Arc::new(
            tokio_rustls::rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let (runtime, listener) = ns
            .run(|| {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .unwrap();
                let listener = runtime
                    .block_on(tokio::net::TcpListener::bind(addr))
                    .unwrap();
                (runtime, listener)
            })
            .unwrap();
        runtime.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut stream) = acceptor.accept(stream).await else {
                        return;
                    };
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") && stream.read_exact(&mut byte).await.is_ok()
                    {
                        head.push(byte[0]);
                    }
                    let _ = stream.write_all(ok("secure ok").as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        TlsServer {
            runtime: Some(runtime),
        }
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
