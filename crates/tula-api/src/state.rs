//! What every request handler shares: the running [`Control`], the health
//! [`Checker`], whether a token is required, and the lock that makes each
//! read-edit-apply one step. Every apply of the API and the UI goes through here.

use std::sync::{Arc, Mutex, PoisonError};

use tula_config::Config;
use tula_control::{Control, RevisionInfo};
use tula_health::Checker;

use crate::error::ApiError;
use crate::revisions::RevisionView;

/// What the API's (and the UI's) handlers share.
#[derive(Clone)]
pub struct AppState {
    pub control: Arc<Control>,
    /// Checks the backends of the running config; told of every apply made here.
    pub health: Checker,
    /// True unless the API listens only on loopback.
    pub token_required: bool,
    /// Held from reading the running config to applying the edited copy, so two
    /// requests cannot each apply an edit that drops the other's.
    edits: Arc<Mutex<()>>,
    pub(crate) metrics: Arc<prometheus_client::registry::Registry>,
    /// In service or drained, and the VIPs' BGP announcements.
    pub node: Arc<tula_bgp::Node>,
}

impl AppState {
    pub fn new(
        control: Arc<Control>,
        health: Checker,
        token_required: bool,
        node: Arc<tula_bgp::Node>,
    ) -> AppState {
        let metrics = Arc::new(crate::metrics::registry(control.clone(), health.clone()));
        AppState {
            control,
            health,
            token_required,
            edits: Arc::new(Mutex::new(())),
            metrics,
            node,
        }
    }

    /// Runs `f` on a blocking thread: Control's calls take locks and make
    /// bpf and netlink system calls, which must not stall the async workers.
    pub async fn blocking<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&AppState) -> Result<T, ApiError> + Send + 'static,
    {
        let state = self.clone();
        match tokio::task::spawn_blocking(move || f(&state)).await {
            Ok(result) => result,
            Err(error) => {
                let message = if error.is_panic() {
                    panic_message(error.into_panic())
                } else {
                    error.to_string()
                };
                tracing::error!("a request panicked: {message}");
                Err(ApiError::internal(format!("internal error: {message}")))
            }
        }
    }

    /// The running config and its revision number.
    pub async fn running(&self) -> Result<(u64, Config), ApiError> {
        self.blocking(|state| Ok(state.control.running())).await
    }

    /// Edits a copy of the running config with `edit` and applies it (validation included),
    /// recording `source` as what made the revision.
    pub async fn edit<T, F>(&self, source: String, edit: F) -> Result<(RevisionView, T), ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Config) -> Result<T, ApiError> + Send + 'static,
    {
        self.edit_based_on(None, source, edit).await
    }

    /// [`AppState::edit`], refused with 412 Precondition Failed when `base` is
    /// given and the running revision is no longer `base` (someone else applied
    /// in between): the edit was made against a config that no longer runs.
    pub async fn edit_based_on<T, F>(
        &self,
        base: Option<u64>,
        source: String,
        edit: F,
    ) -> Result<(RevisionView, T), ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Config) -> Result<T, ApiError> + Send + 'static,
    {
        self.blocking(move |state| {
            let _edits = state.edits.lock().unwrap_or_else(PoisonError::into_inner);
            let (running, mut config) = state.control.running();
            if let Some(base) = base.filter(|&base| base != running) {
                return Err(ApiError::new(
                    axum::http::StatusCode::PRECONDITION_FAILED,
                    format!("the config changed since revision {base}: revision {running} runs now"),
                ));
            }
            let out = edit(&mut config)?;
            let revision = logged(&source, state.control.apply(config, &source))?;
            state.health.config_changed();
            Ok((revision, out))
        })
        .await
    }

    /// Applies a whole config, or rolls back to a revision, under the same lock as edits.
    pub async fn replace(&self, change: Replace) -> Result<RevisionView, ApiError> {
        self.blocking(move |state| {
            let _edits = state.edits.lock().unwrap_or_else(PoisonError::into_inner);
            let revision = match change {
                Replace::Apply { config, source } => {
                    logged(&source, state.control.apply(*config, &source))
                }
                Replace::Rollback(number) => logged(
                    &format!("rollback to {number}"),
                    state.control.rollback(number),
                ),
            }?;
            state.health.config_changed();
            Ok(revision)
        })
        .await
    }
}

/// A change that replaces the whole running config.
pub enum Replace {
    Apply { config: Box<Config>, source: String },
    Rollback(u64),
}

/// The new revision (Control logs it and its changes), or the failure logged with its source.
fn logged(
    source: &str,
    result: Result<RevisionInfo, tula_control::ControlError>,
) -> Result<RevisionView, ApiError> {
    result.map(RevisionView::from).map_err(|error| {
        tracing::warn!(source, %error, "not applied");
        error.into()
    })
}

/// The text of a caught panic.
pub fn panic_message(panic: Box<dyn std::any::Any + Send>) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        text.to_string()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "a request handler panicked".to_string()
    }
}
