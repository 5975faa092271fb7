//! The metrics an operator needs, exported in Prometheus text format at `/metrics`.

use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

/// One registry per application instance, so parallel tests do not share counters.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub dependency_up: IntGaugeVec,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
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
        for collector in [
            Box::new(info) as Box<dyn prometheus::core::Collector>,
            Box::new(dependency_up.clone()),
            Box::new(http_requests.clone()),
            Box::new(http_duration.clone()),
        ] {
            registry.register(collector).expect("metric names are unique");
        }
        Self { registry, dependency_up, http_requests, http_duration }
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
