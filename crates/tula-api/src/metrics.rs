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

const CONTENT_TYPE_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub(crate) fn registry(control: Arc<Control>, health: Checker) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape { control, health }));
    registry
}

pub(crate) async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
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
    Ok(([(CONTENT_TYPE, CONTENT_TYPE_TEXT)], text))
}

/// Reads the running revision, per-VIP and per-backend traffic, and the
/// global counters from [`Control`], and the backends' health and check counts
/// from the [`Checker`], on every scrape.
struct Scrape {
    control: Arc<Control>,
    health: Checker,
}

impl std::fmt::Debug for Scrape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scrape")
    }
}

type Labels = Vec<(&'static str, String)>;

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (revision, _) = self.control.running();
        let status = self.control.status().map_err(|error| {
            tracing::warn!(%error, "reading VIP status for /metrics");
            std::fmt::Error
        })?;
        let counters = self.control.counters().map_err(|error| {
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
        gauge(
            &mut encoder,
            "tula_backend_active_flows",
            "Connection-table entries pointing at the backend.",
            backends
                .iter()
                .map(|(l, b, _)| (l.clone(), b.active_flows as i64)),
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
