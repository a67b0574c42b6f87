//! The VIP form, for creating and editing: what was typed (kept as text, so a
//! rejected form comes back exactly as typed), parsing it into a [`Vip`],
//! placing each config error next to its field, and Save and apply.
//! `form_page` renders it.
//!
//! Fields are named after the config (`address`, `hc_interval`, ...) and each
//! backend row `b{ROW}_{key}`; the error for field F is the element `e-F`.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::Extension;
use tula_config::{
    duration_text, Backend, BackendState, CheckType, Config, ConfigError, StatusRange, Vip,
};

use crate::form_page::{render_page, Shown};
use crate::layout::{self, from_config_text, url_segment};
use crate::review::{self, Pending};
use crate::session::{form_pairs, Session};
use crate::{UiError, UiState};
use tula_api::ApiError;

/// A VIP as typed into the form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VipForm {
    pub name: String,
    pub address: String,
    pub port: String,
    pub protocol: String,
    pub mode: String,
    pub dsr_type: String,
    pub scheduler: String,
    pub hc_type: String,
    pub hc_port: String,
    pub hc_interval: String,
    pub hc_timeout: String,
    pub hc_rise: String,
    pub hc_fall: String,
    pub hc_path: String,
    pub hc_expect_status: String,
    /// In row order; a row whose address and port are empty is ignored.
    pub backends: Vec<BackendRow>,
}

/// One row of the backends table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BackendRow {
    /// The row's number in field names (`b3_address`); not its position.
    pub row: usize,
    pub address: String,
    pub port: String,
    pub weight: String,
    pub state: String,
}

impl BackendRow {
    pub fn blank(row: usize) -> BackendRow {
        BackendRow {
            row,
            address: String::new(),
            port: String::new(),
            weight: "1".to_string(),
            state: "active".to_string(),
        }
    }

    fn is_blank(&self) -> bool {
        self.address.trim().is_empty() && self.port.trim().is_empty()
    }
}

impl Default for VipForm {
    /// A new VIP: Layer 3 DSR over TCP port 80, Maglev, a TCP health check, one empty backend row.
    fn default() -> VipForm {
        let mut vip = blank_vip();
        vip.port = 80;
        let mut form = VipForm::from_vip(&vip);
        form.address.clear();
        form.backends.push(BackendRow::blank(0));
        form
    }
}

/// Problems of one submitted form: by field, and those no field owns.
#[derive(Debug, Default)]
pub(crate) struct FormErrors {
    pub by_field: Vec<(String, String)>,
    pub general: Vec<String>,
}

impl FormErrors {
    fn field(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.by_field.push((field.into(), message.into()));
    }

    pub fn has(&self, field: &str) -> bool {
        self.by_field.iter().any(|(f, _)| f == field)
    }

    pub fn messages(&self, field: &str) -> Vec<&str> {
        self.by_field
            .iter()
            .filter(|(f, _)| f == field)
            .map(|(_, m)| m.as_str())
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.by_field.is_empty() && self.general.is_empty()
    }

    pub fn len(&self) -> usize {
        self.by_field.len() + self.general.len()
    }
}

/// The form parsed: the VIP it describes (placeholders where a field did not
/// parse), which form row each config backend came from, and the parse errors.
struct Parsed {
    vip: Vip,
    rows: Vec<usize>,
    errors: FormErrors,
}

impl VipForm {
    pub fn from_vip(vip: &Vip) -> VipForm {
        let check = &vip.health_check;
        VipForm {
            name: vip.name.clone(),
            address: vip.address.to_string(),
            port: vip.port.to_string(),
            protocol: layout::config_text(&vip.protocol),
            mode: layout::config_text(&vip.mode),
            dsr_type: layout::config_text(&vip.dsr_type),
            scheduler: layout::config_text(&vip.scheduler),
            hc_type: layout::config_text(&check.kind),
            hc_port: check.port.map(|p| p.to_string()).unwrap_or_default(),
            hc_interval: duration_text::format(check.interval),
            hc_timeout: duration_text::format(check.timeout),
            hc_rise: check.rise.to_string(),
            hc_fall: check.fall.to_string(),
            hc_path: check.path.clone().unwrap_or_default(),
            hc_expect_status: check
                .expect_status
                .map(|s| s.to_string())
                .unwrap_or_default(),
            backends: vip
                .backends
                .iter()
                .enumerate()
                .map(|(row, b)| BackendRow {
                    row,
                    address: b.address.to_string(),
                    port: b.port.map(|p| p.to_string()).unwrap_or_default(),
                    weight: b.weight.to_string(),
                    state: layout::state_label(b.state).to_string(),
                })
                .collect(),
        }
    }

    /// The form from its submitted fields (unknown fields are ignored).
    pub fn from_pairs(pairs: &[(String, String)]) -> VipForm {
        let mut form = VipForm {
            name: String::new(),
            address: String::new(),
            port: String::new(),
            protocol: String::new(),
            mode: String::new(),
            dsr_type: String::new(),
            scheduler: String::new(),
            hc_type: String::new(),
            hc_port: String::new(),
            hc_interval: String::new(),
            hc_timeout: String::new(),
            hc_rise: String::new(),
            hc_fall: String::new(),
            hc_path: String::new(),
            hc_expect_status: String::new(),
            backends: Vec::new(),
        };
        let mut rows: BTreeMap<usize, BackendRow> = BTreeMap::new();
        for (key, value) in pairs {
            let slot = match key.as_str() {
                "name" => &mut form.name,
                "address" => &mut form.address,
                "port" => &mut form.port,
                "protocol" => &mut form.protocol,
                "mode" => &mut form.mode,
                "dsr_type" => &mut form.dsr_type,
                "scheduler" => &mut form.scheduler,
                "hc_type" => &mut form.hc_type,
                "hc_port" => &mut form.hc_port,
                "hc_interval" => &mut form.hc_interval,
                "hc_timeout" => &mut form.hc_timeout,
                "hc_rise" => &mut form.hc_rise,
                "hc_fall" => &mut form.hc_fall,
                "hc_path" => &mut form.hc_path,
                "hc_expect_status" => &mut form.hc_expect_status,
                _ => {
                    let Some((row, what)) = backend_field(key) else {
                        continue;
                    };
                    let entry = rows.entry(row).or_insert_with(|| BackendRow {
                        row,
                        address: String::new(),
                        port: String::new(),
                        weight: String::new(),
                        state: String::new(),
                    });
                    match what {
                        "address" => &mut entry.address,
                        "port" => &mut entry.port,
                        "weight" => &mut entry.weight,
                        "state" => &mut entry.state,
                        _ => continue,
                    }
                }
            };
            *slot = value.clone();
        }
        form.backends = rows.into_values().filter(|r| !r.is_blank()).collect();
        form
    }

    /// The VIP this form describes, built over `base` (an edited VIP keeps what
    /// the form does not show, like its all-down policy).
    fn parse(&self, base: Option<&Vip>) -> Parsed {
        let mut errors = FormErrors::default();
        let mut vip = base.cloned().unwrap_or_else(blank_vip);
        vip.name = self.name.trim().to_string();
        if vip.name.is_empty() {
            errors.field(
                "name",
                "enter a name: a letter, then letters, digits, '-', '_' or '.'",
            );
        }
        vip.address = address(&self.address, "address", &mut errors);
        vip.port = number(
            &self.port,
            "port",
            "a port (0-65535, 0 = all ports)",
            &mut errors,
        )
        .unwrap_or(0);
        vip.protocol = choice(&self.protocol, "protocol", &mut errors).unwrap_or(vip.protocol);
        vip.mode = choice(&self.mode, "mode", &mut errors).unwrap_or(vip.mode);
        vip.dsr_type = choice(&self.dsr_type, "dsr_type", &mut errors).unwrap_or(vip.dsr_type);
        vip.scheduler = choice(&self.scheduler, "scheduler", &mut errors).unwrap_or(vip.scheduler);

        let check = &mut vip.health_check;
        check.kind = choice(&self.hc_type, "hc_type", &mut errors).unwrap_or(check.kind);
        check.port = optional_number(
            &self.hc_port,
            "hc_port",
            "a port (1-65535), or empty for the VIP port",
            &mut errors,
        );
        if let Some(interval) = duration(&self.hc_interval, "hc_interval", &mut errors) {
            check.interval = interval;
        }
        if let Some(timeout) = duration(&self.hc_timeout, "hc_timeout", &mut errors) {
            check.timeout = timeout;
        }
        check.rise =
            number(&self.hc_rise, "hc_rise", "a whole number", &mut errors).unwrap_or(check.rise);
        check.fall =
            number(&self.hc_fall, "hc_fall", "a whole number", &mut errors).unwrap_or(check.fall);
        // The form owns the HTTP settings: a check that is not HTTP(S) keeps none.
        if check.kind.is_http() {
            check.path = non_empty(&self.hc_path);
            check.expect_status = match non_empty(&self.hc_expect_status) {
                None => None,
                Some(text) => match text.parse::<StatusRange>() {
                    Ok(range) => Some(range),
                    Err(message) => {
                        errors.field("hc_expect_status", message);
                        None
                    }
                },
            };
        } else {
            check.path = None;
            check.expect_status = None;
            check.expect_body = None;
            check.host = None;
        }
        if check.kind != CheckType::Https {
            check.tls_verify = None;
        }

        let mut rows = Vec::new();
        vip.backends = self
            .backends
            .iter()
            .map(|row| {
                rows.push(row.row);
                let field = |key: &str| format!("b{}_{key}", row.row);
                Backend {
                    address: address(&row.address, &field("address"), &mut errors),
                    port: optional_number(
                        &row.port,
                        &field("port"),
                        "a port, or empty for the VIP port",
                        &mut errors,
                    ),
                    weight: if row.weight.trim().is_empty() {
                        1
                    } else {
                        number(
                            &row.weight,
                            &field("weight"),
                            "a weight (0-1000)",
                            &mut errors,
                        )
                        .unwrap_or(1)
                    },
                    state: choice(&row.state, &field("state"), &mut errors)
                        .unwrap_or(BackendState::Active),
                }
            })
            .collect();
        Parsed { vip, rows, errors }
    }

    /// Where `field` comes in the form, to list errors in the order of the fields.
    pub fn position(&self, field: &str) -> (usize, usize, usize) {
        const FIELDS: [&str; 16] = [
            "name",
            "address",
            "port",
            "protocol",
            "mode",
            "scheduler",
            "dsr_type",
            "hc_type",
            "hc_port",
            "hc_interval",
            "hc_timeout",
            "hc_rise",
            "hc_fall",
            "hc_path",
            "hc_expect_status",
            "backends",
        ];
        if let Some(i) = FIELDS.iter().position(|f| *f == field) {
            return (i, 0, 0);
        }
        match backend_field(field) {
            Some((row, key)) => (
                FIELDS.len(),
                self.backends
                    .iter()
                    .position(|b| b.row == row)
                    .unwrap_or(usize::MAX),
                ["address", "port", "weight", "state"]
                    .iter()
                    .position(|k| *k == key)
                    .unwrap_or(4),
            ),
            None => (usize::MAX, 0, 0),
        }
    }

    /// The form label of `field`, for the error summary.
    pub fn label(&self, field: &str) -> String {
        if let Some((row, key)) = backend_field(field) {
            let position = self
                .backends
                .iter()
                .position(|b| b.row == row)
                .map(|p| p + 1)
                .unwrap_or(row + 1);
            return format!("Backend {position} {key}");
        }
        match field {
            "name" => "Name",
            "address" => "Address",
            "port" => "Port",
            "protocol" => "Protocol",
            "mode" => "Mode",
            "dsr_type" => "DSR Type",
            "scheduler" => "Scheduler",
            "hc_type" => "Health check type",
            "hc_port" => "Health check port",
            "hc_interval" => "Health check interval",
            "hc_timeout" => "Health check timeout",
            "hc_rise" => "Health check rise",
            "hc_fall" => "Health check fall",
            "hc_path" => "Health check path",
            "hc_expect_status" => "Expected status",
            "backends" => "Backends",
            other => other,
        }
        .to_string()
    }
}

/// A VIP with every setting at its config default (as a file that names none
/// would give), address 0.0.0.0 and no name yet.
fn blank_vip() -> Vip {
    serde_json::from_value(serde_json::json!({"name": "", "address": "0.0.0.0"}))
        .expect("a VIP needs only a name and an address")
}

/// `b3_address` -> (3, "address").
fn backend_field(key: &str) -> Option<(usize, &str)> {
    let rest = key.strip_prefix('b')?;
    let (row, what) = rest.split_once('_')?;
    Some((row.parse().ok()?, what))
}

fn non_empty(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

/// An IP address, or 0.0.0.0 as a placeholder and an error naming the field.
fn address(text: &str, field: &str, errors: &mut FormErrors) -> IpAddr {
    let text = text.trim();
    if text.is_empty() {
        errors.field(field, "enter an IP address");
    } else if let Ok(address) = text.parse() {
        return address;
    } else {
        errors.field(field, format!("{text:?} is not an IP address"));
    }
    IpAddr::V4(Ipv4Addr::UNSPECIFIED)
}

fn number<T: std::str::FromStr>(
    text: &str,
    field: &str,
    what: &str,
    errors: &mut FormErrors,
) -> Option<T> {
    let text = text.trim();
    match text.parse() {
        Ok(value) => Some(value),
        Err(_) if text.is_empty() => {
            errors.field(field, format!("enter {what}"));
            None
        }
        Err(_) => {
            errors.field(field, format!("{text:?} is not {what}"));
            None
        }
    }
}

fn optional_number<T: std::str::FromStr>(
    text: &str,
    field: &str,
    what: &str,
    errors: &mut FormErrors,
) -> Option<T> {
    if text.trim().is_empty() {
        None
    } else {
        number(text, field, what, errors)
    }
}

fn duration(text: &str, field: &str, errors: &mut FormErrors) -> Option<std::time::Duration> {
    match duration_text::parse(text.trim()) {
        Ok(duration) => Some(duration),
        Err(message) => {
            errors.field(field, message);
            None
        }
    }
}

fn choice<T: serde::de::DeserializeOwned>(
    text: &str,
    field: &str,
    errors: &mut FormErrors,
) -> Option<T> {
    let value = from_config_text(text.trim());
    if value.is_none() {
        errors.field(field, format!("{text:?} is not one of the choices"));
    }
    value
}

/// The form field a config error path is about: `vips[web].backends[2].port`
/// -> `b{row}_port`, where `rows[2]` is the form row of config backend 2.
fn field_of(path: &str, vip_paths: &[String], rows: &[usize]) -> Option<String> {
    let rest = vip_paths.iter().find_map(|prefix| {
        path.strip_prefix(prefix.as_str())
            .filter(|rest| rest.is_empty() || rest.starts_with('.'))
    })?;
    let rest = rest.strip_prefix('.').unwrap_or(rest);
    if rest.is_empty() {
        // The VIP as a whole: another VIP has its address, port and protocol.
        return Some("address".to_string());
    }
    if let Some(key) = rest.strip_prefix("health_check.") {
        return matches!(
            key,
            "type" | "port" | "interval" | "timeout" | "rise" | "fall" | "path" | "expect_status"
        )
        .then(|| format!("hc_{key}"));
    }
    if let Some(backend) = rest.strip_prefix("backends[") {
        let (index, key) = backend.split_once(']')?;
        let row = rows.get(index.parse::<usize>().ok()?)?;
        let key = key.strip_prefix('.').unwrap_or("address");
        return matches!(key, "address" | "port" | "weight" | "state")
            .then(|| format!("b{row}_{key}"));
    }
    matches!(
        rest,
        "name" | "address" | "port" | "protocol" | "mode" | "dsr_type" | "scheduler" | "backends"
    )
    .then(|| rest.to_string())
}

/// Adds the config's errors to `errors`: each next to its field, unless that
/// field already has a problem of its own (a placeholder value's errors are noise).
fn place(errors: &mut FormErrors, found: &[ConfigError], vip_paths: &[String], rows: &[usize]) {
    let had: Vec<String> = errors.by_field.iter().map(|(f, _)| f.clone()).collect();
    for error in found {
        match field_of(&error.path, vip_paths, rows) {
            Some(field) if had.contains(&field) => {}
            Some(field) => errors.field(field, human_message(&error.message)),
            None => errors.general.push(format!(
                "{}: {}",
                human_path(&error.path),
                human_message(&error.message)
            )),
        }
    }
}

/// A config path as an operator reads it: `vips[web].health_check.port` ->
/// "VIP web, health check port"; `interfaces[0]` -> "interfaces, item 1".
pub(crate) fn human_path(path: &str) -> String {
    // Split at the dots outside brackets (a backend's key is its address).
    let mut segments = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in path.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            '.' if depth == 0 => {
                segments.push(&path[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    segments.push(&path[start..]);
    let mut parts = Vec::new();
    for segment in segments.into_iter().filter(|s| !s.is_empty()) {
        let (name, key) = match segment.split_once('[') {
            Some((name, rest)) => (name, Some(rest.trim_end_matches(']'))),
            None => (segment, None),
        };
        let words = name.replace('_', " ");
        parts.push(match (name, key) {
            ("vips", Some(key)) => format!("VIP {key}"),
            ("backends", Some(key)) => format!("backend {key}"),
            (_, Some(index)) if index.parse::<usize>().is_ok() => {
                format!("{words}, item {}", index.parse::<usize>().unwrap_or(0) + 1)
            }
            (_, Some(key)) => format!("{words} {key}"),
            (_, None) => words,
        });
    }
    let joined = parts.join(", ");
    joined.replace(", health check, ", ", health check ")
}

/// A validation message with Rust's range syntax spelt out: `0..=1000` -> `0 to 1000`.
pub(crate) fn human_message(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find("..=") {
        let before = &rest[..at];
        let after = &rest[at + 3..];
        let digits_before = before.chars().rev().take_while(char::is_ascii_digit).count();
        let digits_after = after.chars().take_while(char::is_ascii_digit).count();
        if digits_before > 0 && digits_after > 0 {
            out.push_str(before);
            out.push_str(" to ");
        } else {
            out.push_str(before);
            out.push_str("..=");
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

/// Why a form was not applied.
enum Rejection {
    Invalid(FormErrors),
    Failed(ApiError),
}

impl From<ApiError> for Rejection {
    fn from(error: ApiError) -> Rejection {
        Rejection::Failed(error)
    }
}

/// Parses the form and validates the config it makes with the same rules as
/// the API (nothing applied): the VIP, or every problem by field.
async fn check(ui: &UiState, form: &VipForm, editing: Option<&str>) -> Result<Vip, Rejection> {
    let (_, running) = ui.app.running().await?;
    let base = match editing {
        Some(name) => Some(
            running
                .vip(name)
                .cloned()
                .ok_or_else(|| ApiError::not_found(format!("no VIP {name:?}")))?,
        ),
        None => None,
    };
    let Parsed {
        vip,
        rows,
        mut errors,
    } = form.parse(base.as_ref());
    if let Some(name) = editing {
        if vip.name != name {
            errors.field("name", format!("a VIP's name cannot change (it is {name:?}): create a new VIP and remove this one"));
        }
    } else if running.vip(&vip.name).is_some() {
        errors.field("name", format!("VIP {:?} already exists", vip.name));
    }
    let index = match editing {
        Some(name) => running
            .vips
            .iter()
            .position(|v| v.name == name)
            .unwrap_or(0),
        None => running.vips.len(),
    };
    let vip_paths = vec![format!("vips[{}]", vip.name), format!("vips[{index}]")];
    let mut candidate = running;
    if index < candidate.vips.len() {
        candidate.vips[index] = vip.clone();
    } else {
        candidate.vips.push(vip.clone());
    }
    let found = ui
        .app
        .blocking(move |state| Ok(state.control.validate(&candidate)))
        .await?;
    if let Err(found) = found {
        place(&mut errors, &found.errors, &vip_paths, &rows);
    }
    if errors.is_empty() {
        Ok(vip)
    } else {
        Err(Rejection::Invalid(errors))
    }
}

pub(crate) async fn new_page(
    State(ui): State<UiState>,
    Extension(session): Extension<Session>,
) -> Result<Html<String>, UiError> {
    let revision = ui.app.snapshot().revision();
    let shown = Shown {
        errors: &FormErrors::default(),
        notice: None,
        revision,
    };
    Ok(Html(render_page(&VipForm::default(), &shown, None, &session)))
}

pub(crate) async fn edit_page(
    State(ui): State<UiState>,
    Extension(session): Extension<Session>,
    Path(name): Path<String>,
) -> Result<Html<String>, UiError> {
    let snapshot = ui.app.snapshot();
    let (revision, config) = (snapshot.revision(), snapshot.config());
    let vip = config
        .vip(&name)
        .ok_or_else(|| ApiError::not_found(format!("no VIP {name:?}")))?;
    let shown = Shown {
        errors: &FormErrors::default(),
        notice: None,
        revision,
    };
    Ok(Html(render_page(
        &VipForm::from_vip(vip),
        &shown,
        Some(&name),
        &session,
    )))
}

/// POST: review the new VIP (or apply it once reviewed), or show the form again with its errors.
pub(crate) async fn create(
    State(ui): State<UiState>,
    Extension(session): Extension<Session>,
    body: Bytes,
) -> Response {
    submit(&ui, &session, form_pairs(&body), None).await
}

/// POST: review the VIP's new settings (or apply them once reviewed), or show the form again.
pub(crate) async fn update(
    State(ui): State<UiState>,
    Extension(session): Extension<Session>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    submit(&ui, &session, form_pairs(&body), Some(&name)).await
}

async fn submit(
    ui: &UiState,
    session: &Session,
    fields: Vec<(String, String)>,
    editing: Option<&str>,
) -> Response {
    let mut form = VipForm::from_pairs(&fields);
    let base = review::base_revision(&fields);
    let (running, running_config) = match ui.app.running().await {
        Ok(running) => running,
        Err(error) => return UiError::from(error).into_response(),
    };
    let again = |form: &VipForm, errors: &FormErrors, notice: Option<&str>, status: StatusCode| {
        let shown = Shown {
            errors,
            notice,
            revision: base.unwrap_or(running),
        };
        (status, Html(render_page(form, &shown, editing, session))).into_response()
    };
    // Add backend and Remove without a script, and Back from the review: the form again, nothing checked.
    if review::field(&fields, "add_row").is_some() {
        let next = form.backends.iter().map(|b| b.row + 1).max().unwrap_or(0);
        form.backends.push(BackendRow::blank(next));
        return again(&form, &FormErrors::default(), None, StatusCode::OK);
    }
    if let Some(row) = review::field(&fields, "remove_row").and_then(|r| r.parse::<usize>().ok()) {
        form.backends.retain(|b| b.row != row);
        return again(&form, &FormErrors::default(), None, StatusCode::OK);
    }
    if review::field(&fields, "back").is_some() {
        return again(&form, &FormErrors::default(), None, StatusCode::OK);
    }
    let vip = match check(ui, &form, editing).await {
        Ok(vip) => vip,
        Err(Rejection::Invalid(errors)) => {
            return again(&form, &errors, None, StatusCode::UNPROCESSABLE_ENTITY)
        }
        Err(Rejection::Failed(error)) if error.status == StatusCode::NOT_FOUND => {
            return UiError::from(error).into_response();
        }
        Err(Rejection::Failed(error)) => {
            let mut errors = FormErrors::default();
            errors.general.push(error.message);
            errors
                .general
                .extend(error.errors.iter().map(ToString::to_string));
            return again(&form, &errors, None, error.status);
        }
    };
    let unchanged = editing.is_some_and(|name| running_config.vip(name) == Some(&vip));
    if unchanged && !review::confirmed(&fields) {
        return again(
            &form,
            &FormErrors::default(),
            Some("No changes: the form matches the running config, so there is nothing to apply."),
            StatusCode::OK,
        );
    }
    let name = vip.name.clone();
    let page = format!("/ui/vips/{}", url_segment(&name));
    let (title, action, source) = match editing {
        Some(_) => (
            format!("Edit VIP {name}"),
            format!("{page}/edit"),
            format!("ui: replace vips[{name}]"),
        ),
        None => (
            format!("Create VIP {name}"),
            "/ui/vips/new".to_string(),
            format!("ui: add vips[{name}]"),
        ),
    };
    let pending = Pending {
        title,
        action,
        fields: &fields,
        cancel: match editing {
            Some(_) => page.clone(),
            None => crate::list::PATH.to_string(),
        },
        source,
        back: true,
    };
    let editing_name = editing.map(str::to_string);
    let edit = move |config: &mut Config| {
        match &editing_name {
            Some(editing) => {
                let slot = config
                    .vips
                    .iter_mut()
                    .find(|v| &v.name == editing)
                    .ok_or_else(|| ApiError::not_found(format!("no VIP {editing:?}")))?;
                *slot = vip.clone();
            }
            None if config.vip(&vip.name).is_some() => {
                return Err(ApiError::conflict(format!(
                    "VIP {:?} already exists",
                    vip.name
                )));
            }
            None => config.vips.push(vip.clone()),
        }
        Ok(())
    };
    review::review_or_apply(ui, session, pending, edit, |revision| {
        format!("{page}?applied={revision}")
    })
    .await
    .unwrap_or_else(IntoResponse::into_response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tula_config::Scheduler;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn filled() -> Vec<(String, String)> {
        pairs(&[
            ("csrf", "x"),
            ("name", "web"),
            ("address", "203.0.113.30"),
            ("port", "80"),
            ("protocol", "tcp"),
            ("mode", "dsr"),
            ("dsr_type", "l3-ipip"),
            ("scheduler", "source-hash"),
            ("hc_type", "tcp"),
            ("hc_port", ""),
            ("hc_interval", "2s"),
            ("hc_timeout", "500ms"),
            ("hc_rise", "2"),
            ("hc_fall", "3"),
            ("hc_path", "/ignored-for-tcp"),
            ("hc_expect_status", ""),
            ("b0_address", "198.18.11.2"),
            ("b0_port", ""),
            ("b0_weight", "1"),
            ("b0_state", "active"),
            ("b5_address", "198.18.12.2"),
            ("b5_port", "80"),
            ("b5_weight", "3"),
            ("b5_state", "drain"),
            ("b7_address", ""),
            ("b7_port", ""),
            ("b7_weight", "1"),
            ("b7_state", "active"),
        ])
    }

    #[test]
    fn a_filled_form_parses_to_the_vip_it_shows() {
        let form = VipForm::from_pairs(&filled());
        assert_eq!(form.backends.len(), 2, "the blank row is dropped");
        let parsed = form.parse(None);
        assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
        let vip = parsed.vip;
        assert_eq!(vip.name, "web");
        assert_eq!(vip.address, "203.0.113.30".parse::<IpAddr>().unwrap());
        assert_eq!(vip.scheduler, Scheduler::SourceHash);
        assert_eq!(
            vip.health_check.timeout,
            std::time::Duration::from_millis(500)
        );
        assert_eq!(
            vip.health_check.path, None,
            "a TCP check keeps no HTTP path"
        );
        assert_eq!(vip.backends[1].port, Some(80));
        assert_eq!(vip.backends[1].weight, 3);
        assert_eq!(vip.backends[1].state, BackendState::Drain);
        assert_eq!(parsed.rows, vec![0, 5]);
        // A VIP shown in the form and read back is the same VIP.
        let again = VipForm::from_vip(&vip);
        assert_eq!(again.parse(None).vip, vip);
    }

    #[test]
    fn parse_errors_name_their_fields() {
        let mut fields = filled();
        for (key, value) in fields.iter_mut() {
            match key.as_str() {
                "b5_address" => *value = "198.18.12.300".into(),
                "port" => *value = "eighty".into(),
                "hc_interval" => *value = "2 seconds".into(),
                _ => {}
            }
        }
        let parsed = VipForm::from_pairs(&fields).parse(None);
        let fields: Vec<&str> = parsed
            .errors
            .by_field
            .iter()
            .map(|(f, _)| f.as_str())
            .collect();
        assert_eq!(fields, vec!["port", "hc_interval", "b5_address"]);
        assert_eq!(
            parsed.errors.messages("b5_address"),
            vec!["\"198.18.12.300\" is not an IP address"]
        );
    }

    #[test]
    fn config_error_paths_map_to_form_fields() {
        let prefixes = vec!["vips[web]".to_string(), "vips[3]".to_string()];
        let rows = [0, 5, 9];
        let field = |path: &str| field_of(path, &prefixes, &rows);
        assert_eq!(
            field("vips[web].backends[1].port").as_deref(),
            Some("b5_port")
        );
        assert_eq!(
            field("vips[3].backends[2].address").as_deref(),
            Some("b9_address")
        );
        assert_eq!(
            field("vips[web].health_check.timeout").as_deref(),
            Some("hc_timeout")
        );
        assert_eq!(field("vips[web].address").as_deref(), Some("address"));
        assert_eq!(field("vips[web]").as_deref(), Some("address"));
        assert_eq!(field("vips[web].scheduler").as_deref(), Some("scheduler"));
        assert_eq!(field("vips[web].sorry_backend"), None);
        assert_eq!(
            field("vips[web2].address"),
            None,
            "another VIP's error is not this form's"
        );
        assert_eq!(field("interfaces[0]"), None);
    }

    #[test]
    fn errors_name_fields_as_people_do() {
        assert_eq!(human_path("vips[web].sorry_backend"), "VIP web, sorry backend");
        assert_eq!(
            human_path("vips[web].backends[198.18.0.2].weight"),
            "VIP web, backend 198.18.0.2, weight"
        );
        assert_eq!(human_path("interfaces[0]"), "interfaces, item 1");
        assert_eq!(
            human_message("1001 is out of range 0..=1000"),
            "1001 is out of range 0 to 1000"
        );
        assert_eq!(human_message("a..=b stays"), "a..=b stays");
    }

    #[test]
    fn a_field_with_a_parse_error_does_not_also_show_its_placeholder_errors() {
        let mut errors = FormErrors::default();
        errors.field("b5_address", "\"x\" is not an IP address");
        let found = [
            ConfigError::new(
                "vips[web].backends[1].address",
                "0.0.0.0 cannot be a backend (unspecified)",
            ),
            ConfigError::new(
                "vips[web].backends[0].port",
                "81 differs from the VIP port 80",
            ),
            ConfigError::new("vips", "too many"),
        ];
        place(&mut errors, &found, &["vips[web]".to_string()], &[0, 5]);
        assert_eq!(errors.messages("b5_address").len(), 1);
        assert_eq!(
            errors.messages("b0_port"),
            vec!["81 differs from the VIP port 80"]
        );
        assert_eq!(errors.general, vec!["vips: too many".to_string()]);
        let mut errors = FormErrors::default();
        let weight = [ConfigError::new(
            "vips[web].backends[0].weight",
            "1001 is out of range 0..=1000",
        )];
        place(&mut errors, &weight, &["vips[web]".to_string()], &[3]);
        assert_eq!(errors.messages("b3_weight"), vec!["1001 is out of range 0 to 1000"]);
    }
}
