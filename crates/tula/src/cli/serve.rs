//! `tula serve`: the daemon (crates/tula-api): data plane, REST API, metrics, and the web UI (crates/tula-ui).

use clap::{Args, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use tula_api::{LogFormat, ServeOptions};

#[derive(Debug, Args)]
#[command(
    after_help = "A stop (SIGTERM, SIGINT) leaves forwarding running: the data plane is pinned, \
and the next start adopts it without dropping connections. `tula dataplane unload` removes it.

Changes need api.token (over TCP) or the socket, which root and --socket-group may use. \
One daemon per --state-dir and pin_dir: a second one is refused before it touches anything."
)]
pub struct ServeArgs {
    /// The config file; created on the first apply if missing.
    #[arg(long, default_value = tula_config::DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    /// Where revisions and backend ids are kept.
    #[arg(long, default_value = "/var/lib/tula")]
    state_dir: PathBuf,
    /// Listen here instead of the config's api.listen.
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Option<SocketAddr>,
    /// The operators' Unix socket: the CLI on this host talks to the daemon here.
    #[arg(long, default_value = tula_api::DEFAULT_SOCKET_PATH)]
    socket: PathBuf,
    /// Members of this group (name or number) may change things over the socket, besides root.
    #[arg(long, value_name = "GROUP")]
    socket_group: Option<String>,
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormatArg,
    /// On stop, remove every program, link and map (forwarding stops).
    #[arg(long)]
    unload_on_exit: bool,
    /// A flow counts as active while its last packet is at most this old
    /// (status, the web UI, metrics; a drain is over when its backend has none).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    active_window: std::time::Duration,
    /// How often the connection table is walked to count active flows.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    flow_sample_interval: std::time::Duration,
    #[command(flatten)]
    bgp: super::bgp::ServeBgpArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormatArg {
    Text,
    Json,
}

pub fn run(args: ServeArgs, verbose: u8) -> anyhow::Result<ExitCode> {
    let format = match args.log_format {
        LogFormatArg::Text => LogFormat::Text,
        LogFormatArg::Json => LogFormat::Json,
    };
    tula_api::init_logging(format, verbose);
    let options = ServeOptions {
        config_path: args.config,
        state_dir: args.state_dir,
        listen: args.listen,
        socket: args.socket,
        socket_group: args.socket_group,
        unload_on_exit: args.unload_on_exit,
        flows: tula_control::FlowOptions {
            window: args.active_window,
            every: args.flow_sample_interval,
        },
        bgp: args.bgp.options(),
    };
    tula_control::limit_heap_arenas();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(tula_api::serve(options, tula_ui::router))?;
    Ok(ExitCode::SUCCESS)
}
