//! The TUN device the announced routes point out of. It is not persistent:
//! the kernel deletes it, and every route through it, when the last file
//! descriptor attached to it closes. Multi-queue, so a new daemon can attach
//! to the device its predecessor's holder still keeps, and nothing flaps.

use std::os::fd::{FromRawFd, OwnedFd};

use crate::BgpError;

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TUN: libc::c_short = 0x0001;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_MULTI_QUEUE: libc::c_short = 0x0100;

#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Creates TUN device `name`, or attaches one more queue to it if it exists.
pub(crate) fn open(name: &str) -> Result<OwnedFd, BgpError> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains(['/', ' ', '\0']) {
        return Err(BgpError::Invalid(format!(
            "TUN device name {name:?} must be 1-{} characters without '/' or spaces",
            libc::IFNAMSIZ - 1
        )));
    }
    // SAFETY: a plain open of a character device; the fd is owned below.
    let fd = unsafe { libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(BgpError::io("opening /dev/net/tun", std::io::Error::last_os_error()));
    }
    // SAFETY: fd was just opened and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut request = IfReq { name: [0; libc::IFNAMSIZ], flags: IFF_TUN | IFF_NO_PI | IFF_MULTI_QUEUE, _pad: [0; 22] };
    request.name[..name.len()].copy_from_slice(name.as_bytes());
    use std::os::fd::AsRawFd;
    // SAFETY: TUNSETIFF reads and writes a struct ifreq, which IfReq lays out.
    if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF as _, &mut request) } < 0 {
        return Err(BgpError::io(format!("creating TUN device {name}"), std::io::Error::last_os_error()));
    }
    Ok(fd)
}
