//! What the API and UI tests share (tula-ui's tests include this file):
//! starting the daemon's parts in-process.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tula_control::{Control, ControlOptions};

/// The API socket of a daemon started by [`serve`] on `state`.
pub fn socket_path(state: &Path) -> PathBuf {
    state.join("api.sock")
}

/// Writes `config` into `state`, starts Control on it, and serves the API and
/// UI that `ui` builds on `listener` and on the socket [`socket_path`] with
/// the health checker running, as `tula serve` does.
pub fn serve(
    listener: TcpListener,
    config: &str,
    state: &Path,
    ui: tula_api::UiRoutes,
) -> (Arc<Control>, tokio::runtime::Runtime) {
    let address = listener.local_addr().unwrap();
    let options = ControlOptions {
        config_path: state.join("tula.toml"),
        state_dir: state.join("lib"),
    };
    std::fs::create_dir_all(state).unwrap();
    std::fs::write(&options.config_path, config).unwrap();
    let control = Arc::new(Control::start(options).expect("starting Control"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let health = tula_health::Checker::spawn(control.clone(), runtime.handle());
    let router = tula_api::router_with_ui(control.clone(), health, address, ui);
    // Bound before this returns, so the test's first request finds it.
    let socket = {
        let _runtime = runtime.enter();
        tula_api::ApiSocket::bind(&socket_path(state), None).unwrap()
    };
    runtime.spawn(async move {
        listener.set_nonblocking(true).unwrap();
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        tula_api::serve_api(router, listener, Some(socket), std::future::pending())
            .await
            .unwrap();
    });
    (control, runtime)
}
