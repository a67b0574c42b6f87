//! The page shell every UI page shares (head, navigation, breadcrumb, main),
//! HTML escaping, and how config values are named on screen.

use tula_config::{BackendState, CheckType, DsrType, Protocol, Scheduler, Vip};

use crate::session::Session;

/// Text made safe for HTML element content and double-quoted attributes.
pub(crate) fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

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

    pub fn render(&self, body: &str) -> String {
        let mut out = format!(
            r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · tula</title>
<link rel="stylesheet" href="/ui/static/ui.css">
<script src="/ui/static/ui.js" defer></script>
</head>
<body>
<a class="skip" href="#main">Skip to content</a>
<header class="top">
<a class="brand" href="{home}">tula</a>
<span class="tagline">L4 load balancer</span>
"##,
            title = esc(&self.title),
            home = crate::list::PATH,
        );
        if let Some(csrf) = &self.logout_csrf {
            out.push_str(&format!(
                "<form method=\"post\" action=\"/ui/logout\" class=\"logout\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
                 <button type=\"submit\">Log out</button></form>\n",
                esc(csrf)
            ));
        }
        out.push_str("</header>\n<div class=\"layout\">\n");
        if self.navigation {
            out.push_str(&self.nav());
        }
        out.push_str("<main id=\"main\" tabindex=\"-1\">\n");
        if !self.crumbs.is_empty() {
            out.push_str(
                "<nav aria-label=\"Breadcrumb\" class=\"crumbs\"><ol><li>Load Balancing</li>",
            );
            for (label, href) in &self.crumbs {
                match href {
                    Some(href) => out.push_str(&format!(
                        "<li><a href=\"{}\">{}</a></li>",
                        esc(href),
                        esc(label)
                    )),
                    None => out.push_str(&format!("<li aria-current=\"page\">{}</li>", esc(label))),
                }
            }
            out.push_str("</ol></nav>\n");
        }
        out.push_str(body);
        out.push_str("</main>\n</div>\n</body>\n</html>\n");
        out
    }

    fn nav(&self) -> String {
        let item = |section: Section, href: &str, label: &str| {
            let current = if section == self.section {
                " aria-current=\"page\""
            } else {
                ""
            };
            format!("<li><a href=\"{href}\"{current}>{label}</a></li>")
        };
        format!(
            "<nav class=\"side\" aria-label=\"Main\">\n\
             <h2 id=\"nav-lb\">Load Balancing</h2>\n<ul aria-labelledby=\"nav-lb\">{}</ul>\n\
             <h2 id=\"nav-system\">System</h2>\n<ul aria-labelledby=\"nav-system\">{}</ul>\n\
             </nav>\n",
            item(Section::Vips, crate::list::PATH, "L4 Virtual IPs"),
            item(Section::Revisions, "/ui/revisions", "Revisions"),
        )
    }
}

/// A flash message at the top of a page.
pub(crate) fn alert(kind: &str, html: &str) -> String {
    let role = if kind == "error" { "alert" } else { "status" };
    format!("<div class=\"alert alert-{kind}\" role=\"{role}\">{html}</div>\n")
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

/// `203.0.113.10:80/tcp`, `*` for all ports.
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
    format!("{}:{port}/{protocol}", vip.address)
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
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(
            esc(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(url_segment("web/1 x"), "web%2F1%20x");
    }

    #[test]
    fn counts_group_thousands() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1234567), "1\u{2009}234\u{2009}567");
    }
}
