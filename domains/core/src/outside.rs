//! Rows changed in PostgreSQL by anyone but a backend (an operator's SQL, another
//! service) reach live clients on both adapters, and the cache on the SpacetimeDB
//! adapter. PostgreSQL is the source of truth.
//!
//! The domain tables' triggers (the core migration `*_outside_changes.sql`, which each
//! domain's migration applies with `boardsync_watch_outside`) record each such change
//! in `outside_changes`,
//! in commit order, and notify `boardsync_changes`. They skip the backends' own
//! writes: a backend's connections set `boardsync.origin = backend`
//! ([`crate::postgres::backend_connect_options`]). An outside update jumps the row's
//! version, so the cache's version rule takes it.
//!
//! A [`Follower`] reads the changes past the last one it saw, on every notification
//! and on a safety-net poll, loads the rows, and hands them to its adapter's
//! [`OutsideSink`]: the cache adapter warms what is newer than what it holds (the
//! version rule makes it echo-free) and publishes events; the PostgreSQL adapter
//! publishes events.

use std::collections::BTreeMap;
use std::sync::Weak;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::PgListener;
use sqlx::PgPool;

use crate::pg_adapter::PostgresBinding;
use crate::postgres::EventLogSettings;
use crate::shards::Shard;
use crate::{DomainError, ScopeKey};

/// The PostgreSQL channel outside changes are announced on (payload: the domain).
pub const CHANGES_CHANNEL: &str = "boardsync_changes";

/// Changes read per round.
const BATCH: i64 = 500;

/// One row an outside writer changed, as PostgreSQL holds it now.
pub struct OutsideChange<I> {
    pub scope: ScopeKey,
    pub item: I,
    /// Whether it was inserted (rather than updated) in the changes read.
    pub inserted: bool,
}

/// Where an adapter takes outside changes.
#[async_trait]
pub trait OutsideSink<D: PostgresBinding>: Send + Sync + 'static {
    async fn take(&self, changes: Vec<OutsideChange<D::Item>>) -> Result<(), DomainError>;
}

/// Follows outside changes of domain `D` for as long as it lives, handing them to
/// `sink` (while the sink lives).
pub struct Follower(tokio::task::JoinHandle<()>);

/// Where a follower starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// The newest change: what came before is in PostgreSQL, which is read anyway
    /// (the PostgreSQL adapter reads nothing from elsewhere).
    Newest,
    /// The oldest change still kept (the cache adapter: a scope this node finds warm
    /// in the cache is not read from PostgreSQL, so a change that a node which died
    /// had not yet brought into the cache must be taken again; taking a change again
    /// changes nothing, the cache keeps the newer version).
    OldestKept,
}

impl Follower {
    pub fn start<D: PostgresBinding, S: OutsideSink<D>>(
        sink: Weak<S>,
        pool: PgPool,
        settings: EventLogSettings,
        start: StartAt,
        shard: Option<Shard>,
    ) -> Self {
        Self(tokio::spawn(follow::<D, S>(sink, pool, settings, start, shard)))
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn follow<D: PostgresBinding, S: OutsideSink<D>>(
    sink: Weak<S>,
    pool: PgPool,
    settings: EventLogSettings,
    start: StartAt,
    shard: Option<Shard>,
) {
    // Listening before reading where the changes stand: none falls in between.
    // The listener holds its connection for good: one of its own, not one of the
    // pool's (a follower per domain and shard would otherwise starve the requests).
    let listening =
        sqlx::postgres::PgPoolOptions::new().max_connections(1).connect_lazy_with((*pool.connect_options()).clone());
    let mut listener = listen(&listening).await;
    let position = match start {
        StartAt::Newest => "SELECT COALESCE(max(seq), 0) FROM outside_changes WHERE domain = $1",
        StartAt::OldestKept => "SELECT COALESCE(min(seq) - 1, 0) FROM outside_changes WHERE domain = $1",
    };
    let mut last_seq: i64 = loop {
        match sqlx::query_scalar(position).bind(D::NAME).fetch_one(&pool).await {
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
            listener = listen(&listening).await;
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
        let Some(sink) = sink.upgrade() else { return };
        if let Err(error) = catch_up::<D, S>(&pool, sink.as_ref(), shard.as_ref(), &mut last_seq).await {
            tracing::warn!(domain = D::NAME, %error, "cannot apply outside changes; retrying");
        }
        drop(sink);
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

async fn listen(pool: &PgPool) -> Option<PgListener> {
    let mut listener = PgListener::connect_with(pool).await.ok()?;
    listener.listen(CHANGES_CHANNEL).await.ok()?;
    Some(listener)
}

/// Hands every change past `last_seq` to `sink`, advancing it as they are taken; on
/// a shard, only the changes of the scopes that live on it (a scope's rows are
/// cached on its own shard only).
async fn catch_up<D: PostgresBinding, S: OutsideSink<D>>(
    pool: &PgPool,
    sink: &S,
    shard: Option<&Shard>,
    last_seq: &mut i64,
) -> Result<(), DomainError> {
    loop {
        let rows: Vec<(i64, String, String, String, bool)> = sqlx::query_as(
            "SELECT c.seq, c.scope, c.entity, c.op,
                    $4::text IS NULL OR (s.shard IS NULL AND $5) OR s.shard = $4
             FROM outside_changes c LEFT JOIN scopes s ON s.domain = c.domain AND s.key = c.scope
             WHERE c.domain = $1 AND c.seq > $2 ORDER BY c.seq LIMIT $3",
        )
        .bind(D::NAME)
        .bind(*last_seq)
        .bind(BATCH)
        .bind(shard.map(|shard| shard.name.as_str()))
        .bind(shard.is_some_and(|shard| shard.first))
        .fetch_all(pool)
        .await
        .map_err(DomainError::from_sqlx)?;
        let Some(&(newest, ..)) = rows.last() else { return Ok(()) };
        // Per entity: its scope as of its latest change, and whether any change read
        // inserted it.
        let mut entities: BTreeMap<String, (String, bool)> = BTreeMap::new();
        for (_, scope, entity, op, _) in rows.iter().filter(|row| row.4) {
            let seen = entities.entry(entity.clone()).or_insert_with(|| (scope.clone(), false));
            seen.0 = scope.clone();
            seen.1 |= op == "INSERT";
        }
        let ids: Vec<String> = entities.keys().cloned().collect();
        let stored = {
            let mut db = pool.acquire().await.map_err(DomainError::from_sqlx)?;
            D::stored(&mut db, &ids).await?
        };
        let changes = stored
            .into_iter()
            .filter_map(|item| {
                let (scope, inserted) = entities.get(&D::cursor(&item))?;
                Some(OutsideChange { scope: ScopeKey::parse(scope).ok()?, item, inserted: *inserted })
            })
            .collect();
        sink.take(changes).await?;
        *last_seq = newest;
        if (rows.len() as i64) < BATCH {
            return Ok(());
        }
    }
}
