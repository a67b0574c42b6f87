//! Counting frames on an interface with a packet socket: the lab's proof of
//! what crossed a link (for instance, that load balancer to router is IPIP).

use crate::LabError;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// What arrived on an interface (frames it received, not ones it sent).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FrameCounts {
    pub frames: u64,
    pub ipv4: u64,
    /// IPv4 with protocol 4 (IP in IP).
    pub ipip: u64,
    /// IPIP frames by (outer source, outer destination).
    pub ipip_pairs: BTreeMap<(Ipv4Addr, Ipv4Addr), u64>,
    /// Other IPv4 frames by source address.
    pub from: BTreeMap<Ipv4Addr, u64>,
    /// IPv6 frames other than ICMPv6 and hop-by-hop ones (neighbour
    /// discovery, multicast listener reports): the traffic.
    pub ipv6: u64,
    /// IPv6 tunnels: next header 41 (IP6IP6) or 4 (IPv4 in IPv6).
    pub ip6_tunnel: u64,
    /// IPv6 tunnel frames by (outer source, outer destination, next header).
    pub ip6_tunnel_pairs: BTreeMap<(Ipv6Addr, Ipv6Addr, u8), u64>,
    /// Other IPv6 frames (ICMPv6 included) by source address.
    pub from6: BTreeMap<Ipv6Addr, u64>,
}

/// The IPv6 address at `at` in `frame`.
fn ipv6_at(frame: &[u8], at: usize) -> Ipv6Addr {
    let bytes: [u8; 16] = frame[at..at + 16].try_into().expect("16 bytes");
    Ipv6Addr::from(bytes)
}

/// A packet socket on one interface. Open it inside the interface's
/// namespace; read it from anywhere.
pub struct Capture {
    fd: OwnedFd,
    link: String,
}

impl Capture {
    pub fn open(link: &str) -> Result<Capture, LabError> {
        let index = tula_net::link(link)?.index;
        let what = |e: std::io::Error| LabError::Io(format!("capturing on {link}"), e);
        // SAFETY: plain socket calls with correctly sized arguments.
        unsafe {
            let proto = (libc::ETH_P_ALL as u16).to_be() as i32;
            let raw = libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, proto);
            if raw < 0 {
                return Err(what(std::io::Error::last_os_error()));
            }
            let fd = OwnedFd::from_raw_fd(raw);
            let size: libc::c_int = 8 << 20;
            libc::setsockopt(raw, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &size as *const _ as *const _, 4);
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = proto as u16;
            sll.sll_ifindex = index as i32;
            if libc::bind(raw, &sll as *const _ as *const libc::sockaddr, std::mem::size_of::<libc::sockaddr_ll>() as u32) != 0 {
                return Err(what(std::io::Error::last_os_error()));
            }
            Ok(Capture { fd, link: link.into() })
        }
    }

    /// Reads every frame queued so far and counts the incoming ones.
    pub fn drain(&mut self) -> FrameCounts {
        let mut counts = FrameCounts::default();
        for frame in self.drain_frames() {
            counts.frames += 1;
            if frame.len() >= 54 && frame[12..14] == [0x86, 0xdd] {
                let (next, src, dst) = (frame[20], ipv6_at(&frame, 22), ipv6_at(&frame, 38));
                if next == 4 || next == 41 {
                    counts.ip6_tunnel += 1;
                    *counts.ip6_tunnel_pairs.entry((src, dst, next)).or_default() += 1;
                } else {
                    *counts.from6.entry(src).or_default() += 1;
                }
                counts.ipv6 += u64::from(next != 58 && next != 0);
                continue;
            }
            if frame.len() < 34 || frame[12..14] != [0x08, 0x00] {
                continue;
            }
            counts.ipv4 += 1;
            let src = Ipv4Addr::new(frame[26], frame[27], frame[28], frame[29]);
            if frame[23] == 4 {
                counts.ipip += 1;
                let dst = Ipv4Addr::new(frame[30], frame[31], frame[32], frame[33]);
                *counts.ipip_pairs.entry((src, dst)).or_default() += 1;
            } else {
                *counts.from.entry(src).or_default() += 1;
            }
        }
        counts
    }

    /// Reads every frame queued so far and returns the incoming ones, each
    /// cut to its first 128 bytes (the headers).
    pub fn drain_frames(&mut self) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        let mut buf = [0u8; 128];
        loop {
            // SAFETY: recvfrom into a local buffer and sockaddr_ll.
            let (n, pkttype) = unsafe {
                let mut from: libc::sockaddr_ll = std::mem::zeroed();
                let mut len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
                let n = libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr() as *mut _,
                    buf.len(),
                    libc::MSG_TRUNC,
                    &mut from as *mut _ as *mut libc::sockaddr,
                    &mut len,
                );
                (n, from.sll_pkttype)
            };
            if n < 0 {
                return frames;
            }
            if pkttype == libc::PACKET_OUTGOING {
                continue;
            }
            frames.push(buf[..(n as usize).min(buf.len())].to_vec());
        }
    }

    pub fn link(&self) -> &str {
        &self.link
    }
}
