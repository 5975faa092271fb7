//! The factory: builds each domain's connection once at start-up, on the adapter the
//! settings pick. There is no way to switch afterwards, and no hybrid.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use sqlx::migrate::Migrator;
use sqlx::PgPool;

use crate::postgres::EventLogSettings;
use crate::warmup::WarmupSettings;
use crate::{AdapterKind, Connection, Domain, DomainError};

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
    pub warmup: WarmupSettings,
}

const FRAMEWORK_KEYS: [&str; 4] = [
    "live_poll_interval_ms",
    "event_retention_secs",
    "subscriber_capacity",
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

/// A domain's settings: the framework's part and the domain's own.
#[derive(Debug)]
pub struct DomainSettings<D: Domain> {
    pub framework: FrameworkSettings,
    pub domain: D::Settings,
}

impl<D: Domain> DomainSettings<D> {
    /// Parses the `[domains.<name>]` section; errors name the section and the field.
    pub fn parse(section: &serde_json::Value) -> Result<Self, String> {
        let key = format!("domains.{}", D::NAME);
        let serde_json::Value::Object(map) = section else {
            return Err(format!("invalid setting `{key}`: must be a table"));
        };
        let (framework, own): (serde_json::Map<_, _>, serde_json::Map<_, _>) = map
            .clone()
            .into_iter()
            .partition(|(k, _)| FRAMEWORK_KEYS.contains(&k.as_str()));
        let framework = serde_json::from_value(serde_json::Value::Object(framework))
            .map_err(|e| format!("invalid setting in `{key}`: {e}"))?;
        let domain = serde_json::from_value(serde_json::Value::Object(own))
            .map_err(|e| format!("invalid setting in `{key}`: {e}"))?;
        Ok(Self { framework, domain })
    }
}

/// Everything an adapter may need to start.
pub struct AdapterContext<D: Domain> {
    pub pool: PgPool,
    pub settings: DomainSettings<D>,
}

/// Where a domain's SpacetimeDB module lives, and who the backend is there.
#[derive(Debug, Clone)]
pub struct SpacetimeTarget {
    pub url: String,
    pub token: String,
    pub database: String,
}

/// How a domain builds each of its adapters; the factory calls exactly one, once.
#[async_trait]
pub trait DomainAdapters: Domain {
    /// The domain's PostgreSQL migrations (see [`crate::migrations::shared`]).
    fn migrator() -> Migrator;

    async fn postgres(
        context: AdapterContext<Self>,
    ) -> Result<Arc<dyn Connection<Self>>, DomainError>;
}

/// Builds `D`'s connection on the adapter `kind`.
pub async fn connect<D: DomainAdapters>(
    kind: AdapterKind,
    context: AdapterContext<D>,
) -> Result<Arc<dyn Connection<D>>, DomainError> {
    match kind {
        AdapterKind::Postgres => D::postgres(context).await,
        AdapterKind::Spacetimedb => Err(DomainError::unavailable(
            "adapter_unavailable",
            format!("the {} domain has no SpacetimeDB adapter", D::NAME),
        )),
    }
}
