//! The saved config file and its numbered revisions.
//!
//! Layout: the config file at `ControlOptions::config_path`; under
//! `state_dir/revisions/`, revision N is `NNNNNN.toml` (the config as applied)
//! and `NNNNNN.json` (its [`RevisionInfo`]). The JSON is written last and is
//! what makes a revision exist: a `.toml` without it is what a crash left
//! behind, is never listed, and is overwritten when that number is next used.
//!
//! A commit writes the config file and the revision's config (at the same
//! time), then its JSON: a crash before the JSON leaves a file newer than the
//! last revision, which the next start applies (and records) as the file the
//! operator declared.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use tula_config::Config;

use crate::files::{create_dir, read_if_exists, write_atomic};
use crate::{ControlError, ControlOptions, RevisionInfo};

pub(crate) struct Store {
    config_path: PathBuf,
    revisions_dir: PathBuf,
    /// The newest revision's number (0 = none), read once at open.
    latest: AtomicU64,
}

impl Store {
    /// Opens the store, creating the state directories if needed.
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
            latest: AtomicU64::new(0),
        };
        let latest = store.numbers()?.last().copied().unwrap_or(0);
        store.latest.store(latest, Ordering::SeqCst);
        Ok(store)
    }

    /// The numbers of the revisions on disk, oldest first.
    fn numbers(&self) -> Result<Vec<u64>, ControlError> {
        let io = |source| ControlError::Io {
            what: format!("listing {}", self.revisions_dir.display()),
            source,
        };
        let mut numbers = Vec::new();
        for entry in std::fs::read_dir(&self.revisions_dir).map_err(io)? {
            let name = entry.map_err(io)?.file_name();
            if let Some(number) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".json"))
                .and_then(|n| n.parse::<u64>().ok())
            {
                numbers.push(number);
            }
        }
        numbers.sort_unstable();
        Ok(numbers)
    }

    /// Removes the oldest revisions beyond the newest `keep`, never
    /// `protect` (the running one). Returns the numbers removed.
    pub(crate) fn prune(&self, keep: usize, protect: u64) -> Result<Vec<u64>, ControlError> {
        let numbers = self.numbers()?;
        let excess = numbers.len().saturating_sub(keep.max(1));
        let mut pruned = Vec::new();
        for &number in numbers.iter().take(excess) {
            if number == protect {
                continue;
            }
            // The JSON goes first: without it the revision no longer exists.
            for path in [self.meta_path(number), self.config_revision_path(number)] {
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(source) => {
                        return Err(ControlError::Io {
                            what: format!("pruning {}", path.display()),
                            source,
                        })
                    }
                }
            }
            pruned.push(number);
        }
        Ok(pruned)
    }

    pub(crate) fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The config file's text, or `None` if there is none yet.
    pub(crate) fn config_text(&self) -> Result<Option<String>, ControlError> {
        read_if_exists(&self.config_path)
    }

    /// The config file, decoded (not validated).
    pub(crate) fn saved(&self) -> Result<Option<Config>, ControlError> {
        match self.config_text()? {
            None => Ok(None),
            Some(text) => Config::from_toml_str(&text)
                .map(Some)
                .map_err(ControlError::Invalid),
        }
    }

    /// Every revision, oldest first.
    pub(crate) fn history(&self) -> Result<Vec<RevisionInfo>, ControlError> {
        let mut revisions = Vec::new();
        for number in self.numbers()? {
            match self.info(number) {
                Ok(info) => revisions.push(info),
                // One unreadable revision must not hide the others.
                Err(e) => {
                    tracing::warn!(revision = number, error = %e, "skipping an unreadable revision")
                }
            }
        }
        Ok(revisions)
    }

    /// The newest revision, if any.
    pub(crate) fn latest(&self) -> Result<Option<RevisionInfo>, ControlError> {
        match self.latest.load(Ordering::SeqCst) {
            0 => Ok(None),
            number => self.info(number).map(Some),
        }
    }

    pub(crate) fn info(&self, number: u64) -> Result<RevisionInfo, ControlError> {
        let path = self.meta_path(number);
        let text = read_if_exists(&path)?.ok_or(ControlError::NoSuchRevision(number))?;
        serde_json::from_str(&text).map_err(|e| ControlError::Io {
            what: format!("decoding {}", path.display()),
            source: e.into(),
        })
    }

    /// Revision `number`'s config text.
    pub(crate) fn revision_text(&self, number: u64) -> Result<String, ControlError> {
        if read_if_exists(&self.meta_path(number))?.is_none() {
            return Err(ControlError::NoSuchRevision(number));
        }
        read_if_exists(&self.config_revision_path(number))?
            .ok_or(ControlError::NoSuchRevision(number))
    }

    /// Revision `number`'s config.
    pub(crate) fn revision(&self, number: u64) -> Result<Config, ControlError> {
        Config::from_toml_str(&self.revision_text(number)?).map_err(ControlError::Invalid)
    }

    /// Records `text` as the next revision; with `write_config_file`, also
    /// makes it the config file (before the revision exists, see the module docs).
    pub(crate) fn commit(
        &self,
        text: &str,
        source: &str,
        summary: Vec<String>,
        write_config_file: bool,
    ) -> Result<RevisionInfo, ControlError> {
        let info = RevisionInfo {
            number: self.next_number(),
            time: SystemTime::now(),
            source: source.to_string(),
            summary,
        };
        self.commit_as(&info, text, write_config_file)?;
        Ok(info)
    }

    /// The number the next [`Store::commit`] records.
    pub(crate) fn next_number(&self) -> u64 {
        self.latest.load(Ordering::SeqCst) + 1
    }

    /// Records `text` as revision `info.number` with its info as given (a
    /// revision a cluster agreed on), which becomes the newest.
    pub(crate) fn commit_as(
        &self,
        info: &RevisionInfo,
        text: &str,
        write_config_file: bool,
    ) -> Result<(), ControlError> {
        let number = info.number;
        let revision_path = self.config_revision_path(number);
        if write_config_file {
            // Both before the JSON, in either order: their syncs overlap instead of adding up.
            std::thread::scope(|scope| {
                let revision = scope.spawn(|| write_atomic(&revision_path, text.as_bytes()));
                let file = write_atomic(&self.config_path, text.as_bytes());
                let revision = revision.join().expect("writing a file does not panic");
                file.and(revision)
            })?;
        } else {
            write_atomic(&revision_path, text.as_bytes())?;
        }
        let meta = serde_json::to_vec_pretty(info).expect("a revision's info always encodes");
        write_atomic(&self.meta_path(number), &meta)?;
        self.latest.store(number, Ordering::SeqCst);
        Ok(())
    }

    /// Rewrites the config file (e.g. from the last revision when it was deleted).
    pub(crate) fn write_config_file(&self, text: &str) -> Result<(), ControlError> {
        write_atomic(&self.config_path, text.as_bytes())
    }

    fn config_revision_path(&self, number: u64) -> PathBuf {
        self.revisions_dir.join(format!("{number:06}.toml"))
    }

    fn meta_path(&self, number: u64) -> PathBuf {
        self.revisions_dir.join(format!("{number:06}.json"))
    }
}

#[cfg(test)]
mod tests {
    //! Crash safety: a child process (this test binary, re-run on one ignored
    //! test) commits a revision and aborts at a chosen step of a chosen file;
    //! whatever the step, the store then holds the old or the new revision.

    use super::*;
    use crate::files::CRASH_STEPS;

    const OLD: &str = "interfaces = [\"eth0\"]\nring_size = 251\n";
    const NEW: &str = "interfaces = [\"eth0\", \"eth1\"]\nring_size = 509\n";

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

    /// Run by `a_crash_at_any_step_leaves_the_old_or_the_new_revision` in a child process.
    #[test]
    #[ignore = "run as a child process by the crash-safety test"]
    fn commit_in_child() {
        let Ok(dir) = std::env::var("TULA_CRASH_DIR") else {
            return;
        };
        let store = Store::open(&options(Path::new(&dir))).unwrap();
        store
            .commit(NEW, "child", vec!["~ ring_size".into()], true)
            .unwrap();
    }

    #[test]
    fn a_crash_at_any_step_leaves_the_old_or_the_new_revision() {
        use std::os::unix::process::ExitStatusExt;

        let files = ["tula.toml", "000002.toml", "000002.json"];
        let mut outcomes = Vec::new();
        for file in files {
            for step in CRASH_STEPS {
                let tmp = TempDir::new(&format!("crash-{}-{step}", file.replace('.', "-")));
                let store = Store::open(&options(&tmp.0)).unwrap();
                store.commit(OLD, "test", vec![], true).unwrap();

                let status = std::process::Command::new(std::env::current_exe().unwrap())
                    .args([
                        "--exact",
                        "store::tests::commit_in_child",
                        "--ignored",
                        "--nocapture",
                        "--test-threads=1",
                    ])
                    .env("TULA_CRASH_DIR", &tmp.0)
                    .env("TULA_CRASH_AT", format!("{file}/{step}"))
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .status()
                    .unwrap();
                assert_eq!(
                    status.signal(),
                    Some(libc::SIGABRT),
                    "{file}/{step}: the child did not crash there ({status})"
                );

                // Reopen as a restarted daemon would.
                let store = Store::open(&options(&tmp.0)).unwrap();
                let file_text = store.config_text().unwrap().unwrap();
                assert!(
                    file_text == OLD || file_text == NEW,
                    "{file}/{step}: config file is neither old nor new: {file_text:?}"
                );
                let history = store.history().unwrap();
                let numbers: Vec<u64> = history.iter().map(|r| r.number).collect();
                assert!(
                    numbers == [1] || numbers == [1, 2],
                    "{file}/{step}: revisions {numbers:?}"
                );
                assert_eq!(store.revision_text(1).unwrap(), OLD, "{file}/{step}");
                if numbers == [1, 2] {
                    assert_eq!(store.revision_text(2).unwrap(), NEW, "{file}/{step}");
                    assert_eq!(
                        file_text, NEW,
                        "{file}/{step}: revision 2 exists but the file is old"
                    );
                }
                // The store keeps working: the next commit is whole.
                let next = store.commit(NEW, "after crash", vec![], true).unwrap();
                assert_eq!(next.number, numbers.len() as u64 + 1);
                assert_eq!(store.config_text().unwrap().unwrap(), NEW);
                assert_eq!(store.revision_text(next.number).unwrap(), NEW);
                outcomes.push((file, step, file_text == NEW, numbers.len()));
            }
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
            "crash after the last sync lost the revision?"
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
        let first = store
            .commit(OLD, "apply -f a.toml", vec!["+ vips[web]".into()], true)
            .unwrap();
        let second = store.commit(NEW, "api", vec![], true).unwrap();
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
}
