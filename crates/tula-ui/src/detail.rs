//! One VIP: its settings, each backend's state and health with its recent
//! changes, the counters, how to check that replies bypass the load
//! balancer, and the actions (drain, activate, disable a backend; remove the
//! VIP). Backend setup has a page of its own (`setup`). With 100 backends the
//! table is most of the page, so a row carries only what differs per row:
//! its cells' alignment comes from the stylesheet, their live-update fields
//! from the table's header, and the buttons' form from the table's.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::{Html, Response};
use axum::Extension;
use tula_config::{BackendState, CheckType, Config, Vip};
use tula_client::Drain;
use tula_control::{BackendStatus, MapReads, NewFlows, Snapshot, VipStatus};
use tula_health::{BackendHealth, CheckResult, Outcome, Transition};

use maud::{html, Markup};
use tula_api::ApiError;

use crate::layout::{self, count, from_config_text, url_segment, Page, Section};
use crate::list::{self, backend_counts, draining_label, Flash, SavedDrift};
use crate::review::{self, Pending};
use crate::session::{form_pairs, Session};
use crate::setup;
use crate::{UiError, UiState};

/// State changes shown per backend, newest first (the checker keeps 16).
const CHANGES_SHOWN: usize = 5;

/// Everything the page shows, read in one blocking step.
struct View {
    revision: u64,
    snapshot: Arc<Snapshot>,
    status: Option<VipStatus>,
    counters: Vec<(String, u64)>,
    drift: Arc<SavedDrift>,
    /// Each backend's record from the health checker; `None`: not checked.
    health: Vec<(IpAddr, Option<BackendHealth>)>,
}

pub(crate) async fn page(
    State(ui): State<UiState>,
    Extension(session): Extension<Session>,
    Path(name): Path<String>,
    Query(query): Query<Flash>,
) -> Result<Html<String>, UiError> {
    let lookup = name.clone();
    let drift = ui.drift.clone();
    let view = ui
        .app
        .blocking(move |state| {
            let snapshot = state.control.snapshot();
            let vip = snapshot
                .vip(&lookup)
                .ok_or_else(|| ApiError::not_found(format!("no VIP {lookup:?}")))?;
            let addresses: Vec<IpAddr> = vip.backends.iter().map(|b| b.address).collect();
            let status = snapshot
                .status_where(|v| v.name == lookup, MapReads::Traffic)?
                .pop();
            let counters = state
                .control
                .counters()?
                .iter()
                .map(|(counter, value)| (counter.name().to_string(), value))
                .collect();
            let health = addresses
                .iter()
                .map(|&a| (a, state.health.backend(&lookup, a)))
                .collect();
            Ok(View {
                revision: snapshot.revision(),
                status,
                counters,
                drift: drift.read(&state.control),
                health,
                snapshot,
            })
        })
        .await?;
    let vip = view.snapshot.vip(&name).expect("looked up above");
    let body = html! {
        (list::flash_banner(&ui, &query).await?)
        (heading(vip, &session, view.revision))
        @if view.drift.touches(&vip.name) { (view.drift.banner()) }
        (summary(vip, view.revision))
        (backends(vip, view.status.as_ref(), &view.health, &session, view.revision))
        (counters(view.status.as_ref(), &view.counters))
        (return_traffic(vip, view.snapshot.config()))
    };
    let page = Page::new(format!("VIP {}", vip.name), Section::Vips, &session)
        .crumb("L4 Virtual IPs", Some(list::PATH.to_string()))
        .crumb(vip.name.clone(), None);
    Ok(Html(page.render(body)))
}

fn heading(vip: &Vip, session: &Session, revision: u64) -> Markup {
    let base = format!("/ui/vips/{}", url_segment(&vip.name));
    html! {
        div.heading data-live-vip=(vip.name) {
            h1 { "VIP " (vip.name) " " code { (layout::socket_label(vip)) } }
            div.buttons {
                a.button.primary href={ (base) "/edit" } { "Edit" }
                a.button href=(setup::path(&vip.name)) { "Backend setup" }
                form method="post" action={ (base) "/delete" } {
                    input type="hidden" name="csrf" value=(session.csrf);
                    input type="hidden" name=(review::BASE_FIELD) value=(revision);
                    button.danger type="submit" { "Remove" }
                }
            }
        }
    }
}

fn summary(vip: &Vip, revision: u64) -> Markup {
    let check = &vip.health_check;
    let check_text = if check.kind == CheckType::None {
        layout::check_label(check.kind).to_string()
    } else {
        let port = check
            .port_for(vip.port)
            .map(|p| format!(" on port {p}"))
            .unwrap_or_default();
        let mut text = format!(
            "{}{port} every {}, timeout {}, up after {} successes, down after {} failures",
            layout::check_label(check.kind),
            tula_config::duration_text::format(check.interval),
            tula_config::duration_text::format(check.timeout),
            check.rise,
            check.fall
        );
        if check.kind.is_http() {
            text.push_str(&format!(
                "; GET {} expecting {}",
                check.path_or_default(),
                check.expect_status_or_default()
            ));
        }
        text
    };
    html! {
        dl.summary.card {
            div { dt { "Address" } dd { code { (layout::socket_label(vip)) } } }
            div { dt { "Mode" } dd { "DSR (Direct Server Return)" } }
            div { dt { "DSR Type" } dd { (layout::dsr_type_label(vip.dsr_type)) } }
            div { dt { "Scheduler" } dd { (layout::scheduler_label(vip.scheduler)) } }
            div { dt { "Health check" } dd { (check_text) } }
            div { dt { "When no backend is up" } dd { (layout::config_text(&vip.all_down)) } }
            div { dt { "Running revision" } dd { (revision) } }
        }
    }
}

fn backends(
    vip: &Vip,
    status: Option<&VipStatus>,
    health: &[(IpAddr, Option<BackendHealth>)],
    session: &Session,
    revision: u64,
) -> Markup {
    let statuses: Vec<BackendStatus> = status.map(|s| s.backends.clone()).unwrap_or_default();
    let (up, total, draining) = backend_counts(&statuses);
    let action = format!("/ui/vips/{}/state", url_segment(&vip.name));
    html! {
        section.card #backends aria-labelledby="backends-title" {
            h2 #backends-title {
                "Backends " small { span data-live="backends" { (up) " / " (total) } " up, " span data-live="draining" { (draining_label(draining)) } }
            }
            @if let Some(status) = status { (new_flows_alert(vip, status.new_flows)) }
            // One form around the table: every row's buttons share its CSRF and revision fields.
            form method="post" action=(action) {
                input type="hidden" name="csrf" value=(session.csrf);
                input type="hidden" name=(review::BASE_FIELD) value=(revision);
                div.table-wrap tabindex="0" role="region" aria-label="Backends" {
                    table.backends {
                        // ui.css right-aligns the number columns; ui.js finds each live figure's column by its data-live here.
                        thead { tr {
                            th scope="col" { "Address" } th.num scope="col" { "Weight" } th scope="col" { "State" }
                            th scope="col" { "Health" }
                            th.num scope="col" data-live="active_flows" title=(list::ACTIVE_FLOWS_TITLE) { "Active flows" br; small { "last " (status.map_or(60, |s| s.active_window_s)) " s" } }
                            th.num scope="col" data-live="table_entries" title=(list::TABLE_ENTRIES_TITLE) { "Table entries" }
                            th.num scope="col" data-live="packets" { "Packets" } th.num scope="col" data-live="bytes" { "Bytes" }
                            th scope="col" { "Recent health changes" } th scope="col" { "Actions" }
                        } }
                        tbody {
                            @for backend in &vip.backends {
                                @let live = statuses.iter().find(|s| s.address == backend.address);
                                @let healthy = live.is_none_or(|s| s.healthy);
                                @let state = layout::state_label(backend.state);
                                @let checked = health.iter().find(|(a, _)| *a == backend.address).and_then(|(_, h)| h.as_ref());
                                tr data-backend=(backend.address) {
                                    th scope="row" { code { (backend.address) } }
                                    td { (backend.weight) }
                                    td {
                                        span class={ "badge state-" (state) } data-live="state" { (state) }
                                        @if backend.weight == 0 && backend.state == BackendState::Active { " " small { "(weight 0: draining)" } }
                                        @if let (Some(live), Some(status)) = (live, status) { (drain_note(live, status)) }
                                    }
                                    td {
                                        span.badge.badge-ok[healthy].badge-error[!healthy] data-live="health" { @if healthy { "healthy" } @else { "unhealthy" } }
                                        (check_lines(checked))
                                    }
                                    td { (count(live.map(|s| s.active_flows).unwrap_or(0))) }
                                    td { (count(live.map(|s| s.table_entries).unwrap_or(0))) }
                                    td { (count(live.map(|s| s.packets).unwrap_or(0))) }
                                    td { (count(live.map(|s| s.bytes).unwrap_or(0))) }
                                    (health_changes(checked))
                                    td { (state_buttons(backend.address, backend.state)) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Where a drain stands, under the state badge (nothing unless draining):
/// "draining: 14 active flows", or "drained — no flows since 12:03:11 UTC"
/// once none has sent within the window. ui.js keeps it current from [`drain_json`].
fn drain_note(backend: &BackendStatus, vip: &VipStatus) -> Markup {
    let Some(drain) = drain_of(backend, vip) else {
        return html! {};
    };
    let (text, since) = drain_parts(&drain);
    html! {
        small.drain data-live="drain" data-drain=(drain_key(&drain)) {
            (text) @if let Some(since) = since { " " (layout::time_tag(since)) }
        }
    }
}

/// The drain of `backend`, if it is draining (by state or weight 0).
fn drain_of(backend: &BackendStatus, vip: &VipStatus) -> Option<Drain<SystemTime>> {
    let draining = backend.state == BackendState::Drain
        || (backend.state == BackendState::Active && backend.weight == 0);
    draining.then(|| Drain::of(backend.active_flows, vip.flows_sampled_at.is_some(), backend.last_flow_seen))
}

fn drain_parts(drain: &Drain<SystemTime>) -> (String, Option<SystemTime>) {
    match drain {
        Drain::Unknown => ("draining (flows not sampled yet)".to_string(), None),
        Drain::Draining(1) => ("draining: 1 active flow".to_string(), None),
        Drain::Draining(n) => (format!("draining: {} active flows", count(*n)), None),
        Drain::Drained(None) => ("drained — no flows seen".to_string(), None),
        Drain::Drained(Some(since)) => ("drained — no flows since".to_string(), Some(*since)),
    }
}

/// What ui.js compares to know the note changed.
fn drain_key(drain: &Drain<SystemTime>) -> String {
    let (text, since) = drain_parts(drain);
    match since {
        Some(since) => format!("{text} {}", humantime::format_rfc3339_seconds(since)),
        None => text,
    }
}

/// The drain note for status.json: `{key, text, since}`, or null when not draining.
pub(crate) fn drain_json(backend: &BackendStatus, vip: &VipStatus) -> serde_json::Value {
    match drain_of(backend, vip) {
        None => serde_json::Value::Null,
        Some(drain) => {
            let (text, since) = drain_parts(&drain);
            serde_json::json!({
                "key": drain_key(&drain),
                "text": text,
                "since": since.map(|t| humantime::format_rfc3339_seconds(t).to_string()),
            })
        }
    }
}

/// Under the health badge: since when, and the last check's result.
fn check_lines(health: Option<&BackendHealth>) -> Markup {
    let Some(health) = health else {
        return html! { small.muted { "not checked" } };
    };
    // What a passing check saw is always the same; a failure says what went wrong.
    let last = health.last_result.as_ref().map(|last| match last.outcome {
        Outcome::Pass => format!(
            "last check passed ({:.1} ms)",
            last.took.as_secs_f64() * 1000.0
        ),
        Outcome::Fail => format!("last check failed: {}", last.detail),
        Outcome::Error => format!("last check not sent: {}", last.detail),
    });
    html! {
        small { (health.state) " since " (layout::time_tag(health.since)) }
        @if let Some(last) = last { small { (last) } }
    }
}

/// The cell of the backend's latest state changes, newest first: time, old -> new, and the check result that caused it.
fn health_changes(health: Option<&BackendHealth>) -> Markup {
    let history: &[Transition] = health.map(|h| h.history.as_slice()).unwrap_or_default();
    if history.is_empty() {
        return html! { td.muted { "none recorded" } };
    }
    html! {
        td {
            ul.changes {
                @for change in history.iter().rev().take(CHANGES_SHOWN) {
                    li class={ "to-" (change.to) } {
                        (layout::time_tag(change.time)) " " (change.from) " → " strong { (change.to) } ": " (result_text(&change.cause))
                    }
                }
            }
        }
    }
}

/// "fail, no answer within 300ms (300.2 ms)".
pub(crate) fn result_text(result: &CheckResult) -> String {
    format!(
        "{}, {} ({:.1} ms)",
        layout::config_text(&result.outcome),
        result.detail,
        result.took.as_secs_f64() * 1000.0
    )
}

/// Where new flows go while the VIP's all_down policy is in force; nothing in the normal case.
fn new_flows_alert(vip: &Vip, new_flows: NewFlows) -> Markup {
    let text = match new_flows {
        NewFlows::Backends => return html! {},
        NewFlows::Dropped => "No backend can take new flows: they are dropped.".to_string(),
        NewFlows::KeptLast => {
            "No backend is up: new flows go to the backends that were up last (keep-last)."
                .to_string()
        }
        NewFlows::Sorry => format!(
            "No backend is up: new flows go to the sorry backend {}.",
            vip.sorry_backend.map(|a| a.to_string()).unwrap_or_default()
        ),
    };
    html! { p.alert.alert-warning role="status" #new-flows { (text) } }
}

/// A button for each state the backend is not in; each reviews the change before it is applied.
fn state_buttons(address: IpAddr, current: BackendState) -> Markup {
    html! {
        @for (state, label) in [(BackendState::Drain, "Drain"), (BackendState::Active, "Activate"), (BackendState::Disabled, "Disable")] {
            @if state != current {
                button name="change" value={ (layout::state_label(state)) " " (address) }
                    aria-label={ (label) " backend " (address) } { (label) }
            }
        }
    }
}

fn counters(status: Option<&VipStatus>, global: &[(String, u64)]) -> Markup {
    let (packets, bytes) = status.map(|s| (s.packets, s.bytes)).unwrap_or((0, 0));
    html! {
        section.card #counters aria-labelledby="counters-title" {
            h2 #counters-title { "Counters" }
            dl.summary {
                div { dt { "Packets" } dd data-live="packets" { (count(packets)) } }
                div { dt { "Bytes" } dd data-live="bytes" { (count(bytes)) } }
                div { dt { "Packets/s" } dd data-live="pps" { "…" } }
                div { dt { "Bytes/s" } dd data-live="bps" { "…" } }
            }
            details {
                summary { "Data plane counters (all VIPs)" }
                div.table-wrap tabindex="0" role="region" aria-label="Data plane counters" {
                    table {
                        thead { tr { th scope="col" { "Counter" } th.num scope="col" { "Packets" } } }
                        tbody {
                            @for (name, value) in global {
                                tr { th scope="row" { code { (name) } } td.num { (count(*value)) } }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// How to see that replies go from the backends to the clients directly.
fn return_traffic(vip: &Vip, config: &Config) -> Markup {
    let first = config
        .interfaces
        .first()
        .map(String::as_str)
        .unwrap_or("eth0");
    html! {
        section.card #return-traffic aria-labelledby="return-title" {
            h2 #return-title { "Check that replies bypass the load balancer" }
            p {
                "With DSR the backends answer the clients directly. Send traffic to the VIP (with " code { "curl" }
                " or a browser) and watch the load balancer's interfaces: what it sends grows only with the requests it forwards, \
                 not with the replies. A reply as big as the request or bigger would show up here if it came back through \
                 the load balancer."
            }
            div.table-wrap tabindex="0" role="region" aria-label="Load balancer interfaces" {
                table.interfaces {
                    thead { tr {
                        th scope="col" { "Interface" } th.num scope="col" { "Received packets/s" }
                        th.num scope="col" { "Sent packets/s" } th.num scope="col" { "Received bytes/s" }
                        th.num scope="col" { "Sent bytes/s" }
                    } }
                    tbody {
                        @for name in &config.interfaces {
                            tr data-iface=(name) {
                                th scope="row" { code { (name) } }
                                td.num data-live="rx_pps" { "…" } td.num data-live="tx_pps" { "…" }
                                td.num data-live="rx_bps" { "…" } td.num data-live="tx_bps" { "…" }
                            }
                        }
                    }
                }
            }
            p { "On the load balancer, by hand:" }
            pre { code { "ip -s link show " (first) "\ntcpdump -ni " (first) " src host " (vip.address) "    # nothing: no reply passes here" } }
            p { "On a backend, its own interface counters grow with the replies it sends (" code { "ip -s link" } ")." }
        }
    }
}

/// POST `change=STATE ADDRESS` (drain, active or disabled): reviewed, then applied as a revision.
pub(crate) async fn set_backend_state(
    State(ui): State<UiState>,
    Extension(session): Extension<Session>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, UiError> {
    let fields = form_pairs(&body);
    let change = review::field(&fields, "change").unwrap_or_default();
    let (wanted, address) = change.split_once(' ').unwrap_or((change, ""));
    let address: IpAddr = address
        .trim()
        .parse()
        .map_err(|_| ApiError::bad_request(format!("{address:?} is not an IP address")))?;
    let state: BackendState = from_config_text(wanted).ok_or_else(|| {
        ApiError::bad_request(format!(
            "{wanted:?} is not a backend state (active, drain or disabled)"
        ))
    })?;
    let (verb, title) = match state {
        BackendState::Drain => ("drain".to_string(), "Drain"),
        BackendState::Active => (format!("set state={}", layout::state_label(state)), "Activate"),
        BackendState::Disabled => (format!("set state={}", layout::state_label(state)), "Disable"),
    };
    let page = format!("/ui/vips/{}", url_segment(&name));
    let pending = Pending {
        title: format!("{title} backend {address} of VIP {name}"),
        action: format!("{page}/state"),
        fields: &fields,
        cancel: format!("{page}#backends"),
        source: format!("ui: {verb} vips[{name}].backends[{address}]"),
        back: false,
    };
    let target = name.clone();
    let edit = move |config: &mut Config| {
        let vip = config
            .vips
            .iter_mut()
            .find(|v| v.name == target)
            .ok_or_else(|| ApiError::not_found(format!("no VIP {target:?}")))?;
        let backend = vip
            .backends
            .iter_mut()
            .find(|b| b.address == address)
            .ok_or_else(|| ApiError::not_found(format!("VIP {target:?} has no backend {address}")))?;
        backend.state = state;
        Ok(())
    };
    review::review_or_apply(&ui, &session, pending, edit, |revision| {
        format!("{page}?applied={revision}#backends")
    })
    .await
}

/// POST: remove the VIP: reviewed, then applied as a revision.
pub(crate) async fn delete(
    State(ui): State<UiState>,
    Extension(session): Extension<Session>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, UiError> {
    let fields = form_pairs(&body);
    let pending = Pending {
        title: format!("Remove VIP {name}"),
        action: format!("/ui/vips/{}/delete", url_segment(&name)),
        fields: &fields,
        cancel: format!("/ui/vips/{}", url_segment(&name)),
        source: format!("ui: remove vips[{name}]"),
        back: false,
    };
    let target = name.clone();
    let edit = move |config: &mut Config| {
        if config.vip(&target).is_none() {
            return Err(ApiError::not_found(format!("no VIP {target:?}")));
        }
        config.vips.retain(|v| v.name != target);
        Ok(())
    };
    review::review_or_apply(&ui, &session, pending, edit, |revision| {
        format!(
            "{}?applied={revision}&removed={}",
            list::PATH,
            url_segment(&name)
        )
    })
    .await
}
