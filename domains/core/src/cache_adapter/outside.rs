//! Rows changed in PostgreSQL by anyone but a backend (an operator's SQL, another
//! service) reach the cache and live clients. PostgreSQL is the source of truth.
//!
//! The domain tables' triggers (see `boardsync_outside_change` in the core
//! migrations) record each such change in `outside_changes` and notify
//! `boardsync_changes`. They skip the backends' own writes: a backend's connections
//! set `boardsync.origin = backend` ([`crate::postgres::backend_connect_options`]).
//! Another trigger raises the version of a row an outside writer updated without
//! raising it, so the cache's version rule takes the change.
//!
//! This follower reads the changes past the last one it saw, on every notification
//! and on a safety-net poll; loads the rows; warms into the cache those newer than
//! what it holds (the version rule makes it echo-free) unless they lie below a
//! windowed scope's floor; and publishes an event to the scope's live subscribers.

use std::collections::BTreeSet;
use std::sync::{Arc, Weak};
use std::time::Duration;

use sqlx::postgres::PgListener;

use super::{CacheBinding, Floor, RowOf, Shared};
use crate::cache_adapter::ModuleLink;
use crate::postgres::EventLogSettings;
use crate::{DomainError, ScopeKey};

/// The PostgreSQL channel outside changes are announced on (payload: the domain).
pub const CHANGES_CHANNEL: &str = "boardsync_changes";

/// Changes read per round.
const BATCH: i64 = 500;

pub(super) async fn follow<D: CacheBinding>(shared: Weak<Shared<D>>, settings: EventLogSettings) {
    let Some(pool) = shared.upgrade().map(|s| s.pool.clone()) else { return };
    // Listening before reading where the changes stand: none falls in between.
    let mut listener = listen(&pool).await;
    // Changes before this start are in PostgreSQL, which warm-up reads.
    let mut last_seq: i64 = loop {
        match sqlx::query_scalar("SELECT COALESCE(max(seq), 0) FROM outside_changes WHERE domain = $1")
            .bind(D::NAME)
            .fetch_one(&pool)
            .await
        {
            Ok(seq) => break seq,
            Err(error) => {
                tracing::warn!(domain = D::NAME, %error, "cannot read where outside changes stand; retrying");
                tokio::time::sleep(settings.poll_interval).await;
            }
        }
    };
    let mut since_prune = Duration::ZERO;
    loop {
        if listener.is_none() {
            listener = listen(&pool).await;
        }
        let waited = tokio::time::Instant::now();
        match listener.as_mut() {
            Some(active) => tokio::select! {
                notification = active.try_recv() => match notification {
                    Ok(Some(n)) if n.payload() != D::NAME => continue,
                    // Ok(None): the connection dropped (sqlx reconnects on the next
                    // call); catching up covers what was sent meanwhile.
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!(domain = D::NAME, %error, "outside change listener lost; polling until it is back");
                        listener = None;
                    }
                },
                _ = tokio::time::sleep(settings.poll_interval) => {}
            },
            None => tokio::time::sleep(settings.poll_interval).await,
        }
        let Some(shared) = shared.upgrade() else { return };
        if let Err(error) = catch_up(&shared, &mut last_seq).await {
            tracing::warn!(domain = D::NAME, %error, "cannot apply outside changes; retrying");
        }
        drop(shared);
        since_prune += waited.elapsed();
        if since_prune >= settings.retention.min(Duration::from_secs(60)) {
            since_prune = Duration::ZERO;
            let pruned =
                sqlx::query("DELETE FROM outside_changes WHERE domain = $1 AND changed_at < now() - $2::interval")
                    .bind(D::NAME)
                    .bind(format!("{} seconds", settings.retention.as_secs()))
                    .execute(&pool)
                    .await;
            if let Err(error) = pruned {
                tracing::warn!(domain = D::NAME, %error, "cannot prune old outside changes");
            }
        }
    }
}

async fn listen(pool: &sqlx::PgPool) -> Option<PgListener> {
    let mut listener = PgListener::connect_with(pool).await.ok()?;
    listener.listen(CHANGES_CHANNEL).await.ok()?;
    Some(listener)
}

/// Applies every change past `last_seq`, advancing it as they are applied.
async fn catch_up<D: CacheBinding>(shared: &Shared<D>, last_seq: &mut i64) -> Result<(), DomainError> {
    loop {
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT seq, entity FROM outside_changes WHERE domain = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(D::NAME)
        .bind(*last_seq)
        .bind(BATCH)
        .fetch_all(&shared.pool)
        .await
        .map_err(DomainError::from_sqlx)?;
        let Some(&(newest, _)) = rows.last() else { return Ok(()) };
        let ids: Vec<String> = rows.iter().map(|(_, id)| id.clone()).collect::<BTreeSet<_>>().into_iter().collect();
        let stored = {
            let mut db = shared.pool.acquire().await.map_err(DomainError::from_sqlx)?;
            D::stored(&mut db, &ids).await?
        };
        apply(shared, stored).await?;
        *last_seq = newest;
        if (rows.len() as i64) < BATCH {
            return Ok(());
        }
    }
}

/// Warms the rows the cache should hold and tells live subscribers.
async fn apply<D: CacheBinding>(shared: &Shared<D>, stored: Vec<D::Item>) -> Result<(), DomainError> {
    let mut warm: Vec<RowOf<D>> = Vec::new();
    let mut events: Vec<(ScopeKey, D::Event)> = Vec::new();
    {
        let connection = shared.link.connection()?;
        let floors = shared.floors.lock().expect("floors lock");
        for item in stored {
            let row = D::row(&item);
            let place = D::placement(&row);
            let cached = connection.find(&place.entity).and_then(|row| D::item(&row));
            if cached.as_ref().is_some_and(|cached| D::version(cached) >= D::version(&item)) {
                continue; // a backend's own write, or already here
            }
            let Ok(scope) = ScopeKey::parse(&place.scope) else { continue };
            let below_floor = match floors.get(&scope) {
                Some(Floor::At(order, entity)) => (&place.order, &place.entity) < (order, entity),
                Some(Floor::Everything) => true,
                None => false,
            };
            if cached.is_some() || !below_floor {
                warm.push(row);
            }
            events.push((scope, D::changed_outside(item, cached.is_none())));
        }
    }
    if !warm.is_empty() {
        tracing::debug!(domain = D::NAME, rows = warm.len(), "outside changes into the cache");
        shared.link.owner_call(move |c: &D::Module, request_id| c.warm(request_id, warm)).await?;
    }
    for (scope, event) in events {
        shared.live.publish(&scope, event);
    }
    Ok(())
}

/// Keeps the follower running as long as its adapter.
pub(super) struct Follower(tokio::task::JoinHandle<()>);

impl Follower {
    pub(super) fn start<D: CacheBinding>(shared: &Arc<Shared<D>>, settings: EventLogSettings) -> Self {
        Self(tokio::spawn(follow(Arc::downgrade(shared), settings)))
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.0.abort();
    }
}
