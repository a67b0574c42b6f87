//! `tula serve`: start [`Control`] (adopting a pinned data plane) and the
//! health [`Checker`], serve the API until SIGTERM or SIGINT, then stop
//! checking and serving and leave forwarding running (or unload everything
//! with `unload_on_exit`).

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpListener;
use tula_config::Config;
use tula_control::{Control, ControlError, ControlOptions};
use tula_health::Checker;

use crate::channel::{serve_api, ApiSocket, SocketError};
use crate::owner::{lock_dir, OwnerError};

/// How `tula serve` runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The config file (default /etc/tula/tula.toml).
    pub config_path: PathBuf,
    /// Revisions and other state (default /var/lib/tula).
    pub state_dir: PathBuf,
    /// Listen here instead of the config's `api.listen`.
    pub listen: Option<SocketAddr>,
    /// The operators' Unix socket (default /run/tula/api.sock).
    pub socket: PathBuf,
    /// The group (name or number) whose members may use the socket; root's if `None`.
    pub socket_group: Option<String>,
    /// On exit, remove every program, link and map instead of leaving forwarding running.
    pub unload_on_exit: bool,
    /// Active flows: their window and how often they are sampled.
    pub flows: tula_control::FlowOptions,
    /// Announcing VIPs by BGP (off by default); the state and pin
    /// directories are filled in by [`serve`].
    pub bgp: tula_bgp::AnnounceOptions,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error("{path}: the config is invalid:\n{errors}", path = path.display())]
    Config {
        path: PathBuf,
        errors: tula_config::ConfigErrors,
    },
    #[error("reading {path}: {source}", path = path.display())]
    ReadConfig {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the API would listen on {listen}, which is not a loopback address, but the config sets no api.token; set one (16 characters at least)")]
    TokenRequired { listen: SocketAddr },
    #[error("listening on {listen}: {source}")]
    Listen {
        listen: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Socket(#[from] SocketError),
    #[error(transparent)]
    Owner(#[from] OwnerError),
    #[error(transparent)]
    PinDir(#[from] tula_dataplane::DataplaneError),
    #[error("creating the state dir {path}: {source}", path = path.display())]
    StateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("serving the API: {0}")]
    Serve(#[source] std::io::Error),
    #[error(transparent)]
    Bgp(#[from] tula_bgp::BgpError),
    #[error("a blocking task of the daemon failed: {0}")]
    Task(String),
}

/// Log lines as text for a terminal or one JSON object per line for a collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Installs the daemon's tracing subscriber: info and above, or what `RUST_LOG` says.
pub fn init_logging(format: LogFormat, verbose: u8) {
    let level = match verbose {
        0 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    // Colours only for a terminal: not in journald or a log file.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Runs the daemon, with the web UI that `ui` builds, until SIGTERM or SIGINT.
///
/// Everything that can fail cheaply comes first, before the data plane is
/// touched: the config, the listen/token policy, the ownership of the state
/// and pin dirs, and binding the API's sockets.
pub async fn serve(options: ServeOptions, ui: crate::UiRoutes) -> Result<(), ServeError> {
    let config = read_config(&options.config_path)?;
    let listen = options.listen.unwrap_or(config.api.listen);
    if !listen.ip().is_loopback() && config.api.token.is_none() {
        return Err(ServeError::TokenRequired { listen });
    }
    std::fs::create_dir_all(&options.state_dir).map_err(|source| ServeError::StateDir {
        path: options.state_dir.clone(),
        source,
    })?;
    let _state_lock = lock_dir(&options.state_dir, "state dir")?;
    tula_dataplane::prepare_pin_dir(&config.pin_dir)?;
    let _pin_lock = lock_dir(&config.pin_dir, "pin dir")?;
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| ServeError::Listen { listen, source })?;
    let socket = ApiSocket::bind(&options.socket, options.socket_group.as_deref())?;

    let control_options = ControlOptions {
        config_path: options.config_path.clone(),
        state_dir: options.state_dir.clone(),
    };
    // In a cluster, every change made here is agreed in etcd first (crates/tula-cluster).
    let cluster = config.cluster.clone().map(|cluster| {
        let etcd = Arc::new(tula_cluster::Etcd::new(&cluster.etcd));
        let link = Arc::new(tula_cluster::Link::new(&etcd));
        (cluster, etcd, link)
    });
    let store = cluster.as_ref().map(|(cluster, etcd, link)| {
        tula_cluster::EtcdStore::new(&cluster.node, etcd.clone(), tula_cluster::Keys::new(&cluster.prefix), link.clone())
    });
    let control = tokio::task::spawn_blocking(move || match store {
        Some(store) => Control::start_in_cluster(control_options, Box::new(store)),
        None => Control::start(control_options),
    })
    .await
    .map_err(|e| ServeError::Task(e.to_string()))??;
    let control = Arc::new(control);
    let _flow_sampler = control.start_flow_sampler(options.flows)?;
    let (revision, config) = control.running();
    tracing::info!(
        revision,
        config = %options.config_path.display(),
        pin_dir = %config.pin_dir.display(),
        vips = config.vips.len(),
        "data plane running revision {revision}"
    );
    tracing::info!(
        %listen,
        socket = %socket.path().display(),
        reads_need_token = !listen.ip().is_loopback(),
        "serving the API: changes need the token, or the socket"
    );

    let node = start_node(&options, &config.pin_dir, control.clone()).await?;
    let member = cluster.map(|(cluster, etcd, link)| {
        tracing::info!(node = %cluster.node, etcd = %etcd.endpoints(), prefix = %cluster.prefix, "in a cluster: following its revisions and publishing this node's state");
        let facts_node = node.clone();
        let facts = Box::new(move || {
            let status = facts_node.status();
            let announced = if status.bgp {
                status.vips.iter().map(|a| (a.vip.clone(), a.announced)).collect()
            } else {
                Default::default()
            };
            (status.in_service, announced)
        });
        let keys = tula_cluster::Keys::new(&cluster.prefix);
        Arc::new(tula_cluster::Member::start(&cluster.node, etcd, keys, link, control.clone(), facts))
    });
    // On this runtime: its threads are in the daemon's network namespace, where probes must go out.
    let health = Checker::spawn(control.clone(), &tokio::runtime::Handle::current());
    let router =
        crate::router_with_node(control.clone(), health.clone(), listen, ui, node.clone(), member.clone());
    let served = serve_api(router, listener, Some(socket), stop_signal()).await;
    // Backends keep the health they have in the data plane until the next daemon checks them.
    health.stop();
    // The config file is written once changes settle: now, before the process goes.
    let flushing = control.clone();
    if let Ok(Err(error)) = tokio::task::spawn_blocking(move || flushing.flush_config_file()).await {
        tracing::warn!(%error, "writing the config file failed; the next start writes it from the last revision");
    }
    served.map_err(ServeError::Serve)?;

    let pin_dir = config.pin_dir.display().to_string();
    if options.unload_on_exit {
        // Withdraw first, so the routers stop sending before nothing forwards.
        tokio::task::spawn_blocking(move || {
            node.withdraw_all();
            control.unload()
        })
            .await
            .map_err(|e| ServeError::Task(e.to_string()))??;
        tracing::info!(
            pin_dir,
            "stopped; the data plane is unloaded: nothing forwards any more"
        );
    } else {
        // Announcements stay for the grace time, held by `tula bgp hold`.
        node.stop();
        tracing::info!(
            pin_dir,
            "stopped serving; forwarding goes on (the data plane stays pinned). `tula dataplane unload` removes it"
        );
    }
    Ok(())
}

/// Starts the node's drain state and, with BGP on, its announcer.
async fn start_node(
    options: &ServeOptions,
    pin_dir: &std::path::Path,
    control: Arc<tula_control::Control>,
) -> Result<Arc<tula_bgp::Node>, ServeError> {
    let mut announce = options.bgp.clone();
    announce.state_dir = Some(options.state_dir.clone());
    announce.pin_dir = pin_dir.to_path_buf();
    if announce.tula_bin.as_os_str().is_empty() {
        announce.tula_bin = std::env::current_exe().map_err(|e| {
            tula_bgp::BgpError::Io { what: "finding the tula executable".into(), source: e }
        })?;
    }
    let readiness = Box::new(move || tula_bgp::readiness(&control));
    let node = tokio::task::spawn_blocking(move || tula_bgp::Node::start(announce, readiness))
        .await
        .map_err(|e| ServeError::Task(e.to_string()))??;
    Ok(Arc::new(node))
}

/// Resolves on SIGTERM (systemd's stop) or SIGINT (Ctrl-C).
async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    let signal = tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = tokio::signal::ctrl_c() => "SIGINT",
    };
    tracing::info!("{signal}: stopping");
}

/// The config file, decoded and validated (what needs the host is checked
/// later, by Control); the defaults if there is none yet.
fn read_config(path: &Path) -> Result<Config, ServeError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
        Err(source) => {
            return Err(ServeError::ReadConfig {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let invalid = |errors| ServeError::Config {
        path: path.to_path_buf(),
        errors,
    };
    let config = Config::from_toml_str(&text).map_err(invalid)?;
    config
        .validate(&tula_config::HostFacts::default())
        .map_err(invalid)?;
    Ok(config)
}
