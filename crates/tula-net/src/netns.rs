//! Named network namespaces, compatible with `ip netns` (bind mounts under
//! `/run/netns`), and ways to run code or processes inside them.

use crate::NetError;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const NETNS_DIR: &str = "/run/netns";

/// A named network namespace. One made by [`Netns::create`] is deleted when
/// dropped, unless [`Netns::keep`] is called.
#[derive(Debug)]
pub struct Netns {
    name: String,
    owned: bool,
}

impl Netns {
    /// Makes a new namespace, like `ip netns add NAME`.
    pub fn create(name: &str) -> Result<Netns, NetError> {
        let path = netns_path(name);
        if path.exists() {
            return Err(NetError::NetnsExists { name: name.into() });
        }
        std::fs::create_dir_all(NETNS_DIR)
            .map_err(|e| NetError::io(format!("creating {NETNS_DIR}"), e))?;
        make_shared_mount_point();
        File::create(&path).map_err(|e| NetError::io(format!("creating {}", path.display()), e))?;
        // unshare() moves only this thread, so do it on a thread of its own.
        let result = std::thread::scope(|s| {
            s.spawn(|| -> Result<(), NetError> {
                unshare(CloneFlags::CLONE_NEWNET)
                    .map_err(|e| NetError::io(format!("unshare for namespace {name}"), e.into()))?;
                mount(
                    Some("/proc/thread-self/ns/net"),
                    &path,
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(|e| NetError::io(format!("bind-mounting namespace {name}"), e.into()))
            })
            .join()
            .expect("namespace creation thread panicked")
        });
        if let Err(e) = result {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        let ns = Netns {
            name: name.into(),
            owned: true,
        };
        // A fresh namespace has `lo` down; nothing works without it.
        ns.run(|| crate::set_up("lo"))??;
        Ok(ns)
    }

    /// An existing namespace; it is not deleted on drop.
    pub fn open(name: &str) -> Result<Netns, NetError> {
        if !netns_path(name).exists() {
            return Err(NetError::NoSuchNetns { name: name.into() });
        }
        Ok(Netns {
            name: name.into(),
            owned: false,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path(&self) -> PathBuf {
        netns_path(&self.name)
    }

    fn file(&self) -> Result<File, NetError> {
        File::open(self.path())
            .map_err(|e| NetError::io(format!("opening namespace {}", self.name), e))
    }

    /// Runs `f` on a new thread that lives inside this namespace.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, NetError> {
        let file = self.file()?;
        std::thread::scope(|s| {
            s.spawn(move || {
                setns(&file, CloneFlags::CLONE_NEWNET).map_err(|e| {
                    NetError::io(format!("entering namespace {}", self.name), e.into())
                })?;
                Ok(f())
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// Moves the calling thread (only) into this namespace.
    pub fn enter(&self) -> Result<(), NetError> {
        let file = self.file()?;
        setns(&file, CloneFlags::CLONE_NEWNET)
            .map_err(|e| NetError::io(format!("entering namespace {}", self.name), e.into()))
    }

    /// A command whose process runs inside this namespace.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new(program);
        let path = self.path();
        let name = self.name.clone();
        // SAFETY: the closure only makes async-signal-safe system calls.
        unsafe {
            cmd.pre_exec(move || {
                let file = File::open(&path)?;
                if libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                    let e = std::io::Error::last_os_error();
                    return Err(std::io::Error::new(
                        e.kind(),
                        format!("entering namespace {name}: {e}"),
                    ));
                }
                Ok(())
            });
        }
        cmd
    }

    /// Leaves the namespace in place when this handle is dropped.
    pub fn keep(mut self) {
        self.owned = false;
    }

    /// Removes the namespace, like `ip netns del NAME`.
    pub fn delete(mut self) -> Result<(), NetError> {
        self.owned = false;
        delete_path(&self.name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if self.owned {
            let _ = delete_path(&self.name);
        }
    }
}

/// Names of the namespaces under `/run/netns`.
pub fn netns_list() -> Result<Vec<String>, NetError> {
    let dir = match std::fs::read_dir(NETNS_DIR) {
        Ok(dir) => dir,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(NetError::io(format!("listing {NETNS_DIR}"), e)),
    };
    let mut names: Vec<String> = dir
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    Ok(names)
}

fn netns_path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

fn delete_path(name: &str) -> Result<(), NetError> {
    let path = netns_path(name);
    if !path.exists() {
        return Err(NetError::NoSuchNetns { name: name.into() });
    }
    let _ = umount2(&path, MntFlags::MNT_DETACH);
    std::fs::remove_file(&path).map_err(|e| NetError::io(format!("removing namespace {name}"), e))
}

/// As `ip netns` does: make /run/netns a shared mount so namespace mounts
/// propagate to other mount namespaces. Failure only affects propagation.
fn make_shared_mount_point() {
    let shared = |flags| mount(None::<&str>, NETNS_DIR, None::<&str>, flags, None::<&str>);
    if shared(MsFlags::MS_SHARED | MsFlags::MS_REC).is_err() {
        let _ = mount(
            Some(NETNS_DIR),
            NETNS_DIR,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        );
        let _ = shared(MsFlags::MS_SHARED | MsFlags::MS_REC);
    }
}

/// The namespace NAME when this process runs under `ip netns exec NAME`.
/// That gives its command a private /sys (sysfs mounted with the namespace's
/// name as source), which hides the host's bpffs: pins made there would
/// vanish, and detach the program, when the command exits.
pub fn under_ip_netns_exec() -> Option<String> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    // The topmost /sys mount is the one in effect.
    let source = mounts.lines().rev().find_map(|line| {
        let (before, after) = line.split_once(" - ")?;
        let mount_point = before.split_whitespace().nth(4)?;
        let mut fs = after.split_whitespace();
        (mount_point == "/sys" && fs.next()? == "sysfs").then(|| fs.next().map(str::to_string))?
    });
    let source = source?;
    netns_list().ok()?.contains(&source).then_some(source)
}
