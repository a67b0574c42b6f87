//! The channels the API is served on and who is at the other end: TCP (a
//! remote address, authenticated by bearer token) or the local Unix socket
//! (authenticated by the kernel: the peer's uid and groups).
//!
//! The socket is the operator's channel on the balancer itself: mode 0660,
//! owned by root and the operators' group, and every connection's peer
//! credentials (SO_PEERCRED) are checked again at accept.

use std::future::Future;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use axum::Router;
use tokio::net::{TcpListener, UnixListener, UnixStream};

/// Where `tula serve` listens for the CLI on the same host unless told otherwise.
pub const DEFAULT_SOCKET_PATH: &str = "/run/tula/api.sock";

/// Who sent a request, as the handlers' middleware sees it.
#[derive(Debug, Clone)]
pub enum Peer {
    Tcp(SocketAddr),
    Socket(SocketPeer),
}

/// The process at the other end of the Unix socket, as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketPeer {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
    /// Root, or a member of the socket's group: may change the load balancer.
    pub operator: bool,
}

impl Connected<IncomingStream<'_, TcpListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Peer {
        Peer::Tcp(*stream.remote_addr())
    }
}

impl Connected<IncomingStream<'_, ApiSocket>> for Peer {
    fn connect_info(stream: IncomingStream<'_, ApiSocket>) -> Peer {
        Peer::Socket(stream.remote_addr().clone())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("API socket {path}: {what}: {source}")]
    Io {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("API socket group {group:?} does not exist (name or number of a group in /etc/group)")]
    NoGroup { group: String },
    #[error("API socket {path} is in use: a daemon answers on it (pid {pid}); stop it first")]
    InUse { path: PathBuf, pid: String },
}

/// The API's Unix socket, bound and given its owner and mode; removed on drop.
#[derive(Debug)]
pub struct ApiSocket {
    listener: UnixListener,
    path: PathBuf,
    /// Its members may change the load balancer (root always may).
    group: u32,
}

impl ApiSocket {
    /// Binds `path` (creating its directory), owned by root and `group`
    /// (a name or number; root's group if `None`), mode 0660. A socket file
    /// left by a daemon that died is replaced; a live one is refused.
    pub fn bind(path: &Path, group: Option<&str>) -> Result<ApiSocket, SocketError> {
        let io = |what| {
            move |source| SocketError::Io {
                path: path.to_path_buf(),
                what,
                source,
            }
        };
        let gid = match group {
            None => 0,
            Some(group) => group_id(group)?,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io("creating its directory"))?;
        }
        if path.exists() {
            if let Ok(stream) = std::os::unix::net::UnixStream::connect(path) {
                let pid = peer_pid(&stream).map_or("unknown".to_string(), |p| p.to_string());
                return Err(SocketError::InUse {
                    path: path.to_path_buf(),
                    pid,
                });
            }
            std::fs::remove_file(path).map_err(io("removing the stale socket"))?;
        }
        let listener = std::os::unix::net::UnixListener::bind(path).map_err(io("binding"))?;
        std::os::unix::fs::chown(path, Some(0), Some(gid)).map_err(io("setting its owner"))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
            .map_err(io("setting its mode"))?;
        listener
            .set_nonblocking(true)
            .map_err(io("making it non-blocking"))?;
        let listener = UnixListener::from_std(listener).map_err(io("registering it"))?;
        Ok(ApiSocket {
            listener,
            path: path.to_path_buf(),
            group: gid,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The peer of `stream`, and whether it is root or in the socket's group.
    fn peer(&self, stream: &UnixStream) -> SocketPeer {
        let Ok(cred) = stream.peer_cred() else {
            return SocketPeer {
                uid: u32::MAX,
                gid: u32::MAX,
                pid: None,
                operator: false,
            };
        };
        let pid = cred.pid();
        let operator = cred.uid() == 0
            || cred.gid() == self.group
            || pid.is_some_and(|pid| in_group(pid, self.group));
        SocketPeer {
            uid: cred.uid(),
            gid: cred.gid(),
            pid,
            operator,
        }
    }
}

impl Drop for ApiSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Listener for ApiSocket {
    type Io = UnixStream;
    type Addr = SocketPeer;

    async fn accept(&mut self) -> (UnixStream, SocketPeer) {
        loop {
            match self.listener.accept().await {
                Ok((stream, _)) => {
                    let peer = self.peer(&stream);
                    return (stream, peer);
                }
                Err(error) => {
                    // Out of descriptors and the like: wait instead of spinning.
                    tracing::warn!(%error, path = %self.path.display(), "accepting on the API socket");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketPeer> {
        Ok(SocketPeer {
            uid: 0,
            gid: self.group,
            pid: None,
            operator: true,
        })
    }
}

/// A group name or number as a gid.
fn group_id(group: &str) -> Result<u32, SocketError> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    match nix::unistd::Group::from_name(group) {
        Ok(Some(found)) => Ok(found.gid.as_raw()),
        _ => Err(SocketError::NoGroup {
            group: group.to_string(),
        }),
    }
}

/// True if process `pid` has `gid` among its supplementary groups.
fn in_group(pid: i32, gid: u32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("Groups:"))
        .is_some_and(|groups| groups.split_whitespace().any(|g| g.parse() == Ok(gid)))
}

/// The pid at the other end of `stream`.
fn peer_pid(stream: &std::os::unix::net::UnixStream) -> Option<i32> {
    let cred =
        nix::sys::socket::getsockopt(stream, nix::sys::socket::sockopt::PeerCredentials).ok()?;
    Some(cred.pid())
}

/// Serves `router` on `tcp` and, if given, on `socket`, until `shutdown` resolves.
pub async fn serve_api(
    router: Router,
    tcp: TcpListener,
    socket: Option<ApiSocket>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let on_tcp = {
        let mut stopped = stopped.clone();
        axum::serve(
            tcp,
            router.clone().into_make_service_with_connect_info::<Peer>(),
        )
        .with_graceful_shutdown(async move {
            let _ = stopped.wait_for(|s| *s).await;
        })
    };
    let on_socket = async move {
        match socket {
            Some(socket) => {
                let mut stopped = stopped;
                axum::serve(socket, router.into_make_service_with_connect_info::<Peer>())
                    .with_graceful_shutdown(async move {
                        let _ = stopped.wait_for(|s| *s).await;
                    })
                    .await
            }
            None => Ok(()),
        }
    };
    let signal = async move {
        shutdown.await;
        let _ = stop.send(true);
    };
    let (tcp, socket, ()) = tokio::join!(async move { on_tcp.await }, on_socket, signal);
    tcp.and(socket)
}
