//! A VIP's "Backend setup" page (`/ui/vips/NAME/setup`): for each backend, the exact
//! `tula decap setup` commands, their manual equivalent for both methods as
//! tula-decap writes it ([`tula_decap::manual_steps`]: module, `tunl0` only
//! if missing, VIPs, sysctls, the persistence files), the MTU
//! advice (the VIP's tunnel MTU and MSS as the data plane computes them, or
//! the balancer's egress interface toward the backend), and how to verify.

use std::net::{IpAddr, Ipv4Addr};

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
    match address {
        IpAddr::V4(v4) => tula_net::route_get(v4)
            .and_then(|route| tula_net::link(&route.dev))
            .map(|link| Egress {
                interface: link.name,
                mtu: link.mtu,
            })
            .map_err(|e| e.to_string()),
        IpAddr::V6(_) => Err("IPv6 backends are not supported yet".to_string()),
    }
}

/// The tunnel MTU and the MSS to clamp to: the VIP's own (`vip_figures`,
/// from its status: the smallest path MTU toward its backends, less the
/// outer header), else from the balancer's interface toward this backend
/// (1500 if unknown).
fn tunnel_mtu_and_mss(
    vip_figures: Option<(u16, u16)>,
    egress: &Result<Egress, String>,
) -> (u32, u16) {
    if let Some((tunnel, mss)) = vip_figures {
        return (tunnel.into(), mss);
    }
    let mtu = egress.as_ref().map_or(1500, |e| e.mtu);
    (
        mtu.saturating_sub(mss_clamp::IPIP_OVERHEAD),
        mss_clamp::default_mss(mtu),
    )
}

/// The VIPs `backend` serves with the same DSR type as `vip`: one setup covers them all.
fn vips_of(config: &Config, vip: &Vip, backend: IpAddr) -> Vec<Ipv4Addr> {
    let mut vips: Vec<Ipv4Addr> = config
        .vips
        .iter()
        .filter(|v| v.dsr_type == vip.dsr_type && v.backends.iter().any(|b| b.address == backend))
        .filter_map(|v| match v.address {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(_) => None,
        })
        .collect();
    if let IpAddr::V4(own) = vip.address {
        if !vips.contains(&own) {
            vips.insert(0, own);
        }
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
                        "Each backend must strip the IPIP header, own the VIP without answering ARP for it, and \
                         accept packets whose source (the client) does not match its routes. Nothing is needed on the \
                         load balancer itself. " code { "tula decap setup" } " does all of it and makes it survive a reboot; \
                         the " em { "kernel" } " method uses the ipip module and " code { "tunl0" } ", the " em { "xdp" }
                        " method tula's own decapsulation program, for hosts without the ipip module."
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

fn vip_args(vips: &[Ipv4Addr]) -> String {
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
    let vip_figures = status.and_then(|s| s.tunnel_mtu.zip(s.mss));
    let (tunnel_mtu, mss) = tunnel_mtu_and_mss(vip_figures, egress);
    let mtu_source = match vip_figures {
        Some(_) => "the smallest path MTU toward this VIP's backends, less",
        None => "this interface's MTU (1500 if unknown), less",
    };
    let served: Vec<String> = vips.iter().map(ToString::to_string).collect();
    // --mss-clamp last, so each command reads as the basic one plus the clamp.
    let clamp = format!(" --mss-clamp={mss}");
    let (kernel, xdp) = manual_steps(backend, &vips, mss);
    html! {
        p {
            "This backend serves " (served.join(", ")) " over Layer 3 DSR; one setup covers "
            @if vips.len() == 1 { "it" } @else { "them all" } "."
        }
        h4 { "With tula (run on " (backend) ")" }
        p { "Kernel method (the ipip module and " code { "tunl0" } "):" }
        (commands(&[format!("tula decap setup{args}{clamp}")]))
        p { "XDP method (no ipip module needed):" }
        (commands(&[format!("tula decap setup --method xdp{args}{clamp}")]))
        p {
            code { "--mss-clamp" } " lowers the MSS the backend announces so clients' segments fit the tunnel (see MTU below). \
             Add " code { "--dry-run" } " to see every change first, " code { "--manual" } " to print the commands \
             below for that host, and " code { "--interface IFACE" } " if the uplink is not the default route's interface."
        }
        h4 { "The manual equivalent" }
        div.manual data-method="kernel" { (steps_markup(&kernel)) }
        details.manual data-method="xdp" {
            summary { "Without the ipip module: the XDP method by hand" }
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
            " The tunnel carries at most " strong.tunnel-mtu { (tunnel_mtu) } " bytes (" (mtu_source) " IPIP's "
            (mss_clamp::IPIP_OVERHEAD) "-byte outer IPv4 header): clamp the TCP MSS the backend announces to "
            strong.mss { (mss) } " (" (tunnel_mtu) " - " (mss_clamp::IPV4_TCP_HEADERS) "), so clients never send a \
             full-size packet with Don't Fragment set into the tunnel. " code { "--mss-clamp=" (mss) }
            " above does it, as does the nftables step of the manual equivalent."
        }
        p {
            "Or raise the MTU to " (egress.as_ref().map_or(1500, |e| e.mtu) + mss_clamp::IPIP_OVERHEAD)
            " or more (jumbo frames) on every link between the load balancer and the backends. Either way, keep ICMP \
             \"Fragmentation Needed\" unfiltered so path MTU discovery works."
        }
        h4 { "Verify" }
        (commands(&[format!("tula decap verify{args}")]))
        p { "checks each item and names the fix for any that fails. By hand:" }
        (commands(&[
            "ip tunnel show tunl0".to_string(),
            "ip addr show tunl0".to_string(),
            "tcpdump -i tunl0 -n    # shows the decapsulated traffic".to_string(),
        ]))
    }
}

/// The uplink the XDP method's manual steps name: the balancer cannot know the backend's.
const MANUAL_UPLINK: &str = "eth0";

/// The manual equivalent of `tula decap setup` on `backend` for both
/// methods, as tula-decap writes them (so the panel cannot drift from it).
fn manual_steps(backend: IpAddr, vips: &[Ipv4Addr], mss: u16) -> (Vec<tula_decap::Step>, Vec<tula_decap::Step>) {
    let local = match backend {
        IpAddr::V4(v4) => v4,
        IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED, // IPv6 backends are refused by the config
    };
    let steps = |method| {
        let mut opts = tula_decap::ManualOptions::new(method, MANUAL_UPLINK, local, vips.to_vec());
        opts.mss_clamp = Some(mss);
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
        .map(|v| format!("ip addr add {v}/32 dev lo"))
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
    fn the_vips_own_figures_come_first_then_the_egress_mtu() {
        let egress = Ok(Egress {
            interface: "eth0".into(),
            mtu: 9000,
        });
        assert_eq!(tunnel_mtu_and_mss(None, &egress), (8980, 8940));
        assert_eq!(
            tunnel_mtu_and_mss(None, &Err("no route".into())),
            (1480, 1440)
        );
        assert_eq!(
            tunnel_mtu_and_mss(Some((1380, 1340)), &egress),
            (1380, 1340)
        );
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
