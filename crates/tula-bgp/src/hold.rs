//! The holder: a small process (`tula bgp hold`) that keeps the TUN device
//! open for a grace time after the daemon is gone, so a plain stop or a quick
//! restart does not withdraw VIPs that the pinned data plane still forwards,
//! while a daemon that stays dead does not leave BIRD announcing forever.
//!
//! It inherits the device as fd 3 and the read end of a pipe as fd 4; the
//! daemon holds the write end, so the pipe's end of file is the daemon's
//! death, however it died. It runs in its own process group, so a kill of the
//! daemon's group spares it.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::BgpError;

/// The holder's pid file, in the daemon's state directory.
pub const PID_FILE: &str = "bgp-hold.pid";

/// The descriptors the holder finds the device and the pipe at.
const TUN_FD: i32 = 3;
const PIPE_FD: i32 = 4;

/// A running holder; dropping it leaves it running (it watches the daemon).
#[derive(Debug)]
pub struct Holder {
    pid: i32,
    /// Its end of file tells the holder the daemon is gone.
    _alive: OwnedFd,
}

/// Starts `tula bgp hold` holding `tun` for `grace` after this process ends,
/// or until `pin_dir` (the data plane) is removed. Its pid goes to `pid_file`.
pub fn spawn(tula_bin: &Path, tun: &OwnedFd, grace: Duration, pin_dir: &Path, pid_file: &Path) -> Result<Holder, BgpError> {
    use std::os::unix::process::CommandExt;
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors, owned below.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(BgpError::io("creating the holder's pipe", std::io::Error::last_os_error()));
    }
    // SAFETY: both were just created.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let (tun_raw, read_raw) = (tun.as_raw_fd(), read.as_raw_fd());
    let mut cmd = std::process::Command::new(tula_bin);
    cmd.args(["bgp", "hold", "--grace"])
        .arg(format!("{}ms", grace.as_millis()))
        .arg("--pin-dir")
        .arg(pin_dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .process_group(0);
    // SAFETY: only async-signal-safe calls between fork and exec; dup2 clears CLOEXEC on the copies.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(tun_raw, TUN_FD) < 0 || libc::dup2(read_raw, PIPE_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|e| BgpError::io(format!("starting {} bgp hold", tula_bin.display()), e))?;
    drop(read);
    let pid = child.id() as i32;
    // Reaped by whoever outlives it; the daemon never waits for it.
    std::mem::forget(child);
    std::fs::write(pid_file, pid.to_string()).map_err(|e| BgpError::io(format!("writing {}", pid_file.display()), e))?;
    Ok(Holder { pid, _alive: write })
}

impl Holder {
    /// Ends the holder now (before an unload: the routes are already gone).
    pub fn stop(self) {
        // SAFETY: a process this daemon started.
        unsafe {
            libc::kill(self.pid, libc::SIGTERM);
        }
    }
}

/// Ends the holder a previous daemon left (named in `pid_file`), if it runs.
pub fn stop_previous(pid_file: &Path) {
    let Some(pid) = std::fs::read_to_string(pid_file).ok().and_then(|s| s.trim().parse::<i32>().ok()) else {
        return;
    };
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let is_holder = cmdline.split(|b| *b == 0).any(|arg| arg == b"hold")
        && cmdline.split(|b| *b == 0).any(|arg| arg == b"bgp");
    if is_holder {
        // SAFETY: checked above that pid is a holder.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
}

/// The holder's side (`tula bgp hold`): waits for the daemon to end, then
/// for `grace` or until `pin_dir` is gone, and returns (closing the device).
pub fn run(grace: Duration, pin_dir: PathBuf) -> Result<(), BgpError> {
    // SAFETY: inherited from the daemon at these numbers (see spawn).
    let (_tun, pipe) = unsafe { (OwnedFd::from_raw_fd(TUN_FD), OwnedFd::from_raw_fd(PIPE_FD)) };
    loop {
        let mut poll = libc::pollfd { fd: pipe.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut poll, 1, -1) };
        if n < 0 {
            let error = std::io::Error::last_os_error();
            if error.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(BgpError::io("waiting for the daemon", error));
        }
        let mut byte = [0u8; 1];
        // SAFETY: reads into a local buffer.
        let read = unsafe { libc::read(pipe.as_raw_fd(), byte.as_mut_ptr().cast(), 1) };
        if read <= 0 {
            break;
        }
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && pin_dir.exists() {
        std::thread::sleep(Duration::from_millis(100).min(deadline.saturating_duration_since(Instant::now())));
    }
    Ok(())
}
