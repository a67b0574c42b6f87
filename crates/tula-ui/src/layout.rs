//! The page shell every UI page shares (head, navigation, breadcrumb, main),
//! and how config values are named on screen. Pages are maud templates: every
//! value is escaped unless a template says otherwise.

use tula_config::{BackendState, CheckType, DsrType, Protocol, Scheduler, Vip};

use maud::{html, Markup, DOCTYPE};

use crate::session::Session;

/// A path segment made safe for a URL (VIP names allow `.`, `-`, `_` only, but be sure).
pub(crate) fn url_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b':') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Where a page sits in the navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Section {
    Vips,
    Revisions,
    Node,
    None,
}

/// A page: its title, breadcrumb and section, around a body of HTML.
pub(crate) struct Page {
    title: String,
    section: Section,
    /// After "Load Balancing": label and link (the last one, the current page, has none).
    crumbs: Vec<(String, Option<String>)>,
    /// The CSRF token for the logout button, when the session logged in with a token.
    logout_csrf: Option<String>,
    navigation: bool,
}

impl Page {
    pub fn new(title: impl Into<String>, section: Section, session: &Session) -> Page {
        Page {
            title: title.into(),
            section,
            crumbs: Vec::new(),
            logout_csrf: session.has_token().then(|| session.csrf.clone()),
            navigation: true,
        }
    }

    /// A page without navigation: login and errors.
    pub fn bare(title: impl Into<String>) -> Page {
        Page {
            title: title.into(),
            section: Section::None,
            crumbs: Vec::new(),
            logout_csrf: None,
            navigation: false,
        }
    }

    pub fn crumb(mut self, label: impl Into<String>, href: Option<String>) -> Page {
        self.crumbs.push((label.into(), href));
        self
    }

    pub fn render(&self, body: Markup) -> String {
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    meta name="color-scheme" content="light dark";
                    title { (self.title) " · tula" }
                    link rel="stylesheet" href="/ui/static/ui.css";
                    script src="/ui/static/ui.js" defer {}
                }
                body {
                    a.skip href="#main" { "Skip to content" }
                    header.top {
                        a.brand href=(crate::list::PATH) { "tula" }
                        span.tagline { "L4 load balancer" }
                        @if let Some(csrf) = &self.logout_csrf {
                            form.logout method="post" action="/ui/logout" {
                                input type="hidden" name="csrf" value=(csrf);
                                button type="submit" { "Log out" }
                            }
                        }
                    }
                    // A page without navigation (login, errors) takes the whole width.
                    div.layout.bare[!self.navigation] {
                        @if self.navigation { (self.nav()) }
                        main #main tabindex="-1" {
                            @if !self.crumbs.is_empty() {
                                nav.crumbs aria-label="Breadcrumb" {
                                    ol {
                                        li { "Load Balancing" }
                                        @for (label, href) in &self.crumbs {
                                            @match href {
                                                Some(href) => li { a href=(href) { (label) } },
                                                None => li aria-current="page" { (label) },
                                            }
                                        }
                                    }
                                }
                            }
                            (body)
                        }
                    }
                }
            }
        }
        .into_string()
    }

    fn nav(&self) -> Markup {
        let item = |section: Section, href: &str, label: &str| {
            html! {
                li { a href=(href) aria-current=[(section == self.section).then_some("page")] { (label) } }
            }
        };
        html! {
            nav.side aria-label="Main" {
                h2 #nav-lb { "Load Balancing" }
                ul aria-labelledby="nav-lb" { (item(Section::Vips, crate::list::PATH, "L4 Virtual IPs")) }
                h2 #nav-system { "System" }
                ul aria-labelledby="nav-system" {
                    (item(Section::Revisions, "/ui/revisions", "Revisions"))
                    (item(Section::Node, crate::node::PATH, "Node"))
                }
            }
        }
    }
}

/// A flash message at the top of a page.
pub(crate) fn alert(kind: &str, content: Markup) -> Markup {
    let role = if kind == "error" { "alert" } else { "status" };
    html! { div class={ "alert alert-" (kind) } role=(role) { (content) } }
}

/// A `<time>` element, UTC: the time of day for today, else the date and
/// time; the whole RFC 3339 time in its `datetime` (the script makes it the
/// title, and adds the browser's local time beside it).
pub(crate) fn time_tag(time: std::time::SystemTime) -> Markup {
    time_tag_text(&humantime::format_rfc3339_seconds(time).to_string())
}

/// [`time_tag`] for a time already in RFC 3339 (`2026-01-02T03:04:05Z`).
pub(crate) fn time_tag_text(full: &str) -> Markup {
    let today = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let shown = match (full.get(..10), full.get(11..)) {
        (Some(day), Some(time)) if day == &today[..10] => format!("{time} UTC"),
        _ => format!("{} UTC", full.replacen('T', " ", 1)),
    };
    let shown = shown.replace("Z UTC", " UTC");
    html! { time datetime=(full) { (shown) } }
}

/// A config enum as its config text ("l3-ipip", "source-hash", ...).
pub(crate) fn config_text<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// A config enum from its config text.
pub(crate) fn from_config_text<T: serde::de::DeserializeOwned>(text: &str) -> Option<T> {
    serde_json::from_value(serde_json::Value::String(text.to_string())).ok()
}

pub(crate) fn dsr_type_label(dsr_type: DsrType) -> &'static str {
    match dsr_type {
        DsrType::L2 => "Layer 2",
        DsrType::L3Ipip => "Layer 3 (IPIP Tunnel)",
    }
}

pub(crate) fn scheduler_label(scheduler: Scheduler) -> &'static str {
    match scheduler {
        Scheduler::Maglev => "Maglev (consistent hash of the connection)",
        Scheduler::SourceHash => "Source hash (client address)",
        Scheduler::RoundRobin => "Round robin",
        Scheduler::WeightedRoundRobin => "Weighted round robin",
    }
}

pub(crate) fn state_label(state: BackendState) -> &'static str {
    match state {
        BackendState::Active => "active",
        BackendState::Drain => "drain",
        BackendState::Disabled => "disabled",
    }
}

pub(crate) fn check_label(kind: CheckType) -> &'static str {
    match kind {
        CheckType::Tcp => "TCP connect",
        CheckType::Http => "HTTP GET",
        CheckType::Https => "HTTPS GET",
        CheckType::Tunnel => "TCP connect through the tunnel",
        CheckType::None => "none (backends count as up)",
    }
}

/// `203.0.113.10:80/tcp`, `[2001:db8::10]:80/tcp`, `*` for all ports.
pub(crate) fn socket_label(vip: &Vip) -> String {
    let port = if vip.port == 0 {
        "*".to_string()
    } else {
        vip.port.to_string()
    };
    let protocol = match vip.protocol {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    };
    match vip.address {
        std::net::IpAddr::V4(address) => format!("{address}:{port}/{protocol}"),
        std::net::IpAddr::V6(address) => format!("[{address}]:{port}/{protocol}"),
    }
}

/// A count with thousands separated by thin spaces, e.g. `1 234 567`.
pub(crate) fn count(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('\u{2009}');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_segments_are_percent_encoded() {
        assert_eq!(url_segment("web/1 x"), "web%2F1%20x");
    }

    #[test]
    fn counts_group_thousands() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1234567), "1\u{2009}234\u{2009}567");
    }
}
