//! Revisions (`GET /api/revisions`, the answer to an apply or rollback) and
//! `POST /api/config/diff`.

use serde::{Deserialize, Serialize};

/// A saved revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revision {
    pub number: u64,
    /// RFC 3339.
    pub time: String,
    /// What made it: `apply -f FILE`, `api: add vips[web]`, ...
    pub source: String,
    /// Its changes, one line each.
    pub summary: Vec<String>,
}

impl Revision {
    /// `applied revision N` and its changes, one per line.
    pub fn applied_text(&self) -> String {
        let mut out = match self.summary.len() {
            0 => format!("applied revision {}: no changes\n", self.number),
            1 => format!("applied revision {} (1 change)\n", self.number),
            n => format!("applied revision {} ({n} changes)\n", self.number),
        };
        for line in &self.summary {
            out.push_str(&format!("  {line}\n"));
        }
        out
    }
}

/// `GET /api/config` (`revision` is the running number) and `GET
/// /api/revisions/{number}` (`revision` is its record, null when no longer
/// kept): a config, generic so this crate needs no config model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RevisionConfig<C> {
    pub revision: Option<RevisionOf>,
    pub config: C,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RevisionOf {
    Number(u64),
    Record(Revision),
}

impl RevisionOf {
    pub fn number(&self) -> u64 {
        match self {
            RevisionOf::Number(number) => *number,
            RevisionOf::Record(record) => record.number,
        }
    }
}

/// What applying a config would change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diff {
    pub changes: Vec<Change>,
}

/// One change: `op` is `+` added, `-` removed, `~` changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub op: String,
    pub path: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

impl Change {
    /// `~ vips[web].scheduler: maglev -> round-robin`, `+ vips[api] = ...`.
    pub fn line(&self) -> String {
        match (&self.before, &self.after) {
            (Some(before), Some(after)) => format!("{} {}: {before} -> {after}", self.op, self.path),
            (None, Some(value)) | (Some(value), None) => {
                format!("{} {} = {value}", self.op, self.path)
            }
            (None, None) => format!("{} {}", self.op, self.path),
        }
    }
}
