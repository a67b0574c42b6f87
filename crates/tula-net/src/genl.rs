//! The few generic-netlink requests tula makes (no crate in the tree speaks
//! generic netlink): the netdev family's XDP features of an interface.

use std::io;

const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
const NETDEV_CMD_DEV_GET: u8 = 1;
const NETDEV_A_DEV_IFINDEX: u16 = 1;
const NETDEV_A_DEV_XDP_FEATURES: u16 = 3;
const NLMSG_ERROR: u16 = 2;
const NLMSG_HEADER: usize = 16;
const GENL_HEADER: usize = 4;

/// The `xdp-features` bit set of interface `index`; `None` when the kernel
/// has no netdev family (before 6.3) or cannot say.
pub(crate) fn netdev_xdp_features(index: u32) -> Option<u64> {
    let socket = Socket::open().ok()?;
    let family = socket
        .request(
            GENL_ID_CTRL,
            CTRL_CMD_GETFAMILY,
            &attr(CTRL_ATTR_FAMILY_NAME, b"netdev\0"),
        )
        .ok()?;
    let family = find_attr(&family, CTRL_ATTR_FAMILY_ID)?;
    let family = u16::from_ne_bytes(family.get(..2)?.try_into().ok()?);
    let answer = socket
        .request(
            family,
            NETDEV_CMD_DEV_GET,
            &attr(NETDEV_A_DEV_IFINDEX, &index.to_ne_bytes()),
        )
        .ok()?;
    let features = find_attr(&answer, NETDEV_A_DEV_XDP_FEATURES)?;
    Some(u64::from_ne_bytes(features.get(..8)?.try_into().ok()?))
}

/// One netlink attribute, padded to 4 bytes.
fn attr(kind: u16, value: &[u8]) -> Vec<u8> {
    let len = 4 + value.len();
    let mut out = Vec::with_capacity(len.next_multiple_of(4));
    out.extend_from_slice(&(len as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(value);
    out.resize(len.next_multiple_of(4), 0);
    out
}

/// The value of the first attribute of type `kind` in a generic-netlink answer's attributes.
fn find_attr(mut attrs: &[u8], kind: u16) -> Option<&[u8]> {
    while attrs.len() >= 4 {
        let len = u16::from_ne_bytes([attrs[0], attrs[1]]) as usize;
        let this = u16::from_ne_bytes([attrs[2], attrs[3]]) & 0x3fff;
        if len < 4 || len > attrs.len() {
            return None;
        }
        if this == kind {
            return Some(&attrs[4..len]);
        }
        attrs = &attrs[len.next_multiple_of(4).min(attrs.len())..];
    }
    None
}

struct Socket(std::os::fd::OwnedFd);

impl Socket {
    fn open() -> io::Result<Socket> {
        use std::os::fd::FromRawFd;
        // SAFETY: a plain socket call; the fd is owned from here on.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_GENERIC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Socket(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }))
    }

    /// Sends one request and returns the attributes of its answer.
    fn request(&self, family: u16, cmd: u8, attrs: &[u8]) -> io::Result<Vec<u8>> {
        use std::os::fd::AsRawFd;
        let len = NLMSG_HEADER + GENL_HEADER + attrs.len();
        let mut message = Vec::with_capacity(len);
        message.extend_from_slice(&(len as u32).to_ne_bytes());
        message.extend_from_slice(&family.to_ne_bytes());
        message.extend_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
        message.extend_from_slice(&1u32.to_ne_bytes());
        message.extend_from_slice(&0u32.to_ne_bytes());
        message.extend_from_slice(&[cmd, 1, 0, 0]);
        message.extend_from_slice(attrs);
        let fd = self.0.as_raw_fd();
        // SAFETY: send/recv on our own fd with buffers of the given lengths.
        let sent = unsafe { libc::send(fd, message.as_ptr().cast(), message.len(), 0) };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buffer = vec![0u8; 16384];
        let got = unsafe { libc::recv(fd, buffer.as_mut_ptr().cast(), buffer.len(), 0) };
        if got < 0 {
            return Err(io::Error::last_os_error());
        }
        buffer.truncate(got as usize);
        if buffer.len() < NLMSG_HEADER {
            return Err(io::Error::other("short netlink answer"));
        }
        let kind = u16::from_ne_bytes([buffer[4], buffer[5]]);
        if kind == NLMSG_ERROR {
            let code = buffer
                .get(16..20)
                .and_then(|b| b.try_into().ok())
                .map(i32::from_ne_bytes)
                .unwrap_or(-libc::EIO);
            return Err(io::Error::from_raw_os_error(-code));
        }
        let end = (u32::from_ne_bytes(buffer[..4].try_into().unwrap_or_default()) as usize)
            .min(buffer.len());
        Ok(buffer
            .get(NLMSG_HEADER + GENL_HEADER..end)
            .unwrap_or_default()
            .to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_padded_and_found_again() {
        let mut attrs = attr(CTRL_ATTR_FAMILY_NAME, b"netdev\0");
        assert_eq!(attrs.len(), 12);
        attrs.extend(attr(CTRL_ATTR_FAMILY_ID, &0x1bu16.to_ne_bytes()));
        assert_eq!(
            find_attr(&attrs, CTRL_ATTR_FAMILY_ID),
            Some(&0x1bu16.to_ne_bytes()[..])
        );
        assert_eq!(find_attr(&attrs, 9), None);
    }
}
