//! `GET /health`: can the backend reach PostgreSQL and SpacetimeDB, and which adapter
//! did the factory pick, per domain. 200 when every configured dependency answers and
//! every cache is connected, 503 otherwise, and 503 with status `shutting_down` once a
//! graceful stop began (a load balancer then sends no one new here).

use std::time::{Duration, Instant};

use actix_web::{get, http::StatusCode, web, HttpResponse};
use serde::Serialize;

use crate::startup::AppState;

#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
enum DependencyStatus {
    Up,
    Down,
    NotConfigured,
}

#[derive(Serialize)]
struct DependencyHealth {
    status: DependencyStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl DependencyHealth {
    /// `/health` is public: a failure's detail goes to the log, the body says only
    /// that the dependency is unreachable.
    fn from_check<E: std::fmt::Display>(name: &str, started: Instant, outcome: Result<(), E>) -> Self {
        let latency_ms = Some(started.elapsed().as_secs_f64() * 1000.0);
        match outcome {
            Ok(()) => Self { status: DependencyStatus::Up, latency_ms, error: None },
            Err(error) => {
                tracing::warn!(dependency = name, %error, "health check failed");
                Self { status: DependencyStatus::Down, latency_ms, error: Some(format!("{name} is unreachable")) }
            }
        }
    }

    fn is_healthy(&self) -> bool {
        !matches!(self.status, DependencyStatus::Down)
    }
}

#[derive(Serialize)]
struct Health<'a> {
    status: &'static str,
    /// This process among the nodes on one PostgreSQL (`server.node_name`).
    node: &'a str,
    adapter: &'static str,
    postgres: DependencyHealth,
    spacetimedb: DependencyHealth,
    domains: serde_json::Map<String, serde_json::Value>,
    presence: PresenceHealth,
}

/// Presence across nodes: whether this node listens to the others, and how many it
/// heard from within `presence.node_timeout_ms`.
#[derive(Serialize)]
struct PresenceHealth {
    relay_listening: bool,
    other_nodes: usize,
    /// How full PostgreSQL's notification queue is (0 to 1), shared by every
    /// channel: a listener that stopped reading holds it; full, notifying fails.
    notification_queue_usage: Option<f64>,
}

#[get("/health")]
pub async fn health(state: web::Data<AppState>) -> HttpResponse {
    let (postgres, spacetimedb) = tokio::join!(check_postgres(&state), check_spacetimedb(&state));
    for (name, dependency) in [("postgres", &postgres), ("spacetimedb", &spacetimedb)] {
        if !matches!(dependency.status, DependencyStatus::NotConfigured) {
            state.metrics.dependency_up.with_label_values(&[name]).set(dependency.is_healthy() as i64);
        }
    }
    let domains: serde_json::Map<String, serde_json::Value> = state
        .domains
        .iter()
        .map(|d| {
            (
                d.name().to_string(),
                serde_json::json!({
                    "adapter": d.adapter(),
                    "cache_connected": d.cache_connected(),
                    "drains_outbox": d.drains_outbox(),
                    "shards": d.shards(),
                }),
            )
        })
        .collect();
    // With several shards, one that is down affects only its own scopes: the node
    // stays in the load balancer while each domain has a shard to serve from (the first
    // shard's ping is reported, not required).
    let sharded = !state.settings.spacetimedb.shards.is_empty();
    let caches_connected = state.domains.iter().all(|d| {
        let shards = d.shards();
        shards.is_empty()
            || if sharded { shards.iter().any(|s| s.cache_connected) } else { d.cache_connected() == Some(true) }
    });
    let healthy = postgres.is_healthy() && (sharded || spacetimedb.is_healthy()) && caches_connected;
    let stopping = *state.shutting_down.borrow();
    let body = Health {
        status: match (stopping, healthy) {
            (true, _) => "shutting_down",
            (false, true) => "ok",
            (false, false) => "degraded",
        },
        node: &state.node,
        adapter: state.adapter.as_str(),
        postgres,
        spacetimedb,
        domains,
        presence: PresenceHealth {
            relay_listening: state.presence_relay.listening(),
            other_nodes: state.presence_relay.nodes(),
            notification_queue_usage: sqlx::query_scalar("SELECT pg_notification_queue_usage()")
                .fetch_one(&state.pool)
                .await
                .ok(),
        },
    };
    let status = if healthy && !stopping { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    HttpResponse::build(status).json(body)
}

async fn check_postgres(state: &AppState) -> DependencyHealth {
    let started = Instant::now();
    let outcome = sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&state.pool).await.map(|_| ());
    DependencyHealth::from_check("PostgreSQL", started, outcome)
}

async fn check_spacetimedb(state: &AppState) -> DependencyHealth {
    let Some(url) = state.settings.spacetimedb.url() else {
        return DependencyHealth { status: DependencyStatus::NotConfigured, latency_ms: None, error: None };
    };
    let started = Instant::now();
    let timeout = Duration::from_secs(state.settings.spacetimedb.connect_timeout_secs);
    let outcome = state
        .http
        .get(format!("{}/v1/ping", url.trim_end_matches('/')))
        .timeout(timeout)
        .send()
        .await
        .and_then(|response| response.error_for_status())
        .map(|_| ());
    DependencyHealth::from_check("SpacetimeDB", started, outcome)
}
