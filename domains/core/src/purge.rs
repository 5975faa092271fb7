//! Purging a scope: its items deleted for good, from PostgreSQL and from the cache,
//! beside the scope, its members, its kept live events and its dead letters.
//!
//! Every write of a scope to PostgreSQL (a PostgreSQL-adapter command, an outbox
//! entry, a kept write restored after a cache loss, a dead letter replayed) first
//! takes the scope's advisory lock shared ([`guard_write`]); the purge takes it
//! exclusively. So a write committed before the purge is deleted by it, and one after
//! finds the purge mark and is dropped when it belongs to the purged scope: while the
//! scope is not created again, every write; once it is, a write the cache committed
//! before the purge reached it (the mark's `purged_at` is set after the cache forgot
//! the scope, and the cache refuses the scope's commands from then until it is
//! created again).

use std::collections::HashMap;

use sqlx::{PgConnection, PgPool};

use crate::pg_adapter::PostgresBinding;
use crate::{DomainError, ScopeKey};

/// The first key of the two-key advisory locks: scope locks live apart from every
/// other lock boardsync takes (which use the one-key form). The second is
/// `hashtext('<domain>/<scope>')`, built by PostgreSQL in both places that take it.
const SCOPE_LOCKS: i32 = 0x6273_7370; // "bssp"

/// A scope's purge, as a write of it sees it.
#[derive(Debug, Clone, Copy)]
pub struct PurgeMark {
    /// When the cache had forgotten the scope (microseconds since the Unix epoch).
    pub purged_at_micros: i64,
    /// Whether the scope was created again since.
    pub recreated: bool,
}

impl PurgeMark {
    /// Whether a write the cache committed at `written_at` (none: unknown, or made in
    /// PostgreSQL's own transaction now) must be dropped.
    pub fn drops(&self, written_at: Option<i64>) -> bool {
        !self.recreated || written_at.is_some_and(|at| at <= self.purged_at_micros)
    }
}

/// Takes the scope's lock shared for the transaction and returns its purge mark, if
/// it was ever purged.
pub async fn guard_write(tx: &mut PgConnection, domain: &str, scope: &str) -> Result<Option<PurgeMark>, DomainError> {
    Ok(guard_writes(tx, domain, &[scope.to_string()]).await?.remove(scope))
}

/// [`guard_write`] for several scopes at once (an outbox batch), in two round trips
/// whatever their number: shared locks never wait for one another, so taking them
/// together cannot deadlock with a purge, which takes one lock.
pub async fn guard_writes(
    tx: &mut PgConnection,
    domain: &str,
    scopes: &[String],
) -> Result<HashMap<String, PurgeMark>, DomainError> {
    // Two statements: under READ COMMITTED a statement reads the snapshot taken when it
    // began, so a check in the statement that waited for the lock would miss the
    // purge it waited for.
    sqlx::query(
        "SELECT pg_advisory_xact_lock_shared($1, hashtext($2 || '/' || scope)) FROM unnest($3::text[]) AS scope",
    )
    .bind(SCOPE_LOCKS)
    .bind(domain)
    .bind(scopes)
    .execute(&mut *tx)
    .await
    .map_err(DomainError::from_sqlx)?;
    let marks: Vec<(String, i64, bool)> = sqlx::query_as(
        "SELECT scope, (extract(epoch FROM purged_at) * 1000000)::bigint, recreated_at IS NOT NULL
           FROM purged_scopes WHERE domain = $1 AND scope = ANY($2)",
    )
    .bind(domain)
    .bind(scopes)
    .fetch_all(&mut *tx)
    .await
    .map_err(DomainError::from_sqlx)?;
    Ok(marks
        .into_iter()
        .map(|(scope, purged_at_micros, recreated)| (scope, PurgeMark { purged_at_micros, recreated }))
        .collect())
}

async fn lock_exclusively(tx: &mut PgConnection, domain: &str, scope: &ScopeKey) -> Result<(), DomainError> {
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2 || '/' || $3))")
        .bind(SCOPE_LOCKS)
        .bind(domain)
        .bind(scope.as_str())
        .execute(&mut *tx)
        .await
        .map_err(DomainError::from_sqlx)?;
    Ok(())
}

/// What a purge deleted in PostgreSQL.
#[derive(Debug, serde::Serialize)]
pub struct Purged {
    /// The domain's rows (messages, cards, elements, options; their children with them).
    pub items: u64,
    /// Live events kept for listeners.
    pub events: u64,
    /// Outbox entries of the scope PostgreSQL had refused.
    pub dead_letters: u64,
}

/// Deletes the scope, its members, its items, its kept live events and its dead
/// letters, and leaves the purge mark, in one transaction under the scope's exclusive
/// lock. A scope deleted earlier (its items kept) or purged before may be purged (to
/// finish a purge whose cache step failed); none is 404 only when there was nothing
/// at all to delete.
pub async fn purge_postgres<D: PostgresBinding>(
    pool: &PgPool,
    scope: &ScopeKey,
) -> Result<Option<Purged>, DomainError> {
    let mut tx = pool.begin().await.map_err(DomainError::from_sqlx)?;
    lock_exclusively(&mut tx, D::NAME, scope).await?;
    let existed = execute(&mut tx, "DELETE FROM scopes WHERE domain = $1 AND key = $2", D::NAME, scope).await? > 0;
    let purged_before: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM purged_scopes WHERE domain = $1 AND scope = $2)")
            .bind(D::NAME)
            .bind(scope.as_str())
            .fetch_one(&mut *tx)
            .await
            .map_err(DomainError::from_sqlx)?;
    let items = D::purge(&mut tx, scope).await?;
    if !existed && !purged_before && items == 0 {
        return Ok(None);
    }
    execute(
        &mut tx,
        "INSERT INTO purged_scopes (domain, scope) VALUES ($1, $2)
         ON CONFLICT (domain, scope) DO UPDATE SET purged_at = now(), cache_cleared = false, recreated_at = NULL",
        D::NAME,
        scope,
    )
    .await?;
    let events = execute(&mut tx, "DELETE FROM domain_events WHERE domain = $1 AND scope = $2", D::NAME, scope).await?;
    let dead_letters =
        execute(&mut tx, "DELETE FROM outbox_dead_letters WHERE domain = $1 AND scope = $2", D::NAME, scope).await?;
    tx.commit().await.map_err(DomainError::from_sqlx)?;
    Ok(Some(Purged { items, events, dead_letters }))
}

async fn execute(tx: &mut PgConnection, sql: &str, domain: &str, scope: &ScopeKey) -> Result<u64, DomainError> {
    let done = sqlx::query(sql).bind(domain).bind(scope.as_str()).execute(&mut *tx).await;
    Ok(done.map_err(DomainError::from_sqlx)?.rows_affected())
}

/// The cache forgot the scope too (or there is none): from now on nothing of it can
/// be committed anywhere until it is created again, so this is the moment every
/// write committed before is older than.
pub async fn cache_cleared(pool: &PgPool, domain: &str, scope: &ScopeKey) -> Result<(), DomainError> {
    sqlx::query("UPDATE purged_scopes SET cache_cleared = true, purged_at = now() WHERE domain = $1 AND scope = $2")
        .bind(domain)
        .bind(scope.as_str())
        .execute(pool)
        .await
        .map_err(DomainError::from_sqlx)?;
    Ok(())
}

/// Whether the scope is being created again after a purge: Err 409
/// `purge_unfinished` while the purge has not reached the cache; Ok(true) when it was
/// purged and not yet re-created (the caller tells the cache, then calls [`recreated`]).
pub async fn recreating(pool: &PgPool, domain: &str, scope: &ScopeKey) -> Result<bool, DomainError> {
    let mark: Option<(bool, bool)> = sqlx::query_as(
        "SELECT cache_cleared, recreated_at IS NOT NULL FROM purged_scopes WHERE domain = $1 AND scope = $2",
    )
    .bind(domain)
    .bind(scope.as_str())
    .fetch_optional(pool)
    .await
    .map_err(DomainError::from_sqlx)?;
    match mark {
        Some((false, _)) => Err(DomainError::conflict(
            "purge_unfinished",
            "this scope's purge has not reached the cache yet: purge it again, then create it",
        )),
        Some((true, false)) => Ok(true),
        _ => Ok(false),
    }
}

/// The purged scope exists again: writes made to it from now on land (those the
/// cache committed before the purge still do not).
pub async fn recreated(pool: &PgPool, domain: &str, scope: &ScopeKey) -> Result<(), DomainError> {
    let mut tx = pool.begin().await.map_err(DomainError::from_sqlx)?;
    lock_exclusively(&mut tx, domain, scope).await?;
    execute(
        &mut tx,
        "UPDATE purged_scopes SET recreated_at = now() WHERE domain = $1 AND scope = $2 AND recreated_at IS NULL",
        domain,
        scope,
    )
    .await?;
    tx.commit().await.map_err(DomainError::from_sqlx)?;
    Ok(())
}
