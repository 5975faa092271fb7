//! `boardsync outbox drain`: empties the domains' cache outboxes into PostgreSQL and
//! exits, serving nothing. It is the step before a module's schema change clears its
//! cache database (`scripts/serve` runs it with the boardsync that matches the
//! published modules): what the outbox holds is in PostgreSQL first, so the clear
//! throws nothing away. It refuses while PostgreSQL is unreachable.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use boardsync_actors::drainer::{holders, DrainerLease};
use boardsync_actors::outbox::{acknowledge, commit_batch};
use boardsync_actors::CacheMetrics;
use boardsync_core::cache::Cache;
use boardsync_core::cache_adapter::CacheAdapter;
use boardsync_core::{AdapterContext, DomainAdapters, DomainError, DomainSettings};
use sqlx::PgPool;

use crate::domains::{self, EachDomain};
use crate::settings::Settings;

#[derive(Debug, thiserror::Error)]
pub enum DrainError {
    #[error("PostgreSQL is unreachable, so nothing can be drained: {0}")]
    Postgres(#[source] sqlx::Error),
    #[error("no SpacetimeDB is configured (spacetimedb.url): there is no outbox to drain")]
    NoCache,
    #[error("unknown domain {0:?}")]
    UnknownDomain(String),
    #[error("invalid settings for {domain}: {reason}")]
    Settings { domain: &'static str, reason: String },
    #[error("the {0} cache did not connect within {1:?}")]
    NotConnected(&'static str, Duration),
    #[error("{domain}: {left} outbox entries still pending after {timeout:?}")]
    Left { domain: &'static str, left: usize, timeout: Duration },
    #[error("{domain}: {error}")]
    Domain { domain: &'static str, error: DomainError },
    #[error("{domain}: {by} drains this outbox now (stop it first, or let it drain)")]
    Drained { domain: &'static str, by: String },
}

/// Drains every domain's outbox (only `only`'s when given); returns the entries
/// drained per domain.
pub async fn drain(
    settings: &Settings,
    only: Option<&str>,
    timeout: Duration,
) -> Result<Vec<(&'static str, usize)>, DrainError> {
    if settings.spacetimedb.url().is_none() {
        return Err(DrainError::NoCache);
    }
    let pool = settings.database.connect(2).await.map_err(DrainError::Postgres)?;
    let mut draining = Draining { settings, pool, only, timeout, drained: Vec::new() };
    domains::for_each(&mut draining).await?;
    match only {
        Some(domain) if draining.drained.is_empty() => Err(DrainError::UnknownDomain(domain.to_string())),
        _ => Ok(draining.drained),
    }
}

struct Draining<'a> {
    settings: &'a Settings,
    pool: PgPool,
    only: Option<&'a str>,
    timeout: Duration,
    drained: Vec<(&'static str, usize)>,
}

#[async_trait]
impl EachDomain for Draining<'_> {
    type Error = DrainError;

    async fn visit<D: DomainAdapters>(&mut self) -> Result<(), DrainError> {
        if self.only.is_none_or(|domain| domain == D::NAME) {
            let drained = drain_one::<D>(self.settings, &self.pool, self.timeout).await?;
            self.drained.push(drained);
        }
        Ok(())
    }
}

async fn drain_one<D: DomainAdapters>(
    settings: &Settings,
    pool: &PgPool,
    timeout: Duration,
) -> Result<(&'static str, usize), DrainError> {
    let domain = D::NAME;
    let fail = |error| DrainError::Domain { domain, error };
    let section = settings.domains.get(domain).cloned().unwrap_or_default();
    let parsed = DomainSettings::<D>::parse(&settings.framework, &section)
        .map_err(|e| DrainError::Settings { domain, reason: e.to_string() })?;
    let batch = parsed.framework.outbox_batch_size.max(1);
    D::migrator().run(pool).await.map_err(|e| fail(DomainError::internal("migrating").caused_by(e)))?;
    let targets = settings.spacetimedb.targets(domain);
    if targets.is_empty() {
        return Err(DrainError::NoCache);
    }
    let deadline = Instant::now() + timeout;
    let mut drained = 0;
    // Each shard's outbox in turn, within the one deadline.
    for target in targets {
        let context = AdapterContext { pool: pool.clone(), settings: parsed.clone() };
        drained += drain_shard::<D>(context, target, batch, deadline, timeout).await?;
    }
    Ok((domain, drained))
}

async fn drain_shard<D: DomainAdapters>(
    context: AdapterContext<D>,
    target: boardsync_core::factory::SpacetimeTarget,
    batch: usize,
    deadline: Instant,
    timeout: Duration,
) -> Result<usize, DrainError> {
    let domain = D::NAME;
    let fail = |error| DrainError::Domain { domain, error };
    let pool = &context.pool.clone();
    let unit = target.shard.unit.clone();
    let cache = CacheAdapter::<D>::connect(context, target).map_err(fail)?;
    while Cache::<D>::epoch(&cache).is_none() {
        if Instant::now() >= deadline {
            return Err(DrainError::NotConnected(domain, timeout));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let metrics = CacheMetrics::register(&prometheus::Registry::new()).expect("a fresh registry");
    // The drainer lease, as a node takes it: while a running node drains this
    // outbox, this command does not (it says who does). A node just stopped or
    // killed lets go of it within moments (PostgreSQL ends its session): it waits.
    let mut lease = DrainerLease::new(unit.clone(), pool, "boardsync outbox drain", Duration::ZERO);
    while !lease.is_held() {
        if lease.connection().await.is_some() {
            break;
        }
        if Instant::now() >= deadline {
            let holder = holders(pool, &[unit]).await.map_err(DrainError::Postgres)?.pop().and_then(|(_, n)| n);
            return Err(DrainError::Drained { domain, by: holder.unwrap_or_else(|| "another node".into()) });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let connection = lease.connection().await.ok_or(DrainError::NotConnected(domain, timeout))?;
    let mut drained = 0;
    while Instant::now() < deadline {
        match commit_batch::<D>(&cache, connection, batch, &metrics).await.map_err(fail)? {
            Some(committed) => {
                acknowledge::<D>(&cache, &committed).await.map_err(fail)?;
                drained += committed.entries.len();
            }
            None => break,
        }
    }
    // A dropped connection also ends the loop above: only a connected, empty outbox
    // is drained.
    if Cache::<D>::epoch(&cache).is_none() {
        return Err(DrainError::NotConnected(domain, timeout));
    }
    let left = Cache::<D>::pending_count(&cache);
    if left > 0 {
        return Err(DrainError::Left { domain, left, timeout });
    }
    Ok(drained)
}
