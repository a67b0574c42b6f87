//! `tula serve`: start [`Control`] (adopting a pinned data plane) and the
//! health [`Checker`], serve the API until SIGTERM or SIGINT, then stop
//! checking and serving and leave forwarding running (or unload everything
//! with `unload_on_exit`).

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;
use tula_control::{Control, ControlError, ControlOptions};
use tula_health::Checker;

/// How `tula serve` runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The config file (default /etc/tula/tula.toml).
    pub config_path: PathBuf,
    /// Revisions and other state (default /var/lib/tula).
    pub state_dir: PathBuf,
    /// Listen here instead of the config's `api.listen`.
    pub listen: Option<SocketAddr>,
    /// On exit, remove every program, link and map instead of leaving forwarding running.
    pub unload_on_exit: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error("the API would listen on {listen}, which is not a loopback address, but the config sets no api.token; set one (16 characters at least)")]
    TokenRequired { listen: SocketAddr },
    #[error("listening on {listen}: {source}")]
    Listen {
        listen: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("serving the API: {0}")]
    Serve(#[source] std::io::Error),
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
pub async fn serve(options: ServeOptions, ui: crate::UiRoutes) -> Result<(), ServeError> {
    let control_options = ControlOptions {
        config_path: options.config_path.clone(),
        state_dir: options.state_dir.clone(),
    };
    let control = tokio::task::spawn_blocking(move || Control::start(control_options))
        .await
        .map_err(|e| ServeError::Task(e.to_string()))??;
    let control = Arc::new(control);
    let (revision, config) = control.running();
    tracing::info!(
        revision,
        config = %options.config_path.display(),
        pin_dir = %config.pin_dir.display(),
        vips = config.vips.len(),
        "data plane running revision {revision}"
    );

    let listen = options.listen.unwrap_or(config.api.listen);
    if !listen.ip().is_loopback() && config.api.token.is_none() {
        return Err(ServeError::TokenRequired { listen });
    }
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| ServeError::Listen { listen, source })?;
    tracing::info!(%listen, token_required = !listen.ip().is_loopback(), "serving the API");

    // On this runtime: its threads are in the daemon's network namespace, where probes must go out.
    let health = Checker::spawn(control.clone(), &tokio::runtime::Handle::current());
    let served = axum::serve(
        listener,
        crate::router_with_ui(control.clone(), health.clone(), listen, ui),
    )
    .with_graceful_shutdown(stop_signal())
    .await;
    // Backends keep the health they have in the data plane until the next daemon checks them.
    health.stop();
    served.map_err(ServeError::Serve)?;

    let pin_dir = config.pin_dir.display().to_string();
    if options.unload_on_exit {
        tokio::task::spawn_blocking(move || control.unload())
            .await
            .map_err(|e| ServeError::Task(e.to_string()))??;
        tracing::info!(
            pin_dir,
            "stopped; the data plane is unloaded: nothing forwards any more"
        );
    } else {
        tracing::info!(
            pin_dir,
            "stopped serving; forwarding goes on (the data plane stays pinned). `tula dataplane unload` removes it"
        );
    }
    Ok(())
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
