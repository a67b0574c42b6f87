//! `GET /metrics`: Prometheus text, read from the data plane's maps and the
//! health checker at scrape time.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tula_control::Control;
use tula_health::{BackendHealth, Checker, HealthState};

use crate::error::ApiError;
use crate::state::AppState;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The collector of a daemon; `cluster`: its link to the cluster's etcd, if in one.
pub(crate) fn registry(
    control: Arc<Control>,
    health: Checker,
    cluster: Option<Arc<tula_cluster::Link>>,
) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape {
        control,
        health,
        cluster,
    }));
    registry
}

pub(crate) async fn metrics(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let accept = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let openmetrics = wants_openmetrics(accept);
    let text = state
        .blocking(|state| {
            let mut text = String::new();
            prometheus_client::encoding::text::encode(&mut text, &state.metrics).map_err(|_| {
                ApiError::internal(
                    "reading the data plane's counters for /metrics failed (see the daemon's log)",
                )
            })?;
            Ok(text)
        })
        .await?;
    if openmetrics {
        Ok(([(CONTENT_TYPE, OPENMETRICS)], text))
    } else {
        Ok(([(CONTENT_TYPE, PROMETHEUS_TEXT)], prometheus_text(&text)))
    }
}

/// True if `accept` prefers OpenMetrics to the Prometheus text format (by
/// q-value; OpenMetrics on a tie, text when neither is named).
fn wants_openmetrics(accept: &str) -> bool {
    let quality = |wanted: &str| -> f32 {
        accept
            .split(',')
            .filter_map(|range| {
                let mut parts = range.split(';').map(str::trim);
                let media = parts.next()?.to_ascii_lowercase();
                (media == wanted).then(|| {
                    parts
                        .find_map(|p| p.strip_prefix("q="))
                        .and_then(|q| q.parse().ok())
                        .unwrap_or(1.0)
                })
            })
            .fold(0.0, f32::max)
    };
    let openmetrics = quality("application/openmetrics-text");
    openmetrics > 0.0 && openmetrics >= quality("text/plain")
}

/// The OpenMetrics text as Prometheus text 0.0.4: counters are declared by
/// their sample name (`_total`), and there is no `# EOF`.
fn prometheus_text(openmetrics: &str) -> String {
    let counters: Vec<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(&name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_chooses_the_format() {
        assert!(!wants_openmetrics(""));
        assert!(!wants_openmetrics("*/*"));
        assert!(!wants_openmetrics("text/plain;version=0.0.4"));
        assert!(wants_openmetrics("application/openmetrics-text;version=1.0.0"));
        // What Prometheus sends by default.
        assert!(wants_openmetrics(
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        ));
        assert!(!wants_openmetrics("application/openmetrics-text;q=0.2,text/plain;q=0.9"));
    }

    #[test]
    fn counters_take_their_sample_name_and_eof_goes() {
        let text = "# HELP tula_vip_packets Packets.\n# TYPE tula_vip_packets counter\ntula_vip_packets_total{vip=\"web\"} 3\n# HELP tula_up Up.\n# TYPE tula_up gauge\ntula_up 1\n# EOF\n";
        assert_eq!(
            prometheus_text(text),
            "# HELP tula_vip_packets_total Packets.\n# TYPE tula_vip_packets_total counter\ntula_vip_packets_total{vip=\"web\"} 3\n# HELP tula_up Up.\n# TYPE tula_up gauge\ntula_up 1\n"
        );
    }
}

/// Reads the running revision, per-VIP and per-backend traffic, and the
/// global counters from [`Control`], and the backends' health and check counts
/// from the [`Checker`], on every scrape.
struct Scrape {
    control: Arc<Control>,
    health: Checker,
    cluster: Option<Arc<tula_cluster::Link>>,
}

impl std::fmt::Debug for Scrape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scrape")
    }
}

type Labels = Vec<(&'static str, String)>;

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snapshot = self.control.snapshot();
        let revision = snapshot.revision();
        let status = snapshot.status().map_err(|error| {
            tracing::warn!(%error, "reading VIP status for /metrics");
            std::fmt::Error
        })?;
        let counters = snapshot.counters().map_err(|error| {
            tracing::warn!(%error, "reading the data plane counters for /metrics");
            std::fmt::Error
        })?;
        let health = crate::health::by_backend(self.health.snapshot());

        let family = encoder.encode_descriptor(
            "tula_config_revision",
            "The revision of the config the data plane runs (0 = none yet).",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(revision as i64).encode(family)?;
        if let Some(link) = &self.cluster {
            let family = encoder.encode_descriptor(
                "tula_cluster_etcd_connected",
                "1 while this node reaches its cluster's etcd; 0: it forwards with its running revision and refuses changes.",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(i64::from(link.connected())).encode(family)?;
        }

        let vip_labels = |vip: &tula_control::VipStatus| -> Labels {
            vec![
                ("vip", vip.name.clone()),
                ("address", vip.address.to_string()),
                ("port", vip.port.to_string()),
                ("protocol", vip.protocol.to_string()),
            ]
        };
        counter(
            &mut encoder,
            "tula_vip_packets",
            "Packets received for a VIP.",
            status.iter().map(|v| (vip_labels(v), v.packets)),
        )?;
        counter(
            &mut encoder,
            "tula_vip_bytes",
            "Bytes (frame length at ingress) received for a VIP.",
            status.iter().map(|v| (vip_labels(v), v.bytes)),
        )?;

        gauge(
            &mut encoder,
            "tula_vip_active_flows",
            "Flows to the VIP's backends that sent a packet within the active-flow window, as last sampled.",
            status.iter().map(|v| (vip_labels(v), v.active_flows as i64)),
        )?;

        // Each backend with its labels, and its health if it is checked.
        let backends: Vec<(Labels, &tula_control::BackendStatus, Option<&BackendHealth>)> = status
            .iter()
            .flat_map(|vip| {
                let health = &health;
                vip.backends.iter().map(move |backend| {
                    (
                        vec![
                            ("vip", vip.name.clone()),
                            ("backend", backend.address.to_string()),
                        ],
                        backend,
                        health.get(&(vip.name.clone(), backend.address)),
                    )
                })
            })
            .collect();
        let checked: Vec<(&Labels, &BackendHealth)> = backends
            .iter()
            .filter_map(|(l, _, h)| h.map(|h| (l, h)))
            .collect();
        counter(
            &mut encoder,
            "tula_backend_packets",
            "Packets sent to a backend.",
            backends.iter().map(|(l, b, _)| (l.clone(), b.packets)),
        )?;
        counter(
            &mut encoder,
            "tula_backend_bytes",
            "Bytes sent to a backend (frame length at ingress).",
            backends.iter().map(|(l, b, _)| (l.clone(), b.bytes)),
        )?;
        gauge(
            &mut encoder,
            "tula_backend_up",
            "1 if the backend's health checks see it up, else 0 (an unchecked backend counts as up).",
            backends.iter().map(|(l, b, h)| {
                let up = h.map_or(b.healthy, |h| h.state == HealthState::Up);
                (l.clone(), up as i64)
            }),
        )?;
        counter(
            &mut encoder,
            "tula_health_checks",
            "Health checks of the backend by outcome: pass, fail, or error (could not be sent).",
            checked.iter().flat_map(|(l, h)| {
                [
                    ("pass", h.counts.passed),
                    ("fail", h.counts.failed),
                    ("error", h.counts.errors),
                ]
                .map(|(outcome, n)| {
                    let mut labels = (*l).clone();
                    labels.push(("outcome", outcome.to_string()));
                    (labels, n)
                })
            }),
        )?;
        counter(
            &mut encoder,
            "tula_health_transitions",
            "Times the backend's health checks took it down or brought it up (the `to` label).",
            checked.iter().flat_map(|(l, h)| {
                [("down", h.counts.went_down), ("up", h.counts.went_up)].map(|(to, n)| {
                    let mut labels = (*l).clone();
                    labels.push(("to", to.to_string()));
                    (labels, n)
                })
            }),
        )?;
        gauge(
            &mut encoder,
            "tula_backend_weight",
            "The backend's configured weight.",
            backends
                .iter()
                .map(|(l, b, _)| (l.clone(), b.weight as i64)),
        )?;
        let window = status.first().map_or(0, |v| v.active_window_s);
        gauge(
            &mut encoder,
            "tula_backend_active_flows",
            &format!("Flows to the backend that sent a packet in the last {window} s (tula serve --active-window), as last sampled."),
            backends
                .iter()
                .map(|(l, b, _)| (l.clone(), b.active_flows as i64)),
        )?;
        gauge(
            &mut encoder,
            "tula_backend_table_entries",
            "Connection-table entries pointing at the backend, quiet flows included (they stay until the table needs their way).",
            backends
                .iter()
                .map(|(l, b, _)| (l.clone(), b.table_entries as i64)),
        )?;
        let states = ["active", "drain", "disabled"];
        gauge(
            &mut encoder,
            "tula_backend_state",
            "1 for the backend's configured state (active, drain, disabled), 0 for the others.",
            backends.iter().flat_map(|(l, b, _)| {
                let current = serde_json::to_value(b.state)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                states.iter().map(move |state| {
                    let mut labels = l.clone();
                    labels.push(("state", state.to_string()));
                    (labels, (current == *state) as i64)
                })
            }),
        )?;

        let usage = snapshot.usage();
        let setting = |u: &tula_control::Usage| vec![("setting", u.kind.setting().to_string())];
        gauge(
            &mut encoder,
            "tula_dataplane_limit",
            "The loaded data plane's size for each setting (max_vips, max_backends, max_backend_addresses): a changed setting takes effect at a reload.",
            usage.iter().map(|u| (setting(u), i64::from(u.limit))),
        )?;
        gauge(
            &mut encoder,
            "tula_dataplane_in_use",
            "What the running config uses of each size: VIP ids, backend ids, distinct backend addresses (a next hop each).",
            usage.iter().map(|u| (setting(u), u.used as i64)),
        )?;
        counter(
            &mut encoder,
            "tula_dataplane_packets",
            "Packets by the data plane's verdict or the reason for it (the `counter` label), summed over CPUs.",
            counters.iter().map(|(c, value)| (vec![("counter", c.name().to_string())], value)),
        )?;
        Ok(())
    }
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: impl IntoIterator<Item = (Labels, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in values {
        ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: impl IntoIterator<Item = (Labels, i64)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in values {
        ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}
