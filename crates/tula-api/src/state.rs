//! What every request handler shares: the running [`Control`], the health
//! [`Checker`] and whether a token is required. Reads take the published
//! snapshot; every change of the API and the UI goes to the control plane's
//! one writer from here, and is awaited without holding a thread.

use std::sync::{Arc, Mutex, PoisonError};

use tula_config::Config;
use tula_control::{Command, Control, ControlError, Edit, EditRefused, Reply, Snapshot};
use tula_health::Checker;

use crate::error::ApiError;
use crate::revisions::revision_record;
use tula_client::Revision;

/// What the API's (and the UI's) handlers share.
#[derive(Clone)]
pub struct AppState {
    pub control: Arc<Control>,
    /// Checks the backends of the running config; told of every apply made here.
    pub health: Checker,
    /// True unless the API listens only on loopback.
    pub token_required: bool,
    pub(crate) metrics: Arc<prometheus_client::registry::Registry>,
    /// In service or drained, and the VIPs' BGP announcements.
    pub node: Arc<tula_bgp::Node>,
    /// This node's part in a cluster (`[cluster]`), if any.
    pub cluster: Option<Arc<tula_cluster::Member>>,
}

impl AppState {
    pub fn new(
        control: Arc<Control>,
        health: Checker,
        token_required: bool,
        node: Arc<tula_bgp::Node>,
    ) -> AppState {
        let metrics = Arc::new(crate::metrics::registry(control.clone(), health.clone(), None));
        AppState {
            control,
            health,
            token_required,
            metrics,
            node,
            cluster: None,
        }
    }

    /// This state for a node in a cluster: `GET /api/cluster` and the etcd link's metric.
    pub fn with_cluster(mut self, member: Arc<tula_cluster::Member>) -> AppState {
        let link = member.link().clone();
        self.metrics = Arc::new(crate::metrics::registry(self.control.clone(), self.health.clone(), Some(link)));
        self.cluster = Some(member);
        self
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

    /// The running revision's model: no copy, no lock held.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.control.snapshot()
    }

    /// The running config and its revision number: a copy, for callers
    /// that change it; readers use [`AppState::snapshot`].
    pub async fn running(&self) -> Result<(u64, Config), ApiError> {
        let snapshot = self.snapshot();
        Ok((snapshot.revision(), snapshot.config().clone()))
    }

    /// [`AppState::edit_based_on`] with no base revision and no VIP named.
    pub async fn edit<T, F>(&self, source: String, edit: F) -> Result<(Revision, T), ApiError>
    where
        T: Send + 'static,
        F: FnMut(&mut Config) -> Result<T, ApiError> + Send + 'static,
    {
        self.edit_scoped(source, None, None, edit).await
    }

    /// [`AppState::edit`] decided on revision `base` (a form's hidden field):
    /// 412 Precondition Failed with the changes since when another revision
    /// runs by the time the writer takes it.
    pub async fn edit_based_on<T, F>(
        &self,
        base: Option<u64>,
        source: String,
        edit: F,
    ) -> Result<(Revision, T), ApiError>
    where
        T: Send + 'static,
        F: FnMut(&mut Config) -> Result<T, ApiError> + Send + 'static,
    {
        self.edit_scoped(source, base, None, edit).await
    }

    /// Applies `edit` to the running config through the control plane's
    /// writer (coalesced with other edits waiting), recording `source`.
    /// `based_on` is the revision the client saw (If-Match, or a form's
    /// hidden field): a newer running revision is a 412 with the changes
    /// since. `vip` names the VIP the edit changes. The edit may run more
    /// than once, on fresh copies, and must leave the config unchanged when
    /// it fails.
    pub async fn edit_scoped<T, F>(
        &self,
        source: String,
        based_on: Option<u64>,
        vip: Option<String>,
        mut edit: F,
    ) -> Result<(Revision, T), ApiError>
    where
        T: Send + 'static,
        F: FnMut(&mut Config) -> Result<T, ApiError> + Send + 'static,
    {
        // The edit's own value or error, which the control plane does not carry.
        let outcome: Arc<Mutex<Option<Result<T, ApiError>>>> = Arc::default();
        let slot = outcome.clone();
        let change = Box::new(move |config: &mut Config| {
            let result = edit(config);
            let refused = result
                .as_ref()
                .err()
                .map(|e| EditRefused(e.message.clone()));
            *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(result);
            refused.map_or(Ok(()), Err)
        });
        let result = self
            .wait(|reply| {
                Command::Edit(
                    Edit {
                        source,
                        based_on,
                        vip,
                        change,
                    },
                    reply,
                )
            })
            .await;
        let outcome = outcome
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        match (result, outcome) {
            (Ok(info), Some(Ok(value))) => {
                self.health.config_changed();
                Ok((revision_record(info), value))
            }
            (Err(ControlError::Refused(_)), Some(Err(error))) => Err(error),
            (Err(error), _) => Err(error.into()),
            (Ok(_), _) => Err(ApiError::internal("an applied edit left no result")),
        }
    }

    /// Applies a whole config, or rolls back to a revision, through the writer.
    pub async fn replace(
        &self,
        change: Replace,
        based_on: Option<u64>,
    ) -> Result<Revision, ApiError> {
        let info = match change {
            Replace::Apply { config, source } => {
                self.wait(|reply| Command::Apply {
                    config,
                    source,
                    based_on,
                    reply,
                })
                .await
            }
            Replace::Rollback(number) => {
                self.wait(|reply| Command::Rollback {
                    number,
                    based_on,
                    reply,
                })
                .await
            }
        }?;
        self.health.config_changed();
        Ok(revision_record(info))
    }

    /// Hands a command to the writer and waits for its reply without
    /// holding a thread.
    async fn wait<T: Send + 'static>(
        &self,
        make: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<T, ControlError> {
        let (sender, receiver) = tokio::sync::oneshot::channel();
        self.control.submit(make(Box::new(move |result| {
            let _ = sender.send(result);
        })));
        receiver.await.unwrap_or(Err(ControlError::Stopped))
    }
}

/// A change that replaces the whole running config.
pub enum Replace {
    Apply { config: Box<Config>, source: String },
    Rollback(u64),
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
