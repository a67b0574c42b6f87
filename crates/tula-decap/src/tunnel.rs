//! The two netlink requests the kernel method needs that tula-net does not
//! offer: creating an IPIP tunnel and setting a link down. Kept apart so the
//! request can be checked without the ipip module (this machine has none).

use crate::DecapError;
use netlink_packet_route::link::LinkMessage;
use rtnetlink::{LinkIpIp, LinkUnspec};
use std::net::Ipv4Addr;

/// The RTM_NEWLINK message for `ip tunnel add NAME mode ipip local LOCAL`.
pub fn ipip_tunnel_request(name: &str, local: Ipv4Addr) -> LinkMessage {
    LinkIpIp::new(name).local(local).build()
}

/// Sends [`ipip_tunnel_request`] in the calling thread's namespace.
pub(crate) fn create_ipip_tunnel(name: &str, local: Ipv4Addr) -> Result<(), DecapError> {
    let what = format!("creating IPIP tunnel {name} with local {local}");
    let message = ipip_tunnel_request(name, local);
    netlink(&what, |handle| async move { handle.link().add(message).execute().await })
}

/// `ip link set NAME down`.
pub(crate) fn set_down(name: &str) -> Result<(), DecapError> {
    let index = tula_net::link(name)?.index;
    netlink(&format!("setting {name} down"), |handle| async move {
        handle.link().set(LinkUnspec::new_with_index(index).down().build()).execute().await
    })
}

fn netlink<F, Fut>(what: &str, request: F) -> Result<(), DecapError>
where
    F: FnOnce(rtnetlink::Handle) -> Fut,
    Fut: std::future::Future<Output = Result<(), rtnetlink::Error>>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|e| DecapError::io("starting a netlink runtime", e))?;
    runtime.block_on(async {
        let (connection, handle, _) =
            rtnetlink::new_connection().map_err(|e| DecapError::io("opening a netlink socket", e))?;
        let task = tokio::spawn(connection);
        let result = request(handle).await;
        task.abort();
        result.map_err(|e| match e {
            rtnetlink::Error::NetlinkError(msg) => DecapError::io(what, msg.to_io()),
            other => DecapError::bpf(what, other),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_route::link::{InfoData, InfoIpTunnel, InfoKind, LinkAttribute, LinkInfo};
    use std::net::IpAddr;

    #[test]
    fn ipip_request_names_the_device_kind_and_local_address() {
        let local = Ipv4Addr::new(198, 18, 1, 2);
        let msg = ipip_tunnel_request("tunl0", local);
        assert!(msg.attributes.contains(&LinkAttribute::IfName("tunl0".into())), "{msg:?}");
        let info = msg
            .attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::LinkInfo(info) => Some(info.clone()),
                _ => None,
            })
            .expect("IFLA_LINKINFO");
        assert!(info.contains(&LinkInfo::Kind(InfoKind::IpIp)), "{info:?}");
        assert!(
            info.contains(&LinkInfo::Data(InfoData::IpTunnel(vec![InfoIpTunnel::Local(IpAddr::V4(local))]))),
            "{info:?}"
        );
    }

    #[test]
    fn ipip_request_reaches_the_kernel_which_lacks_ipip_here() {
        // Proves the request is well formed enough for the kernel to look for
        // the "ipip" link kind: where the module exists this creates the device.
        let ns = tula_net::Netns::create(&format!("tdc-ipip-{}", std::process::id())).unwrap();
        let result = ns.run(|| create_ipip_tunnel("tunl0", Ipv4Addr::new(198, 18, 1, 2))).unwrap();
        if std::path::Path::new("/sys/module/ipip").exists() {
            result.expect("ipip is available: the tunnel must be created");
        } else {
            let err = result.expect_err("no ipip module, no tunnel");
            let text = err.to_string();
            assert!(text.contains("creating IPIP tunnel tunl0"), "{text}");
            assert!(matches!(err, DecapError::Io { ref source, .. } if source.raw_os_error() == Some(libc::EOPNOTSUPP)), "{err:?}");
        }
    }
}
