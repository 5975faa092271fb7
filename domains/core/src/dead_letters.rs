//! Dead letters: outbox entries PostgreSQL refused on their own, kept in
//! `outbox_dead_letters` with why. An operator lists them, and after fixing what
//! PostgreSQL objected to replays one (written as the outbox would have, or found
//! superseded by a newer state) or discards it.

use std::collections::HashMap;

use serde::Serialize;
use sqlx::{PgPool, Row};

use crate::cache::refused_for_good;
use crate::cache_adapter::{persist_checked, CacheBinding};
use crate::{DomainError, ErrorKind};

/// One dead letter, as the admin API shows it.
#[derive(Debug, Serialize)]
pub struct DeadLetter {
    pub id: i64,
    pub domain: String,
    /// The scope its payload names (none for an unreadable payload, or a letter older
    /// than the column).
    pub scope: Option<String>,
    pub cache_epoch: i64,
    pub seq: i64,
    pub entity: String,
    pub kind: String,
    /// The entity's state the cache committed (JSON), or the unreadable row as text.
    pub payload: serde_json::Value,
    pub request_id: String,
    /// What PostgreSQL said.
    pub error: String,
    pub failed_at: chrono::DateTime<chrono::Utc>,
}

/// What a replay did.
#[derive(Debug, Serialize)]
pub struct Replayed {
    pub id: i64,
    /// 1 when PostgreSQL took the state; 0 when it already held it or a newer one.
    pub written: usize,
}

/// The oldest first, of one domain or all.
pub async fn list(pool: &PgPool, domain: Option<&str>, limit: i64) -> Result<Vec<DeadLetter>, DomainError> {
    let rows = sqlx::query(
        "SELECT id, domain, scope, cache_epoch, seq, entity, kind, payload, request_id, error, failed_at
           FROM outbox_dead_letters WHERE $1::text IS NULL OR domain = $1 ORDER BY id LIMIT $2",
    )
    .bind(domain)
    .bind(limit)
    .fetch_all(pool)
    .await
    .map_err(DomainError::from_sqlx)?;
    rows.into_iter()
        .map(|row| {
            let payload: String = row.try_get("payload")?;
            Ok(DeadLetter {
                id: row.try_get("id")?,
                domain: row.try_get("domain")?,
                scope: row.try_get("scope")?,
                cache_epoch: row.try_get("cache_epoch")?,
                seq: row.try_get("seq")?,
                entity: row.try_get("entity")?,
                kind: row.try_get("kind")?,
                payload: serde_json::from_str(&payload).unwrap_or(serde_json::Value::String(payload)),
                request_id: row.try_get("request_id")?,
                error: row.try_get("error")?,
                failed_at: row.try_get("failed_at")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(DomainError::from_sqlx)
}

/// How many dead letters each domain has (domains with none are left out).
pub async fn counts(pool: &PgPool) -> Result<HashMap<String, i64>, DomainError> {
    let rows: Vec<(String, i64)> = sqlx::query_as("SELECT domain, count(*) FROM outbox_dead_letters GROUP BY domain")
        .fetch_all(pool)
        .await
        .map_err(DomainError::from_sqlx)?;
    Ok(rows.into_iter().collect())
}

fn not_found(id: i64) -> DomainError {
    DomainError::not_found("dead_letter_not_found", format!("no dead letter {id} in this domain"))
}

/// Writes the dead letter's state into PostgreSQL under the outbox's own rules (never
/// over a newer version; refused when PostgreSQL holds other content at that version,
/// or the entity under another scope or creator) and removes it, in one transaction.
/// Refused again: 409 `replay_refused`, and the letter keeps the new error. Returns the
/// state replayed, for the caller to hand to the cache.
pub async fn replay<D: CacheBinding>(pool: &PgPool, id: i64) -> Result<(Replayed, D::Item), DomainError> {
    let mut tx = pool.begin().await.map_err(DomainError::from_sqlx)?;
    let payload: Option<String> =
        sqlx::query_scalar("SELECT payload FROM outbox_dead_letters WHERE id = $1 AND domain = $2 FOR UPDATE")
            .bind(id)
            .bind(D::NAME)
            .fetch_optional(&mut *tx)
            .await
            .map_err(DomainError::from_sqlx)?;
    let payload = payload.ok_or_else(|| not_found(id))?;
    let item: D::Item = serde_json::from_str(&payload).map_err(|error| {
        tracing::warn!(domain = D::NAME, id, %error, "dead letter unreadable as an item");
        DomainError::invalid("unreadable_dead_letter", "this dead letter's payload is not an item of the domain")
    })?;
    let written = match persist_checked::<D>(&mut tx, vec![(item.clone(), None)]).await {
        Ok(written) => written,
        Err(error) if refused_for_good(&error) => {
            drop(tx);
            tracing::warn!(domain = D::NAME, id, %error, "dead letter refused again");
            sqlx::query("UPDATE outbox_dead_letters SET error = $2, failed_at = now() WHERE id = $1")
                .bind(id)
                .bind(error.to_string())
                .execute(pool)
                .await
                .map_err(DomainError::from_sqlx)?;
            return Err(DomainError::new(
                ErrorKind::Conflict,
                "replay_refused",
                "PostgreSQL refused the write again; the dead letter keeps its new error",
            ));
        }
        Err(error) => return Err(error),
    };
    sqlx::query("DELETE FROM outbox_dead_letters WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(DomainError::from_sqlx)?;
    tx.commit().await.map_err(DomainError::from_sqlx)?;
    tracing::info!(domain = D::NAME, id, written, "dead letter replayed");
    Ok((Replayed { id, written }, item))
}

/// Drops a dead letter for good.
pub async fn discard(pool: &PgPool, domain: &str, id: i64) -> Result<(), DomainError> {
    let deleted = sqlx::query("DELETE FROM outbox_dead_letters WHERE id = $1 AND domain = $2")
        .bind(id)
        .bind(domain)
        .execute(pool)
        .await
        .map_err(DomainError::from_sqlx)?
        .rows_affected();
    if deleted == 0 {
        return Err(not_found(id));
    }
    tracing::info!(domain, id, "dead letter discarded");
    Ok(())
}
