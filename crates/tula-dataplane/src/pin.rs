//! Where a pinned balancer lives in bpffs, and making sure bpffs is there.
//!
//! Layout of a pin directory: one file per map (named as in maps.h), the
//! program as `balancer`, and one XDP link per attached interface as
//! `link_<ifname>`.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::{DataplaneError, Result};

/// Where the daemon pins the balancer unless told otherwise.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/tula";

const BPFFS_ROOT: &str = "/sys/fs/bpf";
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// The pinned program's file name.
pub const PROGRAM_PIN: &str = "balancer";
/// Prefix of the pinned XDP links' file names.
pub(crate) const LINK_PIN_PREFIX: &str = "link_";

pub(crate) fn link_pin(dir: &Path, ifname: &str) -> PathBuf {
    dir.join(format!("{LINK_PIN_PREFIX}{ifname}"))
}

/// True when `path` is on a bpffs (where pins can be made).
pub fn is_bpffs(path: &Path) -> std::io::Result<bool> {
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: c_path is a valid C string and stat a valid out-pointer.
    if unsafe { libc::statfs(c_path.as_ptr(), &mut stat) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(stat.f_type as i64 == BPF_FS_MAGIC)
}

fn pin_error(
    dir: &Path,
    what: impl Into<String>,
) -> impl FnOnce(std::io::Error) -> DataplaneError + '_ {
    let what = what.into();
    move |source| DataplaneError::Pin {
        dir: dir.to_path_buf(),
        what,
        source,
    }
}

/// Creates `dir` on bpffs, mounting bpffs at /sys/fs/bpf first if `dir` is
/// below it and nothing is mounted there yet. Refuses the private /sys of
/// `ip netns exec`, where pins vanish (and the balancer detaches) when the
/// command exits.
pub fn prepare_pin_dir(dir: &Path) -> Result<()> {
    if let Some(netns) = tula_net::under_ip_netns_exec().filter(|_| dir.starts_with(BPFFS_ROOT)) {
        return Err(DataplaneError::Pin {
            dir: dir.to_path_buf(),
            what: format!("running under `ip netns exec {netns}`"),
            source: std::io::Error::other(format!(
                "it gives this command a private /sys and bpffs, whose pins vanish when it exits; \
                 enter only the network namespace instead: `nsenter --net=/run/netns/{netns} tula ...`"
            )),
        });
    }
    if dir.starts_with(BPFFS_ROOT)
        && !is_bpffs(Path::new(BPFFS_ROOT)).map_err(pin_error(dir, "checking /sys/fs/bpf"))?
    {
        let source = CString::new("bpf").unwrap();
        let target = CString::new(BPFFS_ROOT).unwrap();
        // SAFETY: valid C strings; no data argument.
        let rc = unsafe {
            libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                source.as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        if rc != 0 {
            return Err(pin_error(dir, "mounting bpffs on /sys/fs/bpf")(
                std::io::Error::last_os_error(),
            ));
        }
        tracing::info!("mounted bpffs on {BPFFS_ROOT}");
    }
    std::fs::create_dir_all(dir).map_err(pin_error(dir, "creating it"))?;
    if !is_bpffs(dir).map_err(pin_error(dir, "checking its file system"))? {
        return Err(pin_error(dir, "checking its file system")(
            std::io::Error::other("not on bpffs"),
        ));
    }
    Ok(())
}

/// True if `dir` already holds a pinned program.
pub(crate) fn holds_balancer(dir: &Path) -> bool {
    dir.join(PROGRAM_PIN).exists()
}

/// Names of the interfaces with a pinned link in `dir`.
pub(crate) fn pinned_links(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(pin_error(dir, "listing it"))? {
        let entry = entry.map_err(pin_error(dir, "listing it"))?;
        if let Some(ifname) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.strip_prefix(LINK_PIN_PREFIX))
        {
            names.push(ifname.to_string());
        }
    }
    names.sort();
    Ok(names)
}

/// Removes a pin file; a missing one is fine.
pub(crate) fn remove(dir: &Path, name: &str) -> Result<()> {
    match std::fs::remove_file(dir.join(name)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(pin_error(dir, format!("removing {name}"))(e))
        }
        _ => Ok(()),
    }
}
