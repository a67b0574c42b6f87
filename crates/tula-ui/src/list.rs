//! Load Balancing > L4 Virtual IPs: the VIP list (search, filters by health
//! and DSR type, pages of 50; each VIP's health in colour with its down
//! backends and why) and the live status JSON its script polls (packets and
//! bytes per second are computed in the browser from two samples).

use std::collections::HashMap;
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Query, State};
use axum::response::Html;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use maud::{html, Markup};
use tula_config::{BackendState, Config, Vip};
use tula_control::{BackendStatus, Change, Control, MapReads, VipStatus};

use crate::layout::{self, alert, count, url_segment, Page, Section};
use crate::session::Session;
use crate::{UiError, UiState};
use tula_api::revision_record;

/// The VIP list's address; where login and Save and apply lead.
pub(crate) const PATH: &str = "/ui/vips";

/// `?applied=N`: the revision a change just made, shown as a banner.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Flash {
    pub applied: Option<u64>,
    pub removed: Option<String>,
}

/// [`SavedDrift`] kept while neither the running revision nor the config
/// file changes: reading and comparing a 1,000-VIP file takes most of a
/// second, and every page shows the drift.
#[derive(Default)]
pub(crate) struct DriftCache(Mutex<Option<(DriftKey, Arc<SavedDrift>)>>);

/// What a kept [`SavedDrift`] was made from.
#[derive(Debug, PartialEq)]
struct DriftKey {
    revision: u64,
    /// The file's (inode, length, modification time); `None` when it cannot be read.
    file: Option<(u64, u64, SystemTime)>,
}

impl DriftCache {
    pub fn read(&self, control: &Control) -> Arc<SavedDrift> {
        let file = std::fs::metadata(control.config_path())
            .ok()
            .map(|m| (m.ino(), m.len(), m.modified().unwrap_or(UNIX_EPOCH)));
        let key = DriftKey {
            revision: control.running_revision(),
            file,
        };
        // Held while comparing, so two pages opened at once compare once.
        let mut kept = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((kept_key, drift)) = &*kept {
            if *kept_key == key {
                return drift.clone();
            }
        }
        let drift = Arc::new(SavedDrift::read(control));
        *kept = Some((key, drift.clone()));
        drift
    }
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
    pub fn banner(&self) -> Markup {
        match self {
            SavedDrift::Same => html! {},
            SavedDrift::Unreadable(error) => alert(
                "warning",
                html! {
                    strong { "Running config differs from saved:" }
                    " the saved config cannot be read (" (error) ")."
                },
            ),
            SavedDrift::Differs(changes) => alert(
                "warning",
                html! {
                    strong { "Running config differs from saved." }
                    " The daemon's config file was changed outside tula and is not running. Applying it ("
                    code { "tula apply -f FILE" } ") would change:"
                    ul {
                        @for change in changes.iter().take(20) { li { code { (change_text(change)) } } }
                        @if changes.len() > 20 { li { "and " (changes.len() - 20) " more" } }
                    }
                    "Save and apply here writes the running config, with your change, over the file."
                },
            ),
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
pub(crate) async fn flash_banner(ui: &UiState, flash: &Flash) -> Result<Markup, UiError> {
    let removed = flash.removed.as_ref().map(|name| {
        alert("success", html! { "VIP " strong { (name) } " removed." })
    });
    let applied = match flash.applied {
        None => None,
        Some(number) => {
            let history = ui
                .app
                .blocking(|state| Ok(state.control.history()?))
                .await?;
            history
                .into_iter()
                .find(|r| r.number == number)
                .map(revision_record)
        }
    };
    Ok(html! {
        @if let Some(removed) = removed { (removed) }
        @if let Some(revision) = applied {
            (alert("success", html! {
                strong { "Applied: revision " span #applied-revision { (revision.number) } }
                " (" (revision.source) ", " (layout::time_tag_text(&revision.time)) ")."
                @if revision.summary.is_empty() {
                    " Nothing changed."
                } @else {
                    ul { @for line in &revision.summary { li { code { (line) } } } }
                }
            }))
        }
    })
}

/// VIPs shown per page of the list.
const PAGE_SIZE: usize = 50;

/// The list's search, filters and page, from its query string.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ListQuery {
    /// Part of a VIP's name or address.
    q: Option<String>,
    /// `up`, `degraded` or `down`; anything else: all.
    health: Option<String>,
    /// `l2` or `l3-ipip`; anything else: all.
    dsr: Option<String>,
    /// From 1.
    page: Option<usize>,
    applied: Option<u64>,
    removed: Option<String>,
}

/// A VIP's health as the list colours it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Health {
    /// Every backend that should be up is (green).
    Up,
    /// Some backends are down, others take the traffic (amber).
    Degraded,
    /// No backend can take new flows (red).
    Down,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Up => "up",
            Health::Degraded => "degraded",
            Health::Down => "down",
        }
    }
}

/// The VIP's health and its down backends (failing their check, not disabled on purpose).
pub(crate) fn vip_health(backends: &[BackendStatus]) -> (Health, Vec<IpAddr>) {
    let (up, _, _) = backend_counts(backends);
    let down: Vec<IpAddr> = backends
        .iter()
        .filter(|b| !b.healthy && b.state != BackendState::Disabled)
        .map(|b| b.address)
        .collect();
    let health = if up == 0 {
        Health::Down
    } else if !down.is_empty() {
        Health::Degraded
    } else {
        Health::Up
    };
    (health, down)
}

/// One row of the list, with what the page needs to show it.
struct Row<'a> {
    vip: &'a Vip,
    status: Option<&'a VipStatus>,
    health: Health,
    up: usize,
    total: usize,
    draining: usize,
    /// Down backends and why (the last failed check), for this page's rows only.
    down: Vec<(IpAddr, Option<String>)>,
}

pub(crate) async fn page(
    State(ui): State<UiState>,
    Extension(session): Extension<Session>,
    Query(query): Query<ListQuery>,
) -> Result<Html<String>, UiError> {
    let flash = Flash {
        applied: query.applied,
        removed: query.removed.clone(),
    };
    let banner = flash_banner(&ui, &flash).await?;
    let drift = ui.drift.clone();
    let body = ui
        .app
        .blocking(move |state| {
            let snapshot = state.control.snapshot();
            // Health and flows of every VIP (the filters need them); traffic comes from status.json.
            let status = snapshot.status_where(|_| true, MapReads::None)?;
            let drift = drift.read(&state.control);
            Ok(render_list(state, &query, snapshot.revision(), snapshot.config(), &status, &drift))
        })
        .await?;
    let page = Page::new("L4 Virtual IPs", Section::Vips, &session).crumb("L4 Virtual IPs", None);
    Ok(Html(page.render(html! { (banner) (body) })))
}

fn render_list(
    state: &tula_api::AppState,
    query: &ListQuery,
    revision: u64,
    config: &Config,
    status: &[VipStatus],
    drift: &SavedDrift,
) -> Markup {
    let by_name: HashMap<&str, &VipStatus> = status.iter().map(|s| (s.name.as_str(), s)).collect();
    let search = query.q.as_deref().unwrap_or("").trim().to_lowercase();
    let health_filter = query.health.as_deref().unwrap_or("");
    let dsr_filter = query.dsr.as_deref().unwrap_or("");
    let mut matching: Vec<Row> = Vec::new();
    for vip in &config.vips {
        if !search.is_empty()
            && !vip.name.to_lowercase().contains(&search)
            && !vip.address.to_string().contains(&search)
        {
            continue;
        }
        if !dsr_filter.is_empty() && layout::config_text(&vip.dsr_type) != dsr_filter {
            continue;
        }
        let status = by_name.get(vip.name.as_str()).copied();
        let backends = status.map(|s| s.backends.as_slice()).unwrap_or_default();
        let (health, down) = vip_health(backends);
        if !health_filter.is_empty() && health.as_str() != health_filter {
            continue;
        }
        let (up, total, draining) = backend_counts(backends);
        let down = down.into_iter().map(|a| (a, None)).collect();
        matching.push(Row { vip, status, health, up, total: total.max(vip.backends.len()), draining, down });
    }
    let pages = matching.len().div_ceil(PAGE_SIZE).max(1);
    let page = query.page.unwrap_or(1).clamp(1, pages);
    let first = (page - 1) * PAGE_SIZE;
    let total_matching = matching.len();
    let mut rows: Vec<Row> = matching.into_iter().skip(first).take(PAGE_SIZE).collect();
    let shown_total = first + rows.len();
    let matched = config.vips.len();
    // Why each down backend of this page is down: the health checker's last failed check.
    for row in &mut rows {
        for (address, cause) in &mut row.down {
            *cause = state
                .health
                .backend(&row.vip.name, *address)
                .and_then(|h| h.last_result)
                .map(|r| r.detail);
        }
    }
    let link = |page: usize| {
        let mut pairs = vec![("page", page.to_string())];
        for (key, value) in [("q", &query.q), ("health", &query.health), ("dsr", &query.dsr)] {
            if let Some(value) = value.as_ref().filter(|v| !v.is_empty()) {
                pairs.push((key, value.clone()));
            }
        }
        format!("{PATH}?{}", serde_urlencoded::to_string(&pairs).unwrap_or_default())
    };
    let filtered = !search.is_empty() || !health_filter.is_empty() || !dsr_filter.is_empty();
    let count_of_matching = if rows.is_empty() { 0 } else { first + 1 };
    html! {
        div.heading {
            h1 { "L4 Virtual IPs" }
            a.button.primary href="/ui/vips/new" { "Create VIP" }
        }
        p.meta {
            "Running revision " strong #running-revision { (revision) } ". Rates refresh every 2 seconds."
        }
        (drift.banner())
        @if config.vips.is_empty() {
            p.empty { "No VIPs yet. " a href="/ui/vips/new" { "Create the first one" } "." }
        } @else {
            form.filters method="get" action=(PATH) role="search" {
                div.field {
                    label for="f-q" { "Search" }
                    input #f-q type="search" name="q" value=(query.q.as_deref().unwrap_or("")) placeholder="name or address" autocomplete="off";
                }
                div.field {
                    label for="f-health" { "Health" }
                    select #f-health name="health" {
                        @for (value, label) in [("", "All"), ("down", "Nothing up"), ("degraded", "Some down"), ("up", "All up")] {
                            option value=(value) selected[value == health_filter] { (label) }
                        }
                    }
                }
                div.field {
                    label for="f-dsr" { "DSR Type" }
                    select #f-dsr name="dsr" {
                        @for (value, label) in [("", "All"), ("l3-ipip", "Layer 3 (IPIP Tunnel)"), ("l2", "Layer 2")] {
                            option value=(value) selected[value == dsr_filter] { (label) }
                        }
                    }
                }
                div.field.filter-actions {
                    button type="submit" { "Filter" }
                    @if filtered { " " a href=(PATH) { "Clear" } }
                }
            }
            p.meta #list-count role="status" {
                @if rows.is_empty() {
                    "No VIP matches."
                } @else {
                    "VIPs " (count_of_matching) "–" (shown_total) " of " (total_matching)
                    @if filtered { " matching (" (matched) " in all)" }
                }
            }
            @if !rows.is_empty() {
                (vip_table(&rows, drift))
            }
            @if pages > 1 {
                nav.pages aria-label="Pages" {
                    @if page > 1 { a rel="prev" href=(link(page - 1)) { "← Previous" } }
                    span { "Page " (page) " of " (pages) }
                    @if page < pages { a rel="next" href=(link(page + 1)) { "Next →" } }
                }
            }
        }
    }
}

fn vip_table(rows: &[Row], drift: &SavedDrift) -> Markup {
    html! {
        div.table-wrap tabindex="0" role="region" aria-label="VIPs" {
            table.vips data-live-vips {
                caption.visually-hidden { "Virtual IPs, their backends and live traffic" }
                thead { tr {
                    th scope="col" { "Name" } th scope="col" { "Address" } th scope="col" { "Mode" }
                    th scope="col" { "Scheduler" } th scope="col" { "Health" br; small { "backends up / total" } }
                    th.num scope="col" title=(ACTIVE_FLOWS_TITLE) { "Active flows" br; small { (window_label(rows)) } }
                    th.num scope="col" title=(TABLE_ENTRIES_TITLE) { "Table entries" }
                    th.num scope="col" { "Packets/s" } th.num scope="col" { "Bytes/s" }
                    th scope="col" { "Config" }
                } }
                tbody {
                    @for row in rows {
                        @let vip = row.vip;
                        tr data-vip=(vip.name) data-health=(row.health.as_str()) {
                            th scope="row" { a href={ "/ui/vips/" (url_segment(&vip.name)) } { (vip.name) } }
                            td { code { (layout::socket_label(vip)) } }
                            td { "DSR, " (layout::dsr_type_label(vip.dsr_type)) }
                            td { (layout::config_text(&vip.scheduler)) }
                            td.health {
                                span class={ "badge health-" (row.health.as_str()) } data-live="backends" { (row.up) " / " (row.total) }
                                " " small data-live="draining" { (draining_label(row.draining)) }
                                @if vip.backends.is_empty() {
                                    br; small.down-list { "no backends" }
                                }
                                @if !row.down.is_empty() {
                                    ul.down-list {
                                        @for (address, cause) in &row.down {
                                            li { "down: " code { (address) } @if let Some(cause) = cause { " (" (cause) ")" } }
                                        }
                                    }
                                }
                            }
                            td.num data-live="active_flows" { (count(row.status.map_or(0, |s| s.active_flows))) }
                            td.num data-live="table_entries" { (count(row.status.map_or(0, |s| s.table_entries))) }
                            td.num data-live="pps" { "…" }
                            td.num data-live="bps" { "…" }
                            td {
                                @if drift.touches(&vip.name) { span.badge.badge-warning { "differs from saved" } }
                                @else { span.badge { "saved" } }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// What "active flows" means, on the columns that show them.
pub(crate) const ACTIVE_FLOWS_TITLE: &str =
    "Flows that sent a packet within the active-flow window (tula serve --active-window), sampled every few seconds";
pub(crate) const TABLE_ENTRIES_TITLE: &str =
    "Connection-table entries: flows the balancer remembers, quiet ones included, until the table needs their place";

/// "last 60 s", the window of the rows' flow figures.
fn window_label(rows: &[Row]) -> String {
    let window = rows.iter().find_map(|r| r.status).map_or(60, |s| s.active_window_s);
    format!("last {window} s")
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
/// `?vips=a,b`: the VIPs a page shows (all when absent): only theirs are read.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct StatusJsonQuery {
    vips: Option<String>,
}

pub(crate) async fn status_json(
    State(ui): State<UiState>,
    Query(only): Query<StatusJsonQuery>,
) -> Result<Json<Value>, tula_api::ApiError> {
    let drift = ui.drift.clone();
    ui.app
        .blocking(move |state| {
            let snapshot = state.control.snapshot();
            let (revision, config) = (snapshot.revision(), snapshot.config());
            let names: Option<Vec<&str>> = only.vips.as_deref().map(|v| v.split(',').collect());
            let status = snapshot.status_where(
                |vip| names.as_ref().is_none_or(|names| names.contains(&vip.name.as_str())),
                MapReads::Traffic,
            )?;
            let drift = drift.read(&state.control);
            let mut vips = Map::new();
            for vip in &status {
                let (up, total, draining) = backend_counts(&vip.backends);
                let (health, _) = vip_health(&vip.backends);
                let mut backends = Map::new();
                for backend in &vip.backends {
                    backends.insert(
                        backend.address.to_string(),
                        json!({
                            "state": layout::state_label(backend.state),
                            "weight": backend.weight,
                            "healthy": backend.healthy,
                            "active_flows": backend.active_flows,
                            "table_entries": backend.table_entries,
                            "drain": crate::detail::drain_json(backend, vip),
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
                        "active_flows": vip.active_flows,
                        "table_entries": vip.table_entries,
                        "up": up,
                        "total": total,
                        "draining": draining,
                        "health": health.as_str(),
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
