//! System > Revisions: every saved revision, a side-by-side comparison of any
//! two (the config files, changed lines marked, with context), and rollback
//! to one, reviewed like every other change.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::response::{Html, Response};
use axum::Extension;
use maud::html;
use serde::Deserialize;
use tula_api::{revision_record, ApiError};
use tula_client::Revision;
use tula_config::Config;

use crate::layout::{self, Page, Section};
use crate::list::{flash_banner, Flash};
use crate::review::{self, Pending};
use crate::session::{form_pairs, Session};
use crate::{UiError, UiState};

pub(crate) const PATH: &str = "/ui/revisions";
/// Revisions listed, newest first.
const SHOWN: usize = 200;
/// Unchanged lines shown around each change.
const CONTEXT: usize = 3;

pub(crate) async fn page(
    State(ui): State<UiState>,
    Extension(session): Extension<Session>,
    Query(flash): Query<Flash>,
) -> Result<Html<String>, UiError> {
    let (running, history) = ui
        .app
        .blocking(|state| Ok((state.control.running_revision(), state.control.history()?)))
        .await?;
    let revisions: Vec<Revision> = history
        .into_iter()
        .rev()
        .take(SHOWN)
        .map(revision_record)
        .collect();
    let previous = revisions.get(1).map(|r| r.number).unwrap_or(running);
    let body = html! {
        (flash_banner(&ui, &flash).await?)
        h1 { "Revisions" }
        p.meta {
            "Every apply records a numbered revision (" code { "tula config history" } ", "
            code { "tula config rollback N" } "). Choose two to compare, or roll back to one: a rollback is reviewed \
             before it is applied, as a new revision."
        }
        form #compare method="get" action={ (PATH) "/diff" } {}
        form #rollback method="post" action={ (PATH) "/rollback" } {
            input type="hidden" name="csrf" value=(session.csrf);
            input type="hidden" name=(review::BASE_FIELD) value=(running);
        }
        div.table-wrap tabindex="0" role="region" aria-label="Revisions" {
            table.revisions {
                thead { tr {
                    th.num scope="col" { "#" } th scope="col" { "Time" } th scope="col" { "Source" }
                    th scope="col" { "Changes" } th scope="col" { "Compare" } th scope="col" { "Actions" }
                } }
                tbody {
                    @for revision in &revisions {
                        tr data-revision=(revision.number) {
                            td.num { (revision.number) @if revision.number == running { " " span.badge { "running" } } }
                            td { (layout::time_tag_text(&revision.time)) }
                            td { (revision.source) }
                            td { @for (i, line) in revision.summary.iter().enumerate() { @if i > 0 { br; } code { (line) } } }
                            td.compare {
                                label { input type="radio" form="compare" name="from" value=(revision.number) checked[revision.number == previous]; " from" }
                                " "
                                label { input type="radio" form="compare" name="to" value=(revision.number) checked[revision.number == running]; " to" }
                            }
                            td.row-actions {
                                @if revision.number != running {
                                    button type="submit" form="rollback" name="to" value=(revision.number)
                                        aria-label={ "Roll back to revision " (revision.number) } { "Roll back" }
                                }
                            }
                        }
                    }
                }
            }
        }
        div.actions { button.primary type="submit" form="compare" #compare-button { "Compare" } }
    };
    Ok(Html(
        Page::new("Revisions", Section::Revisions, &session).render(body),
    ))
}

#[derive(Debug, Deserialize)]
pub(crate) struct Compare {
    from: u64,
    to: u64,
}

/// Two revisions' config files side by side, changed lines marked.
pub(crate) async fn diff(
    State(ui): State<UiState>,
    Extension(session): Extension<Session>,
    Query(compare): Query<Compare>,
) -> Result<Html<String>, UiError> {
    let Compare { from, to } = compare;
    let (old, new) = ui
        .app
        .blocking(move |state| {
            Ok((
                state.control.revision(from)?.redacted().to_toml_string(),
                state.control.revision(to)?.redacted().to_toml_string(),
            ))
        })
        .await?;
    let old: Vec<&str> = old.lines().collect();
    let new: Vec<&str> = new.lines().collect();
    let hunks = hunks(&line_diff(&old, &new));
    let body = html! {
        h1 { "Revision " (from) " and revision " (to) }
        p.meta { a href=(PATH) { "Back to the revisions" } }
        @if hunks.is_empty() {
            p #no-differences { "The two revisions' configs are the same." }
        } @else {
            div.table-wrap tabindex="0" role="region" aria-label="Differences" {
                table.side-by-side #revision-diff {
                    thead { tr { th.num scope="col" { "#" } th scope="col" { "Revision " (from) } th.num scope="col" { "#" } th scope="col" { "Revision " (to) } } }
                    @for hunk in &hunks {
                        tbody {
                            @for line in hunk {
                                tr class=(line.class()) {
                                    td.num { @if let Some(n) = line.old_number { (n) } }
                                    td { code { @if let Some(text) = line.old { (text) } } }
                                    td.num { @if let Some(n) = line.new_number { (n) } }
                                    td { code { @if let Some(text) = line.new { (text) } } }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    let page = Page::new(format!("Revisions {from} and {to}"), Section::Revisions, &session)
        .crumb("Revisions", Some(PATH.to_string()))
        .crumb(format!("{from} and {to}"), None);
    Ok(Html(page.render(body)))
}

/// POST `to=N`: roll back to revision N, reviewed first.
pub(crate) async fn rollback(
    State(ui): State<UiState>,
    Extension(session): Extension<Session>,
    body: Bytes,
) -> Result<Response, UiError> {
    let fields = form_pairs(&body);
    let to: u64 = review::field(&fields, "to")
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| ApiError::bad_request("choose the revision to roll back to"))?;
    let config: Config = ui
        .app
        .blocking(move |state| Ok(state.control.revision(to)?))
        .await?;
    let pending = Pending {
        title: format!("Roll back to revision {to}"),
        action: format!("{PATH}/rollback"),
        fields: &fields,
        cancel: PATH.to_string(),
        source: format!("ui: rollback to {to}"),
        back: false,
    };
    let edit = move |running: &mut Config| {
        *running = config.clone();
        Ok(())
    };
    review::review_or_apply(&ui, &session, pending, edit, |revision| {
        format!("{PATH}?applied={revision}")
    })
    .await
}

/// One line of a side-by-side comparison: either side may be empty.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Line<'a> {
    old_number: Option<usize>,
    old: Option<&'a str>,
    new_number: Option<usize>,
    new: Option<&'a str>,
}

impl Line<'_> {
    fn changed(&self) -> bool {
        self.old != self.new
    }

    fn class(&self) -> &'static str {
        match (self.old, self.new) {
            (Some(_), None) => "line-removed",
            (None, Some(_)) => "line-added",
            (Some(a), Some(b)) if a != b => "line-changed",
            _ => "line-same",
        }
    }
}

/// Largest middle part (after common lines at both ends are set aside) compared line by line.
const MAX_COMPARED: usize = 2000;

/// Aligns `old` and `new` by their longest common subsequence of lines,
/// pairing a removed line with an added one where they meet.
fn line_diff<'a>(old: &[&'a str], new: &[&'a str]) -> Vec<Line<'a>> {
    let prefix = old.iter().zip(new).take_while(|(a, b)| a == b).count();
    let suffix = old[prefix..]
        .iter()
        .rev()
        .zip(new[prefix..].iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    let same = |i: usize, j: usize| Line {
        old_number: Some(i + 1),
        old: Some(old[i]),
        new_number: Some(j + 1),
        new: Some(new[j]),
    };
    let mut out: Vec<Line> = (0..prefix).map(|i| same(i, i)).collect();
    let a = &old[prefix..old.len() - suffix];
    let b = &new[prefix..new.len() - suffix];
    // Pairs of (old index, new index) of the middle, in order.
    let mut ops: Vec<(Option<usize>, Option<usize>)> = Vec::new();
    if a.len() <= MAX_COMPARED && b.len() <= MAX_COMPARED {
        // lengths[i][j]: the LCS of a[i..] and b[j..].
        let mut lengths = vec![vec![0u16; b.len() + 1]; a.len() + 1];
        for i in (0..a.len()).rev() {
            for j in (0..b.len()).rev() {
                lengths[i][j] = if a[i] == b[j] {
                    lengths[i + 1][j + 1] + 1
                } else {
                    lengths[i + 1][j].max(lengths[i][j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < a.len() || j < b.len() {
            if i < a.len() && j < b.len() && a[i] == b[j] {
                ops.push((Some(i), Some(j)));
                i += 1;
                j += 1;
            } else if j < b.len() && (i == a.len() || lengths[i][j + 1] >= lengths[i + 1][j]) {
                ops.push((None, Some(j)));
                j += 1;
            } else {
                ops.push((Some(i), None));
                i += 1;
            }
        }
    } else {
        // Too large to align: the whole middle as removed, then added.
        ops.extend((0..a.len()).map(|i| (Some(i), None)));
        ops.extend((0..b.len()).map(|j| (None, Some(j))));
    }
    // Pair each run of removed lines with the run of added lines after it.
    let mut k = 0;
    while k < ops.len() {
        match ops[k] {
            (Some(i), Some(j)) => {
                out.push(same(prefix + i, prefix + j));
                k += 1;
            }
            _ => {
                let start = k;
                while k < ops.len() && !matches!(ops[k], (Some(_), Some(_))) {
                    k += 1;
                }
                let removed: Vec<usize> = ops[start..k].iter().filter_map(|o| o.0).collect();
                let added: Vec<usize> = ops[start..k].iter().filter_map(|o| o.1).collect();
                for n in 0..removed.len().max(added.len()) {
                    let o = removed.get(n).map(|i| prefix + i);
                    let w = added.get(n).map(|j| prefix + j);
                    out.push(Line {
                        old_number: o.map(|i| i + 1),
                        old: o.map(|i| old[i]),
                        new_number: w.map(|j| j + 1),
                        new: w.map(|j| new[j]),
                    });
                }
            }
        }
    }
    let tail_old = old.len() - suffix;
    let tail_new = new.len() - suffix;
    out.extend((0..suffix).map(|n| same(tail_old + n, tail_new + n)));
    out
}

/// The changed lines with `CONTEXT` lines around them, in runs; nothing when nothing changed.
fn hunks<'a>(lines: &[Line<'a>]) -> Vec<Vec<Line<'a>>> {
    let mut keep = vec![false; lines.len()];
    for (i, line) in lines.iter().enumerate() {
        if line.changed() {
            let from = i.saturating_sub(CONTEXT);
            let to = (i + CONTEXT + 1).min(lines.len());
            keep[from..to].iter_mut().for_each(|k| *k = true);
        }
    }
    let mut out: Vec<Vec<Line>> = Vec::new();
    let mut current: Vec<Line> = Vec::new();
    for (line, kept) in lines.iter().zip(keep) {
        if kept {
            current.push(line.clone());
        } else if !current.is_empty() {
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_lines_are_paired_and_surrounded_by_context() {
        let old: Vec<&str> = "a\nb\nc\nd\ne\nf\ng\nh\ni\nj".lines().collect();
        let new: Vec<&str> = "a\nb\nc\nd\nE\nf\ng\nh\ni\nj\nk".lines().collect();
        let lines = line_diff(&old, &new);
        let changed: Vec<(Option<&str>, Option<&str>)> = lines
            .iter()
            .filter(|l| l.changed())
            .map(|l| (l.old, l.new))
            .collect();
        assert_eq!(changed, vec![(Some("e"), Some("E")), (None, Some("k"))]);
        let hunks = hunks(&lines);
        assert_eq!(hunks.len(), 1, "the two changes are close: one run");
        assert_eq!(hunks[0].first().unwrap().old, Some("b"), "3 lines of context");
        assert_eq!(hunks[0].last().unwrap().new, Some("k"));
        assert!(super::hunks(&line_diff(&old, &old)).is_empty());
    }

    #[test]
    fn an_inserted_block_keeps_the_lines_after_it_aligned() {
        let old = ["x", "y", "z"];
        let new = ["x", "n1", "n2", "y", "z"];
        let lines = line_diff(&old, &new);
        assert_eq!(lines.len(), 5);
        assert_eq!(lines[3].old, Some("y"));
        assert_eq!(lines[3].new, Some("y"));
        assert_eq!(lines[1].class(), "line-added");
    }
}
