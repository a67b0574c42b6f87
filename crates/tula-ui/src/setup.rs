//! A VIP's "Backend setup" page (`/ui/vips/NAME/setup`): for each backend, the exact
//! `tula decap setup` commands, their manual equivalent for both methods as
//! tula-decap writes it ([`tula_decap::manual_steps`]: module, `tunl0` (or
//! `ip6tnl0` for an IPv6 backend) only if missing, VIPs, sysctls, the
//! persistence files), the MTU
//! advice (the VIP's tunnel MTU and MSS as the data plane computes them, or
//! the balancer's egress interface toward the backend), and how to verify.

use std::net::IpAddr;

use axum::extract::{Path, Query, State};
use axum::response::Html;
use axum::Extension;
use serde::Deserialize;
use tula_api::ApiError;
use tula_config::{Config, DsrType, Vip};
use tula_control::VipStatus;
use tula_decap::{mss_clamp, Method};

use maud::{html, Markup};

use crate::layout::{self, url_segment, Page, Section};
use crate::list;
use crate::session::Session;
use crate::{UiError, UiState};

/// The balancer's interface toward a backend, and its MTU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Egress {
    pub interface: String,
    pub mtu: u32,
}

/// How the balancer reaches a backend (netlink, in the daemon's namespace: blocking).
pub(crate) fn egress(address: IpAddr) -> Result<Egress, String> {
    let dev = match address {
        IpAddr::V4(v4) => tula_net::route_get(v4).map(|route| route.dev),
        IpAddr::V6(v6) => tula_net::route_dev6(v6),
    };
    dev.and_then(|dev| tula_net::link(&dev))
        .map(|link| Egress {
            interface: link.name,
            mtu: link.mtu,
        })
        .map_err(|e| e.to_string())
}

/// The outer header the balancer puts in front of packets to `backend`: IPIP's
/// IPv4 header, or the IPv6 header of IP6IP6 and IPv4 in IPv6.
fn tunnel_overhead(backend: IpAddr) -> u32 {
    match backend {
        IpAddr::V4(_) => mss_clamp::IPIP_OVERHEAD,
        IpAddr::V6(_) => mss_clamp::IP6IP6_OVERHEAD,
    }
}

/// The MSS that fits `tunnel_mtu` once the inner IP and TCP `headers` are taken off.
fn mss_for(tunnel_mtu: u32, headers: u32) -> u16 {
    u16::try_from(tunnel_mtu.saturating_sub(headers)).unwrap_or(u16::MAX)
}

/// The tunnel MTU toward `backend`: the VIP's own (`vip_tunnel_mtu`, from its
/// status: the smallest path MTU toward its IPv4 backends, less IPIP's
/// header) for an IPv4 backend, else the balancer's interface toward this
/// backend (1500 if unknown) less the outer header.
fn tunnel_mtu(backend: IpAddr, vip_tunnel_mtu: Option<u16>, egress: &Result<Egress, String>) -> u32 {
    match (backend, vip_tunnel_mtu) {
        (IpAddr::V4(_), Some(tunnel)) => tunnel.into(),
        _ => egress.as_ref().map_or(1500, |e| e.mtu).saturating_sub(tunnel_overhead(backend)),
    }
}

/// The VIPs `backend` serves with the same DSR type as `vip`: one setup covers them all.
fn vips_of(config: &Config, vip: &Vip, backend: IpAddr) -> Vec<IpAddr> {
    let mut vips: Vec<IpAddr> = config
        .vips
        .iter()
        .filter(|v| v.dsr_type == vip.dsr_type && v.backends.iter().any(|b| b.address == backend))
        .map(|v| v.address)
        .collect();
    if !vips.contains(&vip.address) {
        vips.insert(0, vip.address);
    }
    vips.dedup();
    vips
}

/// `?backend=ADDRESS`: the backend whose setup the page shows (default: the first).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct SetupQuery {
    pub backend: Option<String>,
}

/// The path of a VIP's Backend setup page.
pub(crate) fn path(vip: &str) -> String {
    format!("/ui/vips/{}/setup", url_segment(vip))
}

/// GET: a VIP's Backend setup page. A page of its own, not part of the VIP's:
/// the commands name every VIP a backend serves, which can be a thousand.
pub(crate) async fn page(
    State(ui): State<UiState>,
    Extension(session): Extension<Session>,
    Path(name): Path<String>,
    Query(query): Query<SetupQuery>,
) -> Result<Html<String>, UiError> {
    let lookup = name.clone();
    let wanted: Option<IpAddr> = query.backend.as_deref().and_then(|a| a.parse().ok());
    let (config, status, selected) = ui
        .app
        .blocking(move |state| {
            let config = state.control.snapshot();
            let vip = config
                .vip(&lookup)
                .ok_or_else(|| ApiError::not_found(format!("no VIP {lookup:?}")))?;
            let selected = wanted
                .filter(|a| vip.backends.iter().any(|b| b.address == *a))
                .or_else(|| vip.backends.first().map(|b| b.address));
            let status = config
                .status_where(|v| v.name == lookup, tula_control::MapReads::Traffic)?
                .pop();
            Ok((config, status, selected.map(|a| (a, egress(a)))))
        })
        .await?;
    let vip = config.vip(&name).expect("looked up above");
    let vip_page = format!("/ui/vips/{}", url_segment(&vip.name));
    let body = html! {
        div.heading {
            h1 { "VIP " (vip.name) " " code { (layout::socket_label(vip)) } }
            div.buttons { a.button href=(vip_page) { "Back to the VIP" } }
        }
        (panel(config.config(), vip, status.as_ref(), selected.as_ref()))
    };
    let page = Page::new(format!("Backend setup · VIP {}", vip.name), Section::Vips, &session)
        .crumb("L4 Virtual IPs", Some(list::PATH.to_string()))
        .crumb(vip.name.clone(), Some(vip_page))
        .crumb("Backend setup", None);
    Ok(Html(page.render(body)))
}

/// The panel for `vip` (`status`: what the data plane reports for it): the
/// list of its backends, and the setup of one (`selected`, with the way the
/// balancer reaches it as [`egress`] found it). One backend at a time keeps
/// the page small with a hundred backends.
pub(crate) fn panel(
    config: &Config,
    vip: &Vip,
    status: Option<&VipStatus>,
    selected: Option<&(IpAddr, Result<Egress, String>)>,
) -> Markup {
    let base = path(&vip.name);
    html! {
        section.card #setup aria-labelledby="setup-title" {
            h2 #setup-title { "Backend setup" }
            @if vip.backends.is_empty() {
                p { "This VIP has no backends yet." }
            } @else {
                @match vip.dsr_type {
                    DsrType::L3Ipip => p {
                        "Each backend must strip the tunnel's outer header, own the VIP without answering ARP for it, and \
                         accept packets whose source (the client) does not match its routes. Nothing is needed on the \
                         load balancer itself. " code { "tula decap setup" } " does all of it and makes it survive a reboot; \
                         the " em { "kernel" } " method uses the ipip module and " code { "tunl0" } " (an IPv6 backend: \
                         the ip6_tunnel module and " code { "ip6tnl0" } "), the " em { "xdp" }
                        " method tula's own decapsulation program, for hosts without those modules."
                    },
                    DsrType::L2 => p {
                        "Layer 2 DSR needs no tunnel: the balancer only rewrites MAC addresses. Each backend must \
                         own the VIP on " code { "lo" } " without answering ARP for it."
                    },
                }
                @if vip.backends.len() > 1 {
                    nav.setup-backends aria-label="Backend to set up" {
                        "Backend: "
                        @for backend in &vip.backends {
                            @let current = selected.is_some_and(|(a, _)| *a == backend.address);
                            a href={ (base) "?backend=" (backend.address) } aria-current=[current.then_some("true")] { (backend.address) }
                            " "
                        }
                    }
                }
                @if let Some((address, found)) = selected {
                    div.backend-setup data-backend=(address) {
                        h3 { "Backend " strong { (address) } }
                        @match vip.dsr_type {
                            DsrType::L3Ipip => (l3_backend(config, vip, *address, status, found)),
                            DsrType::L2 => (l2_backend(config, vip, *address)),
                        }
                    }
                }
            }
        }
    }
}

fn commands(lines: &[String]) -> Markup {
    html! { pre { code { (lines.join("\n")) } } }
}

fn vip_args(vips: &[IpAddr]) -> String {
    vips.iter().map(|v| format!(" --vip {v}")).collect()
}

fn l3_backend(
    config: &Config,
    vip: &Vip,
    backend: IpAddr,
    status: Option<&VipStatus>,
    egress: &Result<Egress, String>,
) -> Markup {
    let vips = vips_of(config, vip, backend);
    let args = vip_args(&vips);
    let vip_tunnel_mtu = status.and_then(|s| s.tunnel_mtu);
    let tunnel_mtu = tunnel_mtu(backend, vip_tunnel_mtu, egress);
    let mtu_source = match (backend, vip_tunnel_mtu) {
        (IpAddr::V4(_), Some(_)) => "the smallest path MTU toward this VIP's backends, less",
        _ => "this interface's MTU (1500 if unknown), less",
    };
    // The clamp of each family this backend serves: IPv4 VIPs and IPv6 VIPs.
    let mss4 = vips.iter().any(IpAddr::is_ipv4).then(|| mss_for(tunnel_mtu, mss_clamp::IPV4_TCP_HEADERS));
    let mss6 = vips.iter().any(IpAddr::is_ipv6).then(|| mss_for(tunnel_mtu, mss_clamp::IPV6_TCP_HEADERS));
    let served: Vec<String> = vips.iter().map(ToString::to_string).collect();
    // The clamps last, so each command reads as the basic one plus the clamp.
    let clamp = mss4.map(|mss| format!(" --mss-clamp={mss}")).unwrap_or_default()
        + &mss6.map(|mss| format!(" --mss-clamp6={mss}")).unwrap_or_default();
    let (kernel, xdp) = manual_steps(backend, &vips, mss4, mss6);
    let (tunnel_device, module, outer) = match backend {
        IpAddr::V4(_) => ("tunl0", "ipip", "IPIP's 20-byte outer IPv4 header"),
        IpAddr::V6(_) => ("ip6tnl0", "ip6_tunnel", "the 40-byte outer IPv6 header (IP6IP6, or IPv4 in IPv6)"),
    };
    html! {
        p {
            "This backend serves " (served.join(", ")) " over Layer 3 DSR; one setup covers "
            @if vips.len() == 1 { "it" } @else { "them all" } "."
        }
        h4 { "With tula (run on " (backend) ")" }
        p { "Kernel method (the " (module) " module and " code { (tunnel_device) } "):" }
        (commands(&[format!("tula decap setup{args}{clamp}")]))
        p { "XDP method (no " (module) " module needed):" }
        (commands(&[format!("tula decap setup --method xdp{args}{clamp}")]))
        p {
            code { "--mss-clamp" } " lowers the MSS the backend announces so clients' segments fit the tunnel (see MTU below). \
             Add " code { "--dry-run" } " to see every change first, " code { "--manual" } " to print the commands \
             below for that host, and " code { "--interface IFACE" } " if the uplink is not the default route's interface."
        }
        h4 { "The manual equivalent" }
        div.manual data-method="kernel" { (steps_markup(&kernel)) }
        details.manual data-method="xdp" {
            summary { "Without the " (module) " module: the XDP method by hand" }
            p { code { (MANUAL_UPLINK) } " stands for the backend's uplink (the interface the tunnelled packets arrive on)." }
            (steps_markup(&xdp))
        }
        h4 { "MTU" }
        p {
            @match egress {
                Ok(egress) => {
                    "The load balancer sends to " (backend) " through " code { (egress.interface) } ", whose MTU is "
                    strong { (egress.mtu) } "."
                }
                Err(error) => { "The route to " (backend) " could not be looked up (" (error) ")." }
            }
            " The tunnel carries at most " strong.tunnel-mtu { (tunnel_mtu) } " bytes (" (mtu_source) " " (outer) "): clamp the TCP MSS the backend announces to "
            @if let Some(mss) = mss4 {
                strong.mss { (mss) } " (" (tunnel_mtu) " - " (mss_clamp::IPV4_TCP_HEADERS) ") for IPv4 VIPs"
                @if mss6.is_some() { " and " }
            }
            @if let Some(mss) = mss6 {
                strong.mss6 { (mss) } " (" (tunnel_mtu) " - " (mss_clamp::IPV6_TCP_HEADERS) ") for IPv6 VIPs"
            }
            ", so clients never send a full-size packet with Don't Fragment set into the tunnel. "
            code { (clamp.trim()) } " above does it, as does the nftables step of the manual equivalent."
        }
        p {
            "Or raise the MTU to " (egress.as_ref().map_or(1500, |e| e.mtu) + tunnel_overhead(backend))
            " or more (jumbo frames) on every link between the load balancer and the backends. Either way, keep ICMP \
             \"Fragmentation Needed\" (ICMPv6 \"Packet Too Big\") unfiltered so path MTU discovery works."
        }
        h4 { "Verify" }
        (commands(&[format!("tula decap verify{args}")]))
        p { "checks each item and names the fix for any that fails. By hand:" }
        (commands(&match backend {
            IpAddr::V4(_) => [
                "ip tunnel show tunl0".to_string(),
                "ip addr show tunl0".to_string(),
                "tcpdump -i tunl0 -n    # shows the decapsulated traffic".to_string(),
            ],
            IpAddr::V6(_) => [
                "ip -6 tunnel show ip6tnl0".to_string(),
                "ip -6 addr show lo".to_string(),
                "tcpdump -i ip6tnl0 -n    # shows the decapsulated traffic".to_string(),
            ],
        }))
    }
}

/// The uplink the XDP method's manual steps name: the balancer cannot know the backend's.
const MANUAL_UPLINK: &str = "eth0";

/// The manual equivalent of `tula decap setup` on `backend` for both
/// methods, as tula-decap writes them (so the panel cannot drift from it).
fn manual_steps(
    backend: IpAddr,
    vips: &[IpAddr],
    mss4: Option<u16>,
    mss6: Option<u16>,
) -> (Vec<tula_decap::Step>, Vec<tula_decap::Step>) {
    let steps = |method| {
        let mut opts = tula_decap::ManualOptions::with_addresses(method, MANUAL_UPLINK, vec![backend], vips.to_vec());
        opts.mss_clamp = mss4;
        opts.mss_clamp6 = mss6;
        tula_decap::manual_steps(&opts)
    };
    (steps(Method::Kernel), steps(Method::Xdp))
}

fn steps_markup(steps: &[tula_decap::Step]) -> Markup {
    html! {
        @for step in steps {
            p { (step.title) }
            (commands(&step.commands))
        }
    }
}

fn l2_backend(config: &Config, vip: &Vip, backend: IpAddr) -> Markup {
    let vips = vips_of(config, vip, backend);
    let mut manual: Vec<String> = vips
        .iter()
        .map(|v| match v {
            IpAddr::V4(v4) => format!("ip addr add {v4}/32 dev lo"),
            IpAddr::V6(v6) => format!("ip -6 addr add {v6}/128 dev lo nodad"),
        })
        .collect();
    manual.extend(
        tula_decap::sysctls(Method::Xdp, "lo")
            .into_iter()
            .filter(|(key, _)| key.contains("arp_"))
            .map(|(k, v)| format!("sysctl -w {k}={v}")),
    );
    html! {
        p { "Run on " (backend) " (it must be on a subnet of the load balancer's interfaces):" }
        (commands(&manual))
        p {
            "Persist the two sysctls in " code { "/etc/sysctl.d/99-dsr.conf" }
            " and the address in the network manager. Check with:"
        }
        (commands(&["ip addr show dev lo".to_string(), format!("tcpdump -ni any host {}", vip.address)]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vips_own_figures_come_first_then_the_egress_mtu_less_the_outer_header() {
        let egress = Ok(Egress {
            interface: "eth0".into(),
            mtu: 9000,
        });
        let (v4, v6): (IpAddr, IpAddr) = ("198.18.11.2".parse().unwrap(), "2001:db8:11::2".parse().unwrap());
        assert_eq!(tunnel_mtu(v4, None, &egress), 8980);
        assert_eq!(tunnel_mtu(v4, None, &Err("no route".into())), 1480);
        assert_eq!(tunnel_mtu(v4, Some(1380), &egress), 1380);
        assert_eq!(tunnel_mtu(v6, Some(1380), &egress), 8960, "the VIP's figure is its IPv4 backends'");
        assert_eq!(tunnel_mtu(v6, None, &Err("no route".into())), 1460);
        assert_eq!((mss_for(1460, mss_clamp::IPV4_TCP_HEADERS), mss_for(1460, mss_clamp::IPV6_TCP_HEADERS)), (1420, 1400));
    }

    #[test]
    fn an_ipv6_backend_gets_ip6tnl0_and_a_clamp_per_family() {
        let config = tula_config::Config::from_toml_str(
            r#"
            interfaces = ["eth0"]
            [[vip]]
            name = "web6"
            address = "2001:db8:113::10"
            port = 80
            backends = [{ address = "2001:db8:11::2" }]
            [[vip]]
            name = "web"
            address = "203.0.113.10"
            port = 80
            backends = [{ address = "2001:db8:11::2" }]
            "#,
        )
        .unwrap();
        let vip = config.vip("web6").unwrap();
        let selected = ("2001:db8:11::2".parse().unwrap(), Ok(Egress { interface: "eth0".into(), mtu: 1500 }));
        let html = panel(&config, vip, None, Some(&selected)).into_string();
        assert!(
            html.contains("tula decap setup --vip 2001:db8:113::10 --vip 203.0.113.10 --mss-clamp=1420 --mss-clamp6=1400"),
            "1500 - 40 - 40 for the IPv4 VIP in IPv6, 1500 - 40 - 60 for the IPv6 VIP: {html}"
        );
        assert!(html.contains("the ip6_tunnel module and <code>ip6tnl0</code>"), "{html}");
        assert!(html.contains("tunnel-mtu\">1460<"), "{html}");
        assert!(html.contains("ip -6 tunnel show ip6tnl0"), "{html}");
        let blocks = code_blocks(&html);
        let mut opts = tula_decap::ManualOptions::with_addresses(
            Method::Kernel,
            MANUAL_UPLINK,
            vec!["2001:db8:11::2".parse().unwrap()],
            vec!["2001:db8:113::10".parse().unwrap(), "203.0.113.10".parse().unwrap()],
        );
        opts.mss_clamp = Some(1420);
        opts.mss_clamp6 = Some(1400);
        let wanted: Vec<String> = tula_decap::manual_steps(&opts).iter().map(|s| s.commands.join("\n")).collect();
        assert!(wanted.iter().any(|c| c.contains("ip6tnl0")), "tula-decap's own steps name ip6tnl0: {wanted:?}");
        assert!(blocks.windows(wanted.len()).any(|w| w == wanted.as_slice()), "{}", blocks.join("\n--\n"));
    }

    #[test]
    fn an_l2_ipv6_vip_goes_on_lo_as_a_128() {
        let config = tula_config::Config::from_toml_str(
            r#"
            interfaces = ["eth0"]
            [[vip]]
            name = "l2v6"
            address = "2001:db8:113::20"
            port = 80
            dsr_type = "l2"
            backends = [{ address = "2001:db8:11::2" }]
            "#,
        )
        .unwrap();
        let vip = config.vip("l2v6").unwrap();
        let html = l2_backend(&config, vip, "2001:db8:11::2".parse().unwrap()).into_string();
        assert!(html.contains("ip -6 addr add 2001:db8:113::20/128 dev lo nodad"), "{html}");
    }

    /// web (two backends) and api, whose one backend also serves web.
    fn two_vips() -> Config {
        tula_config::Config::from_toml_str(
            r#"
            interfaces = ["eth0"]
            [[vip]]
            name = "web"
            address = "203.0.113.10"
            port = 80
            backends = [{ address = "198.18.11.2" }, { address = "198.18.12.2" }]
            [[vip]]
            name = "api"
            address = "203.0.113.11"
            port = 443
            backends = [{ address = "198.18.11.2" }]
            "#,
        )
        .unwrap()
    }

    #[test]
    fn the_panel_has_the_commands_and_the_figures() {
        let config = two_vips();
        let vip = config.vip("web").unwrap();
        let first = (
            "198.18.11.2".parse().unwrap(),
            Ok(Egress {
                interface: "eth0".into(),
                mtu: 1400,
            }),
        );
        let html = panel(&config, vip, None, Some(&first)).into_string();
        let second = ("198.18.12.2".parse().unwrap(), Err("no route".to_string()));
        let other = panel(&config, vip, None, Some(&second)).into_string();
        assert!(
            html.contains(
                "tula decap setup --vip 203.0.113.10 --vip 203.0.113.11 --mss-clamp=1340"
            ),
            "1400 - 20 - 40: {html}"
        );
        assert!(
            other.contains(
                "tula decap setup --method xdp --vip 203.0.113.10 --mss-clamp=1440</code>"
            ),
            "the unknown route assumes 1500: {other}"
        );
        assert!(html.contains(
            "ip link show tunl0 &gt;/dev/null 2&gt;&amp;1 || ip tunnel add tunl0 mode ipip local 198.18.11.2"
        ));
        assert!(html.contains("ip addr add 203.0.113.10/32 dev tunl0"));
        assert!(html.contains("sysctl -w net.ipv4.conf.tunl0.rp_filter=0"));
        assert!(html.contains("net.ipv4.conf.all.arp_announce = 2"));
        assert!(html.contains("/etc/modules-load.d/tula-ipip.conf"));
        assert!(html.contains("/etc/netplan/90-tula-dsr.yaml"));
        assert!(html.contains("tunnel-mtu\">1380<"), "1400 - 20");
        assert!(html.contains("maxseg size set 1340"), "1380 - 40");
        assert!(
            other.contains("tunnel-mtu\">1480<"),
            "the unknown route assumes 1500"
        );
        assert!(
            !html.contains("local 198.18.12.2"),
            "one backend's setup at a time"
        );
        assert!(
            html.contains("href=\"/ui/vips/web/setup?backend=198.18.12.2\""),
            "the others are linked"
        );
        assert!(html.contains("tula decap verify --vip 203.0.113.10"));
    }

    /// The text of every `<pre><code>` block, unescaped, in page order.
    fn code_blocks(html: &str) -> Vec<String> {
        html.split("<pre><code>")
            .skip(1)
            .map(|rest| {
                rest.split("</code></pre>").next().unwrap_or_default()
                    .replace("&lt;", "<")
                    .replace("&gt;", ">")
                    .replace("&quot;", "\"")
                    .replace("&#39;", "'")
                    .replace("&amp;", "&")
            })
            .collect()
    }

    #[test]
    fn the_panel_shows_the_manual_steps_of_tula_decap_for_both_methods() {
        let config = two_vips();
        let vip = config.vip("web").unwrap();
        let egress = Ok(Egress { interface: "eth0".into(), mtu: 1500 });
        let html = panel(&config, vip, None, Some(&("198.18.11.2".parse().unwrap(), egress))).into_string();
        let blocks = code_blocks(&html);
        for method in [Method::Kernel, Method::Xdp] {
            let mut opts = tula_decap::ManualOptions::new(
                method,
                MANUAL_UPLINK,
                "198.18.11.2".parse().unwrap(),
                vec!["203.0.113.10".parse().unwrap(), "203.0.113.11".parse().unwrap()],
            );
            opts.mss_clamp = Some(1440);
            let steps = tula_decap::manual_steps(&opts);
            let wanted: Vec<String> = steps.iter().map(|s| s.commands.join("\n")).collect();
            assert!(
                blocks.windows(wanted.len()).any(|w| w == wanted.as_slice()),
                "the panel lacks the {method:?} steps in order:\n{}\n-- panel blocks --\n{}",
                wanted.join("\n--\n"),
                blocks.join("\n--\n")
            );
            for step in &steps {
                assert!(html.contains(&maud::html! { p { (step.title) } }.into_string()), "{}", step.title);
            }
        }
    }
}
