//! The metrics an operator needs, exported in Prometheus text format at `/metrics`.

use std::collections::HashMap;

use boardsync_actors::metrics::histogram_quantile;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// One registry per application instance, so parallel tests do not share counters.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub dependency_up: IntGaugeVec,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    /// Live sockets open now (set as `/metrics` is read).
    pub live_sockets: IntGauge,
    /// Live handshakes refused for a limit, by error code.
    pub live_sockets_refused: IntCounterVec,
}

impl Metrics {
    pub fn new(adapter: &str) -> Self {
        let registry = Registry::new_custom(Some("boardsync".into()), None).expect("static metric prefix is valid");
        let info =
            IntGaugeVec::new(Opts::new("info", "Build and configuration of this instance"), &["version", "adapter"])
                .expect("static metric definition");
        info.with_label_values(&[env!("CARGO_PKG_VERSION"), adapter]).set(1);
        let dependency_up = IntGaugeVec::new(
            Opts::new("dependency_up", "1 when the last health check reached the dependency"),
            &["dependency"],
        )
        .expect("static metric definition");
        let http_requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests served, by route and status"),
            &["method", "route", "status"],
        )
        .expect("static metric definition");
        let http_duration = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "HTTP request latency, by route"),
            &["method", "route"],
        )
        .expect("static metric definition");
        let live_sockets = IntGauge::new("live_sockets", "Live WebSockets open on this process (limits.live_sockets)")
            .expect("static metric definition");
        let live_sockets_refused = IntCounterVec::new(
            Opts::new(
                "live_sockets_refused_total",
                "Live handshakes refused for a limit: server_full (the process) or too_many_sockets (a user)",
            ),
            &["code"],
        )
        .expect("static metric definition");
        for collector in [
            Box::new(info) as Box<dyn prometheus::core::Collector>,
            Box::new(dependency_up.clone()),
            Box::new(http_requests.clone()),
            Box::new(http_duration.clone()),
            Box::new(live_sockets.clone()),
            Box::new(live_sockets_refused.clone()),
        ] {
            registry.register(collector).expect("metric names are unique");
        }
        Self { registry, dependency_up, http_requests, http_duration, live_sockets, live_sockets_refused }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The registry in Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .expect("encoding gathered metrics into a Vec cannot fail");
        String::from_utf8(buffer).expect("Prometheus text format is UTF-8")
    }
}

/// A domain's outbox as the admin console shows it: the numbers `/metrics` exports
/// (`outbox_pending`, `outbox_oldest_pending_milliseconds`, `outbox_lag_seconds`),
/// read back from the same registry so the two never disagree.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct OutboxSummary {
    pub pending: i64,
    pub oldest_age_ms: i64,
    /// Writes that reached PostgreSQL since start.
    pub lag_count: u64,
    /// Lag percentiles since start, in milliseconds, estimated from the histogram's
    /// buckets as Prometheus' `histogram_quantile` does; none before the first write.
    pub lag_ms: Option<LagPercentiles>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct LagPercentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
}

impl Metrics {
    /// Every domain's outbox summary, from one reading of the registry.
    pub fn outbox_summaries(&self) -> HashMap<String, OutboxSummary> {
        let mut summaries: HashMap<String, OutboxSummary> = HashMap::new();
        for family in self.registry.gather() {
            let name = family.get_name();
            if !name.starts_with("boardsync_outbox_") {
                continue;
            }
            for metric in family.get_metric() {
                let Some(domain) = metric.get_label().iter().find(|label| label.get_name() == "domain") else {
                    continue;
                };
                let summary = summaries.entry(domain.get_value().to_string()).or_default();
                match name {
                    "boardsync_outbox_pending" => summary.pending = metric.get_gauge().get_value() as i64,
                    "boardsync_outbox_oldest_pending_milliseconds" => {
                        summary.oldest_age_ms = metric.get_gauge().get_value() as i64
                    }
                    "boardsync_outbox_lag_seconds" => {
                        let histogram = metric.get_histogram();
                        summary.lag_count = histogram.get_sample_count();
                        let buckets: Vec<(f64, u64)> = histogram
                            .get_bucket()
                            .iter()
                            .map(|b| (b.get_upper_bound(), b.get_cumulative_count()))
                            .collect();
                        let ms = |q| histogram_quantile(q, &buckets, summary.lag_count).map(|seconds| seconds * 1000.0);
                        if let (Some(p50), Some(p90), Some(p99)) = (ms(0.5), ms(0.9), ms(0.99)) {
                            summary.lag_ms = Some(LagPercentiles { p50, p90, p99 });
                        }
                    }
                    _ => {}
                }
            }
        }
        summaries
    }
}
