//! Moving a scope to another cache shard (an operator's command), losing no write:
//!
//! 1. freeze it on its shard: the module refuses its commands (503 `scope_moving`,
//!    which clients retry);
//! 2. drain: wait until PostgreSQL holds every write of it (its shard's outbox holds
//!    none, and this node keeps none);
//! 3. have the target shard drop whatever an earlier stay there left;
//! 4. switch `scopes.shard` in PostgreSQL: every node routes the scope to the target
//!    from its next command (the scopes trigger tells them), and its live feeds end,
//!    so their subscribers resync;
//! 5. warm it on the target from PostgreSQL;
//! 6. clear it on the source; a node that has not heard of the switch yet is refused
//!    there (503 `scope_moving`), never served an empty scope.
//!
//! Until the switch, a failure calls the move off (the scope is thawed on its
//! shard). One move of a scope runs at a time, across every node (an advisory lock).

use std::time::{Duration, Instant};

use boardsync_core::cache_adapter::MoveStep;
use boardsync_core::{Domain, DomainError, ScopeKey, ScopeStore};
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::routed::Routed;
use crate::warmup::{WarmScope, WarmupBoard};

/// The first key of the lock a scope's move holds ("bsmv").
pub const MOVE_LOCKS: i32 = 0x6273_6d76;

/// How often a move looks again whether its scope has drained, or warmed.
const LOOK_AGAIN: Duration = Duration::from_millis(20);

pub(crate) struct Move<'a, D: Domain> {
    pub routed: &'a Routed<D>,
    pub scopes: &'a ScopeStore,
    pub board: &'a WarmupBoard,
    pub pool: &'a PgPool,
}

impl<D: Domain> Move<'_, D> {
    pub async fn run(&self, scope: &ScopeKey, to: &str, within: Duration) -> Result<Value, DomainError> {
        let stored = self.scopes.require(D::NAME, D::SCOPE, scope).await?;
        let source = self.routed.named(stored.shard.as_deref())?;
        let Some(target) = self.routed.shards.iter().find(|handle| handle.shard.name == to) else {
            let names: Vec<&str> = self.routed.shards.iter().map(|handle| handle.shard.name.as_str()).collect();
            return Err(DomainError::invalid("unknown_shard", format!("no shard {to:?}; the shards are {names:?}")));
        };
        let (Some(from), Some(into)) = (&source.cache, &target.cache) else {
            return Err(DomainError::conflict(
                "no_cache",
                format!("the {} domain runs on the PostgreSQL adapter: there are no shards", D::NAME),
            ));
        };
        if source.shard.name == target.shard.name {
            return Err(DomainError::conflict("already_there", format!("{} {scope} lives on {to} already", D::SCOPE)));
        }
        if from.epoch().is_none() || into.epoch().is_none() {
            return Err(DomainError::unavailable(
                "shard_unavailable",
                "both shards must be connected to move a scope; retry once they are",
            ));
        }
        let mut lock = self.pool.begin().await.map_err(DomainError::from_sqlx)?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1, hashtext($2 || '/' || $3))")
            .bind(MOVE_LOCKS)
            .bind(D::NAME)
            .bind(scope.as_str())
            .fetch_one(&mut *lock)
            .await
            .map_err(DomainError::from_sqlx)?;
        if !locked {
            return Err(DomainError::conflict(
                "move_in_progress",
                format!("{} {scope} is being moved already", D::SCOPE),
            ));
        }
        let started = Instant::now();
        tracing::info!(domain = D::NAME, scope = %scope, from = %source.shard.name, to, "moving a scope");
        from.move_step(MoveStep::Freeze, scope).await?;
        let called_off = |error: DomainError| async move {
            if let Err(thaw) = from.move_step(MoveStep::Thaw, scope).await {
                tracing::error!(domain = D::NAME, scope = %scope, error = %thaw, "a called-off move cannot thaw its scope");
            }
            tracing::warn!(domain = D::NAME, scope = %scope, %error, "scope move called off");
            error
        };
        // Every write committed before the freeze has been reported here by now (the
        // cache reports transactions in order): wait until PostgreSQL holds them.
        let deadline = Instant::now() + within;
        loop {
            if let Err(error) = from.restore(self.pool, scope).await {
                return Err(called_off(error).await);
            }
            if from.pending_in(scope) == 0 && from.epoch().is_some() {
                break;
            }
            if Instant::now() >= deadline {
                let error = DomainError::unavailable(
                    "move_not_drained",
                    format!(
                        "the scope's writes did not reach PostgreSQL within {} ms; nothing moved",
                        within.as_millis()
                    ),
                );
                return Err(called_off(error).await);
            }
            tokio::time::sleep(LOOK_AGAIN).await;
        }
        let drained_ms = started.elapsed().as_millis() as u64;
        if let Err(error) = into.move_step(MoveStep::Take, scope).await {
            return Err(called_off(error).await);
        }
        if let Err(error) = self.scopes.set_shard(D::NAME, scope, to).await {
            return Err(called_off(error).await);
        }
        let switched_ms = started.elapsed().as_millis() as u64;
        // Warmed from PostgreSQL, which holds every write of it now.
        if let Some(warmup) = &target.warmup {
            warmup.do_send(WarmScope { scope: scope.clone(), force: true });
        }
        let warm_deadline = Instant::now() + within;
        let mut warmed = false;
        while Instant::now() < warm_deadline {
            let on_target =
                self.board.list(Some(D::NAME)).into_iter().any(|status| &status.scope == scope && status.shard == to);
            if on_target && self.board.is_warm(D::NAME, scope, into.generation()) {
                warmed = true;
                break;
            }
            tokio::time::sleep(LOOK_AGAIN).await;
        }
        let cleared = match from.move_step(MoveStep::Release, scope).await {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(domain = D::NAME, scope = %scope, %error, "moved, but not yet cleared on its old shard");
                false
            }
        };
        lock.commit().await.map_err(DomainError::from_sqlx)?;
        let moved_ms = started.elapsed().as_millis() as u64;
        tracing::info!(domain = D::NAME, scope = %scope, from = %source.shard.name, to, drained_ms, moved_ms, "scope moved");
        Ok(json!({
            "domain": D::NAME,
            "scope": scope,
            "from": source.shard.name,
            "to": to,
            "drained_ms": drained_ms,
            "switched_ms": switched_ms,
            "moved_ms": moved_ms,
            "warm_on_target": warmed,
            "cleared_on_source": cleared,
        }))
    }
}
