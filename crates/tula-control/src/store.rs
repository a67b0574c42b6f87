//! The saved config file and its numbered revisions.
//!
//! Revisions live in one append-only log, `state_dir/revisions/revisions.log`:
//! one JSON line per revision with its [`RevisionInfo`] and its config. A
//! line holds either the whole config (a base) or what changed since the line
//! before it (a delta: the `[[vip]]` tables added or changed, the VIPs
//! removed, the settings outside the VIPs if they changed, and the order if it
//! is not the old one with the new VIPs last). A one-backend change costs one
//! VIP's table and one fsync, not a copy of the whole config. The line is what
//! makes a revision exist: a torn last line (a crash while appending) is cut
//! off at the next open.
//!
//! Retention forgets revisions at once, and rewrites the log (atomically)
//! once it holds [`COMPACT_SLACK`] lines more than the revisions kept: the
//! oldest kept revision becomes a base and the lines after it are copied.
//! Lines of revisions forgotten since are read again at the next open, so
//! the daemon prunes once more at start.
//!
//! A commit appends and syncs the revision's line; the config file is not
//! written then but marked due, and the daemon's file writer replaces it
//! (atomically, synced) once changes settle ([`Store::write_due_file`]), off
//! the writer's path: at 1,000 VIPs the file is 3.5 MB, and the next commit's
//! sync waited for the disk to take it. The line records when the file became
//! due, and the file writer dates the file when it took its config (both
//! under the index lock), so a file no newer than the newest line which
//! differs from its revision lost its write (a crash before it), and start
//! writes it again from the revision ([`Store::file_predates_latest`]).
//!
//! Revisions saved by earlier versions (`NNNNNN.toml` and `NNNNNN.json` each)
//! are read where they are and pruned like the others.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use tula_config::Config;

use crate::files::{
    crash_point, create_dir, read_if_exists, rename_temp, sync_dir_of, write_atomic, write_temp,
};
use crate::{ControlError, ControlOptions, RevisionInfo};

/// Lines the log may hold beyond the revisions kept before it is compacted:
/// a compaction writes one whole config, so this many changes share its cost.
pub(crate) const COMPACT_SLACK: usize = 50;

const LOG_NAME: &str = "revisions.log";

/// A config as text: the settings outside the VIPs, then each VIP's
/// `[[vip]]` table, in the config's order.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ConfigText {
    pub globals: Arc<str>,
    /// (name, table)
    pub vips: Vec<(String, Arc<str>)>,
}

impl ConfigText {
    /// The whole text, as the config file holds it.
    pub(crate) fn join(&self) -> String {
        let tables: usize = self.vips.iter().map(|(_, t)| t.len() + 1).sum();
        let mut text = String::with_capacity(self.globals.len() + tables);
        text.push_str(&self.globals);
        for (_, table) in &self.vips {
            if !text.is_empty() && !text.ends_with("\n\n") {
                text.push('\n');
            }
            text.push_str(table);
        }
        text
    }
}

/// One line of the log.
#[derive(Serialize, Deserialize)]
struct Record {
    info: RevisionInfo,
    /// When the config file became due to hold this revision (absent: it
    /// was not to be written, e.g. a file edited by hand recorded as it is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    file_written: Option<SystemTime>,
    config: Stored,
}

/// A revision's config as a line holds it.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Stored {
    /// The whole text as it was read (a file edited by hand, recorded at start).
    Text(String),
    /// The whole config, table by table.
    Base {
        globals: String,
        vips: Vec<(String, String)>,
    },
    /// What changed since the line before.
    Delta {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        globals: Option<String>,
        /// The table of each VIP added or changed; `None` for one removed.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        vips: Vec<(String, Option<String>)>,
        /// Every name in order, when that is not the old order less the
        /// removed VIPs with the added ones last.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        order: Option<Vec<String>>,
    },
}

/// A revision's config rebuilt from the log.
#[derive(Clone)]
enum Rebuilt {
    Text(String),
    Tables(ConfigText),
}

impl Rebuilt {
    fn into_text(self) -> String {
        match self {
            Rebuilt::Text(text) => text,
            Rebuilt::Tables(tables) => tables.join(),
        }
    }
}

impl Stored {
    fn is_base(&self) -> bool {
        !matches!(self, Stored::Delta { .. })
    }

    fn base(text: &ConfigText) -> Stored {
        Stored::Base {
            globals: text.globals.to_string(),
            vips: text
                .vips
                .iter()
                .map(|(name, table)| (name.clone(), table.to_string()))
                .collect(),
        }
    }

    /// `new` as a change of `old`, or as a base when names repeat (never in
    /// a validated config, but a delta could not say which one changed).
    fn between(old: &ConfigText, new: &ConfigText) -> Stored {
        let new_names: HashSet<&str> = new.vips.iter().map(|(n, _)| n.as_str()).collect();
        let old_tables: HashMap<&str, &Arc<str>> =
            old.vips.iter().map(|(n, t)| (n.as_str(), t)).collect();
        if new_names.len() != new.vips.len() || old_tables.len() != old.vips.len() {
            return Stored::base(new);
        }
        let mut vips: Vec<(String, Option<String>)> = new
            .vips
            .iter()
            .filter(|(name, table)| {
                !old_tables
                    .get(name.as_str())
                    .is_some_and(|old| Arc::ptr_eq(old, table) || old == &table)
            })
            .map(|(name, table)| (name.clone(), Some(table.to_string())))
            .collect();
        vips.extend(
            old.vips
                .iter()
                .filter(|(name, _)| !new_names.contains(name.as_str()))
                .map(|(name, _)| (name.clone(), None)),
        );
        let expected = old
            .vips
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| new_names.contains(n))
            .chain(
                new.vips
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .filter(|n| !old_tables.contains_key(n)),
            );
        let order = (!expected.eq(new.vips.iter().map(|(n, _)| n.as_str())))
            .then(|| new.vips.iter().map(|(n, _)| n.clone()).collect());
        Stored::Delta {
            globals: (old.globals != new.globals).then(|| new.globals.to_string()),
            vips,
            order,
        }
    }

    /// The config this line holds, given the one of the line before.
    fn rebuild(self, before: Option<Rebuilt>) -> Option<Rebuilt> {
        match self {
            Stored::Text(text) => Some(Rebuilt::Text(text)),
            Stored::Base { globals, vips } => Some(Rebuilt::Tables(ConfigText {
                globals: globals.into(),
                vips: vips.into_iter().map(|(n, t)| (n, t.into())).collect(),
            })),
            Stored::Delta {
                globals,
                vips,
                order,
            } => {
                let Some(Rebuilt::Tables(before)) = before else {
                    return None;
                };
                let mut list: Vec<(String, Option<Arc<str>>)> =
                    before.vips.into_iter().map(|(n, t)| (n, Some(t))).collect();
                let mut at: HashMap<String, usize> = list
                    .iter()
                    .enumerate()
                    .map(|(i, (n, _))| (n.clone(), i))
                    .collect();
                for (name, table) in vips {
                    match at.get(&name) {
                        Some(&i) => list[i].1 = table.map(Arc::from),
                        None => {
                            if let Some(table) = table {
                                at.insert(name.clone(), list.len());
                                list.push((name, Some(table.into())));
                            }
                        }
                    }
                }
                let mut kept: Vec<(String, Arc<str>)> = list
                    .into_iter()
                    .filter_map(|(n, t)| t.map(|t| (n, t)))
                    .collect();
                if let Some(order) = order {
                    let mut by_name: HashMap<String, Arc<str>> = kept.into_iter().collect();
                    kept = order
                        .into_iter()
                        .filter_map(|n| by_name.remove(&n).map(|t| (n, t)))
                        .collect();
                }
                Some(Rebuilt::Tables(ConfigText {
                    globals: globals.map(Arc::from).unwrap_or(before.globals),
                    vips: kept,
                }))
            }
        }
    }
}

/// Where a line is in the log.
#[derive(Debug, Clone, Copy)]
struct Line {
    number: u64,
    offset: u64,
    len: u64,
    base: bool,
}

/// What the store knows of its revisions (behind one lock: readers list
/// them while the writer commits).
#[derive(Default)]
struct Index {
    /// Every revision that exists, by number.
    infos: BTreeMap<u64, RevisionInfo>,
    /// Those saved as `NNNNNN.toml` and `NNNNNN.json` by earlier versions.
    legacy: BTreeSet<u64>,
    /// The log's lines, in order (some may be of pruned revisions).
    lines: Vec<Line>,
    /// The newest line's config table by table, what the next delta is
    /// made against; `None` until known (the next line is then a base).
    tip: Option<ConfigText>,
    /// When the config file became due to hold the newest revision.
    file_written: Option<SystemTime>,
    /// The newest revision's config while the config file does not hold it yet.
    file_due: Option<FileDue>,
    /// The file writer is to write what is due and stop.
    file_writer_stopping: bool,
}

/// A config file write that waits for changes to settle.
struct FileDue {
    revision: u64,
    text: ConfigText,
    /// When the oldest revision not yet in the file was committed.
    first: Instant,
    /// When the newest one was.
    last: Instant,
}

/// The config file written to its temporary file, not yet renamed.
struct PreparedFile {
    revision: u64,
    temp: PathBuf,
}

impl Index {
    fn log_end(&self) -> u64 {
        self.lines.last().map_or(0, |l| l.offset + l.len)
    }
}

pub(crate) struct Store {
    config_path: PathBuf,
    revisions_dir: PathBuf,
    index: Mutex<Index>,
    /// Signalled when a config file write becomes due, or the writer is to stop.
    file_due_changed: Condvar,
    /// Held while the config file's temporary file is written and renamed.
    file_writing: Mutex<()>,
}

impl Store {
    /// Opens the store, creating the state directories if needed, reading
    /// the log (and cutting off a torn last line).
    pub(crate) fn open(options: &ControlOptions) -> Result<Store, ControlError> {
        let revisions_dir = options.state_dir.join("revisions");
        create_dir(&revisions_dir)?;
        if let Some(dir) = options
            .config_path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            create_dir(dir)?;
        }
        let store = Store {
            config_path: options.config_path.clone(),
            revisions_dir,
            index: Mutex::default(),
            file_due_changed: Condvar::new(),
            file_writing: Mutex::new(()),
        };
        let mut index = Index::default();
        store.read_legacy(&mut index)?;
        store.read_log(&mut index)?;
        *store.lock() = index;
        Ok(store)
    }

    fn lock(&self) -> MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn log_path(&self) -> PathBuf {
        self.revisions_dir.join(LOG_NAME)
    }

    fn io(&self, what: &str, path: &Path) -> impl FnOnce(std::io::Error) -> ControlError {
        let what = format!("{what} {}", path.display());
        move |source| ControlError::Io { what, source }
    }

    /// The revisions of earlier versions, one pair of files each.
    fn read_legacy(&self, index: &mut Index) -> Result<(), ControlError> {
        let listing = self.io("listing", &self.revisions_dir);
        let entries = std::fs::read_dir(&self.revisions_dir).map_err(listing)?;
        for entry in entries {
            let name = entry
                .map_err(self.io("listing", &self.revisions_dir))?
                .file_name();
            let Some(number) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".json"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            match self.legacy_info(number) {
                Ok(info) => {
                    index.infos.insert(number, info);
                    index.legacy.insert(number);
                }
                // One unreadable revision must not hide the others.
                Err(e) => {
                    tracing::warn!(revision = number, error = %e, "skipping an unreadable revision")
                }
            }
        }
        Ok(())
    }

    fn legacy_info(&self, number: u64) -> Result<RevisionInfo, ControlError> {
        let path = self.legacy_meta_path(number);
        let text = read_if_exists(&path)?.ok_or(ControlError::NoSuchRevision(number))?;
        serde_json::from_str(&text).map_err(|e| ControlError::Io {
            what: format!("decoding {}", path.display()),
            source: e.into(),
        })
    }

    /// Indexes the log's lines; a torn last line is cut off.
    fn read_log(&self, index: &mut Index) -> Result<(), ControlError> {
        let path = self.log_path();
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(self.io("reading", &path)(e)),
        };
        let mut offset = 0;
        while offset < bytes.len() {
            let rest = &bytes[offset..];
            let Some(end) = rest.iter().position(|&b| b == b'\n') else {
                break;
            };
            let Ok(record) = serde_json::from_slice::<Record>(&rest[..end]) else {
                break;
            };
            let number = record.info.number;
            index.lines.push(Line {
                number,
                offset: offset as u64,
                len: end as u64 + 1,
                base: record.config.is_base(),
            });
            index.file_written = record.file_written;
            index.infos.insert(number, record.info);
            offset += end + 1;
        }
        if offset < bytes.len() {
            tracing::warn!(path = %path.display(), at = offset, "cutting off a torn revision (a crash while it was saved)");
            let file = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(self.io("opening", &path))?;
            file.set_len(offset as u64)
                .and_then(|()| file.sync_all())
                .map_err(self.io("truncating", &path))?;
        }
        Ok(())
    }

    /// Forgets the oldest revisions beyond the newest `keep`, and beyond
    /// those that fit in `max_bytes` (see [`Store::over_budget`]), never
    /// `protect` (the running one), and compacts the log when enough lines
    /// are of forgotten revisions. Returns the numbers pruned.
    pub(crate) fn prune(
        &self,
        keep: usize,
        max_bytes: Option<u64>,
        protect: u64,
    ) -> Result<Vec<u64>, ControlError> {
        let mut index = self.lock();
        let numbers: Vec<u64> = index.infos.keys().copied().collect();
        let excess = numbers.len().saturating_sub(keep.max(1));
        let excess = match max_bytes {
            Some(max_bytes) => excess.max(self.over_budget(&index, &numbers, max_bytes)),
            None => excess,
        };
        let mut pruned = Vec::new();
        for &number in numbers.iter().take(excess) {
            if number == protect {
                continue;
            }
            if index.legacy.remove(&number) {
                // The JSON goes first: without it the revision no longer exists.
                for path in [
                    self.legacy_meta_path(number),
                    self.legacy_config_path(number),
                ] {
                    match std::fs::remove_file(&path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(self.io("pruning", &path)(e)),
                    }
                }
            }
            index.infos.remove(&number);
            pruned.push(number);
        }
        let live = index.infos.len() - index.legacy.len();
        // Or when the log is twice its budget: a compaction then writes at most half of what was appended since.
        let over = max_bytes.is_some_and(|max| index.log_end() > max.saturating_mul(2));
        if index.lines.len() > live + COMPACT_SLACK || (over && !pruned.is_empty()) {
            self.compact(&mut index)?;
        }
        Ok(pruned)
    }

    /// How many of the oldest `numbers` (every revision, oldest first) must go
    /// for the others to take at most `max_bytes` once the log is compacted:
    /// the oldest kept one as a whole config, each later one as its line.
    /// The newest one always stays.
    fn over_budget(&self, index: &Index, numbers: &[u64], max_bytes: u64) -> usize {
        let line_bytes: HashMap<u64, u64> = index.lines.iter().map(|l| (l.number, l.len)).collect();
        // A whole config: the newest one's text, or the last base line when it is not known.
        let whole = index
            .tip
            .as_ref()
            .map(|tip| tip.globals.len() + tip.vips.iter().map(|(_, t)| t.len() + 1).sum::<usize>())
            .map(|bytes| bytes as u64)
            .or_else(|| index.lines.iter().rev().find(|l| l.base).map(|l| l.len))
            .unwrap_or(0);
        let mut after = 0u64;
        for (i, number) in numbers.iter().enumerate().rev() {
            if i + 1 < numbers.len() && after.saturating_add(whole) > max_bytes {
                return i + 1;
            }
            let own = match index.legacy.contains(number) {
                true => whole,
                false => line_bytes.get(number).copied().unwrap_or(whole),
            };
            after = after.saturating_add(own);
        }
        0
    }

    /// Rewrites the log with the kept revisions' lines only: the first one
    /// (and any whose line before was forgotten) as a base, the others copied.
    fn compact(&self, index: &mut Index) -> Result<(), ControlError> {
        let path = self.log_path();
        let old = std::fs::read(&path).map_err(self.io("reading", &path))?;
        let mut text = Vec::new();
        let mut lines = Vec::new();
        let mut previous_kept = false;
        for (i, line) in index.lines.clone().iter().enumerate() {
            if !index.infos.contains_key(&line.number) {
                previous_kept = false;
                continue;
            }
            let bytes = &old[line.offset as usize..(line.offset + line.len) as usize];
            let offset = text.len() as u64;
            if line.base || (previous_kept && i > 0) {
                text.extend_from_slice(bytes);
            } else {
                let record: Record =
                    serde_json::from_slice(bytes).map_err(|e| self.corrupt(line.number, e))?;
                let config = match self.rebuild(index, line.number, &old)? {
                    Rebuilt::Text(t) => Stored::Text(t),
                    Rebuilt::Tables(tables) => Stored::base(&tables),
                };
                let record = Record { config, ..record };
                text.extend(serde_json::to_vec(&record).expect("a revision always encodes"));
                text.push(b'\n');
            }
            lines.push(Line {
                number: line.number,
                offset,
                len: text.len() as u64 - offset,
                base: line.base || !previous_kept,
            });
            previous_kept = true;
        }
        write_atomic(&path, &text)?;
        tracing::info!(
            lines = lines.len(),
            bytes = text.len(),
            "compacted the revision log"
        );
        index.lines = lines;
        Ok(())
    }

    fn corrupt(&self, number: u64, error: impl std::fmt::Display) -> ControlError {
        ControlError::Io {
            what: format!(
                "reading revision {number} from {}",
                self.log_path().display()
            ),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, error.to_string()),
        }
    }

    /// Revision `number`'s config from the log, whose bytes are `log`
    /// (read from the file when empty): its nearest base, then each line after.
    fn rebuild(&self, index: &Index, number: u64, log: &[u8]) -> Result<Rebuilt, ControlError> {
        let last = index
            .lines
            .iter()
            .rposition(|l| l.number == number)
            .ok_or(ControlError::NoSuchRevision(number))?;
        let first = index.lines[..=last]
            .iter()
            .rposition(|l| l.base)
            .ok_or_else(|| self.corrupt(number, "no base line before it"))?;
        let start = index.lines[first].offset;
        let end = index.lines[last].offset + index.lines[last].len;
        let read;
        let bytes = if log.is_empty() {
            let path = self.log_path();
            let file = File::open(&path).map_err(self.io("opening", &path))?;
            let mut buffer = vec![0; (end - start) as usize];
            file.read_exact_at(&mut buffer, start)
                .map_err(self.io("reading", &path))?;
            read = buffer;
            &read[..]
        } else {
            &log[start as usize..end as usize]
        };
        let mut config = None;
        for line in &index.lines[first..=last] {
            let from = (line.offset - start) as usize;
            let record: Record = serde_json::from_slice(&bytes[from..from + line.len as usize])
                .map_err(|e| self.corrupt(line.number, e))?;
            config = record.config.rebuild(config);
            if config.is_none() {
                return Err(self.corrupt(line.number, "a change with no base before it"));
            }
        }
        config.ok_or_else(|| self.corrupt(number, "empty"))
    }

    pub(crate) fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The config file's text, or `None` if there is none yet. While a write
    /// of it is due, the text it is about to hold.
    pub(crate) fn config_text(&self) -> Result<Option<String>, ControlError> {
        if let Some(due) = &self.lock().file_due {
            return Ok(Some(due.text.join()));
        }
        read_if_exists(&self.config_path)
    }

    /// The config file (or what it is about to hold), decoded (not validated).
    pub(crate) fn saved(&self) -> Result<Option<Config>, ControlError> {
        match self.config_text()? {
            None => Ok(None),
            Some(text) => Config::from_toml_str(&text)
                .map(Some)
                .map_err(ControlError::Invalid),
        }
    }

    /// Whether the config file was last written no later than the newest
    /// revision made its write due: if it then differs from that revision,
    /// its own write was lost (a crash after the revision was synced), and it
    /// was not edited since.
    pub(crate) fn file_predates_latest(&self) -> bool {
        let Some(written) = self.lock().file_written else {
            return false;
        };
        std::fs::metadata(&self.config_path)
            .and_then(|m| m.modified())
            .is_ok_and(|modified| modified <= written)
    }

    /// Every revision, oldest first.
    pub(crate) fn history(&self) -> Result<Vec<RevisionInfo>, ControlError> {
        Ok(self.lock().infos.values().cloned().collect())
    }

    /// The newest revision, if any.
    pub(crate) fn latest(&self) -> Result<Option<RevisionInfo>, ControlError> {
        Ok(self.lock().infos.values().next_back().cloned())
    }

    /// Revision `number`'s config text.
    pub(crate) fn revision_text(&self, number: u64) -> Result<String, ControlError> {
        let mut index = self.lock();
        if !index.infos.contains_key(&number) {
            return Err(ControlError::NoSuchRevision(number));
        }
        if index.legacy.contains(&number) {
            return read_if_exists(&self.legacy_config_path(number))?
                .ok_or(ControlError::NoSuchRevision(number));
        }
        let rebuilt = self.rebuild(&index, number, &[])?;
        // The newest line's tables are what the next change is a delta of.
        if let (Rebuilt::Tables(tables), None) = (&rebuilt, &index.tip) {
            if index.lines.last().is_some_and(|l| l.number == number) {
                index.tip = Some(tables.clone());
            }
        }
        Ok(rebuilt.into_text())
    }

    /// Revision `number`'s config.
    pub(crate) fn revision(&self, number: u64) -> Result<Config, ControlError> {
        Config::from_toml_str(&self.revision_text(number)?).map_err(ControlError::Invalid)
    }

    /// Records `text` (as read, e.g. a file edited by hand) as the next
    /// revision, without writing the config file.
    pub(crate) fn commit(
        &self,
        text: &str,
        source: &str,
        summary: Vec<String>,
    ) -> Result<RevisionInfo, ControlError> {
        let info = RevisionInfo {
            number: self.next_number(),
            time: SystemTime::now(),
            source: source.to_string(),
            summary,
        };
        let mut index = self.lock();
        self.append(
            &mut index,
            Record {
                info: info.clone(),
                file_written: None,
                config: Stored::Text(text.to_string()),
            },
        )?;
        index.tip = None;
        // The file holds this text already.
        index.file_due = None;
        Ok(info)
    }

    /// The number the next [`Store::commit`] records.
    pub(crate) fn next_number(&self) -> u64 {
        self.lock().infos.keys().next_back().map_or(1, |n| n + 1)
    }

    /// Records `text` as revision `info.number` with its info as given (a
    /// revision a cluster agreed on), which becomes the newest; with
    /// `write_config_file`, the config file is due to hold it (written by
    /// [`Store::write_due_file`], see the module docs).
    pub(crate) fn commit_as(
        &self,
        info: &RevisionInfo,
        text: &ConfigText,
        write_config_file: bool,
    ) -> Result<(), ControlError> {
        let mut index = self.lock();
        // Taken under the lock the file writer renames under: a file no newer
        // than this that differs lost its write.
        let file_written = write_config_file.then(SystemTime::now);
        let config = match &index.tip {
            Some(tip) => Stored::between(tip, text),
            None => Stored::base(text),
        };
        self.append(
            &mut index,
            Record {
                info: info.clone(),
                file_written,
                config,
            },
        )?;
        index.tip = Some(text.clone());
        if write_config_file {
            let now = Instant::now();
            let first = index.file_due.as_ref().map_or(now, |due| due.first);
            index.file_due = Some(FileDue {
                revision: info.number,
                text: text.clone(),
                first,
                last: now,
            });
            self.file_due_changed.notify_all();
        }
        Ok(())
    }

    /// Waits until a config file write is due and changes have settled: no
    /// commit for `settle`, or `max_delay` since the oldest one not yet in
    /// the file; and not before `not_before`. False when the file writer is
    /// to stop instead.
    pub(crate) fn wait_for_due_file(
        &self,
        settle: Duration,
        max_delay: Duration,
        not_before: Option<Instant>,
    ) -> bool {
        let mut index = self.lock();
        loop {
            if index.file_writer_stopping {
                return false;
            }
            let wait = match &index.file_due {
                None => None,
                Some(due) => {
                    let at = (due.last + settle).min(due.first + max_delay);
                    let at = not_before.map_or(at, |not_before| at.max(not_before));
                    match at.checked_duration_since(Instant::now()) {
                        None => return true,
                        Some(wait) => Some(wait),
                    }
                }
            };
            index = match wait {
                None => self
                    .file_due_changed
                    .wait(index)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(wait) => {
                    self.file_due_changed
                        .wait_timeout(index, wait)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
    }

    /// Makes [`Store::wait_for_due_file`] return false from now on.
    pub(crate) fn stop_file_writer(&self) {
        self.lock().file_writer_stopping = true;
        self.file_due_changed.notify_all();
    }

    /// Writes the config file the newest revision is due to have, if any,
    /// and syncs it.
    pub(crate) fn write_due_file(&self) -> Result<(), ControlError> {
        let _writing = self
            .file_writing
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(prepared) = self.prepare_due_file()? {
            self.publish_due_file(prepared)?;
        }
        Ok(())
    }

    /// [`Store::write_due_file`] until nothing is due, e.g. before stopping.
    pub(crate) fn flush_due_file(&self) -> Result<(), ControlError> {
        while self.lock().file_due.is_some() {
            self.write_due_file()?;
        }
        Ok(())
    }

    /// The due config in a synced temporary file, or `None` when nothing is
    /// due. Its modification time is when it was taken, under the lock a
    /// commit takes its timestamp under: earlier than any later revision's,
    /// so that one knows the file lost its write if a crash comes first.
    fn prepare_due_file(&self) -> Result<Option<PreparedFile>, ControlError> {
        let (revision, text, taken) = {
            let index = self.lock();
            let Some(due) = &index.file_due else {
                return Ok(None);
            };
            (due.revision, due.text.clone(), SystemTime::now())
        };
        let temp = write_temp(&self.config_path, text.join().as_bytes(), Some(taken))?;
        Ok(Some(PreparedFile { revision, temp }))
    }

    /// Renames `prepared` over the config file; nothing is due any more
    /// unless a newer revision was committed meanwhile. Not under the index
    /// lock: a rename can wait milliseconds for the journal, and commits wait
    /// for that lock.
    fn publish_due_file(&self, prepared: PreparedFile) -> Result<(), ControlError> {
        rename_temp(&prepared.temp, &self.config_path)?;
        let mut index = self.lock();
        if index.file_due.as_ref().map(|due| due.revision) == Some(prepared.revision) {
            index.file_due = None;
        }
        drop(index);
        sync_dir_of(&self.config_path)
    }

    /// Appends `record` as the log's next line and syncs it; then it exists.
    fn append(&self, index: &mut Index, record: Record) -> Result<(), ControlError> {
        let path = self.log_path();
        let mut line = serde_json::to_vec(&record).expect("a revision always encodes");
        line.push(b'\n');
        let created = !path.exists();
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(self.io("opening", &path))?;
        // What a failed append left after the last whole line goes.
        let offset = index.log_end();
        file.set_len(offset)
            .and_then(|()| std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(offset)))
            .map_err(self.io("preparing", &path))?;
        let (head, tail) = line.split_at(line.len() / 2);
        file.write_all(head).map_err(self.io("writing", &path))?;
        crash_point(&path, "half-written");
        file.write_all(tail).map_err(self.io("writing", &path))?;
        crash_point(&path, "written");
        file.sync_data().map_err(self.io("syncing", &path))?;
        if created {
            File::open(&self.revisions_dir)
                .and_then(|d| d.sync_all())
                .map_err(self.io("syncing", &self.revisions_dir))?;
        }
        crash_point(&path, "synced");
        let number = record.info.number;
        index.lines.push(Line {
            number,
            offset,
            len: line.len() as u64,
            base: record.config.is_base(),
        });
        index.file_written = record.file_written;
        index.infos.insert(number, record.info);
        Ok(())
    }

    /// Rewrites the config file (e.g. from the last revision when it was deleted).
    pub(crate) fn write_config_file(&self, text: &str) -> Result<(), ControlError> {
        let _writing = self
            .file_writing
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        write_atomic(&self.config_path, text.as_bytes())
    }

    fn legacy_config_path(&self, number: u64) -> PathBuf {
        self.revisions_dir.join(format!("{number:06}.toml"))
    }

    fn legacy_meta_path(&self, number: u64) -> PathBuf {
        self.revisions_dir.join(format!("{number:06}.json"))
    }
}

#[cfg(test)]
mod tests {
    //! Crash safety: a child process (this test binary, re-run on one ignored
    //! test) commits a revision and aborts at a chosen step of a chosen file;
    //! whatever the step, the store then holds the old or the new revision.

    use super::*;
    use crate::files::{crash_in_child, APPEND_CRASH_STEPS, CRASH_STEPS};

    const GLOBALS: &str = "interfaces = [\"eth0\"]\nring_size = 251\n";

    /// A VIP's table: ten backends of weight `weight`.
    fn vip(name: &str, weight: u32) -> String {
        let backends: Vec<String> = (2..12)
            .map(|b| format!("{{ address = \"198.18.0.{b}\", weight = {weight} }}"))
            .collect();
        format!(
            "[[vip]]\nname = \"{name}\"\naddress = \"203.0.113.1\"\nport = 80\nbackends = [{}]\n",
            backends.join(", ")
        )
    }

    fn text(globals: &str, vips: &[(&str, u32)]) -> ConfigText {
        ConfigText {
            globals: globals.into(),
            vips: vips
                .iter()
                .map(|&(name, weight)| (name.to_string(), vip(name, weight).into()))
                .collect(),
        }
    }

    fn old() -> ConfigText {
        text(GLOBALS, &[("web", 1), ("api", 1)])
    }

    fn new() -> ConfigText {
        text(GLOBALS, &[("web", 3), ("api", 1)])
    }

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let dir =
                std::env::temp_dir().join(format!("tula-control-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn options(dir: &Path) -> ControlOptions {
        ControlOptions {
            config_path: dir.join("etc/tula.toml"),
            state_dir: dir.join("state"),
        }
    }

    /// Commits `text` and writes the config file, as the file writer does after it.
    /// Twenty VIPs, of which change `n` re-weighted one (VIP `n % 20`, weight `n + 2`).
    fn twenty_vips_at(n: u32) -> ConfigText {
        let names: Vec<String> = (0..20).map(|v| format!("vip{v}")).collect();
        let vips: Vec<(&str, u32)> = names.iter().map(|name| (name.as_str(), 1)).collect();
        let mut text = text(GLOBALS, &vips);
        let (name, table) = &mut text.vips[n as usize % 20];
        *table = vip(name, n + 2).into();
        text
    }

    fn commit(store: &Store, text: &ConfigText, source: &str) -> RevisionInfo {
        let info = RevisionInfo {
            number: store.next_number(),
            time: SystemTime::now(),
            source: source.to_string(),
            summary: vec![],
        };
        store.commit_as(&info, text, true).unwrap();
        store.write_due_file().unwrap();
        info
    }

    fn log_len(dir: &Path) -> u64 {
        std::fs::metadata(dir.join("state/revisions").join(LOG_NAME))
            .unwrap()
            .len()
    }

    /// Run by `a_crash_at_any_step_leaves_the_old_or_the_new_revision` in a child process.
    #[test]
    #[ignore = "run as a child process by the crash-safety test"]
    fn commit_in_child() {
        let Ok(dir) = std::env::var("TULA_CRASH_DIR") else {
            return;
        };
        let store = Store::open(&options(Path::new(&dir))).unwrap();
        // As a restarted daemon does: the running revision is read first.
        store.revision_text(1).unwrap();
        commit(&store, &new(), "child");
    }

    #[test]
    fn a_crash_at_any_step_leaves_the_old_or_the_new_revision() {
        let (old_text, new_text) = (old().join(), new().join());
        let mut outcomes = Vec::new();
        let steps = APPEND_CRASH_STEPS
            .iter()
            .map(|step| (LOG_NAME, step))
            .chain(CRASH_STEPS.iter().map(|step| ("tula.toml", step)));
        for (file, step) in steps {
            let tmp = TempDir::new(&format!("crash-{}-{step}", file.replace('.', "-")));
            let store = Store::open(&options(&tmp.0)).unwrap();
            commit(&store, &old(), "test");

            crash_in_child(
                "store::tests::commit_in_child",
                &tmp.0,
                &format!("{file}/{step}"),
            );

            // Reopen as a restarted daemon would.
            let store = Store::open(&options(&tmp.0)).unwrap();
            let file_text = store.config_text().unwrap().unwrap();
            assert!(
                file_text == old_text || file_text == new_text,
                "{file}/{step}: config file is neither old nor new: {file_text:?}"
            );
            let history = store.history().unwrap();
            let numbers: Vec<u64> = history.iter().map(|r| r.number).collect();
            assert!(
                numbers == [1] || numbers == [1, 2],
                "{file}/{step}: revisions {numbers:?}"
            );
            assert_eq!(store.revision_text(1).unwrap(), old_text, "{file}/{step}");
            if numbers == [1, 2] {
                assert_eq!(store.revision_text(2).unwrap(), new_text, "{file}/{step}");
                assert!(
                    file_text == new_text || store.file_predates_latest(),
                    "{file}/{step}: revision 2 exists, the file is old and would not be written again"
                );
            } else {
                assert_eq!(
                    file_text, old_text,
                    "{file}/{step}: a file without its revision"
                );
            }
            // The store keeps working: the next commit is whole.
            let next = commit(&store, &new(), "after crash");
            assert_eq!(next.number, numbers.len() as u64 + 1);
            assert_eq!(store.config_text().unwrap().unwrap(), new_text);
            assert_eq!(store.revision_text(next.number).unwrap(), new_text);
            let store = Store::open(&options(&tmp.0)).unwrap();
            assert_eq!(
                store.revision_text(next.number).unwrap(),
                new_text,
                "{file}/{step}"
            );
            outcomes.push((file, step, file_text == new_text, numbers.len()));
        }
        // Both outcomes happen: early crashes keep the old file, late ones the new.
        assert!(
            outcomes.iter().any(|o| !o.2) && outcomes.iter().any(|o| o.2),
            "{outcomes:?}"
        );
        assert_eq!(
            outcomes.first().map(|o| o.2),
            Some(false),
            "crash before the first rename kept the new file?"
        );
        assert_eq!(
            outcomes.last().map(|o| (o.2, o.3)),
            Some((true, 2)),
            "crash after the sync lost the revision?"
        );
    }

    #[test]
    fn revisions_are_numbered_and_read_back() {
        let tmp = TempDir::new("numbered");
        let store = Store::open(&options(&tmp.0)).unwrap();
        assert!(store.latest().unwrap().is_none());
        assert!(matches!(
            store.revision_text(1),
            Err(ControlError::NoSuchRevision(1))
        ));
        let first = RevisionInfo {
            number: 1,
            time: SystemTime::now(),
            source: "apply -f a.toml".into(),
            summary: vec!["+ vips[web]".into()],
        };
        store.commit_as(&first, &old(), true).unwrap();
        let second = commit(
            &store,
            &text("interfaces = [\"eth0\", \"eth1\"]\nring_size = 509\n", &[]),
            "api",
        );
        assert_eq!((first.number, second.number), (1, 2));
        let history = store.history().unwrap();
        assert_eq!(history.len(), 2);
        assert_eq!(history[0].source, "apply -f a.toml");
        assert_eq!(history[0].summary, vec!["+ vips[web]".to_string()]);
        assert_eq!(store.revision(2).unwrap().ring_size, 509);
        let mode = std::fs::metadata(store.config_path())
            .unwrap()
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600,
            "the config holds the API token"
        );
    }

    #[test]
    fn a_commit_leaves_the_config_file_to_the_file_writer() {
        let tmp = TempDir::new("file-due");
        let store = Store::open(&options(&tmp.0)).unwrap();
        let path = store.config_path().to_path_buf();
        let file = || std::fs::read_to_string(&path).ok();
        let info = |number| RevisionInfo {
            number,
            time: SystemTime::now(),
            source: "test".into(),
            summary: vec![],
        };
        store.commit_as(&info(1), &old(), true).unwrap();
        assert_eq!(file(), None, "the commit wrote the config file");
        assert_eq!(store.config_text().unwrap(), Some(old().join()), "what it is about to hold");
        store.write_due_file().unwrap();
        assert_eq!(file(), Some(old().join()));

        // Revision 3 is committed while the file writer writes revision 2's file.
        store.commit_as(&info(2), &new(), true).unwrap();
        let prepared = store.prepare_due_file().unwrap().unwrap();
        let third = text(GLOBALS, &[("web", 5), ("api", 1)]);
        store.commit_as(&info(3), &third, true).unwrap();
        store.publish_due_file(prepared).unwrap();
        assert_eq!(file(), Some(new().join()));
        assert_eq!(store.config_text().unwrap(), Some(third.join()), "3 is still due");
        // A crash now: the file is older than revision 3, which a restart sees.
        drop(store);
        let store = Store::open(&options(&tmp.0)).unwrap();
        assert!(store.file_predates_latest(), "the file would pass for an edit by hand");
        store.flush_due_file().unwrap();
        assert_eq!(file(), Some(new().join()), "nothing is due after a restart");
        // Once written, it is no longer older than the newest revision.
        store.revision_text(3).unwrap();
        store.commit_as(&info(4), &third, true).unwrap();
        store.flush_due_file().unwrap();
        assert_eq!(file(), Some(third.join()));
        assert!(!store.file_predates_latest());
    }

    #[test]
    fn each_change_is_stored_as_what_changed_and_read_back_after_a_restart() {
        let tmp = TempDir::new("deltas");
        let store = Store::open(&options(&tmp.0)).unwrap();
        let other = "interfaces = [\"eth1\"]\nring_size = 509\n";
        let texts = [
            text(GLOBALS, &[("a", 1), ("b", 1), ("c", 1)]),
            text(GLOBALS, &[("a", 1), ("b", 2), ("c", 1)]),
            text(GLOBALS, &[("a", 1), ("b", 2), ("c", 1), ("d", 1)]),
            text(GLOBALS, &[("b", 2), ("c", 1), ("d", 1)]),
            text(GLOBALS, &[("d", 1), ("b", 2), ("c", 1)]),
            text(other, &[("d", 1), ("b", 2), ("c", 1)]),
            text(other, &[("a", 5), ("d", 1), ("c", 3)]),
            text(other, &[]),
        ];
        let mut sizes = Vec::new();
        for (n, text) in texts.iter().enumerate() {
            commit(&store, text, &format!("change {n}"));
            sizes.push(log_len(&tmp.0));
        }
        // A one-VIP change is one VIP's table (and the revision's record), not the config.
        let one_vip = sizes[1] - sizes[0];
        assert!(sizes[0] as usize > texts[0].join().len());
        assert!(
            (one_vip as usize) < texts[1].vips[1].1.len() + 300,
            "a one-VIP change took {one_vip} bytes"
        );
        // A file edited by hand is recorded as it is; the change after it whole.
        let by_hand = format!("# edited by hand\n{}", texts[0].join());
        store.commit(&by_hand, "start", vec![]).unwrap();
        commit(&store, &texts[1], "after");
        let mut expected: Vec<String> = texts.iter().map(ConfigText::join).collect();
        expected.push(by_hand);
        expected.push(texts[1].join());
        for store in [store, Store::open(&options(&tmp.0)).unwrap()] {
            for (n, text) in expected.iter().enumerate() {
                assert_eq!(
                    &store.revision_text(n as u64 + 1).unwrap(),
                    text,
                    "revision {}",
                    n + 1
                );
            }
        }
        // Reopened, the next change is made against the newest revision as read.
        let store = Store::open(&options(&tmp.0)).unwrap();
        store.revision_text(expected.len() as u64).unwrap();
        let before = log_len(&tmp.0);
        let last = commit(&store, &texts[2], "after restart");
        assert!(log_len(&tmp.0) - before < texts[2].vips[3].1.len() as u64 + 300);
        let store = Store::open(&options(&tmp.0)).unwrap();
        assert_eq!(store.revision_text(last.number).unwrap(), texts[2].join());
    }

    #[test]
    fn a_torn_last_line_is_cut_off_and_the_log_goes_on() {
        let tmp = TempDir::new("torn");
        let store = Store::open(&options(&tmp.0)).unwrap();
        commit(&store, &old(), "first");
        commit(&store, &new(), "second");
        let log = tmp.0.join("state/revisions").join(LOG_NAME);
        let whole = std::fs::read(&log).unwrap();
        let mut torn = whole.clone();
        torn.extend_from_slice(b"{\"info\":{\"number\":3,");
        std::fs::write(&log, &torn).unwrap();
        let store = Store::open(&options(&tmp.0)).unwrap();
        assert_eq!(store.history().unwrap().len(), 2);
        assert_eq!(
            std::fs::read(&log).unwrap(),
            whole,
            "the torn line is cut off"
        );
        store.revision_text(2).unwrap();
        let third = commit(&store, &old(), "third");
        assert_eq!(third.number, 3);
        let store = Store::open(&options(&tmp.0)).unwrap();
        assert_eq!(store.revision_text(3).unwrap(), old().join());
        assert_eq!(store.revision_text(2).unwrap(), new().join());
    }

    #[test]
    fn retention_compacts_the_log_and_keeps_every_kept_revision() {
        let tmp = TempDir::new("compact");
        let store = Store::open(&options(&tmp.0)).unwrap();
        let keep = 3;
        let mut longest = 0;
        for n in 0..(keep + COMPACT_SLACK as u32 * 2) {
            let info = commit(&store, &twenty_vips_at(n), "change");
            store.prune(keep as usize, None, info.number).unwrap();
            longest = longest.max(store.lock().lines.len());
        }
        assert!(
            longest <= keep as usize + COMPACT_SLACK + 1,
            "{longest} lines"
        );
        let kept: Vec<u64> = store.history().unwrap().iter().map(|r| r.number).collect();
        let total = u64::from(keep) + COMPACT_SLACK as u64 * 2;
        assert_eq!(kept, ((total - 2)..=total).collect::<Vec<u64>>());
        assert!(matches!(
            store.revision_text(1),
            Err(ControlError::NoSuchRevision(1))
        ));
        for store in [store, Store::open(&options(&tmp.0)).unwrap()] {
            for &number in &kept {
                assert_eq!(
                    store.revision_text(number).unwrap(),
                    twenty_vips_at(number as u32 - 1).join(),
                    "revision {number}"
                );
            }
        }
    }

    #[test]
    fn a_size_budget_keeps_the_newest_revisions_that_fit_and_the_running_one() {
        let tmp = TempDir::new("budget");
        let store = Store::open(&options(&tmp.0)).unwrap();
        let whole = twenty_vips_at(0).join().len() as u64;
        let budget = whole * 2;
        let changes = COMPACT_SLACK as u32 * 2;
        for n in 0..changes {
            let info = commit(&store, &twenty_vips_at(n), "change");
            store.prune(1000, Some(budget), info.number).unwrap();
            let index = store.lock();
            let kept: Vec<u64> = index.infos.keys().copied().collect();
            let lines: u64 = index
                .lines
                .iter()
                .filter(|l| kept[1..].contains(&l.number))
                .map(|l| l.len)
                .sum();
            assert!(whole + lines <= budget, "{n}: {} kept, {lines} bytes of lines", kept.len());
            assert!(index.log_end() <= 2 * budget + 1000, "{n}: a log of {} bytes", index.log_end());
        }
        // A change is one VIP's table: many revisions fit in twice the config.
        let kept: Vec<u64> = store.history().unwrap().iter().map(|r| r.number).collect();
        assert!(kept.len() > 5, "{kept:?}");
        assert_eq!(kept.last(), Some(&u64::from(changes)));
        for store in [store, Store::open(&options(&tmp.0)).unwrap()] {
            for &number in &kept {
                assert_eq!(
                    store.revision_text(number).unwrap(),
                    twenty_vips_at(number as u32 - 1).join(),
                    "revision {number}"
                );
            }
        }
        // Nothing fits a budget of one byte, but the newest and the running one stay.
        let store = Store::open(&options(&tmp.0)).unwrap();
        let running = kept[1];
        store.prune(1000, Some(1), running).unwrap();
        let left: Vec<u64> = store.history().unwrap().iter().map(|r| r.number).collect();
        assert_eq!(left, [running, u64::from(changes)]);
        assert_eq!(store.revision_text(running).unwrap(), twenty_vips_at(running as u32 - 1).join());
    }

    /// The config of change `n` of [`compacting_in_child`]'s log.
    fn change(n: u32) -> ConfigText {
        text(GLOBALS, &[("web", n + 1), ("api", 1)])
    }

    /// Run by `a_crash_while_compacting_keeps_every_kept_revision` in a child process.
    #[test]
    #[ignore = "run as a child process by the crash-safety test"]
    fn compacting_in_child() {
        let Ok(dir) = std::env::var("TULA_CRASH_DIR") else {
            return;
        };
        let store = Store::open(&options(Path::new(&dir))).unwrap();
        let latest = store.latest().unwrap().unwrap().number;
        store.prune(2, None, latest).unwrap();
    }

    #[test]
    fn a_crash_while_compacting_keeps_every_kept_revision() {
        let changes = COMPACT_SLACK as u32 + 3;
        for step in CRASH_STEPS {
            let tmp = TempDir::new(&format!("compact-crash-{step}"));
            let store = Store::open(&options(&tmp.0)).unwrap();
            for n in 0..changes {
                commit(&store, &change(n), "change");
            }
            crash_in_child(
                "store::tests::compacting_in_child",
                &tmp.0,
                &format!("{LOG_NAME}/{step}"),
            );
            let store = Store::open(&options(&tmp.0)).unwrap();
            let lines = store.lock().lines.len();
            assert!(
                lines == changes as usize || lines == 2,
                "{step}: {lines} lines"
            );
            for number in [changes - 1, changes] {
                assert_eq!(
                    store.revision_text(u64::from(number)).unwrap(),
                    change(number - 1).join(),
                    "{step}: revision {number}"
                );
            }
        }
    }

    #[test]
    fn revisions_of_earlier_versions_are_read_and_pruned() {
        let tmp = TempDir::new("legacy");
        let dir = tmp.0.join("state/revisions");
        std::fs::create_dir_all(&dir).unwrap();
        let info = RevisionInfo {
            number: 1,
            time: SystemTime::now(),
            source: "old version".into(),
            summary: vec![],
        };
        std::fs::write(dir.join("000001.toml"), old().join()).unwrap();
        std::fs::write(dir.join("000001.json"), serde_json::to_vec(&info).unwrap()).unwrap();
        let store = Store::open(&options(&tmp.0)).unwrap();
        assert_eq!(store.latest().unwrap(), Some(info));
        assert_eq!(store.revision_text(1).unwrap(), old().join());
        commit(&store, &new(), "new version");
        assert_eq!(store.revision_text(2).unwrap(), new().join());
        assert_eq!(store.prune(1, None, 2).unwrap(), [1]);
        assert!(!dir.join("000001.json").exists() && !dir.join("000001.toml").exists());
        let store = Store::open(&options(&tmp.0)).unwrap();
        assert_eq!(store.history().unwrap().len(), 1);
        assert_eq!(store.revision_text(2).unwrap(), new().join());
    }
}
