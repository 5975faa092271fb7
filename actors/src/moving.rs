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
//! shard); a move to the shard a scope lives on thaws it (one that stopped half-way).
//! One move of a scope runs at a time, across every node (an advisory lock), on a
//! task of its own (a request given up does not stop it half-way).

use std::sync::Arc;
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

pub(crate) struct Move<D: Domain> {
    pub routed: Arc<Routed<D>>,
    pub scopes: Arc<ScopeStore>,
    pub board: Arc<WarmupBoard>,
    pub pool: PgPool,
}

impl<D: Domain> Move<D> {
    /// Runs the move to its end on a task of its own: a request given up half-way
    /// (a client's or a proxy's timeout) must not leave the scope frozen.
    pub async fn detached(self, scope: ScopeKey, to: String, within: Duration) -> Result<Value, DomainError> {
        tokio::spawn(async move { self.run(&scope, &to, within).await })
            .await
            .map_err(|error| DomainError::internal("a scope's move stopped").caused_by(error))?
    }

    async fn run(&self, scope: &ScopeKey, to: &str, within: Duration) -> Result<Value, DomainError> {
        if self.routed.shards[0].cache.is_none() {
            return Err(DomainError::conflict(
                "no_cache",
                format!("the {} domain runs on the PostgreSQL adapter: there are no shards", D::NAME),
            ));
        }
        let Some(target) = self.routed.shards.iter().find(|handle| handle.shard.name == to) else {
            let names: Vec<&str> = self.routed.shards.iter().map(|handle| handle.shard.name.as_str()).collect();
            return Err(DomainError::invalid("unknown_shard", format!("no shard {to:?}; the shards are {names:?}")));
        };
        let Some(lock) = crate::scope_lock::try_scope_lock(&self.pool, MOVE_LOCKS, D::NAME, scope).await? else {
            return Err(DomainError::conflict(
                "move_in_progress",
                format!("{} {scope} is being moved already", D::SCOPE),
            ));
        };
        // Where it lives, read from PostgreSQL under the lock (not from what this node
        // keeps, which may be behind another node's move).
        let stored = self
            .scopes
            .stored_shard(D::NAME, scope)
            .await?
            .ok_or_else(|| boardsync_core::scope::missing(D::NAME, D::SCOPE, scope))?;
        let source = self.routed.named(stored.as_deref())?;
        let (Some(from), Some(into)) = (&source.cache, &target.cache) else {
            return Err(DomainError::conflict("no_cache", "these shards have no cache"));
        };
        if from.epoch().is_none() || into.epoch().is_none() {
            return Err(DomainError::unavailable(
                "shard_unavailable",
                "both shards must be connected to move a scope; retry once they are",
            ));
        }
        if source.shard.name == target.shard.name {
            // A move to where it lives calls off one that stopped half-way: the scope
            // takes commands there again.
            from.move_step(MoveStep::Thaw, scope).await?;
            lock.commit().await.map_err(DomainError::from_sqlx)?;
            return Ok(
                json!({ "domain": D::NAME, "scope": scope, "from": source.shard.name, "to": to, "thawed": true }),
            );
        }
        let started = Instant::now();
        tracing::info!(domain = D::NAME, scope = %scope, from = %source.shard.name, to, "moving a scope");
        let called_off = |error: DomainError| async move {
            if let Err(thaw) = from.move_step(MoveStep::Thaw, scope).await {
                tracing::error!(domain = D::NAME, scope = %scope, error = %thaw, "a called-off move cannot thaw its scope: move it to its own shard to thaw it");
            }
            tracing::warn!(domain = D::NAME, scope = %scope, %error, "scope move called off");
            error
        };
        if let Err(error) = from.move_step(MoveStep::Freeze, scope).await {
            // (It may have been frozen all the same, its answer lost.)
            return Err(called_off(error).await);
        }
        // The source's generation once frozen: any reconnect or restart of it after
        // this may have lost the freeze, and the writes before it.
        let generation = from.generation();
        let restarted = || {
            DomainError::unavailable(
                "shard_unavailable",
                "the scope's cache shard reconnected or restarted during the move; nothing moved: move it again",
            )
        };
        // Every write committed before the freeze has been reported here by now (the
        // cache reports transactions in order): wait until PostgreSQL holds them.
        let deadline = Instant::now() + within;
        loop {
            if from.generation() != generation {
                return Err(called_off(restarted()).await);
            }
            if let Err(error) = from.restore(&self.pool, scope).await {
                return Err(called_off(error).await);
            }
            if from.pending_in(scope) == 0 {
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
        if from.generation() != generation {
            return Err(called_off(restarted()).await);
        }
        // The switch, only from where it was found under the lock.
        let switched = match self.scopes.set_shard(D::NAME, scope, stored.as_deref(), to).await {
            Ok(switched) => switched,
            // Committed or not? PostgreSQL says; if it cannot, the scope stays frozen
            // (thawing it could let two shards take its writes): moving it again reads
            // where it lives and finishes or thaws it.
            Err(error) => match self.scopes.stored_shard(D::NAME, scope).await {
                Ok(Some(now)) if now.as_deref() == Some(to) => true,
                Ok(_) => return Err(called_off(error).await),
                Err(_) => {
                    tracing::error!(domain = D::NAME, scope = %scope, %error, "a move's switch has an unknown outcome: the scope stays frozen until it is moved again");
                    return Err(DomainError::unavailable(
                        "move_unfinished",
                        "the move's switch could not be confirmed; the scope stays frozen: move it again",
                    ));
                }
            },
        };
        if !switched {
            let error =
                DomainError::conflict("move_in_progress", format!("{} {scope} moved or went meanwhile", D::SCOPE));
            return Err(called_off(error).await);
        }
        let switched_ms = started.elapsed().as_millis() as u64;
        // Warmed from PostgreSQL, which holds every write of it now.
        if let Some(warmup) = &target.warmup {
            warmup.do_send(WarmScope { scope: scope.clone(), force: true });
        }
        let placed_at = self.scopes.require(D::NAME, D::SCOPE, scope).await.map(|stored| stored.placed_at);
        let warm_deadline = Instant::now() + within;
        let mut warmed = false;
        while let Ok(placed_at) = placed_at {
            if self.board.is_warm(D::NAME, scope, into.generation(), placed_at) {
                warmed = true;
                break;
            }
            if Instant::now() >= warm_deadline {
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
        // (The move is done whatever this says: its lock goes with the transaction.)
        if let Err(error) = lock.commit().await {
            tracing::warn!(domain = D::NAME, scope = %scope, %error, "a finished move's lock transaction did not commit");
        }
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
