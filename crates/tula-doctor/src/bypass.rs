//! The seed's check that replies bypass the balancer, from counters: with
//! Direct Server Return the balancer sends out about what its VIPs receive
//! (plus the 20-byte outer header per packet); replies, usually larger than
//! requests, must not show up in its outbound counters.

use crate::{Finding, Verdict};

/// Growth of the counters over one sample.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TrafficDelta {
    pub seconds: f64,
    /// Packets and bytes the DSR VIPs received (the data plane's counters).
    pub vip_packets: u64,
    pub vip_bytes: u64,
    /// Bytes the attached interfaces sent (their link counters).
    pub tx_bytes: u64,
}

/// Outbound bytes tolerated beyond what forwarding explains (ARP, probes, the API).
const SLACK_BYTES: u64 = 64 * 1024;

/// FAIL when the interfaces sent more than twice what forwarding the VIPs'
/// traffic explains: replies are coming back through this host.
pub fn replies_bypass(delta: TrafficDelta) -> Finding {
    let subject = format!("{:.0}s sample", delta.seconds);
    if delta.vip_packets == 0 {
        return Finding::with(
            Verdict::Skip,
            "replies-bypass",
            subject,
            "no VIP traffic during the sample",
            "run `tula doctor` again while clients use the VIPs (--sample SECS for a longer look)",
        );
    }
    let forwarded = delta.vip_bytes + 20 * delta.vip_packets;
    let detail = format!(
        "the VIPs received {} packets, {} bytes; the interfaces sent {} bytes",
        delta.vip_packets, delta.vip_bytes, delta.tx_bytes
    );
    if delta.tx_bytes > 2 * forwarded + SLACK_BYTES {
        Finding::with(
            Verdict::Fail,
            "replies-bypass",
            subject,
            format!("{detail}: replies seem to come back through this host"),
            "backends must answer clients directly: their route to clients must not lead through the balancer, the VIP sits on their lo, rp_filter off (docs/BACKEND-SETUP.md)",
        )
    } else {
        Finding::pass(
            "replies-bypass",
            subject,
            format!("{detail}: replies bypass the balancer"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delta(vip_packets: u64, vip_bytes: u64, tx_bytes: u64) -> TrafficDelta {
        TrafficDelta {
            seconds: 2.0,
            vip_packets,
            vip_bytes,
            tx_bytes,
        }
    }

    #[test]
    fn outbound_traffic_far_above_forwarding_fails() {
        // 1,000 requests of 100 bytes forwarded (120 kB out) pass; 1 MB of replies on top fails.
        assert_eq!(
            replies_bypass(delta(1000, 100_000, 120_000)).verdict,
            Verdict::Pass
        );
        let failed = replies_bypass(delta(1000, 100_000, 1_120_000));
        assert_eq!(failed.verdict, Verdict::Fail);
        assert!(
            failed.detail.contains("come back through this host"),
            "{}",
            failed.detail
        );
        assert_eq!(
            replies_bypass(delta(0, 0, 5_000_000)).verdict,
            Verdict::Skip
        );
    }
}
