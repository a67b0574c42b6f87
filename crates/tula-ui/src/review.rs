//! Review before apply: every change made in the UI (the VIP form, a
//! backend's state, removing a VIP, a rollback) is first shown as the change
//! list `tula diff` prints, with warnings (a VIP left with no backend, no
//! backend that can take new flows, active flows cut), and applied only when
//! the operator presses Apply on that page. Each request carries the revision
//! it was based on; if another change was applied in between, the conflict is
//! shown and nothing is overwritten.

use std::net::IpAddr;

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::{html, Markup};
use tula_api::ApiError;
use tula_config::{BackendState, Config};
use tula_control::{Change, VipStatus};

use crate::layout::{self, Page, Section};
use crate::session::Session;
use crate::{UiError, UiState};

/// The form field naming the revision a page was rendered from.
pub(crate) const BASE_FIELD: &str = "revision";
/// The field (on the review page's Apply button) that confirms a reviewed change.
pub(crate) const CONFIRM_FIELD: &str = "confirm";

/// A change the UI is about to make, described for its review page.
pub(crate) struct Pending<'a> {
    /// "Edit VIP web", "Drain backend 198.18.100.2 of web", ...
    pub title: String,
    /// Where the reviewed form posts to (the same handler, now with `confirm`).
    pub action: String,
    /// The request's fields, sent again on Apply (the CSRF token and `confirm` aside).
    pub fields: &'a [(String, String)],
    /// Where Cancel (and a reload after a conflict) leads.
    pub cancel: String,
    /// Recorded as what made the revision.
    pub source: String,
    /// True when the page has a form to go back to with the same fields.
    pub back: bool,
}

/// The value of `key` among a form's fields.
pub(crate) fn field<'a>(fields: &'a [(String, String)], key: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// The revision the request was based on, if it says.
pub(crate) fn base_revision(fields: &[(String, String)]) -> Option<u64> {
    field(fields, BASE_FIELD).and_then(|v| v.trim().parse().ok())
}

pub(crate) fn confirmed(fields: &[(String, String)]) -> bool {
    field(fields, CONFIRM_FIELD) == Some("1")
}

/// What the UI shows before Apply: the change list and its warnings.
pub(crate) struct Preview {
    pub running: u64,
    pub changes: Vec<Change>,
    pub warnings: Vec<String>,
}

/// Reviews `edit` against the running config (validated, nothing applied),
/// or applies it when the request confirms a review. `done` gives the page to
/// show after the apply from the new revision's number.
pub(crate) async fn review_or_apply<F>(
    ui: &UiState,
    session: &Session,
    pending: Pending<'_>,
    edit: F,
    done: impl FnOnce(u64) -> String,
) -> Result<Response, UiError>
where
    F: Fn(&mut Config) -> Result<(), ApiError> + Send + Sync + Clone + 'static,
{
    let base = base_revision(pending.fields);
    if confirmed(pending.fields) {
        let applied = ui
            .app
            .edit_based_on(base, pending.source.clone(), edit)
            .await;
        return match applied {
            Ok((revision, ())) => Ok(Redirect::to(&done(revision.number)).into_response()),
            Err(error) if error.status == StatusCode::PRECONDITION_FAILED => {
                conflict(ui, session, &pending, base.unwrap_or(0)).await
            }
            Err(error) => Err(error.into()),
        };
    }
    let preview = preview(ui, edit).await?;
    if let Some(base) = base.filter(|&base| base != preview.running) {
        return conflict(ui, session, &pending, base).await;
    }
    Ok(Html(render_review(session, &pending, &preview)).into_response())
}

/// The change `edit` would make to the running config, validated, and its warnings.
pub(crate) async fn preview<F>(ui: &UiState, edit: F) -> Result<Preview, ApiError>
where
    F: Fn(&mut Config) -> Result<(), ApiError> + Send + Sync + 'static,
{
    ui.app
        .blocking(move |state| {
            let snapshot = state.control.snapshot();
            let (running, config) = (snapshot.revision(), snapshot.config());
            let mut candidate = config.clone();
            edit(&mut candidate)?;
            state
                .control
                .validate(&candidate)
                .map_err(ApiError::invalid)?;
            let changes = state.control.diff(&candidate).changes;
            // Health and flows only: the warnings need no traffic counters.
            let status = snapshot.status_where(|_| true, tula_control::MapReads::None)?;
            Ok(Preview {
                running,
                warnings: warnings(config, &candidate, &status),
                changes,
            })
        })
        .await
}

/// What an operator should know before applying `candidate` over `running`.
pub(crate) fn warnings(running: &Config, candidate: &Config, status: &[VipStatus]) -> Vec<String> {
    let mut out = Vec::new();
    for vip in &candidate.vips {
        if running.vip(&vip.name) == Some(vip) {
            continue;
        }
        let socket = layout::socket_label(vip);
        if vip.backends.is_empty() {
            out.push(format!(
                "VIP {} has no backends: every packet to {socket} is dropped",
                vip.name
            ));
            continue;
        }
        let live = status.iter().find(|s| s.name == vip.name);
        let healthy = |address: IpAddr| {
            live.and_then(|s| s.backends.iter().find(|b| b.address == address))
                .is_none_or(|b| b.healthy)
        };
        let takers = vip
            .backends
            .iter()
            .filter(|b| b.state == BackendState::Active && b.weight > 0 && healthy(b.address))
            .count();
        if takers == 0 {
            out.push(format!(
                "No backend of VIP {} can take new flows (each is draining, disabled, of weight 0 or down): new connections to {socket} get no answer",
                vip.name
            ));
        }
    }
    for live in status {
        let after = candidate.vip(&live.name);
        let mut cut = 0;
        let mut cut_from = Vec::new();
        for backend in live.backends.iter().filter(|b| b.active_flows > 0) {
            let stays = after
                .and_then(|vip| vip.backends.iter().find(|b| b.address == backend.address))
                .is_some_and(|b| b.state != BackendState::Disabled);
            if !stays {
                cut += backend.active_flows;
                cut_from.push(backend.address.to_string());
            }
        }
        if cut > 0 {
            out.push(format!(
                "This cuts {cut} active flow{} (sent within the last {} s) of VIP {}: {} {} removed or disabled",
                if cut == 1 { "" } else { "s" },
                live.active_window_s,
                live.name,
                cut_from.join(", "),
                if cut_from.len() == 1 { "is" } else { "are" },
            ));
        }
    }
    out
}

/// The class of a change line: added, removed or changed.
fn change_class(change: &Change) -> &'static str {
    match change.op {
        '+' => "change-add",
        '-' => "change-remove",
        _ => "change-modify",
    }
}

/// The change list as `tula diff` prints it, one line per change.
pub(crate) fn change_list(changes: &[Change]) -> Markup {
    html! {
        ul.change-list {
            @for change in changes {
                li class=(change_class(change)) { code { (change.to_string()) } }
            }
        }
    }
}

/// The hidden fields that send a form again: its own, a fresh CSRF token and the base revision.
fn resend(session: &Session, fields: &[(String, String)], base: u64) -> Markup {
    html! {
        input type="hidden" name="csrf" value=(session.csrf);
        input type="hidden" name=(BASE_FIELD) value=(base);
        @for (key, value) in fields {
            @if !matches!(key.as_str(), "csrf" | CONFIRM_FIELD | BASE_FIELD | "back") {
                input type="hidden" name=(key) value=(value);
            }
        }
    }
}

fn render_review(session: &Session, pending: &Pending, preview: &Preview) -> String {
    let count = preview.changes.len();
    let body = html! {
        h1 { "Review: " (pending.title) }
        p.meta {
            "Nothing is applied until you press " strong { "Apply" } ". Based on running revision "
            strong #review-base { (preview.running) } "."
        }
        @if !preview.warnings.is_empty() {
            div.alert.alert-warning #review-warnings role="alert" {
                h2 { "Warnings" }
                ul { @for warning in &preview.warnings { li { (warning) } } }
            }
        }
        section.card #review-changes aria-labelledby="review-changes-title" {
            h2 #review-changes-title { (count) " change" @if count != 1 { "s" } }
            @if count == 0 {
                p #no-changes { "No changes: this is what runs already." }
            } @else {
                (change_list(&preview.changes))
            }
        }
        form.review method="post" action=(pending.action) {
            (resend(session, pending.fields, preview.running))
            div.actions {
                @if count > 0 {
                    button.primary #apply type="submit" name=(CONFIRM_FIELD) value="1" autofocus { "Apply" }
                }
                @if pending.back {
                    button #back type="submit" name="back" value="1" { "Back to the form" }
                }
                a.button href=(pending.cancel) { "Cancel" }
            }
        }
    };
    Page::new(format!("Review: {}", pending.title), Section::Vips, session).render(body)
}

/// The page shown when the running revision is no longer the one the change was based on.
async fn conflict(
    ui: &UiState,
    session: &Session,
    pending: &Pending<'_>,
    base: u64,
) -> Result<Response, UiError> {
    let (running, history) = ui
        .app
        .blocking(|state| Ok((state.control.running_revision(), state.control.history()?)))
        .await?;
    let since: Vec<_> = history
        .into_iter()
        .filter(|r| r.number > base && r.number <= running)
        .map(tula_api::revision_record)
        .collect();
    let body = html! {
        h1 { "Not applied: the config changed" }
        div.alert.alert-error #conflict role="alert" {
            p {
                "This change was based on revision " strong #conflict-base { (base) }
                ", but revision " strong #conflict-running { (running) }
                " runs now: someone applied a change in between. Yours was not applied, and nothing was overwritten."
            }
        }
        section.card #conflict-changes {
            h2 { "Applied since revision " (base) }
            @for revision in &since {
                h3 { "Revision " (revision.number) " " small { (revision.source) ", " (layout::time_tag_text(&revision.time)) } }
                ul.change-list { @for line in &revision.summary { li { code { (line) } } } }
            }
        }
        form method="post" action=(pending.action) {
            (resend(session, pending.fields, running))
            div.actions {
                button.primary #review-again type="submit" { "Review " (pending.title.to_lowercase()) " against revision " (running) }
                a.button #reload href=(pending.cancel) { "Reload (drop my change)" }
            }
        }
    };
    let page = Page::new("Not applied: the config changed", Section::Vips, session).render(body);
    Ok((StatusCode::CONFLICT, Html(page)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::from_toml_str(text).unwrap()
    }

    const WEB: &str = r#"
        [[vip]]
        name = "web"
        address = "203.0.113.10"
        port = 80
        backends = [{ address = "198.18.11.2" }, { address = "198.18.12.2" }]
    "#;

    fn status(flows: &[(&str, u64)]) -> Vec<VipStatus> {
        use tula_config::{DsrType, Protocol, Scheduler};
        vec![VipStatus {
            name: "web".into(),
            address: "203.0.113.10".parse().unwrap(),
            port: 80,
            protocol: Protocol::Tcp,
            dsr_type: DsrType::L3Ipip,
            scheduler: Scheduler::Maglev,
            packets: 0,
            bytes: 0,
            active_flows: flows.iter().map(|(_, n)| n).sum(),
            table_entries: 0,
            active_window_s: 60,
            flows_sampled_at: None,
            new_flows: tula_control::NewFlows::Backends,
            icmp_echo: false,
            tunnel_mtu: None,
            mss: None,
            backends: flows
                .iter()
                .map(|(address, flows)| tula_control::BackendStatus {
                    address: address.parse().unwrap(),
                    weight: 1,
                    state: BackendState::Active,
                    healthy: true,
                    active_flows: *flows,
                    table_entries: *flows,
                    last_flow_seen: None,
                    packets: 0,
                    bytes: 0,
                })
                .collect(),
        }]
    }

    #[test]
    fn a_vip_left_without_backends_is_named() {
        let running = config(WEB);
        let mut candidate = running.clone();
        candidate.vips[0].backends.clear();
        let found = warnings(&running, &candidate, &[]);
        assert_eq!(
            found,
            vec!["VIP web has no backends: every packet to 203.0.113.10:80/tcp is dropped"]
        );
        assert!(warnings(&running, &running, &[]).is_empty(), "no change, no warning");
    }

    #[test]
    fn draining_every_backend_warns_that_nothing_takes_new_flows() {
        let running = config(WEB);
        let mut candidate = running.clone();
        for backend in &mut candidate.vips[0].backends {
            backend.state = BackendState::Drain;
        }
        let found = warnings(&running, &candidate, &[]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].starts_with("No backend of VIP web can take new flows"));
    }

    #[test]
    fn disabling_a_backend_counts_the_flows_it_cuts() {
        let running = config(WEB);
        let mut candidate = running.clone();
        candidate.vips[0].backends[1].state = BackendState::Disabled;
        let found = warnings(
            &running,
            &candidate,
            &status(&[("198.18.11.2", 7), ("198.18.12.2", 12)]),
        );
        assert_eq!(
            found,
            vec!["This cuts 12 active flows (sent within the last 60 s) of VIP web: 198.18.12.2 is removed or disabled"]
        );
    }
}
