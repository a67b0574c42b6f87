//! Atomic file writes: a file is replaced whole or not at all, even if the
//! process dies half way. The new contents go to a temporary file in the same
//! directory, which is fsynced and renamed over the old file; then the
//! directory is fsynced so the rename itself is durable.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::ControlError;

/// Prefix and suffix of temporary files; a leftover one (from a crash) is
/// overwritten by the next write of the same file and never read.
const TEMP_PREFIX: &str = ".";
const TEMP_SUFFIX: &str = ".tmp";

/// Replaces `path` with `contents` atomically. Files are made readable by
/// their owner only: configs and revisions hold the API token.
pub(crate) fn write_atomic(path: &Path, contents: &[u8]) -> Result<(), ControlError> {
    replace(path, contents, true)
}

/// Replaces `path` with `contents`, whole or not at all if the process dies
/// (the kernel keeps what was written), but without waiting for the disk: for
/// state that only means something beside the kernel's BPF maps, which a
/// machine crash loses as well. Readable by the owner only.
pub(crate) fn replace_unsynced(path: &Path, contents: &[u8]) -> Result<(), ControlError> {
    replace(path, contents, false)
}

/// Writes a temporary file beside `path` and renames it over `path`; with
/// `sync`, the file is synced before and the directory after the rename.
fn replace(path: &Path, contents: &[u8], sync: bool) -> Result<(), ControlError> {
    let temp = if sync {
        write_temp(path, contents, None)?
    } else {
        write_temp_file(path, contents)?.0
    };
    rename_temp(&temp, path)?;
    if sync {
        sync_dir_of(path)?;
    }
    Ok(())
}

/// The first half of [`write_atomic`]: `contents` in a temporary file beside
/// `path`, synced (with `modified` as its modification time if given), which
/// [`rename_temp`] then makes `path`. Returns the temporary file's path.
pub(crate) fn write_temp(
    path: &Path,
    contents: &[u8],
    modified: Option<SystemTime>,
) -> Result<PathBuf, ControlError> {
    let (temp, file) = write_temp_file(path, contents)?;
    if let Some(modified) = modified {
        file.set_modified(modified)
            .map_err(io(path, "setting the modification time of"))?;
    }
    file.sync_all().map_err(io(path, "syncing"))?;
    crash_point(path, "synced");
    Ok(temp)
}

fn write_temp_file(path: &Path, contents: &[u8]) -> Result<(PathBuf, File), ControlError> {
    let temp = temp_path(path);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temp)
        .map_err(io(path, "creating a temporary file for"))?;
    crash_point(path, "temp-created");
    let (head, tail) = contents.split_at(contents.len() / 2);
    file.write_all(head).map_err(io(path, "writing"))?;
    crash_point(path, "half-written");
    file.write_all(tail).map_err(io(path, "writing"))?;
    crash_point(path, "written");
    Ok((temp, file))
}

/// Renames the temporary file [`write_temp`] wrote over `path`.
pub(crate) fn rename_temp(temp: &Path, path: &Path) -> Result<(), ControlError> {
    std::fs::rename(temp, path).map_err(io(path, "renaming the temporary file over"))?;
    crash_point(path, "renamed");
    Ok(())
}

/// Syncs the directory of `path`, so that a rename there is durable.
pub(crate) fn sync_dir_of(path: &Path) -> Result<(), ControlError> {
    sync_dir(&parent(path)).map_err(io(path, "syncing the directory of"))?;
    crash_point(path, "dir-synced");
    Ok(())
}

fn io(path: &Path, what: &str) -> impl FnOnce(std::io::Error) -> ControlError {
    let what = format!("{what} {}", path.display());
    move |source| ControlError::Io { what, source }
}

/// Creates `dir` (and its parents), readable by its owner only.
pub(crate) fn create_dir(dir: &Path) -> Result<(), ControlError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| ControlError::Io {
            what: format!("creating directory {}", dir.display()),
            source,
        })
}

/// The file's contents, or `None` if it does not exist.
pub(crate) fn read_if_exists(path: &Path) -> Result<Option<String>, ControlError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ControlError::Io {
            what: format!("reading {}", path.display()),
            source,
        }),
    }
}

fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    parent(path).join(format!("{TEMP_PREFIX}{name}{TEMP_SUFFIX}"))
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Test builds abort the process here when `TULA_CRASH_AT` names this file and
/// step (`FILE_NAME/STEP`), to prove a crash at any step leaves old or new.
#[cfg(test)]
pub(crate) fn crash_point(path: &Path, step: &str) {
    if let Ok(at) = std::env::var("TULA_CRASH_AT") {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        if at == format!("{name}/{step}") {
            std::process::abort();
        }
    }
}

#[cfg(not(test))]
pub(crate) fn crash_point(_path: &Path, _step: &str) {}

/// Every step at which a test build can crash an append to the revision log.
#[cfg(test)]
pub(crate) const APPEND_CRASH_STEPS: [&str; 3] = ["half-written", "written", "synced"];

/// Every step at which a test build can crash [`write_atomic`].
#[cfg(test)]
pub(crate) const CRASH_STEPS: [&str; 6] = [
    "temp-created",
    "half-written",
    "written",
    "synced",
    "renamed",
    "dir-synced",
];

/// Runs the ignored test `test` of this test binary in a child process that
/// aborts at `crash_at` (`FILE_NAME/STEP`) with `TULA_CRASH_DIR` set to
/// `dir`, and checks that it died there.
#[cfg(test)]
pub(crate) fn crash_in_child(test: &str, dir: &Path, crash_at: &str) {
    use std::os::unix::process::ExitStatusExt;
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--ignored", "--test-threads=1"])
        .env("TULA_CRASH_DIR", dir)
        .env("TULA_CRASH_AT", crash_at)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert_eq!(
        status.signal(),
        Some(libc::SIGABRT),
        "{crash_at}: the child did not crash there ({status})"
    );
}
