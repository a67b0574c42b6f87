//! Load Balancing > L4 Virtual IPs: the VIP list, the live status JSON its
//! script polls (packets and bytes per second are computed in the browser
//! from two samples), and the revision history.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Query, State};
use axum::response::Html;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tula_config::{BackendState, Config};
use tula_control::{BackendStatus, Change, Control, VipStatus};

use crate::layout::{self, alert, esc, url_segment, Page, Section};
use crate::session::Session;
use crate::{UiError, UiState};
use tula_api::RevisionView;

/// The VIP list's address; where login and Save and apply lead.
pub(crate) const PATH: &str = "/ui/vips";

/// `?applied=N`: the revision a change just made, shown as a banner.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Flash {
    pub applied: Option<u64>,
    pub removed: Option<String>,
}

/// How the saved config file compares with what runs.
pub(crate) enum SavedDrift {
    Same,
    /// Paths whose value differs (applying the file would change them).
    Differs(Vec<Change>),
    Unreadable(String),
}

impl SavedDrift {
    pub fn read(control: &Control) -> SavedDrift {
        match control.saved() {
            Ok(saved) => {
                let changes = control.diff(&saved).changes;
                if changes.is_empty() {
                    SavedDrift::Same
                } else {
                    SavedDrift::Differs(changes)
                }
            }
            Err(error) => SavedDrift::Unreadable(error.to_string()),
        }
    }

    pub fn differs(&self) -> bool {
        !matches!(self, SavedDrift::Same)
    }

    /// True when the saved file changes something of VIP `name`.
    pub fn touches(&self, name: &str) -> bool {
        let prefix = format!("vips[{name}]");
        match self {
            SavedDrift::Differs(changes) => changes.iter().any(|c| c.path.starts_with(&prefix)),
            _ => false,
        }
    }

    /// The banner that says so, or nothing.
    pub fn banner(&self) -> String {
        match self {
            SavedDrift::Same => String::new(),
            SavedDrift::Unreadable(error) => alert(
                "warning",
                &format!(
                    "<strong>Running config differs from saved:</strong> the saved config cannot be read ({}).",
                    esc(error)
                ),
            ),
            SavedDrift::Differs(changes) => {
                let mut html = String::from(
                    "<strong>Running config differs from saved.</strong> The daemon's config file was changed \
                     outside tula and is not running. Applying it (<code>tula apply -f FILE</code>) would change:<ul>",
                );
                for change in changes.iter().take(20) {
                    html.push_str(&format!("<li><code>{}</code></li>", esc(&change_text(change))));
                }
                if changes.len() > 20 {
                    html.push_str(&format!("<li>and {} more</li>", changes.len() - 20));
                }
                html.push_str("</ul>Save and apply here writes the running config, with your change, over the file.");
                alert("warning", &html)
            }
        }
    }
}

fn change_text(change: &Change) -> String {
    match (&change.before, &change.after) {
        (Some(before), Some(after)) => {
            format!("{} {}: {before} -> {after}", change.op, change.path)
        }
        _ => format!("{} {}", change.op, change.path),
    }
}

/// Backends that take new flows, all of them, and those draining.
pub(crate) fn backend_counts(backends: &[BackendStatus]) -> (usize, usize, usize) {
    let effective = |b: &BackendStatus| match b.state {
        BackendState::Active if b.weight == 0 => BackendState::Drain,
        state => state,
    };
    let up = backends
        .iter()
        .filter(|b| b.healthy && effective(b) == BackendState::Active)
        .count();
    let draining = backends
        .iter()
        .filter(|b| effective(b) == BackendState::Drain)
        .count();
    (up, backends.len(), draining)
}

/// The banner for `?applied=N`: the revision's number, source and changes.
pub(crate) async fn flash_banner(ui: &UiState, flash: &Flash) -> Result<String, UiError> {
    let mut html = String::new();
    if let Some(name) = &flash.removed {
        html.push_str(&alert(
            "success",
            &format!("VIP <strong>{}</strong> removed.", esc(name)),
        ));
    }
    let Some(number) = flash.applied else {
        return Ok(html);
    };
    let history = ui
        .app
        .blocking(|state| Ok(state.control.history()?))
        .await?;
    if let Some(info) = history.into_iter().find(|r| r.number == number) {
        let revision = RevisionView::from(info);
        let mut text = format!(
            "<strong>Saved and applied: revision <span id=\"applied-revision\">{}</span></strong> ({}, {}).",
            revision.number,
            esc(&revision.source),
            esc(&revision.time)
        );
        if revision.summary.is_empty() {
            text.push_str(" Nothing changed.");
        } else {
            text.push_str("<ul>");
            for line in &revision.summary {
                text.push_str(&format!("<li><code>{}</code></li>", esc(line)));
            }
            text.push_str("</ul>");
        }
        html.push_str(&alert("success", &text));
    }
    Ok(html)
}

pub(crate) async fn page(
    State(ui): State<UiState>,
    Extension(session): Extension<Session>,
    Query(flash): Query<Flash>,
) -> Result<Html<String>, UiError> {
    let (revision, config, status, drift) = ui
        .app
        .blocking(|state| {
            let (revision, config) = state.control.running();
            let status = state.control.status()?;
            let drift = SavedDrift::read(&state.control);
            Ok((revision, config, status, drift))
        })
        .await?;
    let mut body = flash_banner(&ui, &flash).await?;
    body.push_str(&format!(
        "<div class=\"heading\"><h1>L4 Virtual IPs</h1>\
         <a class=\"button primary\" href=\"/ui/vips/new\">Create VIP</a></div>\n\
         <p class=\"meta\">Running revision <strong id=\"running-revision\">{revision}</strong>. \
         Rates refresh every 2 seconds.</p>\n"
    ));
    body.push_str(&drift.banner());
    if config.vips.is_empty() {
        body.push_str("<p class=\"empty\">No VIPs yet. <a href=\"/ui/vips/new\">Create the first one</a>.</p>\n");
    } else {
        body.push_str(&vip_table(&config, &status, &drift));
    }
    let page = Page::new("L4 Virtual IPs", Section::Vips, &session).crumb("L4 Virtual IPs", None);
    Ok(Html(page.render(&body)))
}

fn vip_table(config: &Config, status: &[VipStatus], drift: &SavedDrift) -> String {
    let by_name: HashMap<&str, &VipStatus> = status.iter().map(|s| (s.name.as_str(), s)).collect();
    let mut out = String::from(
        "<div class=\"table-wrap\" tabindex=\"0\" role=\"region\" aria-label=\"VIPs\">\n<table class=\"vips\" data-live-vips>\n\
         <caption class=\"visually-hidden\">Virtual IPs, their backends and live traffic</caption>\n\
         <thead><tr><th scope=\"col\">Name</th><th scope=\"col\">Address</th><th scope=\"col\">Mode</th>\
         <th scope=\"col\">Scheduler</th><th scope=\"col\">Backends<br><small>up / total, draining</small></th>\
         <th scope=\"col\" class=\"num\">Packets/s</th><th scope=\"col\" class=\"num\">Bytes/s</th>\
         <th scope=\"col\">Config</th></tr></thead>\n<tbody>\n",
    );
    for vip in &config.vips {
        let (up, total, draining) = by_name
            .get(vip.name.as_str())
            .map(|s| backend_counts(&s.backends))
            .unwrap_or((0, vip.backends.len(), 0));
        let href = format!("/ui/vips/{}", url_segment(&vip.name));
        let saved = if drift.touches(&vip.name) {
            "<span class=\"badge badge-warning\">differs from saved</span>"
        } else {
            "<span class=\"badge\">saved</span>"
        };
        let health = if up == 0 && total > 0 {
            " badge-error"
        } else if up < total {
            " badge-warning"
        } else {
            ""
        };
        out.push_str(&format!(
            "<tr data-vip=\"{name}\">\
             <th scope=\"row\"><a href=\"{href}\">{name}</a></th>\
             <td><code>{socket}</code></td>\
             <td>DSR, {dsr}</td>\
             <td>{scheduler}</td>\
             <td><span class=\"badge{health}\" data-live=\"backends\">{up} / {total}</span> \
             <small data-live=\"draining\">{draining_text}</small></td>\
             <td class=\"num\" data-live=\"pps\">…</td>\
             <td class=\"num\" data-live=\"bps\">…</td>\
             <td>{saved}</td></tr>\n",
            name = esc(&vip.name),
            socket = esc(&layout::socket_label(vip)),
            dsr = layout::dsr_type_label(vip.dsr_type),
            scheduler = esc(&layout::config_text(&vip.scheduler)),
            draining_text = draining_label(draining),
        ));
    }
    out.push_str("</tbody>\n</table>\n</div>\n");
    out
}

pub(crate) fn draining_label(draining: usize) -> String {
    if draining == 0 {
        "none draining".to_string()
    } else {
        format!("{draining} draining")
    }
}

/// Counters as JSON for the pages' script: VIPs and backends by name and
/// address, the balancer's interfaces, and the time of the sample.
pub(crate) async fn status_json(
    State(ui): State<UiState>,
) -> Result<Json<Value>, tula_api::ApiError> {
    ui.app
        .blocking(|state| {
            let (revision, config) = state.control.running();
            let status = state.control.status()?;
            let drift = SavedDrift::read(&state.control);
            let mut vips = Map::new();
            for vip in &status {
                let (up, total, draining) = backend_counts(&vip.backends);
                let mut backends = Map::new();
                for backend in &vip.backends {
                    backends.insert(
                        backend.address.to_string(),
                        json!({
                            "state": layout::state_label(backend.state),
                            "weight": backend.weight,
                            "healthy": backend.healthy,
                            "active_flows": backend.active_flows,
                            "packets": backend.packets,
                            "bytes": backend.bytes,
                        }),
                    );
                }
                vips.insert(
                    vip.name.clone(),
                    json!({
                        "packets": vip.packets,
                        "bytes": vip.bytes,
                        "up": up,
                        "total": total,
                        "draining": draining,
                        "backends": backends,
                    }),
                );
            }
            let mut interfaces = Map::new();
            for name in &config.interfaces {
                if let Ok(stats) = tula_net::link_stats(name) {
                    interfaces.insert(
                        name.clone(),
                        json!({
                            "rx_packets": stats.rx_packets,
                            "tx_packets": stats.tx_packets,
                            "rx_bytes": stats.rx_bytes,
                            "tx_bytes": stats.tx_bytes,
                        }),
                    );
                }
            }
            let time_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0);
            Ok(Json(json!({
                "time_ms": time_ms,
                "revision": revision,
                "saved_differs": drift.differs(),
                "vips": vips,
                "interfaces": interfaces,
            })))
        })
        .await
}

/// System > Revisions: every saved revision, newest first.
pub(crate) async fn revisions(
    State(ui): State<UiState>,
    Extension(session): Extension<Session>,
) -> Result<Html<String>, UiError> {
    let (running, history) = ui
        .app
        .blocking(|state| Ok((state.control.running().0, state.control.history()?)))
        .await?;
    let mut body = String::from(
        "<h1>Revisions</h1>\n<p class=\"meta\">Every Save and apply records a numbered revision \
         (<code>tula config history</code>, <code>tula config rollback N</code>).</p>\n\
         <div class=\"table-wrap\" tabindex=\"0\" role=\"region\" aria-label=\"Revisions\">\n<table>\n\
         <thead><tr><th scope=\"col\" class=\"num\">#</th><th scope=\"col\">Time</th>\
         <th scope=\"col\">Source</th><th scope=\"col\">Changes</th></tr></thead>\n<tbody>\n",
    );
    for info in history.into_iter().rev().take(200) {
        let revision = RevisionView::from(info);
        let current = if revision.number == running {
            " <span class=\"badge\">running</span>"
        } else {
            ""
        };
        let summary: Vec<String> = revision
            .summary
            .iter()
            .map(|line| format!("<code>{}</code>", esc(line)))
            .collect();
        body.push_str(&format!(
            "<tr><td class=\"num\">{}{current}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            revision.number,
            esc(&revision.time),
            esc(&revision.source),
            summary.join("<br>")
        ));
    }
    body.push_str("</tbody>\n</table>\n</div>\n");
    let page = Page::new("Revisions", Section::Revisions, &session);
    Ok(Html(page.render(&body)))
}
