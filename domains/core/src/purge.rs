//! Purging a scope: its items deleted for good, from PostgreSQL and from the cache,
//! beside the scope and its members.
//!
//! Every write of a scope to PostgreSQL (a PostgreSQL-adapter command, an outbox
//! entry, a kept write restored after a cache loss, a dead letter replayed) first
//! takes the scope's advisory lock shared ([`guard_write`]); the purge takes it
//! exclusively. So a write committed before the purge is deleted by it, and one after
//! finds the purge mark (with the scope still deleted) and is dropped: nothing
//! acknowledged before the purge outlives it, and nothing brings its rows back.

use sqlx::PgConnection;
use sqlx::PgPool;

use crate::pg_adapter::PostgresBinding;
use crate::{DomainError, ScopeKey};

/// One lock per scope (a hash collision only serializes two scopes' writes).
fn lock_name(domain: &str, scope: &str) -> String {
    format!("boardsync-scope:{domain}/{scope}")
}

/// Takes the scope's lock shared for the transaction; true when the scope was purged
/// and not created again, so the write must not land.
pub async fn guard_write(tx: &mut PgConnection, domain: &str, scope: &str) -> Result<bool, DomainError> {
    // Two statements: under READ COMMITTED a statement reads the snapshot taken when it
    // began, so a check in the statement that waited for the lock would miss the
    // purge it waited for.
    sqlx::query("SELECT pg_advisory_xact_lock_shared(hashtext($1))")
        .bind(lock_name(domain, scope))
        .execute(&mut *tx)
        .await
        .map_err(DomainError::from_sqlx)?;
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM purged_scopes p WHERE p.domain = $1 AND p.scope = $2
                          AND NOT EXISTS (SELECT 1 FROM scopes s WHERE s.domain = $1 AND s.key = $2))",
    )
    .bind(domain)
    .bind(scope)
    .fetch_one(&mut *tx)
    .await
    .map_err(DomainError::from_sqlx)
}

/// What a purge deleted in PostgreSQL.
#[derive(Debug, serde::Serialize)]
pub struct Purged {
    /// The domain's rows (messages, cards, elements, options; their children with them).
    pub items: u64,
    /// Live events kept for listeners.
    pub events: u64,
}

/// Deletes the scope, its members, its items and its kept live events, and leaves the
/// purge mark, in one transaction under the scope's exclusive lock. A scope already
/// purged may be purged again (to finish a purge whose cache step failed); one that
/// neither exists nor was purged is 404.
pub async fn purge_postgres<D: PostgresBinding>(
    pool: &PgPool,
    scope: &ScopeKey,
) -> Result<Option<Purged>, DomainError> {
    let mut tx = pool.begin().await.map_err(DomainError::from_sqlx)?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
        .bind(lock_name(D::NAME, scope.as_str()))
        .execute(&mut *tx)
        .await
        .map_err(DomainError::from_sqlx)?;
    let existed = sqlx::query("DELETE FROM scopes WHERE domain = $1 AND key = $2")
        .bind(D::NAME)
        .bind(scope.as_str())
        .execute(&mut *tx)
        .await
        .map_err(DomainError::from_sqlx)?
        .rows_affected()
        > 0;
    let purged_before: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM purged_scopes WHERE domain = $1 AND scope = $2)")
            .bind(D::NAME)
            .bind(scope.as_str())
            .fetch_one(&mut *tx)
            .await
            .map_err(DomainError::from_sqlx)?;
    if !existed && !purged_before {
        return Ok(None);
    }
    sqlx::query(
        "INSERT INTO purged_scopes (domain, scope) VALUES ($1, $2)
         ON CONFLICT (domain, scope) DO UPDATE SET purged_at = now(), cache_cleared = false",
    )
    .bind(D::NAME)
    .bind(scope.as_str())
    .execute(&mut *tx)
    .await
    .map_err(DomainError::from_sqlx)?;
    let items = D::purge(&mut tx, scope).await?;
    let events = sqlx::query("DELETE FROM domain_events WHERE domain = $1 AND scope = $2")
        .bind(D::NAME)
        .bind(scope.as_str())
        .execute(&mut *tx)
        .await
        .map_err(DomainError::from_sqlx)?
        .rows_affected();
    tx.commit().await.map_err(DomainError::from_sqlx)?;
    Ok(Some(Purged { items, events }))
}

/// The cache forgot the scope too (or there is none): it may be created again.
pub async fn cache_cleared(pool: &PgPool, domain: &str, scope: &ScopeKey) -> Result<(), DomainError> {
    sqlx::query("UPDATE purged_scopes SET cache_cleared = true WHERE domain = $1 AND scope = $2")
        .bind(domain)
        .bind(scope.as_str())
        .execute(pool)
        .await
        .map_err(DomainError::from_sqlx)?;
    Ok(())
}

/// Refuses to create a scope again while its purge has not cleared the cache (the
/// cache could still show the purged items): finish the purge first.
pub async fn check_recreate(pool: &PgPool, domain: &str, scope: &ScopeKey) -> Result<(), DomainError> {
    let unfinished: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM purged_scopes WHERE domain = $1 AND scope = $2 AND NOT cache_cleared)",
    )
    .bind(domain)
    .bind(scope.as_str())
    .fetch_one(pool)
    .await
    .map_err(DomainError::from_sqlx)?;
    if unfinished {
        return Err(DomainError::conflict(
            "purge_unfinished",
            "this scope's purge has not reached the cache yet: purge it again, then create it",
        ));
    }
    Ok(())
}
