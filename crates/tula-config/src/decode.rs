//! TOML text to [`Config`], reporting every syntax, type and unknown-key problem at once.
//!
//! serde stops at the first error, so the document is parsed once into a tree that
//! keeps source spans, and decoded in pieces: the globals, `[api]`, each `[[vip]]`,
//! its `health_check` and each of its backends. Within a piece, a key whose value fails
//! is set aside and the piece decoded again, so one piece can report several keys.
//! Problems come out in the order of their position in the text.

use std::ops::Range;

use serde::de::DeserializeOwned;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

use crate::error::{join, vip_path, ConfigError, ConfigErrors};
use crate::model::{Api, Backend, Cluster, Config, HealthCheck, Vip};

pub(crate) fn decode(text: &str) -> Result<Config, ConfigErrors> {
    let mut report = Report {
        text,
        problems: Vec::new(),
    };
    let (root, syntax_errors) = DeTable::parse_recoverable(text);
    if let Some(first) = syntax_errors.first() {
        // Later syntax errors are mostly echoes of the first: report that one.
        report.add("document", first.message(), first.span());
        return Err(report.into_errors());
    }
    let root_span = root.span();
    let mut root = root.into_inner();
    let vip_items = root.remove("vip");
    let api = root
        .remove("api")
        .map(|api| decode_value::<Api>(api, "api", &mut report));
    let cluster = root
        .remove("cluster")
        .map(|cluster| decode_value::<Cluster>(cluster, "cluster", &mut report));
    let config = decode_table::<Config>(root, root_span, "", &mut report);

    let mut vips = Vec::new();
    if let Some(items) = vip_items {
        let span = items.span();
        match items.into_inner() {
            DeValue::Array(items) => {
                for (index, item) in items.into_iter().enumerate() {
                    vips.extend(decode_vip(index, item, &mut report));
                }
            }
            other => report.add(
                "vip",
                &format!("expected [[vip]] tables, found {}", other.type_str()),
                Some(span),
            ),
        }
    }

    match config {
        Some(mut config) if report.problems.is_empty() => {
            if let Some(Some(api)) = api {
                config.api = api;
            }
            if let Some(cluster) = cluster {
                config.cluster = cluster;
            }
            config.vips = vips;
            Ok(config)
        }
        _ => Err(report.into_errors()),
    }
}

fn decode_vip(index: usize, item: Spanned<DeValue<'_>>, report: &mut Report) -> Option<Vip> {
    let span = item.span();
    let DeValue::Table(mut table) = item.into_inner() else {
        report.add(&format!("vips[{index}]"), "expected a table", Some(span));
        return None;
    };
    let name = table
        .get("name")
        .and_then(|n| n.get_ref().as_str())
        .map(str::to_string);
    let path = vip_path(index, name.as_deref());

    let mut backends = Some(Vec::new());
    if let Some(items) = table.remove("backends") {
        let items_span = items.span();
        match items.into_inner() {
            DeValue::Array(items) => {
                for (i, item) in items.into_iter().enumerate() {
                    let backend =
                        decode_value::<Backend>(item, &format!("{path}.backends[{i}]"), report);
                    match (backend, backends.as_mut()) {
                        (Some(backend), Some(list)) => list.push(backend),
                        _ => backends = None,
                    }
                }
            }
            other => {
                let message = format!(
                    "expected an array of backend tables, found {}",
                    other.type_str()
                );
                report.add(&join(&path, "backends"), &message, Some(items_span));
                backends = None;
            }
        }
    }
    let health_check = match table.remove("health_check") {
        Some(value) => decode_value::<HealthCheck>(value, &join(&path, "health_check"), report),
        None => Some(HealthCheck::default()),
    };
    let vip = decode_table::<Vip>(table, span, &path, report);
    let (mut vip, backends, health_check) = (vip?, backends?, health_check?);
    vip.backends = backends;
    vip.health_check = health_check;
    Some(vip)
}

fn decode_value<T: DeserializeOwned>(
    value: Spanned<DeValue<'_>>,
    path: &str,
    report: &mut Report,
) -> Option<T> {
    let span = value.span();
    match value.into_inner() {
        DeValue::Table(table) => decode_table(table, span, path, report),
        other => {
            report.add(
                path,
                &format!("expected a table, found {}", other.type_str()),
                Some(span),
            );
            None
        }
    }
}

/// Decodes one table, reporting a problem for each bad key rather than only the first.
fn decode_table<T: DeserializeOwned>(
    mut table: DeTable<'_>,
    span: Range<usize>,
    path: &str,
    report: &mut Report,
) -> Option<T> {
    let mut set_aside: Vec<String> = Vec::new();
    loop {
        let value = Spanned::new(span.clone(), DeValue::Table(table.clone()));
        let error = match T::deserialize(ValueDeserializer::from(value)) {
            Ok(decoded) => return set_aside.is_empty().then_some(decoded),
            Err(error) => error,
        };
        // A key we set aside is now missing: that is our doing, not a new problem.
        if set_aside
            .iter()
            .any(|key| error.message() == format!("missing field `{key}`"))
        {
            return None;
        }
        let at = error.span().map(|s| s.start);
        let found = at.and_then(|at| path_within(&table, at));
        let within = found
            .as_ref()
            .map(|(_, path)| path.as_str())
            .unwrap_or_default();
        let message = error
            .message()
            .replacen("unknown field", "unknown key", 1)
            .replacen("missing field", "missing key", 1);
        let message = report.with_found_value(&message, error.span());
        report.add(&join(path, within), &message, error.span());

        let (key, _) = found?;
        table.remove(key.as_str());
        set_aside.push(key);
    }
}

/// The key of `table` holding byte `at`, and the path from it to the innermost
/// key or element there (`api` and `api.listen`, `interfaces` and `interfaces[1]`).
///
/// Tables written as `[header]` sections have a span covering only the header,
/// so the search looks inside every table rather than trusting spans to nest.
fn path_within(table: &DeTable<'_>, at: usize) -> Option<(String, String)> {
    table.iter().find_map(|(key, value)| {
        let below = value_path(value.get_ref(), at);
        let here = covers(key.span(), at) || covers(value.span(), at);
        (here || below.is_some()).then(|| {
            (
                key.get_ref().to_string(),
                format!("{}{}", key.get_ref(), below.unwrap_or_default()),
            )
        })
    })
}

fn value_path(value: &DeValue<'_>, at: usize) -> Option<String> {
    match value {
        DeValue::Table(table) => path_within(table, at).map(|(_, p)| format!(".{p}")),
        DeValue::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
            let below = value_path(item.get_ref(), at);
            (covers(item.span(), at) || below.is_some())
                .then(|| format!("[{i}]{}", below.unwrap_or_default()))
        }),
        _ => None,
    }
}

fn covers(span: Range<usize>, at: usize) -> bool {
    span.contains(&at) || (span.is_empty() && span.start == at)
}

/// Problems found so far, with the text they refer to.
struct Report<'a> {
    text: &'a str,
    /// (byte offset, problem), sorted by offset at the end.
    problems: Vec<(usize, ConfigError)>,
}

impl Report<'_> {
    /// Records `path: message (line L, column C)`, both 1-based, when the span is known.
    fn add(&mut self, path: &str, message: &str, span: Option<Range<usize>>) {
        let Some(span) = span else {
            self.problems
                .push((usize::MAX, ConfigError::new(path, message)));
            return;
        };
        let at = span.start.min(self.text.len());
        let before = &self.text[..at];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        self.problems.push((
            at,
            ConfigError::new(path, format!("{message} (line {line}, column {column})")),
        ));
    }

    /// Adds `, found VALUE` to an "invalid ..." message that does not already quote the offending text.
    fn with_found_value(&self, message: &str, span: Option<Range<usize>>) -> String {
        let found = span
            .and_then(|s| self.text.get(s))
            .filter(|_| message.starts_with("invalid"));
        let Some(found) = found else {
            return message.to_string();
        };
        let bare = found.trim_matches(|c| c == '"' || c == '\'');
        if found.is_empty() || found.contains('\n') || found.len() > 80 || message.contains(bare) {
            message.to_string()
        } else {
            format!("{message}, found {found}")
        }
    }

    fn into_errors(mut self) -> ConfigErrors {
        self.problems.sort_by_key(|(at, _)| *at);
        ConfigErrors {
            errors: self.problems.into_iter().map(|(_, e)| e).collect(),
        }
    }
}
