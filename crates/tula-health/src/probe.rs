//! One probe of each type, bounded by the check's timeout. Probe sockets
//! close with a reset (SO_LINGER 0), so thousands of probes a second leave
//! no TIME_WAIT sockets behind.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

use crate::http::{self, Progress};
use crate::target::{HttpProbe, Probe};
use crate::tls::{self, TlsClients};
use crate::tunnel::TunnelProbes;
use crate::Outcome;

/// What probes share: TLS settings and the tunnel program.
#[derive(Default)]
pub(crate) struct ProbeContext {
    /// Made on first use (it reads the system's trusted roots).
    pub tls: OnceLock<TlsClients>,
    /// The loaded tunnel program, or why it could not be loaded and attached.
    pub tunnel: Mutex<Option<Result<TunnelProbes, String>>>,
}

impl ProbeContext {
    fn tls(&self) -> &TlsClients {
        self.tls.get_or_init(TlsClients::with_system_roots)
    }
}

/// Runs `probe` once; `mark` is the socket mark of a tunnel probe.
pub(crate) async fn run(
    probe: &Probe,
    mark: Option<u32>,
    timeout: Duration,
    context: &ProbeContext,
) -> (Outcome, String) {
    match probe {
        Probe::Tcp { addr } => judged(
            bounded(timeout, async {
                connect(*addr, None)
                    .await
                    .map(|_| "connected".to_string())
                    .map_err(|e| connect_error(*addr, e))
            })
            .await,
        ),
        Probe::Http(http) => judged(bounded(timeout, get(http, context)).await),
        Probe::Tunnel(tunnel) => {
            let Some(mark) = mark else {
                return (
                    Outcome::Error,
                    "no tunnel probe slot for this backend".into(),
                );
            };
            let packets = || -> Result<u64, String> {
                match &*context.tunnel.lock().unwrap_or_else(|p| p.into_inner()) {
                    Some(Ok(program)) => program.packets(mark),
                    Some(Err(why)) => Err(why.clone()),
                    None => Err("the tunnel probe program is not loaded".into()),
                }
            };
            let before = match packets() {
                Ok(n) => n,
                Err(why) => return (Outcome::Error, format!("tunnel probes cannot run: {why}")),
            };
            let vip = tunnel.vip;
            let result = bounded(timeout, async {
                match connect(vip, Some(mark)).await {
                    Ok(_) => Ok(format!("connected to {vip} through the tunnel to {}", tunnel.backend)),
                    Err(e) if e.raw_os_error() == Some(libc::ENETUNREACH) => {
                        Err(format!("no route to VIP {vip} on this host: add one (a default route will do) so tunnel probes can be sent"))
                    }
                    Err(e) => Err(connect_error(vip, e)),
                }
            })
            .await;
            // A probe the program never saw left by a route through an interface it is not on.
            if packets().is_ok_and(|after| after == before) {
                let why = match result {
                    Err(why) if why.starts_with("no route to VIP") => why,
                    _ => format!(
                        "the probe to {vip} did not go through the tunnel program: the route to the VIP leaves by an interface the balancer is not attached to"
                    ),
                };
                return (Outcome::Error, why);
            }
            judged(result)
        }
    }
}

/// A probe's verdict: Ok(detail) passes, Err(detail) fails.
type Verdict = Result<String, String>;

fn judged(verdict: Verdict) -> (Outcome, String) {
    match verdict {
        Ok(detail) => (Outcome::Pass, detail),
        Err(detail) => (Outcome::Fail, detail),
    }
}

async fn bounded(timeout: Duration, probe: impl Future<Output = Verdict>) -> Verdict {
    tokio::time::timeout(timeout, probe)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "no answer within {}",
                tula_config::duration_text::format(timeout)
            ))
        })
}

/// A TCP connection to `addr`, closed with a reset when dropped.
async fn connect(addr: SocketAddr, mark: Option<u32>) -> io::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_zero_linger()?;
    if let Some(mark) = mark {
        socket2::SockRef::from(&socket).set_mark(mark)?;
    }
    socket.connect(addr).await
}

fn connect_error(addr: SocketAddr, e: io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => format!("{addr} refused the connection"),
        _ => format!("connecting to {addr}: {e}"),
    }
}

async fn get(probe: &HttpProbe, context: &ProbeContext) -> Verdict {
    let stream = connect(probe.addr, None)
        .await
        .map_err(|e| connect_error(probe.addr, e))?;
    let _ = stream.set_nodelay(true);
    check_http(stream, probe, context).await
}

/// TLS (for https), the GET and the checks of status and body, over `stream`.
async fn check_http(
    stream: impl AsyncRead + AsyncWrite + Unpin,
    probe: &HttpProbe,
    context: &ProbeContext,
) -> Verdict {
    let started = Instant::now();
    let response = match probe.tls {
        None => exchange(stream, probe).await?,
        Some(verify) => {
            let connector = TlsConnector::from(context.tls().config(verify));
            let name = tls::server_name(&probe.host, probe.addr.ip());
            let stream = connector
                .connect(name, stream)
                .await
                .map_err(|e| format!("TLS handshake with {}: {e}", probe.addr))?;
            exchange(stream, probe).await?
        }
    };
    let took = started.elapsed();
    if !probe.expect_status.contains(response.status) {
        return Err(format!(
            "status {} is not in {}",
            response.status, probe.expect_status
        ));
    }
    if let Some(needle) = &probe.expect_body {
        if !contains(&response.body, needle.as_bytes()) {
            return Err(format!(
                "status {}, but the body{} has no {needle:?}",
                response.status,
                if response.body.len() >= http::MAX_BODY {
                    " (first 64 KiB)"
                } else {
                    ""
                }
            ));
        }
    }
    Ok(format!(
        "status {} in {} ms",
        response.status,
        took.as_millis()
    ))
}

/// Sends the GET and reads the response.
async fn exchange(
    mut stream: impl AsyncRead + AsyncWrite + Unpin,
    probe: &HttpProbe,
) -> Result<http::Response, String> {
    let scheme = if probe.tls.is_some() { "https" } else { "http" };
    stream
        .write_all(&http::request(&probe.path, &probe.host))
        .await
        .map_err(|e| format!("sending GET {scheme}://{}{}: {e}", probe.host, probe.path))?;
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let (n, closed) = match stream.read(&mut chunk).await {
            Ok(0) => (0, true),
            Ok(n) => (n, false),
            // A server that closes without TLS close_notify still answered.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => (0, true),
            Err(e) => return Err(format!("reading the response from {}: {e}", probe.addr)),
        };
        buf.extend_from_slice(&chunk[..n]);
        match http::parse(&buf, closed) {
            Progress::Complete(response) => return Ok(response),
            Progress::Invalid(why) => {
                return Err(format!("bad response from {}: {why}", probe.addr))
            }
            Progress::NeedMore if closed => {
                unreachable!("parse decides once the connection is closed")
            }
            Progress::NeedMore => {}
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    use tokio_rustls::rustls::{RootCertStore, ServerConfig};
    use tokio_rustls::TlsAcceptor;

    /// A CA, and a server certificate it signed for `name`.
    fn certificates(name: &str) -> (rcgen::Certificate, ServerConfig) {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        let server = ServerConfig::builder_with_provider(Arc::new(
            tokio_rustls::rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone(), ca.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
        (ca, server)
    }

    /// An https probe against a TLS server at the other end of an in-memory pipe.
    async fn https(
        host: &str,
        verify: bool,
        roots: RootCertStore,
        server: Arc<ServerConfig>,
    ) -> Verdict {
        let (client_end, server_end) = tokio::io::duplex(64 * 1024);
        let serve = tokio::spawn(async move {
            let mut stream = TlsAcceptor::from(server).accept(server_end).await.ok()?;
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                let mut byte = [0u8; 1];
                stream.read_exact(&mut byte).await.ok()?;
                head.push(byte[0]);
            }
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nsecure ok\n")
                .await
                .ok()?;
            stream.shutdown().await.ok()?;
            Some(String::from_utf8(head).unwrap())
        });
        let probe = HttpProbe {
            addr: "198.18.1.2:443".parse().unwrap(),
            path: "/".into(),
            host: host.into(),
            expect_status: tula_config::HealthCheck::DEFAULT_EXPECT_STATUS,
            expect_body: Some("secure ok".into()),
            tls: Some(verify),
        };
        let context = ProbeContext::default();
        let _ = context.tls.set(TlsClients::with_roots(roots));
        let verdict = check_http(client_end, &probe, &context).await;
        if verdict.is_ok() {
            let head = serve.await.unwrap().expect("the server saw a request");
            assert!(head.contains(&format!("Host: {host}\r\n")), "{head}");
        }
        verdict
    }

    #[tokio::test]
    async fn https_verifies_the_certificate_only_when_asked() {
        let (ca, server) = certificates("www.example.com");
        let server = Arc::new(server);
        let mut trusted = RootCertStore::empty();
        trusted.add(ca.der().clone()).unwrap();

        let verified = https("www.example.com", true, trusted.clone(), server.clone()).await;
        assert!(
            verified.as_ref().is_ok_and(|d| d.starts_with("status 200")),
            "{verified:?}"
        );
        let wrong_name = https("other.example.com", true, trusted.clone(), server.clone())
            .await
            .unwrap_err();
        assert!(
            wrong_name.contains("TLS handshake") && wrong_name.contains("certificate"),
            "{wrong_name}"
        );
        let untrusted = https(
            "www.example.com",
            true,
            RootCertStore::empty(),
            server.clone(),
        )
        .await
        .unwrap_err();
        assert!(untrusted.contains("UnknownIssuer"), "{untrusted}");
        // tls_verify = false: any certificate, any name.
        let unverified = https("other.example.com", false, RootCertStore::empty(), server).await;
        assert!(unverified.is_ok(), "{unverified:?}");
    }
}
