//! A scope's advisory locks in PostgreSQL (a warm-up's, a move's), taken without
//! waiting and held by a transaction.

use boardsync_core::{DomainError, ScopeKey};
use sqlx::PgPool;

/// A transaction holding the scope's advisory lock of namespace `keys` (a move's,
/// a warm-up's), if the lock was free: held until the transaction ends, also if
/// this process dies. Never a wait: a node that vanished may hold one until
/// PostgreSQL ends its session.
pub(crate) async fn try_scope_lock(
    pool: &PgPool,
    keys: i32,
    domain: &str,
    scope: &ScopeKey,
) -> Result<Option<sqlx::Transaction<'static, sqlx::Postgres>>, DomainError> {
    // READ COMMITTED whatever the server's default: a warm-up reads its window in this
    // transaction after writes restored on another connection, and must see them.
    let mut lock = pool.begin_with("BEGIN ISOLATION LEVEL READ COMMITTED").await.map_err(DomainError::from_sqlx)?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1, hashtext($2 || '/' || $3))")
        .bind(keys)
        .bind(domain)
        .bind(scope.as_str())
        .fetch_one(&mut *lock)
        .await
        .map_err(DomainError::from_sqlx)?;
    Ok(locked.then_some(lock))
}
