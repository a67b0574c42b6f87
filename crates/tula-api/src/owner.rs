//! One daemon owns a state dir and a pin dir: an exclusive flock on each
//! directory, held for the daemon's life and released by the kernel when it
//! exits, however it exits.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum OwnerError {
    #[error("{what} {dir} is owned by another tula daemon (pid {pid}); stop it first, or give this one its own --state-dir and pin_dir")]
    Held {
        what: &'static str,
        dir: PathBuf,
        pid: String,
    },
    #[error("locking {what} {dir}: {source}")]
    Io {
        what: &'static str,
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// An exclusive lock on a directory, released on drop (or when the process ends).
#[derive(Debug)]
pub struct DirLock {
    _dir: File,
}

/// Locks `dir` (which must exist) for this process, or names the process that holds it.
pub fn lock_dir(dir: &Path, what: &'static str) -> Result<DirLock, OwnerError> {
    let io = |source| OwnerError::Io {
        what,
        dir: dir.to_path_buf(),
        source,
    };
    let file = File::open(dir).map_err(io)?;
    // SAFETY: a valid descriptor owned by `file`.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(DirLock { _dir: file });
    }
    let error = std::io::Error::last_os_error();
    if error.kind() != std::io::ErrorKind::WouldBlock {
        return Err(io(error));
    }
    let pid = file
        .metadata()
        .ok()
        .and_then(|meta| holder(meta.dev(), meta.ino()))
        .unwrap_or_else(|| "unknown".to_string());
    Err(OwnerError::Held {
        what,
        dir: dir.to_path_buf(),
        pid,
    })
}

/// The pid holding a flock on the file (device, inode), from /proc/locks.
fn holder(dev: u64, ino: u64) -> Option<String> {
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    let id = format!("{:02x}:{:02x}:{ino}", libc::major(dev), libc::minor(dev));
    locks.lines().find_map(|line| {
        // "1: FLOCK  ADVISORY  WRITE 1234 00:2a:5678 0 EOF"
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.get(1) == Some(&"FLOCK") && fields.get(5) == Some(&id.as_str()))
            .then(|| fields[4].to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_names_the_holder_and_a_dropped_lock_frees_the_dir() {
        let dir = std::env::temp_dir().join(format!("tula-owner-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let first = lock_dir(&dir, "state dir").unwrap();
        let second = lock_dir(&dir, "state dir").unwrap_err();
        let message = second.to_string();
        assert!(
            message.contains(&format!(
                "owned by another tula daemon (pid {})",
                std::process::id()
            )),
            "{message}"
        );
        drop(first);
        lock_dir(&dir, "state dir").expect("free again once dropped");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
