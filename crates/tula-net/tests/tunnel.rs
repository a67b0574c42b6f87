//! The IPIP tunnel request: checked as a message, and sent to a kernel that
//! may lack the ipip module (this project's CI machines do).

use netlink_packet_route::link::{InfoData, InfoIpTunnel, InfoKind, LinkAttribute, LinkInfo};
use std::net::{IpAddr, Ipv4Addr};

/// The message's IFLA_LINKINFO.
fn link_info(msg: &netlink_packet_route::link::LinkMessage) -> Vec<LinkInfo> {
    msg.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::LinkInfo(info) => Some(info.clone()),
            _ => None,
        })
        .expect("IFLA_LINKINFO")
}

#[test]
fn ipip_request_names_the_device_kind_and_local_address() {
    let local = Ipv4Addr::new(198, 18, 1, 2);
    let msg = tula_net::ipip_tunnel_request("tunl0", local);
    assert!(
        msg.attributes
            .contains(&LinkAttribute::IfName("tunl0".into())),
        "{msg:?}"
    );
    let info = link_info(&msg);
    assert!(info.contains(&LinkInfo::Kind(InfoKind::IpIp)), "{info:?}");
    assert!(
        info.contains(&LinkInfo::Data(InfoData::IpTunnel(vec![
            InfoIpTunnel::Local(IpAddr::V4(local))
        ]))),
        "{info:?}"
    );
}

#[test]
fn ipip_request_reaches_the_kernel() {
    // Where the module exists this creates the device; here it proves the
    // request is well formed enough for the kernel to look for the "ipip" kind.
    let ns = tula_net::Netns::create(&format!("tnet-ipip-{}", std::process::id())).unwrap();
    let result = ns
        .run(|| tula_net::add_ipip_tunnel("tunl0", Ipv4Addr::new(198, 18, 1, 2)))
        .unwrap();
    if std::path::Path::new("/sys/module/ipip").exists() {
        result.expect("ipip is available: the tunnel must be created");
    } else {
        let err = result.expect_err("no ipip module, no tunnel");
        assert!(
            err.to_string().contains("creating IPIP tunnel tunl0"),
            "{err}"
        );
        assert_eq!(err.errno(), Some(libc::EOPNOTSUPP), "{err:?}");
    }
}

#[test]
fn sysctl_keys_of_interfaces_with_dots() {
    assert_eq!(
        tula_net::sysctl::conf_key("eth0.100", "rp_filter"),
        "net.ipv4.conf.eth0/100.rp_filter"
    );
    assert_eq!(
        tula_net::sysctl::path("net.ipv4.conf.eth0/100.rp_filter"),
        std::path::PathBuf::from("/proc/sys/net/ipv4/conf/eth0.100/rp_filter")
    );
}

#[test]
fn ip6_tunnel_request_names_the_device_kind_mode_any_and_local_address() {
    let local: std::net::Ipv6Addr = "2001:db8:1::2".parse().unwrap();
    let msg = tula_net::ip6_tunnel_request("ip6tnl0", local);
    assert!(msg.attributes.contains(&LinkAttribute::IfName("ip6tnl0".into())), "{msg:?}");
    let info = link_info(&msg);
    assert!(info.contains(&LinkInfo::Kind(InfoKind::Ip6Tnl)), "{info:?}");
    let data = info
        .iter()
        .find_map(|i| match i {
            LinkInfo::Data(InfoData::IpTunnel(data)) => Some(data.clone()),
            _ => None,
        })
        .expect("IFLA_INFO_DATA");
    assert!(data.contains(&InfoIpTunnel::Local(IpAddr::V6(local))), "{data:?}");
    // Protocol 0 is `mode any`: IP6IP6 (41) and IPv4 in IPv6 (4) both.
    assert!(data.contains(&InfoIpTunnel::Protocol(netlink_packet_route::IpProtocol::Hopopts)), "{data:?}");
}

#[test]
fn ip6_tunnel_request_reaches_the_kernel() {
    let ns = tula_net::Netns::create(&format!("tnet-ip6tnl-{}", std::process::id())).unwrap();
    let result = ns.run(|| tula_net::add_ip6_tunnel("ip6tnl1", "2001:db8:1::2".parse().unwrap())).unwrap();
    if std::path::Path::new("/sys/module/ip6_tunnel").exists() {
        result.expect("ip6_tunnel is available: the tunnel must be created");
    } else {
        let err = result.expect_err("no ip6_tunnel module, no tunnel");
        assert!(err.to_string().contains("creating IPv6 tunnel ip6tnl1"), "{err}");
        assert_eq!(err.errno(), Some(libc::EOPNOTSUPP), "{err:?}");
    }
}
