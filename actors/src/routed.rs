//! A domain's shards on this node, and the one connection that routes each scope to
//! the shard it lives on (`scopes.shard`, see [`boardsync_core::shards`]). With one
//! shard (or on the PostgreSQL adapter) it routes without a lookup.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use actix::Addr;
use async_trait::async_trait;
use boardsync_core::cache::Cache;
use boardsync_core::shards::Shard;
use boardsync_core::{
    ActingUser, AdapterKind, Connection, Domain, DomainError, Durability, EventStream, Page, ScopeKey, ScopeStore,
};
use futures::StreamExt;

use crate::warmup::WarmupCoordinator;

/// One shard of a domain on this node: its adapter and, on the cache adapter, its
/// cache, its warm-up coordinator, and whether this node drains its outbox.
pub struct ShardHandle<D: Domain> {
    pub shard: Shard,
    pub connection: Arc<dyn Connection<D>>,
    pub cache: Option<Arc<dyn Cache<D>>>,
    pub warmup: Option<Addr<WarmupCoordinator<D>>>,
    /// Set by the shard's outbox poller while this node holds its drainer lease.
    pub drains_here: Arc<AtomicBool>,
}

/// Every shard of domain `D` on this node, first shard first.
pub struct Routed<D: Domain> {
    pub shards: Vec<ShardHandle<D>>,
    scopes: Arc<ScopeStore>,
}

/// A scope stored on a shard this node was not given (its settings lack it).
fn unknown_shard(name: &str) -> DomainError {
    tracing::error!(shard = name, "a scope lives on a shard missing from spacetimedb.shards");
    DomainError::unavailable("shard_unavailable", "this scope's cache shard is not configured on this server")
}

impl<D: Domain> Routed<D> {
    pub fn new(shards: Vec<ShardHandle<D>>, scopes: Arc<ScopeStore>) -> Self {
        assert!(!shards.is_empty(), "a domain runs on at least one shard");
        Self { shards, scopes }
    }

    /// The shard named `name` (none: the first).
    pub fn named(&self, name: Option<&str>) -> Result<&ShardHandle<D>, DomainError> {
        match name {
            None => Ok(&self.shards[0]),
            Some(name) => self.shards.iter().find(|s| s.shard.name == name).ok_or_else(|| unknown_shard(name)),
        }
    }

    /// The shard `scope` lives on (404 when the scope does not exist).
    pub async fn of(&self, scope: &ScopeKey) -> Result<&ShardHandle<D>, DomainError> {
        if self.shards.len() == 1 {
            return Ok(&self.shards[0]);
        }
        let stored = self.scopes.require(D::NAME, D::SCOPE, scope).await?;
        self.named(stored.shard.as_deref())
    }

    /// Where a new scope goes: a stable hash of its key over the shards (none on the
    /// PostgreSQL adapter).
    pub fn place(&self, scope: &ScopeKey) -> Option<String> {
        self.shards[0].cache.as_ref()?;
        let names: Vec<String> = self.shards.iter().map(|s| s.shard.name.clone()).collect();
        boardsync_core::shards::place(D::NAME, scope.as_str(), &names).map(str::to_owned)
    }

    /// Resolves once `scope` is no longer where it was placed at `placed_at` (it
    /// moved, even away and back, or was deleted).
    async fn moved_from(
        scopes: Arc<ScopeStore>,
        mut changes: tokio::sync::broadcast::Receiver<(String, ScopeKey)>,
        scope: ScopeKey,
        placed_at: chrono::DateTime<chrono::Utc>,
    ) {
        loop {
            let relevant = match changes.recv().await {
                Ok((domain, key)) => domain.is_empty() || (domain == D::NAME && key == scope),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => true,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return futures::future::pending().await,
            };
            if !relevant {
                continue;
            }
            loop {
                match scopes.get(D::NAME, &scope).await {
                    Ok(Some(stored)) if stored.placed_at == placed_at => break,
                    Ok(_) => return,
                    // PostgreSQL unreadable: looked up again shortly.
                    Err(_) => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
                }
            }
        }
    }
}

#[async_trait]
impl<D: Domain> Connection<D> for Routed<D> {
    fn kind(&self) -> AdapterKind {
        self.shards[0].connection.kind()
    }

    async fn snapshot(&self, scope: &ScopeKey, page: Page) -> Result<Vec<D::Item>, DomainError> {
        self.of(scope).await?.connection.snapshot(scope, page).await
    }

    async fn apply(
        &self,
        scope: &ScopeKey,
        actor: &ActingUser,
        command: D::Command,
        durability: Durability,
    ) -> Result<D::Event, DomainError> {
        self.of(scope).await?.connection.apply(scope, actor, command, durability).await
    }

    /// The scope's shard's events, until the scope moves: the feed then ends, its
    /// subscribers are told to resync, and it reopens on the new shard.
    async fn subscribe(&self, scope: &ScopeKey) -> Result<EventStream<D::Event>, DomainError> {
        if self.shards.len() == 1 {
            return self.shards[0].connection.subscribe(scope).await;
        }
        // Watching before looking up: a move meanwhile still ends the feed.
        let changes = self.scopes.watch();
        let stored = self.scopes.require(D::NAME, D::SCOPE, scope).await?;
        let shard = self.named(stored.shard.as_deref())?;
        let events = shard.connection.subscribe(scope).await?;
        let moved = Self::moved_from(self.scopes.clone(), changes, scope.clone(), stored.placed_at);
        Ok(Box::pin(events.take_until(Box::pin(moved))))
    }
}
