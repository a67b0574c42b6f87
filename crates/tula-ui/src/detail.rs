//! One VIP: its settings, each backend's state and health with its recent
//! changes, the counters, how to check that replies bypass the load
//! balancer, the "Backend setup" panel, and the actions (drain, activate,
//! disable a backend; remove the VIP).

use std::net::IpAddr;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Extension;
use tula_config::{BackendState, CheckType, Config, Vip};
use tula_control::{BackendStatus, NewFlows, VipStatus};
use tula_health::{BackendHealth, CheckResult, Outcome, Transition};

use crate::layout::{self, count, esc, from_config_text, url_segment, Page, Section};
use crate::list::{self, backend_counts, draining_label, Flash, SavedDrift};
use crate::session::{form_pairs, Session};
use crate::setup::{self, Egress};
use crate::{UiError, UiState};
use tula_api::ApiError;

/// State changes shown per backend, newest first (the checker keeps 16).
const CHANGES_SHOWN: usize = 5;

/// Everything the page shows, read in one blocking step.
struct View {
    revision: u64,
    config: Config,
    status: Option<VipStatus>,
    counters: Vec<(String, u64)>,
    drift: SavedDrift,
    egress: Vec<(IpAddr, Result<Egress, String>)>,
    /// Each backend's record from the health checker; `None`: not checked.
    health: Vec<(IpAddr, Option<BackendHealth>)>,
}

pub(crate) async fn page(
    State(ui): State<UiState>,
    Extension(session): Extension<Session>,
    Path(name): Path<String>,
    Query(flash): Query<Flash>,
) -> Result<Html<String>, UiError> {
    let lookup = name.clone();
    let view = ui
        .app
        .blocking(move |state| {
            let (revision, config) = state.control.running();
            let vip = config
                .vip(&lookup)
                .ok_or_else(|| ApiError::not_found(format!("no VIP {lookup:?}")))?;
            let addresses: Vec<IpAddr> = vip.backends.iter().map(|b| b.address).collect();
            let status = state
                .control
                .status()?
                .into_iter()
                .find(|s| s.name == lookup);
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
                revision,
                status,
                counters,
                drift: SavedDrift::read(&state.control),
                egress: setup::egress(&addresses),
                health,
                config,
            })
        })
        .await?;
    let vip = view.config.vip(&name).expect("looked up above");
    let mut body = list::flash_banner(&ui, &flash).await?;
    body.push_str(&heading(vip, &session));
    if view.drift.touches(&vip.name) {
        body.push_str(&view.drift.banner());
    }
    body.push_str(&summary(vip, view.revision));
    body.push_str(&backends(vip, view.status.as_ref(), &view.health, &session));
    body.push_str(&counters(view.status.as_ref(), &view.counters));
    body.push_str(&return_traffic(vip, &view.config));
    body.push_str(&setup::panel(
        &view.config,
        vip,
        view.status.as_ref(),
        &view.egress,
    ));
    let page = Page::new(format!("VIP {}", vip.name), Section::Vips, &session)
        .crumb("L4 Virtual IPs", Some(list::PATH.to_string()))
        .crumb(vip.name.clone(), None);
    Ok(Html(page.render(&body)))
}

fn heading(vip: &Vip, session: &Session) -> String {
    let base = format!("/ui/vips/{}", url_segment(&vip.name));
    format!(
        "<div class=\"heading\" data-live-vip=\"{name}\">\n<h1>VIP {name} <code>{socket}</code></h1>\n\
         <div class=\"buttons\"><a class=\"button primary\" href=\"{base}/edit\">Edit</a>\n\
         <a class=\"button\" href=\"#setup\">Backend setup</a>\n\
         <form method=\"post\" action=\"{base}/delete\" data-confirm=\"Remove VIP {name}? Its traffic stops being balanced.\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><button type=\"submit\" class=\"danger\">Remove</button></form></div>\n</div>\n",
        name = esc(&vip.name),
        socket = esc(&layout::socket_label(vip)),
        csrf = esc(&session.csrf),
    )
}

fn summary(vip: &Vip, revision: u64) -> String {
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
    format!(
        "<dl class=\"summary card\">\n\
         <div><dt>Address</dt><dd><code>{socket}</code></dd></div>\n\
         <div><dt>Mode</dt><dd>DSR (Direct Server Return)</dd></div>\n\
         <div><dt>DSR Type</dt><dd>{dsr}</dd></div>\n\
         <div><dt>Scheduler</dt><dd>{scheduler}</dd></div>\n\
         <div><dt>Health check</dt><dd>{check}</dd></div>\n\
         <div><dt>When no backend is up</dt><dd>{all_down}</dd></div>\n\
         <div><dt>Running revision</dt><dd>{revision}</dd></div>\n\
         </dl>\n",
        socket = esc(&layout::socket_label(vip)),
        dsr = layout::dsr_type_label(vip.dsr_type),
        scheduler = layout::scheduler_label(vip.scheduler),
        check = esc(&check_text),
        all_down = esc(&layout::config_text(&vip.all_down)),
    )
}

fn backends(
    vip: &Vip,
    status: Option<&VipStatus>,
    health: &[(IpAddr, Option<BackendHealth>)],
    session: &Session,
) -> String {
    let statuses: Vec<BackendStatus> = status.map(|s| s.backends.clone()).unwrap_or_default();
    let (up, total, draining) = backend_counts(&statuses);
    let mut html = format!(
        "<section class=\"card\" id=\"backends\" aria-labelledby=\"backends-title\">\n\
         <h2 id=\"backends-title\">Backends <small><span data-live=\"backends\">{up} / {total}</span> up, \
         <span data-live=\"draining\">{}</span></small></h2>\n{}\
         <div class=\"table-wrap\" tabindex=\"0\" role=\"region\" aria-label=\"Backends\">\n<table class=\"backends\">\n\
         <thead><tr><th scope=\"col\">Address</th><th scope=\"col\" class=\"num\">Weight</th><th scope=\"col\">State</th>\
         <th scope=\"col\">Health</th><th scope=\"col\" class=\"num\">Active flows</th>\
         <th scope=\"col\" class=\"num\">Packets</th><th scope=\"col\" class=\"num\">Bytes</th>\
         <th scope=\"col\">Recent health changes</th><th scope=\"col\">Actions</th></tr></thead>\n<tbody>\n",
        draining_label(draining),
        status.map(|s| new_flows_alert(vip, s.new_flows)).unwrap_or_default(),
    );
    for backend in &vip.backends {
        let live = statuses.iter().find(|s| s.address == backend.address);
        let healthy = live.is_none_or(|s| s.healthy);
        let state = layout::state_label(backend.state);
        let checked = health
            .iter()
            .find(|(a, _)| *a == backend.address)
            .and_then(|(_, h)| h.as_ref());
        let weight_note = if backend.weight == 0 && backend.state == BackendState::Active {
            " <small>(weight 0: draining)</small>"
        } else {
            ""
        };
        html.push_str(&format!(
            "<tr data-backend=\"{address}\">\n<th scope=\"row\"><code>{address}</code></th>\n\
             <td class=\"num\">{weight}</td>\n\
             <td><span class=\"badge state-{state}\" data-live=\"state\">{state}</span>{weight_note}</td>\n\
             <td class=\"health\"><span class=\"badge {health_class}\" data-live=\"health\">{health}</span>{check}</td>\n\
             <td class=\"num\" data-live=\"active_flows\">{flows}</td>\n\
             <td class=\"num\" data-live=\"packets\">{packets}</td>\n\
             <td class=\"num\" data-live=\"bytes\">{bytes}</td>\n\
             <td class=\"changes\">{changes}</td>\n<td class=\"row-actions\">{actions}</td>\n</tr>\n",
            address = backend.address,
            weight = backend.weight,
            health_class = if healthy { "badge-ok" } else { "badge-error" },
            health = if healthy { "healthy" } else { "unhealthy" },
            flows = count(live.map(|s| s.active_flows).unwrap_or(0)),
            packets = count(live.map(|s| s.packets).unwrap_or(0)),
            bytes = count(live.map(|s| s.bytes).unwrap_or(0)),
            check = check_lines(checked),
            changes = health_changes(checked),
            actions = state_buttons(vip, backend.address, backend.state, session),
        ));
    }
    html.push_str("</tbody>\n</table>\n</div>\n</section>\n");
    html
}

/// Under the health badge: since when, and the last check's result.
fn check_lines(health: Option<&BackendHealth>) -> String {
    let Some(health) = health else {
        return "<br><small class=\"muted\">not checked</small>".to_string();
    };
    let mut html = format!(
        "<br><small class=\"health-since\">{} since {}</small>",
        health.state,
        time_tag(health.since)
    );
    if let Some(last) = &health.last_result {
        // What a passing check saw is always the same; a failure says what went wrong.
        let text = match last.outcome {
            Outcome::Pass => format!(
                "last check passed ({:.1} ms)",
                last.took.as_secs_f64() * 1000.0
            ),
            Outcome::Fail => format!("last check failed: {}", last.detail),
            Outcome::Error => format!("last check not sent: {}", last.detail),
        };
        html.push_str(&format!(
            "<br><small class=\"last-check\">{}</small>",
            esc(&text)
        ));
    }
    html
}

/// The backend's latest state changes, newest first: time, old -> new, and the check result that caused it.
fn health_changes(health: Option<&BackendHealth>) -> String {
    let history: &[Transition] = health.map(|h| h.history.as_slice()).unwrap_or_default();
    if history.is_empty() {
        return "<span class=\"muted\">none recorded</span>".to_string();
    }
    let items: Vec<String> = history
        .iter()
        .rev()
        .take(CHANGES_SHOWN)
        .map(|change| {
            format!(
                "<li class=\"to-{to}\">{time} {from} &rarr; <strong>{to}</strong>: {cause}</li>",
                time = time_tag(change.time),
                from = change.from,
                to = change.to,
                cause = result_text(&change.cause),
            )
        })
        .collect();
    format!("<ul class=\"changes\">{}</ul>", items.join(""))
}

/// "fail, no answer within 300ms (300.2 ms)", escaped.
fn result_text(result: &CheckResult) -> String {
    let outcome = serde_json::to_value(result.outcome)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    esc(&format!(
        "{outcome}, {} ({:.1} ms)",
        result.detail,
        result.took.as_secs_f64() * 1000.0
    ))
}

/// A `<time>` element, UTC: the time of day for today, else the date and time;
/// the whole RFC 3339 time in its `datetime` and `title`.
fn time_tag(time: std::time::SystemTime) -> String {
    let full = humantime::format_rfc3339_seconds(time).to_string();
    let today = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let shown = if full[..10] == today[..10] {
        full[11..].to_string()
    } else {
        full.replacen('T', " ", 1)
    };
    format!(
        "<time datetime=\"{full}\" title=\"{full}\">{}</time>",
        esc(&shown)
    )
}

/// Where new flows go while the VIP's all_down policy is in force; nothing in the normal case.
fn new_flows_alert(vip: &Vip, new_flows: NewFlows) -> String {
    let text = match new_flows {
        NewFlows::Backends => return String::new(),
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
    format!(
        "<p class=\"alert alert-warning\" role=\"status\" id=\"new-flows\">{}</p>\n",
        esc(&text)
    )
}

/// A button for each state the backend is not in.
fn state_buttons(vip: &Vip, address: IpAddr, current: BackendState, session: &Session) -> String {
    let action = format!(
        "/ui/vips/{}/backends/{address}/state",
        url_segment(&vip.name)
    );
    [
        (BackendState::Drain, "Drain"),
        (BackendState::Active, "Activate"),
        (BackendState::Disabled, "Disable"),
    ]
    .iter()
    .filter(|(state, _)| *state != current)
    .map(|(state, label)| {
        format!(
            "<form method=\"post\" action=\"{action}\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <input type=\"hidden\" name=\"state\" value=\"{value}\">\
             <button type=\"submit\" aria-label=\"{label} backend {address}\">{label}</button></form>",
            csrf = esc(&session.csrf),
            value = layout::state_label(*state),
        )
    })
    .collect()
}

fn counters(status: Option<&VipStatus>, global: &[(String, u64)]) -> String {
    let (packets, bytes) = status.map(|s| (s.packets, s.bytes)).unwrap_or((0, 0));
    let mut html = format!(
        "<section class=\"card\" id=\"counters\" aria-labelledby=\"counters-title\">\n<h2 id=\"counters-title\">Counters</h2>\n\
         <dl class=\"summary\">\n\
         <div><dt>Packets</dt><dd data-live=\"packets\">{}</dd></div>\n\
         <div><dt>Bytes</dt><dd data-live=\"bytes\">{}</dd></div>\n\
         <div><dt>Packets/s</dt><dd data-live=\"pps\">…</dd></div>\n\
         <div><dt>Bytes/s</dt><dd data-live=\"bps\">…</dd></div>\n\
         </dl>\n<details>\n<summary>Data plane counters (all VIPs)</summary>\n\
         <div class=\"table-wrap\" tabindex=\"0\" role=\"region\" aria-label=\"Data plane counters\">\n<table>\n\
         <thead><tr><th scope=\"col\">Counter</th><th scope=\"col\" class=\"num\">Packets</th></tr></thead>\n<tbody>\n",
        count(packets),
        count(bytes)
    );
    for (name, value) in global {
        html.push_str(&format!(
            "<tr><th scope=\"row\"><code>{}</code></th><td class=\"num\">{}</td></tr>\n",
            esc(name),
            count(*value)
        ));
    }
    html.push_str("</tbody>\n</table>\n</div>\n</details>\n</section>\n");
    html
}

/// How to see that replies go from the backends to the clients directly.
fn return_traffic(vip: &Vip, config: &Config) -> String {
    let mut html = String::from(
        "<section class=\"card\" id=\"return-traffic\" aria-labelledby=\"return-title\">\n\
         <h2 id=\"return-title\">Check that replies bypass the load balancer</h2>\n\
         <p>With DSR the backends answer the clients directly. Send traffic to the VIP (with <code>curl</code> or a \
         browser) and watch the load balancer's interfaces: what it sends grows only with the requests it forwards, \
         not with the replies. A reply as big as the request or bigger would show up here if it came back through \
         the load balancer.</p>\n\
         <div class=\"table-wrap\" tabindex=\"0\" role=\"region\" aria-label=\"Load balancer interfaces\">\n<table class=\"interfaces\">\n\
         <thead><tr><th scope=\"col\">Interface</th><th scope=\"col\" class=\"num\">Received packets/s</th>\
         <th scope=\"col\" class=\"num\">Sent packets/s</th><th scope=\"col\" class=\"num\">Received bytes/s</th>\
         <th scope=\"col\" class=\"num\">Sent bytes/s</th></tr></thead>\n<tbody>\n",
    );
    for name in &config.interfaces {
        html.push_str(&format!(
            "<tr data-iface=\"{name}\"><th scope=\"row\"><code>{name}</code></th>\
             <td class=\"num\" data-live=\"rx_pps\">…</td><td class=\"num\" data-live=\"tx_pps\">…</td>\
             <td class=\"num\" data-live=\"rx_bps\">…</td><td class=\"num\" data-live=\"tx_bps\">…</td></tr>\n",
            name = esc(name)
        ));
    }
    let first = config
        .interfaces
        .first()
        .map(String::as_str)
        .unwrap_or("eth0");
    html.push_str(&format!(
        "</tbody>\n</table>\n</div>\n<p>On the load balancer, by hand:</p>\n\
         <pre><code>ip -s link show {iface}\ntcpdump -ni {iface} src host {vip}    # nothing: no reply passes here</code></pre>\n\
         <p>On a backend, its own interface counters grow with the replies it sends (<code>ip -s link</code>).</p>\n</section>\n",
        iface = esc(first),
        vip = vip.address,
    ));
    html
}

/// POST `state=drain|active|disabled`: one backend's state, applied as a revision.
pub(crate) async fn set_backend_state(
    State(ui): State<UiState>,
    Path((name, address)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, UiError> {
    let address: IpAddr = address
        .parse()
        .map_err(|_| ApiError::bad_request(format!("{address:?} is not an IP address")))?;
    let wanted = form_pairs(&body)
        .into_iter()
        .find(|(key, _)| key == "state")
        .map(|(_, value)| value)
        .unwrap_or_default();
    let state: BackendState = from_config_text(&wanted).ok_or_else(|| {
        ApiError::bad_request(format!(
            "{wanted:?} is not a backend state (active, drain or disabled)"
        ))
    })?;
    let verb = match state {
        BackendState::Drain => "drain".to_string(),
        other => format!("set state={}", layout::state_label(other)),
    };
    let source = format!("ui: {verb} vips[{name}].backends[{address}]");
    let target = name.clone();
    let (revision, ()) = ui
        .app
        .edit(source, move |config| {
            let vip = config
                .vips
                .iter_mut()
                .find(|v| v.name == target)
                .ok_or_else(|| ApiError::not_found(format!("no VIP {target:?}")))?;
            let backend = vip
                .backends
                .iter_mut()
                .find(|b| b.address == address)
                .ok_or_else(|| {
                    ApiError::not_found(format!("VIP {target:?} has no backend {address}"))
                })?;
            backend.state = state;
            Ok(())
        })
        .await?;
    let to = format!(
        "/ui/vips/{}?applied={}#backends",
        url_segment(&name),
        revision.number
    );
    Ok(Redirect::to(&to).into_response())
}

/// POST: remove the VIP, applied as a revision.
pub(crate) async fn delete(
    State(ui): State<UiState>,
    Path(name): Path<String>,
) -> Result<Response, UiError> {
    let target = name.clone();
    let (revision, ()) = ui
        .app
        .edit(format!("ui: remove vips[{name}]"), move |config| {
            if config.vip(&target).is_none() {
                return Err(ApiError::not_found(format!("no VIP {target:?}")));
            }
            config.vips.retain(|v| v.name != target);
            Ok(())
        })
        .await?;
    let to = format!(
        "{}?applied={}&removed={}",
        list::PATH,
        revision.number,
        url_segment(&name)
    );
    Ok(Redirect::to(&to).into_response())
}
