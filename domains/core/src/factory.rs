//! The factory: builds each domain's connection once at start-up, on the adapter the
//! settings pick. There is no way to switch afterwards, and no hybrid.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use sqlx::migrate::Migrator;
use sqlx::PgPool;

use crate::cache::Cache;
use crate::cache_adapter::{CacheAdapter, CacheBinding};
use crate::pg_adapter::{PostgresAdapter, PostgresBinding};
use crate::postgres::EventLogSettings;
use crate::spacetime::Backoff;
use crate::warmup::WarmupSettings;
use crate::{Connection, Domain, DomainError};

/// The generic part of a domain's `[domains.<name>]` settings section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrameworkSettings {
    /// PostgreSQL adapter: the poll that catches live events a notification missed.
    pub live_poll_interval_ms: u64,
    /// PostgreSQL adapter: how long live events are kept for listeners.
    pub event_retention_secs: u64,
    /// Events a live subscriber may fall behind before it is told to resync.
    pub subscriber_capacity: usize,
    /// SpacetimeDB adapter: the OutboxPoller's safety-net poll (it is woken by
    /// every new outbox entry too).
    pub outbox_poll_interval_ms: u64,
    /// SpacetimeDB adapter: wake the OutboxPoller on every new outbox entry (false:
    /// poll only, as the seed did).
    pub outbox_push: bool,
    /// SpacetimeDB adapter: outbox entries applied in one PostgreSQL transaction.
    pub outbox_batch_size: usize,
    /// SpacetimeDB adapter: the most writes waiting for PostgreSQL (e.g. while it is
    /// down); past it, writes are refused with 503 `outbox_full` instead of growing
    /// the cache without bound.
    pub outbox_max_pending: usize,
    /// SpacetimeDB adapter: how long a command or snapshot of a scope that is not warm
    /// yet (after a start, a reconnect or its creation) waits for its warm-up before
    /// 503 `scope_warming`.
    pub warm_wait_ms: u64,
    /// SpacetimeDB adapter: how long a command waits for PostgreSQL to read through an
    /// entity the cache lacks, before it goes on on the cache alone.
    pub read_through_timeout_ms: u64,
    /// SpacetimeDB adapter: which scopes' rows a backend holds in its copy of the
    /// cache: only those in use on it (`active`), or all of them (`all`).
    pub cache_subscriptions: CacheSubscriptions,
    /// SpacetimeDB adapter, `active`: how long a scope with no snapshot, command or
    /// live subscriber on this backend stays subscribed.
    pub subscription_idle_secs: u64,
    pub warmup: WarmupSettings,
}

/// See [`FrameworkSettings::cache_subscriptions`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheSubscriptions {
    /// Only the scopes with snapshots, commands or live subscribers on this backend
    /// lately: its memory follows the scopes in use, not the whole cache.
    Active,
    /// Every scope's rows, always (no wait on a scope's first use).
    All,
}

const FRAMEWORK_KEYS: [&str; 12] = [
    "live_poll_interval_ms",
    "event_retention_secs",
    "subscriber_capacity",
    "outbox_poll_interval_ms",
    "outbox_push",
    "outbox_batch_size",
    "outbox_max_pending",
    "warm_wait_ms",
    "read_through_timeout_ms",
    "cache_subscriptions",
    "subscription_idle_secs",
    "warmup",
];

impl FrameworkSettings {
    pub fn event_log(&self) -> EventLogSettings {
        EventLogSettings {
            poll_interval: Duration::from_millis(self.live_poll_interval_ms),
            retention: Duration::from_secs(self.event_retention_secs),
            subscriber_capacity: self.subscriber_capacity,
        }
    }
}

/// A domain's settings section that cannot be used; the message names the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SettingsError(String);

/// A domain's settings: the framework's part and the domain's own.
#[derive(Debug)]
pub struct DomainSettings<D: Domain> {
    pub framework: FrameworkSettings,
    pub domain: D::Settings,
}

impl<D: Domain> Clone for DomainSettings<D> {
    fn clone(&self) -> Self {
        Self { framework: self.framework.clone(), domain: self.domain.clone() }
    }
}

impl<D: Domain> DomainSettings<D> {
    /// Parses the `[domains.<name>]` section over the `[framework]` defaults (a domain
    /// lists only what it changes; tables such as `warmup` merge key by key). Errors
    /// name the section and the field.
    pub fn parse(defaults: &serde_json::Value, section: &serde_json::Value) -> Result<Self, SettingsError> {
        let key = format!("domains.{}", D::NAME);
        let (serde_json::Value::Object(defaults), serde_json::Value::Object(section)) = (defaults, section) else {
            return Err(SettingsError(format!("invalid setting `{key}` or `framework`: must be a table")));
        };
        if let Some(unknown) = defaults.keys().find(|k| !FRAMEWORK_KEYS.contains(&k.as_str())) {
            return Err(SettingsError(format!("invalid setting `framework.{unknown}`: not a framework key")));
        }
        let mut map = defaults.clone();
        merge(&mut map, section);
        let (framework, own): (serde_json::Map<_, _>, serde_json::Map<_, _>) =
            map.into_iter().partition(|(k, _)| FRAMEWORK_KEYS.contains(&k.as_str()));
        let framework = serde_json::from_value(serde_json::Value::Object(framework))
            .map_err(|e| SettingsError(format!("invalid setting in `{key}`: {e}")))?;
        let domain = serde_json::from_value(serde_json::Value::Object(own))
            .map_err(|e| SettingsError(format!("invalid setting in `{key}`: {e}")))?;
        Ok(Self { framework, domain })
    }
}

/// Lays `over` onto `base`: tables merge key by key, anything else replaces.
fn merge(base: &mut serde_json::Map<String, serde_json::Value>, over: &serde_json::Map<String, serde_json::Value>) {
    for (key, value) in over {
        match (base.get_mut(key), value) {
            (Some(serde_json::Value::Object(base)), serde_json::Value::Object(over)) => merge(base, over),
            _ => {
                base.insert(key.clone(), value.clone());
            }
        }
    }
}

/// Everything an adapter may need to start.
pub struct AdapterContext<D: Domain> {
    pub pool: PgPool,
    pub settings: DomainSettings<D>,
}

/// Where a domain's SpacetimeDB module lives, who the backend is there, and how
/// patient to be with it.
#[derive(Debug, Clone)]
pub struct SpacetimeTarget {
    /// The shard this server is.
    pub shard: crate::shards::Shard,
    pub url: String,
    pub token: String,
    pub database: String,
    /// Longest wait for a reducer's outcome.
    pub reducer_timeout: Duration,
    /// Longest wait for a durable write to reach PostgreSQL.
    pub durable_timeout: Duration,
    pub backoff: Backoff,
    /// Compress the WebSocket traffic (worth it only over slow links: on loopback or
    /// a LAN, compressing warm-up batches costs more than it saves).
    pub compression: bool,
}

/// A domain's adapter as the factory built it: the connection every client goes
/// through and, on the SpacetimeDB adapter, the cache that warm-up and the outbox
/// poller work on.
pub struct Adapter<D: Domain> {
    pub connection: Arc<dyn Connection<D>>,
    pub cache: Option<Arc<dyn Cache<D>>>,
}

/// A domain with both bindings, ready for the factory: all it adds is its schema.
pub trait DomainAdapters: PostgresBinding + CacheBinding {
    /// The domain's PostgreSQL migrations (see [`crate::migrations::shared`]).
    fn migrator() -> Migrator;
}

/// Builds `D`'s adapters once: one SpacetimeDB adapter per shard when targets are
/// given (each connecting in the background; its calls answer 503 until connected),
/// the PostgreSQL adapter alone otherwise.
pub async fn connect<D: DomainAdapters>(
    context: AdapterContext<D>,
    spacetimedb: Vec<SpacetimeTarget>,
) -> Result<Vec<Adapter<D>>, DomainError> {
    if spacetimedb.is_empty() {
        let connection = Arc::new(PostgresAdapter::connect(context).await?);
        return Ok(vec![Adapter { connection, cache: None }]);
    }
    let mut adapters = Vec::with_capacity(spacetimedb.len());
    for target in spacetimedb {
        let context = AdapterContext { pool: context.pool.clone(), settings: context.settings.clone() };
        let adapter = Arc::new(CacheAdapter::connect(context, target)?);
        adapters.push(Adapter { connection: adapter.clone(), cache: Some(adapter) });
    }
    Ok(adapters)
}
