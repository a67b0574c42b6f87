//! Checks of a load-balancer host, each a [`Finding`]: PASS, WARN, FAIL or
//! SKIP, what was seen, and the fix. `tula check -f FILE` runs the host checks
//! before a daemon exists ([`Stage::Offline`]); `tula doctor` runs them
//! against a running balancer ([`Stage::Running`]) and adds the checks that
//! need its API (backend health, replies bypassing the balancer).
//!
//! Modules: `host` (interfaces, XDP mode, veth peers, sysctls, bpffs and pins,
//! routes, neighbours, MTU), `bypass` (the interface-counter check that
//! replies do not come back through the balancer).

mod bypass;
mod host;

pub use bypass::{replies_bypass, TrafficDelta};
pub use host::{host_checks, interface_status, veth_black_hole};

use serde::Serialize;

/// When the checks run: before the daemon (`tula check`) or against it (`tula doctor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Offline,
    Running,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    /// Could not be judged (no traffic to measure, say).
    Skip,
    /// Works, but not as well as it should.
    Warn,
    Fail,
}

impl Verdict {
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Skip => "SKIP",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
        }
    }
}

/// One check's result about one thing (an interface, a backend, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Which check: `xdp-mode`, `veth-peer`, `sysctl`, `bpffs`, `pins`,
    /// `route`, `neighbour`, `health`, `mtu`, `replies-bypass`.
    pub check: &'static str,
    /// What it is about: `lb0`, `198.18.100.2`, ...
    pub subject: String,
    pub verdict: Verdict,
    pub detail: String,
    /// What to do about a WARN or FAIL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Finding {
    pub fn pass(
        check: &'static str,
        subject: impl Into<String>,
        detail: impl Into<String>,
    ) -> Finding {
        Finding {
            check,
            subject: subject.into(),
            verdict: Verdict::Pass,
            detail: detail.into(),
            fix: None,
        }
    }

    pub fn with(
        verdict: Verdict,
        check: &'static str,
        subject: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Finding {
        Finding {
            check,
            subject: subject.into(),
            verdict,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// Findings as text: `FAIL  veth-peer lb0: ...` and an indented `fix:` line.
pub fn findings_text(findings: &[Finding]) -> String {
    let mut out = String::new();
    for finding in findings {
        out.push_str(&format!(
            "{:<4}  {} {}: {}\n",
            finding.verdict.label(),
            finding.check,
            finding.subject,
            finding.detail
        ));
        if let (Some(fix), true) = (&finding.fix, finding.verdict != Verdict::Pass) {
            out.push_str(&format!("      fix: {fix}\n"));
        }
    }
    out
}

/// True when any finding is a FAIL.
pub fn any_failed(findings: &[Finding]) -> bool {
    findings.iter().any(|f| f.verdict == Verdict::Fail)
}
