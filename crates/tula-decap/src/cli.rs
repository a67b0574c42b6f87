//! The `tula decap` command line: `setup`, `verify`, `teardown`. The `tula`
//! binary embeds [`DecapArgs`] and calls [`run`].

use crate::persist::Persist;
use crate::plan::{self, Method, MssClamp, SetupOptions};
use crate::verify::{CheckStatus, VerifyOptions};
use crate::manual::ManualOptions;
use crate::DecapError;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// Configure a backend host to receive Layer 3 DSR (IPIP) traffic.
#[derive(Debug, clap::Args)]
pub struct DecapArgs {
    #[command(subcommand)]
    pub command: DecapCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum DecapCommand {
    /// Strip the tunnel header, own the VIPs, set the sysctls, and persist all of it.
    Setup(SetupArgs),
    /// Check each item of the backend setup: PASS or FAIL, with the fix.
    Verify(VerifyArgs),
    /// Undo exactly what setup changed.
    Teardown(TeardownArgs),
}

#[derive(Debug, clap::Args)]
pub struct SetupArgs {
    /// A VIP this backend serves, IPv4 or IPv6 (repeat for more).
    #[arg(long = "vip", value_name = "ADDR", required = true)]
    pub vips: Vec<IpAddr>,
    /// kernel: ipip module and tunl0. xdp: tula's XDP program, for hosts without ipip.
    #[arg(long, value_enum, default_value = "kernel")]
    pub method: Method,
    /// The uplink the tunnelled packets arrive on [default: the device of the default route].
    #[arg(long, value_name = "IFACE")]
    pub interface: Option<String>,
    /// Where the tunnel is persisted: auto detects netplan, else systemd-networkd.
    #[arg(long, value_enum, default_value = "auto")]
    pub persist: Persist,
    /// Print every change (with file contents) and make none.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the shell commands that make the same setup on a fresh host by
    /// hand (what the web UI's Backend setup panel shows), and make none.
    #[arg(long, conflicts_with_all = ["dry_run", "json"])]
    pub manual: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Prefix for every file read or written (persistence, state).
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// Clamp the TCP MSS of SYN and SYN-ACK sent from the IPv4 VIPs (nftables
    /// table ip tula_dsr) to MSS [default: the tunnel MTU (uplink MTU - 20) - 40;
    /// uplink MTU - 40 - 40 where the uplink has an IPv6 address, as IPv4 VIPs
    /// may then come in IPv6]. Clamps the IPv6 VIPs too, to the --mss-clamp6 default.
    #[arg(long, value_name = "MSS", num_args = 0..=1, require_equals = true)]
    pub mss_clamp: Option<Option<u16>>,
    /// Clamp the TCP MSS of SYN and SYN-ACK sent from the IPv6 VIPs (nftables
    /// table ip6 tula_dsr) to MSS [default: uplink MTU - 40 (IP6IP6) - 60 (IPv6,
    /// TCP): 1400 on 1500]. Clamps the IPv4 VIPs too, to the --mss-clamp default.
    #[arg(long, value_name = "MSS", num_args = 0..=1, require_equals = true)]
    pub mss_clamp6: Option<Option<u16>>,
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// VIPs to check [default: those setup recorded].
    #[arg(long = "vip", value_name = "ADDR")]
    pub vips: Vec<IpAddr>,
    /// [default: the method setup recorded].
    #[arg(long, value_enum)]
    pub method: Option<Method>,
    /// [default: the interface setup recorded].
    #[arg(long, value_name = "IFACE")]
    pub interface: Option<String>,
    #[arg(long)]
    pub json: bool,
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct TeardownArgs {
    #[arg(long)]
    pub json: bool,
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
}

/// Runs a `tula decap` subcommand, printing to stdout. Exit code 1: a verify
/// check failed, or teardown could not undo everything.
pub fn run(args: DecapArgs) -> Result<ExitCode, DecapError> {
    match args.command {
        DecapCommand::Setup(args) => setup(args),
        DecapCommand::Verify(args) => verify(args),
        DecapCommand::Teardown(args) => teardown(args),
    }
}

fn setup(args: SetupArgs) -> Result<ExitCode, DecapError> {
    let mut opts = SetupOptions::new(args.method, args.vips);
    opts.interface = args.interface;
    opts.persist = args.persist;
    opts.root = args.root;
    opts.mss_clamp = args.mss_clamp.map(|mss| mss.map_or(MssClamp::Auto, MssClamp::To));
    opts.mss_clamp6 = args.mss_clamp6.map(|mss| mss.map_or(MssClamp::Auto, MssClamp::To));
    let plan = plan::plan_setup(&opts)?;
    if args.manual {
        let addresses = tula_net::addresses()?;
        let local = plan::tunnel_addresses(&addresses, &plan.interface, &plan.vips);
        let mut manual = ManualOptions::with_addresses(plan.method, plan.interface.clone(), local, plan.vips.clone());
        manual.mss_clamp = plan.mss_clamp;
        manual.mss_clamp6 = plan.mss_clamp6;
        manual.persist = plan.persist;
        manual.root = opts.root.clone();
        manual.tula_binary = opts.tula_binary.clone();
        print!("{}", crate::manual_script(&crate::manual_steps(&manual)));
        return Ok(ExitCode::SUCCESS);
    }
    if args.dry_run {
        if args.json {
            println!("{}", serde_json::to_string_pretty(&plan).expect("plan serializes"));
        } else {
            print!("{}", render_plan(&plan, true));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let report = plan::apply(&plan, &opts.root)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).expect("report serializes"));
    } else {
        print!("{}", render_plan(&plan, false));
        for note in &report.notes {
            println!("note: {note}");
        }
        if !plan.changes.is_empty() {
            println!("done. Check it with: tula decap verify{}", root_arg(&opts.root));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The plan as text: a header, one numbered entry per change, the notes.
pub fn render_plan(plan: &crate::Plan, dry_run: bool) -> String {
    let (v4, v6) = (plan.vips.iter().any(IpAddr::is_ipv4), plan.vips.iter().any(IpAddr::is_ipv6));
    let method = match (plan.method, v4, v6) {
        (Method::Kernel, true, false) => "kernel (ipip module, tunl0)",
        (Method::Kernel, false, _) => "kernel (ip6_tunnel module, ip6tnl0)",
        (Method::Kernel, true, true) => "kernel (ipip and ip6_tunnel modules, tunl0 and ip6tnl0)",
        (Method::Xdp, ..) => "xdp (tula's decapsulation program)",
    };
    let mut out = format!("backend setup, method {method}, uplink {}\n", plan.interface);
    if let Some(mss) = plan.mss_clamp {
        out.push_str(&format!("TCP MSS of SYN and SYN-ACK from the VIPs clamped to {mss}\n"));
    }
    if let Some(mss) = plan.mss_clamp6 {
        out.push_str(&format!("TCP MSS of SYN and SYN-ACK from the IPv6 VIPs clamped to {mss}\n"));
    }
    if plan.changes.is_empty() {
        out.push_str("nothing to change: this host is already set up as asked\n");
    } else {
        let verb = if dry_run { "would make (dry run, nothing changed)" } else { "changing" };
        out.push_str(&format!("{verb} {} change(s):\n", plan.changes.len()));
        for (i, change) in plan.changes.iter().enumerate() {
            let text = change.to_string();
            out.push_str(&format!("{:>3}. {}\n", i + 1, text.trim_end()));
        }
    }
    for note in &plan.notes {
        out.push_str(&format!("note: {note}\n"));
    }
    out
}

fn verify(args: VerifyArgs) -> Result<ExitCode, DecapError> {
    let mut opts = VerifyOptions::new(args.root);
    opts.vips = args.vips;
    opts.method = args.method;
    opts.interface = args.interface;
    let checks = crate::verify(&opts)?;
    let failed = checks.iter().filter(|c| c.status == CheckStatus::Fail).count();
    if args.json {
        let doc = serde_json::json!({ "ok": failed == 0, "checks": checks });
        println!("{}", serde_json::to_string_pretty(&doc).expect("checks serialize"));
    } else {
        for check in &checks {
            println!("{check}");
        }
        match failed {
            0 => println!("all {} checks passed", checks.len()),
            n => println!("{n} of {} checks FAILED", checks.len()),
        }
    }
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn teardown(args: TeardownArgs) -> Result<ExitCode, DecapError> {
    let report = match crate::teardown(&args.root) {
        Err(e @ DecapError::NoState { .. }) => {
            // Nothing recorded, nothing to undo: a second teardown is not an error.
            println!("{e}");
            return Ok(ExitCode::SUCCESS);
        }
        other => other?,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).expect("report serializes"));
    } else {
        for line in &report.undone {
            println!("{line}");
        }
        for line in &report.failed {
            println!("FAILED: {line}");
        }
        if report.failed.is_empty() {
            println!("teardown complete: everything setup changed is undone");
        } else {
            println!("teardown incomplete: the state file keeps what is left; fix the cause and run it again");
        }
    }
    Ok(if report.failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn root_arg(root: &std::path::Path) -> String {
    if root == std::path::Path::new("/") {
        String::new()
    } else {
        format!(" --root {}", root.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Tula {
        #[command(subcommand)]
        command: Top,
    }

    #[derive(clap::Subcommand)]
    enum Top {
        Decap(DecapArgs),
    }

    fn parse(args: &[&str]) -> DecapCommand {
        let Top::Decap(decap) = Tula::try_parse_from(["tula", "decap"].iter().chain(args)).unwrap().command;
        decap.command
    }

    #[test]
    fn setup_takes_the_flags_of_the_issue() {
        let DecapCommand::Setup(setup) = parse(&[
            "setup", "--vip", "203.0.113.10", "--vip", "203.0.113.11", "--method", "xdp", "--interface", "eth1",
            "--dry-run", "--json", "--persist", "netplan", "--root", "/mnt",
        ]) else {
            panic!("not setup");
        };
        let vips: [IpAddr; 2] = ["203.0.113.10".parse().unwrap(), "203.0.113.11".parse().unwrap()];
        assert_eq!(setup.vips, vips);
        assert_eq!((setup.method, setup.persist), (Method::Xdp, Persist::Netplan));
        assert_eq!(setup.interface.as_deref(), Some("eth1"));
        assert!(setup.dry_run && setup.json);
        assert_eq!(setup.root, PathBuf::from("/mnt"));
    }

    #[test]
    fn setup_defaults_to_the_kernel_method_and_needs_a_vip() {
        let DecapCommand::Setup(setup) = parse(&["setup", "--vip", "203.0.113.10"]) else { panic!("not setup") };
        assert_eq!((setup.method, setup.persist, setup.root), (Method::Kernel, Persist::Auto, PathBuf::from("/")));
        assert_eq!(setup.mss_clamp, None, "no clamp unless asked");
        assert!(Tula::try_parse_from(["tula", "decap", "setup"]).is_err(), "--vip is required");
        assert!(Tula::try_parse_from(["tula", "decap", "setup", "--vip", "203.0.113"]).is_err(), "an address");
    }

    #[test]
    fn vip_takes_ipv4_and_ipv6_addresses() {
        let DecapCommand::Setup(setup) =
            parse(&["setup", "--method", "xdp", "--vip", "203.0.113.10", "--vip", "2001:db8:cafe::10"])
        else {
            panic!("not setup")
        };
        let vips: [IpAddr; 2] = ["203.0.113.10".parse().unwrap(), "2001:db8:cafe::10".parse().unwrap()];
        assert_eq!(setup.vips, vips);
        let DecapCommand::Verify(verify) = parse(&["verify", "--vip", "2001:db8:cafe::10"]) else { panic!("not verify") };
        assert_eq!(verify.vips, vips[1..]);
    }

    #[test]
    fn manual_prints_instead_of_a_dry_run_or_json() {
        let DecapCommand::Setup(setup) = parse(&["setup", "--vip", "203.0.113.10", "--manual"]) else { panic!("not setup") };
        assert!(setup.manual && !setup.dry_run);
        for other in ["--dry-run", "--json"] {
            assert!(Tula::try_parse_from(["tula", "decap", "setup", "--vip", "203.0.113.10", "--manual", other]).is_err());
        }
    }

    #[test]
    fn mss_clamp_takes_an_optional_value() {
        let mss = |args: &[&str]| match parse(args) {
            DecapCommand::Setup(setup) => setup.mss_clamp,
            _ => panic!("not setup"),
        };
        assert_eq!(mss(&["setup", "--vip", "203.0.113.10", "--mss-clamp"]), Some(None));
        assert_eq!(mss(&["setup", "--vip", "203.0.113.10", "--mss-clamp=1400"]), Some(Some(1400)));
        // Without '=' the next word is not taken as the MSS.
        assert_eq!(mss(&["setup", "--mss-clamp", "--vip", "203.0.113.10"]), Some(None));
        assert!(Tula::try_parse_from(["tula", "decap", "setup", "--vip", "203.0.113.10", "--mss-clamp=big"]).is_err());
        let mss6 = |args: &[&str]| match parse(args) {
            DecapCommand::Setup(setup) => (setup.mss_clamp, setup.mss_clamp6),
            _ => panic!("not setup"),
        };
        assert_eq!(mss6(&["setup", "--vip", "2001:db8:cafe::10", "--mss-clamp6"]), (None, Some(None)));
        assert_eq!(mss6(&["setup", "--vip", "2001:db8:cafe::10", "--mss-clamp6=1380"]), (None, Some(Some(1380))));
    }
}
