//! The JSON-level face of a running domain, so the API can route `/api/{domain}/...`
//! by name without knowing any domain's types.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use async_trait::async_trait;
use boardsync_core::access::{Caller, Need};
use boardsync_core::factory::{connect, AdapterContext, SpacetimeTarget};
use boardsync_core::scope::parse_config;
use boardsync_core::spacetime::cache_unavailable;
use boardsync_core::{
    ActingUser, AdapterKind, Connection, Domain, DomainAdapters, DomainError, Durability, Page, ScopeKey, ScopeStore,
};
use serde_json::{json, Value};

use crate::adapter::{AdapterActor, LiveSender, Subscribe, SubscriberId, Unsubscribe};
use crate::metrics::CacheMetrics;
use crate::outbox::OutboxPoller;
use crate::routed::{Routed, ShardHandle};
use crate::warmup::{WarmAll, WarmScope, WarmupBoard, WarmupContext, WarmupCoordinator, WarmupScheduler};
use boardsync_core::shards::Shard;

/// Snapshot page sizes the API allows.
#[derive(Debug, Clone, Copy)]
pub struct PageLimits {
    pub default: u32,
    pub max: u32,
}

/// The answer to a write, or a new live socket, once this server's graceful stop has
/// begun (503; the client retries, here after a restart or on another node).
pub fn shutting_down() -> DomainError {
    DomainError::unavailable("shutting_down", "the server is shutting down; retry shortly")
}

#[async_trait]
pub trait DomainService: Send + Sync {
    fn name(&self) -> &'static str;
    /// What a scope is called: "channel", "board".
    fn scope_noun(&self) -> &'static str;
    fn adapter(&self) -> AdapterKind;
    /// Validates a scope's `config` object.
    fn validate_scope_config(&self, config: &Value) -> Result<(), DomainError>;
    /// The domain's part of the API document: schemas of its commands, events and
    /// items, generated from its Rust types into `generator` (which collects the
    /// definitions they refer to), and how its snapshot lists items.
    fn describe(&self, generator: &mut schemars::SchemaGenerator) -> DomainDescription;
    /// `{"items": [...], "has_more": bool, "next_before": cursor-or-null}` in the
    /// domain's order ([`Domain::SNAPSHOT`]), if `caller` may read the scope.
    async fn snapshot(
        &self,
        scope: &ScopeKey,
        caller: &Caller<'_>,
        limit: Option<u32>,
        before: Option<String>,
    ) -> Result<Value, DomainError>;
    /// Applies a JSON command (tagged by `type`; `durability` optional) as `caller`,
    /// if they may write the scope, and returns the event.
    async fn apply(&self, scope: &ScopeKey, caller: &Caller<'_>, command: Value) -> Result<Value, DomainError>;
    /// Subscribes to the scope's live events, if `caller` may read it.
    async fn subscribe(
        &self,
        scope: &ScopeKey,
        caller: &Caller<'_>,
        subscriber: LiveSender,
    ) -> Result<SubscriberId, DomainError>;
    /// Whether `caller` may (still) read the scope.
    async fn may_read(&self, scope: &ScopeKey, caller: &Caller<'_>) -> Result<(), DomainError>;
    fn unsubscribe(&self, scope: &ScopeKey, id: SubscriberId);
    /// Warms `scope` again (or every scope); a 409 on the PostgreSQL adapter, which has no cache.
    async fn rewarm(&self, scope: Option<&ScopeKey>) -> Result<(), DomainError>;
    /// A scope was created or its config changed: warm it with its new settings.
    async fn scope_changed(&self, scope: &ScopeKey);
    /// On the SpacetimeDB adapter: whether every shard's cache is connected now.
    fn cache_connected(&self) -> Option<bool>;
    /// On the SpacetimeDB adapter: whether this node drains an outbox of the domain
    /// now (one node on a PostgreSQL drains each shard's).
    fn drains_outbox(&self) -> Option<bool>;
    /// On the SpacetimeDB adapter: each shard of the domain, as this node sees it.
    fn shards(&self) -> Vec<ShardStatus>;
    /// Where a new scope goes (`None` on the PostgreSQL adapter).
    fn place(&self, scope: &ScopeKey) -> Option<String>;
    /// Moves a scope to cache shard `to`, losing no write (see [`crate::moving`]):
    /// its writes stop (503 `scope_moving`, retried by clients), its outbox drains
    /// into PostgreSQL, it is switched to `to` and warmed there from PostgreSQL, and
    /// cleared on its old shard; its live subscribers resync. A move to the shard it
    /// lives on thaws it (a move that stopped half-way).
    async fn move_scope(&self, scope: &ScopeKey, to: &str, drain_within: Duration) -> Result<Value, DomainError>;

    /// Shutting down: refuse new writes (503 `shutting_down`) from now on.
    fn stop_writes(&self);

    /// Drains the outbox into PostgreSQL until it is empty or `within` has passed,
    /// then writes whatever else this backend kept of the cache's writes; returns how
    /// many writes PostgreSQL may still lack (none on the PostgreSQL adapter).
    async fn drain(&self, within: Duration) -> usize;

    /// Writes one of the domain's dead letters into PostgreSQL under the outbox's
    /// rules and removes it (see [`boardsync_core::dead_letters::replay`]).
    async fn replay_dead_letter(&self, id: i64) -> Result<boardsync_core::dead_letters::Replayed, DomainError>;

    /// Deletes the scope, its members and every item of it, in PostgreSQL and in the
    /// cache; its live sockets close. No write of it acknowledged before lands after
    /// (see [`boardsync_core::purge`]).
    async fn purge(&self, scope: &ScopeKey) -> Result<boardsync_core::purge::Purged, DomainError>;

    /// Before `scope` is created (again): a purge of it must have reached the cache
    /// (else 409 `purge_unfinished`), and the cache takes its commands again.
    async fn prepare_recreate(&self, scope: &ScopeKey) -> Result<(), DomainError>;
}

/// One shard of a domain as this node sees it (see [`DomainService::shards`]).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ShardStatus {
    pub shard: String,
    /// Its outbox's lease key: `<domain>` on the first shard, `<domain>/<shard>` on others.
    pub unit: String,
    pub cache_connected: bool,
    pub drains_outbox: bool,
    /// How many scopes' rows this node holds from the shard (null: all of them).
    pub subscribed_scopes: Option<usize>,
}

/// See [`DomainService::describe`].
pub struct DomainDescription {
    /// [`Domain::NAME`] and [`Domain::SCOPE`].
    pub name: &'static str,
    pub noun: &'static str,
    pub command: schemars::Schema,
    pub event: schemars::Schema,
    pub item: schemars::Schema,
    /// What its live sockets send ([`crate::ServerFrame`] of its events).
    pub server_frame: schemars::Schema,
    /// A scope's `config`: the framework's keys and the domain's own.
    pub scope_config: schemars::Schema,
    /// [`Domain::SNAPSHOT`].
    pub snapshot: &'static str,
}

impl DomainDescription {
    /// Domain `D`'s part of the API document, without running it (for
    /// `boardsync openapi`, and the generated client types).
    pub fn of<D: Domain>(generator: &mut schemars::SchemaGenerator) -> Self {
        DomainDescription {
            name: D::NAME,
            noun: D::SCOPE,
            command: generator.subschema_for::<D::Command>(),
            event: generator.subschema_for::<D::Event>(),
            item: generator.subschema_for::<D::Item>(),
            server_frame: generator.subschema_for::<crate::ServerFrame<D::Event>>(),
            scope_config: scope_config_schema::<D>(generator),
            snapshot: D::SNAPSHOT,
        }
    }
}

/// A scope config's schema: the framework's keys beside the domain's own, refusing
/// others when the domain's part does (flattening loses that).
fn scope_config_schema<D: Domain>(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let own = generator.subschema_for::<D::ScopeConfig>();
    let combined = generator.subschema_for::<boardsync_core::scope::ScopeConfig<D::ScopeConfig>>();
    let name = |schema: &schemars::Schema| {
        schema.get("$ref").and_then(Value::as_str).and_then(|r| r.rsplit('/').next()).map(str::to_owned)
    };
    let closed = name(&own)
        .and_then(|own| generator.definitions().get(&own).cloned())
        .is_some_and(|own| own.get("additionalProperties") == Some(&Value::Bool(false)));
    if let (true, Some(combined)) = (closed, name(&combined)) {
        if let Some(Value::Object(definition)) = generator.definitions_mut().get_mut(&combined) {
            definition.insert("additionalProperties".into(), Value::Bool(false));
        }
    }
    combined
}

/// A running domain: its supervised [`AdapterActor`] and what the API checks first.
pub struct DomainHandle<D: Domain> {
    /// Commands and snapshots go straight to the scope's shard's connection, on the
    /// caller's (HTTP worker's) thread: they need no actor, since it is shared.
    routed: Arc<Routed<D>>,
    /// The live fan-out, which has state of its own.
    actor: Addr<AdapterActor<D>>,
    adapter: AdapterKind,
    scopes: Arc<ScopeStore>,
    settings: D::Settings,
    pages: PageLimits,
    board: Arc<WarmupBoard>,
    /// How long a write waits for its scope's warm-up.
    warm_wait: Duration,
    pool: sqlx::PgPool,
    metrics: CacheMetrics,
    outbox_batch_size: usize,
    stopping: std::sync::atomic::AtomicBool,
    /// Which nodes run each domain (a stopping drainer leaves other nodes' writes
    /// to one that runs on).
    liveness: Arc<crate::liveness::Liveness>,
    _domain: PhantomData<D>,
}

/// How often a write waiting for its scope's warm-up looks again.
const WARM_POLL: Duration = Duration::from_millis(10);

fn actor_gone<E: std::error::Error + Send + Sync + 'static>(error: E) -> DomainError {
    DomainError::unavailable("domain_unavailable", "the domain's actor is not running").caused_by(error)
}

impl<D: Domain> DomainHandle<D> {
    /// Whether another node holds the drainer lease of this domain's outbox on `shard`.
    async fn drained_elsewhere(&self, shard: &Shard) -> bool {
        let holders = crate::drainer::holders(&self.pool, std::slice::from_ref(&shard.unit)).await;
        holders.is_ok_and(|holders| holders.into_iter().any(|(_, holder)| holder.is_some()))
    }

    /// On the cache adapter, waits until `scope` is warm in the cache's current
    /// generation, for its current placement. A write taken before could carry a
    /// version PostgreSQL already has (the cache may have lost writes in a restart),
    /// and warm-up would then undo it; a snapshot taken before would be partial,
    /// served as if it were whole.
    ///
    /// Returns the shard the scope lives on, looked up once: the call that follows
    /// goes where the warm-up was checked, even if the scope moves meanwhile (the
    /// shard it left refuses it then).
    async fn until_warm(&self, scope: &ScopeKey) -> Result<&ShardHandle<D>, DomainError> {
        let stored = self.scopes.require(D::NAME, D::SCOPE, scope).await?;
        let shard = self.routed.named(stored.shard.as_deref())?;
        let Some(cache) = &shard.cache else { return Ok(shard) };
        // A scope this node has never queued on its shard was created after it
        // started, through another node (or moved there): it warms here now (its rows
        // in the cache were warmed by that node; warm-up never goes back on a newer
        // cached version).
        if self.board.list_if_new(D::NAME, scope, &shard.shard.name, stored.placed_at) {
            if let Some(warmup) = &shard.warmup {
                warmup.do_send(WarmScope { scope: scope.clone(), force: false });
            }
        }
        let deadline = tokio::time::Instant::now() + self.warm_wait;
        while !self.board.is_warm(D::NAME, scope, cache.generation(), stored.placed_at) {
            if cache.generation().is_none() {
                return Err(cache_unavailable());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(DomainError::unavailable(
                    "scope_warming",
                    format!("{} {scope} is being loaded into the cache; retry shortly", D::SCOPE),
                ));
            }
            tokio::time::sleep(WARM_POLL).await;
        }
        Ok(shard)
    }

    async fn existing_scope(&self, scope: &ScopeKey) -> Result<(), DomainError> {
        self.scopes.require(D::NAME, D::SCOPE, scope).await.map(|_| ())
    }

    /// Whether `caller` may do what `need` asks; allowed: whether they own the scope.
    async fn authorize(&self, scope: &ScopeKey, caller: &Caller<'_>, need: Need) -> Result<bool, DomainError> {
        self.scopes.authorize(D::NAME, D::SCOPE, scope, caller, need).await
    }
}

#[async_trait]
impl<D: DomainAdapters> DomainService for DomainHandle<D> {
    fn name(&self) -> &'static str {
        D::NAME
    }

    fn scope_noun(&self) -> &'static str {
        D::SCOPE
    }

    fn adapter(&self) -> AdapterKind {
        self.adapter
    }

    fn validate_scope_config(&self, config: &Value) -> Result<(), DomainError> {
        parse_config::<D>(config).map(|_| ())
    }

    fn describe(&self, generator: &mut schemars::SchemaGenerator) -> DomainDescription {
        DomainDescription::of::<D>(generator)
    }

    async fn snapshot(
        &self,
        scope: &ScopeKey,
        caller: &Caller<'_>,
        limit: Option<u32>,
        before: Option<String>,
    ) -> Result<Value, DomainError> {
        self.authorize(scope, caller, Need::Read).await?;
        let limit = limit.unwrap_or(self.pages.default);
        if limit == 0 || limit > self.pages.max {
            return Err(DomainError::bad_request(
                "invalid_limit",
                format!("limit must be between 1 and {}", self.pages.max),
            ));
        }
        let shard = self.until_warm(scope).await?;
        // One more than asked tells whether another page follows, without guessing
        // from a full page (which may be the last).
        let mut items = shard.connection.snapshot(scope, Page { limit: limit + 1, before }).await?;
        let has_more = items.len() > limit as usize;
        items.truncate(limit as usize);
        let next_before = if has_more { items.last().map(D::cursor) } else { None };
        Ok(json!({ "items": items, "has_more": has_more, "next_before": next_before }))
    }

    async fn apply(&self, scope: &ScopeKey, caller: &Caller<'_>, mut command: Value) -> Result<Value, DomainError> {
        let owns_scope = self.authorize(scope, caller, Need::Write).await?;
        let durability = match command.as_object_mut().and_then(|o| o.remove("durability")) {
            None => Durability::default(),
            Some(value) => serde_json::from_value(value).map_err(|_| {
                DomainError::invalid("invalid_durability", "durability must be \"cache\" or \"durable\"")
            })?,
        };
        let command: D::Command = serde_json::from_value(command)
            .map_err(|e| DomainError::invalid("invalid_command", format!("not a valid {} command: {e}", D::NAME)))?;
        if self.stopping.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(shutting_down());
        }
        D::validate(&command, &self.settings)?;
        let shard = self.until_warm(scope).await?;
        let actor = ActingUser { user: caller.user.clone(), owns_scope };
        let event = shard.connection.apply(scope, &actor, command, durability).await?;
        serde_json::to_value(event).map_err(|e| DomainError::internal("an event cannot be encoded").caused_by(e))
    }

    async fn subscribe(
        &self,
        scope: &ScopeKey,
        caller: &Caller<'_>,
        subscriber: LiveSender,
    ) -> Result<SubscriberId, DomainError> {
        self.authorize(scope, caller, Need::Read).await?;
        self.actor.send(Subscribe { scope: scope.clone(), subscriber }).await.map_err(actor_gone)?
    }

    async fn may_read(&self, scope: &ScopeKey, caller: &Caller<'_>) -> Result<(), DomainError> {
        self.authorize(scope, caller, Need::Read).await.map(|_| ())
    }

    fn unsubscribe(&self, scope: &ScopeKey, id: SubscriberId) {
        self.actor.do_send(Unsubscribe { scope: scope.clone(), id });
    }

    async fn rewarm(&self, scope: Option<&ScopeKey>) -> Result<(), DomainError> {
        if self.routed.shards[0].warmup.is_none() {
            return Err(DomainError::conflict(
                "no_cache",
                format!("the {} domain runs on the PostgreSQL adapter: there is no cache to warm", D::NAME),
            ));
        }
        match scope {
            Some(scope) => {
                self.existing_scope(scope).await?;
                if let Some(warmup) = &self.routed.of(scope).await?.warmup {
                    warmup.do_send(WarmScope { scope: scope.clone(), force: true });
                }
            }
            None => {
                for warmup in self.routed.shards.iter().filter_map(|shard| shard.warmup.as_ref()) {
                    warmup.do_send(WarmAll { force: true });
                }
            }
        }
        Ok(())
    }

    async fn scope_changed(&self, scope: &ScopeKey) {
        match self.routed.of(scope).await {
            Ok(shard) => {
                if let Some(warmup) = &shard.warmup {
                    warmup.do_send(WarmScope { scope: scope.clone(), force: true });
                }
            }
            Err(error) => tracing::warn!(domain = D::NAME, scope = %scope, %error, "cannot warm a changed scope"),
        }
    }

    fn cache_connected(&self) -> Option<bool> {
        let caches: Vec<bool> =
            self.routed.shards.iter().filter_map(|shard| shard.cache.as_ref().map(|c| c.epoch().is_some())).collect();
        (!caches.is_empty()).then(|| caches.iter().all(|connected| *connected))
    }

    fn drains_outbox(&self) -> Option<bool> {
        self.routed.shards[0].cache.as_ref()?;
        Some(self.routed.shards.iter().any(|shard| shard.drains_here.load(std::sync::atomic::Ordering::Relaxed)))
    }

    fn shards(&self) -> Vec<ShardStatus> {
        self.routed
            .shards
            .iter()
            .filter_map(|handle| {
                let cache = handle.cache.as_ref()?;
                Some(ShardStatus {
                    shard: handle.shard.name.clone(),
                    unit: handle.shard.unit.clone(),
                    cache_connected: cache.epoch().is_some(),
                    drains_outbox: handle.drains_here.load(std::sync::atomic::Ordering::Relaxed),
                    subscribed_scopes: cache.subscribed_scopes(),
                })
            })
            .collect()
    }

    fn place(&self, scope: &ScopeKey) -> Option<String> {
        self.routed.place(scope)
    }

    async fn move_scope(&self, scope: &ScopeKey, to: &str, drain_within: Duration) -> Result<Value, DomainError> {
        let moving = crate::moving::Move {
            routed: self.routed.clone(),
            scopes: self.scopes.clone(),
            board: self.board.clone(),
            pool: self.pool.clone(),
        };
        moving.detached(scope.clone(), to.to_string(), drain_within).await
    }

    fn stop_writes(&self) {
        self.stopping.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    async fn drain(&self, within: Duration) -> usize {
        let drains = self.routed.shards.iter().map(|shard| self.drain_shard(shard, within));
        futures::future::join_all(drains).await.into_iter().sum()
    }

    async fn replay_dead_letter(&self, id: i64) -> Result<boardsync_core::dead_letters::Replayed, DomainError> {
        let (replayed, item) = boardsync_core::dead_letters::replay::<D>(&self.pool, id).await?;
        // PostgreSQL has it now; the cache takes it too unless it holds a newer version
        // (else the next edit would start from the older state and conflict).
        let Some(cache) = &self.routed.shards[0].cache else { return Ok(replayed) };
        let scope = ScopeKey::parse(&cache.scope_of(&item));
        let shard = match &scope {
            Ok(scope) => self.routed.of(scope).await.ok(),
            Err(_) => None,
        };
        let warmed = match (&scope, shard.and_then(|shard| shard.cache.as_ref())) {
            (Ok(scope), Some(cache)) => cache.warm(scope, vec![item]).await,
            (Ok(_), None) => Err(cache_unavailable()),
            (Err(error), _) => Err(error.clone()),
        };
        if let Err(error) = warmed {
            tracing::warn!(domain = D::NAME, id, %error, "a replayed dead letter is in PostgreSQL, not yet in the cache");
            // Its scope loads from PostgreSQL once the cache is back, whatever the
            // cache says of it then.
            if let (Ok(scope), Some(shard)) = (scope, shard) {
                if let Some(warmup) = &shard.warmup {
                    warmup.do_send(WarmScope { scope, force: true });
                }
            }
        }
        Ok(replayed)
    }

    async fn purge(&self, scope: &ScopeKey) -> Result<boardsync_core::purge::Purged, DomainError> {
        // Not while it moves (the move would switch a scope created anew after the
        // purge without draining it): the move's lock, held to the end.
        let mut _moving = None;
        if self.routed.shards.len() > 1 {
            let lock = crate::scope_lock::try_scope_lock(&self.pool, crate::moving::MOVE_LOCKS, D::NAME, scope).await?;
            let Some(lock) = lock else {
                return Err(DomainError::conflict("move_in_progress", format!("{} {scope} is being moved", D::SCOPE)));
            };
            _moving = Some(lock);
        }
        // Where it lives, read before its row goes (none: deleted before, or a purge
        // being finished: every shard must forget it then).
        let lived_on = self.scopes.stored_shard(D::NAME, scope).await?;
        let purged = boardsync_core::purge::purge_postgres::<D>(&self.pool, scope)
            .await?
            .ok_or_else(|| boardsync_core::scope::missing(D::NAME, D::SCOPE, scope))?;
        // Its sockets close and its access is forgotten here at once (other backends
        // hear of it through the scopes trigger).
        self.scopes.changed(D::NAME, scope);
        // Every shard forgets it (one it moved away from may keep rows of it); the one
        // it lived on must (all of them when that is not known), the others may be
        // down: a scope arriving on a shard is taken fresh there.
        let required = match &lived_on {
            Some(shard) => Some(self.routed.named(shard.as_deref())?.shard.name.clone()),
            None => None,
        };
        let mut unfinished = false;
        for cache in self.routed.shards.iter().filter_map(|shard| shard.cache.as_ref()) {
            if let Err(error) = cache.forget(scope).await {
                tracing::error!(domain = D::NAME, scope = %scope, shard = %cache.shard().name, %error, "purged in PostgreSQL, not yet in this cache shard");
                unfinished |= required.as_ref().is_none_or(|name| *name == cache.shard().name);
            }
        }
        if unfinished {
            return Err(DomainError::unavailable(
                "purge_unfinished",
                "the scope is purged in PostgreSQL but its cache shard could not be reached: purge it again",
            ));
        }
        boardsync_core::purge::cache_cleared(&self.pool, D::NAME, scope).await?;
        tracing::info!(domain = D::NAME, scope = %scope, items = purged.items, "scope purged");
        Ok(purged)
    }

    async fn prepare_recreate(&self, scope: &ScopeKey) -> Result<(), DomainError> {
        let recreating = boardsync_core::purge::recreating(&self.pool, D::NAME, scope).await?;
        let placed = self.routed.named(self.routed.place(scope).as_deref())?;
        let again = |error: DomainError| {
            tracing::warn!(domain = D::NAME, scope = %scope, %error, "the cache cannot take the scope yet");
            DomainError::unavailable("cache_unavailable", "the cache must take this scope first: try again")
        };
        if recreating {
            // The shard it is created on takes it back (another one's mark of the
            // purge is cleared if it ever moves there).
            if let Some(cache) = &placed.cache {
                cache.remember(scope).await.map_err(again)?;
            }
        }
        // A scope created (again) on a shard an earlier life of it left something on
        // (rows, a mark of moving away) starts from PostgreSQL there.
        if self.routed.shards.len() > 1 && self.scopes.stored_shard(D::NAME, scope).await?.is_none() {
            if let Some(cache) = &placed.cache {
                cache.move_step(boardsync_core::cache_adapter::MoveStep::Take, scope).await.map_err(again)?;
            }
        }
        if recreating {
            boardsync_core::purge::recreated(&self.pool, D::NAME, scope).await?;
        }
        Ok(())
    }
}

impl<D: DomainAdapters> DomainHandle<D> {
    /// [`DomainService::drain`] of one shard.
    async fn drain_shard(&self, shard: &ShardHandle<D>, within: Duration) -> usize {
        let Some(cache) = &shard.cache else { return 0 };
        let drains_here = &shard.drains_here;
        // Another node drains this outbox: the entries reach PostgreSQL through it.
        // This node writes back only what it keeps (its own last writes among them),
        // so that its stop neither drains other nodes' traffic nor depends on the
        // cache keeping what it holds.
        let deadline = tokio::time::Instant::now() + within;
        if !drains_here.load(std::sync::atomic::Ordering::Relaxed) && self.drained_elsewhere(&shard.shard).await {
            tracing::info!(domain = D::NAME, shard = %shard.shard.name, "another node drains the outbox: writing back only what this node keeps");
            return if self.write_back_kept(cache.as_ref(), deadline).await { 0 } else { cache.retained() };
        }
        // This node takes no writes once its stop has begun (writes were refused and
        // requests finished before the drain), so an entry that joins the outbox
        // after this point another node wrote. `before` is what was pending when the
        // drain began: once all of it has left the outbox, with the cache link up the
        // whole time, what is left is other nodes' traffic, which may never pause.
        // (A link that went down and up lists the outbox anew: an entry lost with a
        // cache crash is missing from it too, so `before` no longer says anything.)
        let mut before = cache.pending_snapshot();
        let mut emptied = false;
        while tokio::time::Instant::now() < deadline {
            if let Some((generation, seqs)) = before.as_mut() {
                if !cache.retain_pending(*generation, seqs) {
                    before = None;
                } else if seqs.is_empty() {
                    emptied = true;
                    break;
                }
            } else if cache.pending_count() == 0 {
                break;
            }
            let mut connection = match self.pool.acquire().await {
                Ok(connection) => connection,
                Err(error) => {
                    tracing::warn!(domain = D::NAME, %error, "cannot drain the outbox; retrying until the deadline");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let batch =
                crate::outbox::commit_batch(cache.as_ref(), &mut connection, self.outbox_batch_size, &self.metrics);
            match batch.await {
                Ok(Some(committed)) => {
                    if let Err(error) = crate::outbox::acknowledge(cache.as_ref(), &committed).await {
                        tracing::warn!(domain = D::NAME, %error, "cannot acknowledge a drained batch");
                    }
                }
                Ok(None) => {
                    emptied = before
                        .as_mut()
                        .is_some_and(|(generation, seqs)| cache.retain_pending(*generation, seqs) && seqs.is_empty());
                    break;
                }
                Err(error) => {
                    tracing::warn!(domain = D::NAME, %error, "cannot drain the outbox; retrying until the deadline");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        // The cache may be gone (a power loss): this backend's own copy of its newest
        // writes is then the only one.
        let restored = self.write_back_kept(cache.as_ref(), deadline).await;
        let (pending, retained) = (cache.pending_count(), cache.retained());
        if pending.max(retained) == 0 {
            return 0;
        }
        // Other nodes' writes keep coming while this one stops. Once what was pending
        // when the drain began has left the outbox (drained, or purged or set aside)
        // and every write of this node's own is in PostgreSQL, what is left is
        // theirs: the next drainer takes it, as long as a node runs on. (Each node
        // writes back what it keeps when it stops, so a whole cluster stopping at once
        // loses none of its acknowledged writes either.)
        let own = cache.retained_own();
        let mut others_run = false;
        if emptied && restored && own == 0 {
            let left = deadline.max(tokio::time::Instant::now() + Duration::from_secs(1));
            let others = tokio::time::timeout_at(left, self.liveness.others_run(&self.pool, &shard.shard.unit)).await;
            others_run = matches!(others, Ok(Ok(true)));
            if others_run {
                tracing::info!(domain = D::NAME, shard = %shard.shard.name, pending, retained, "entries other nodes wrote since the drain began are left to the next drainer");
                return 0;
            }
        }
        tracing::warn!(domain = D::NAME, shard = %shard.shard.name, pending, retained, own, drained_what_was_pending = emptied, written_back = restored, others_run, "the stop leaves writes PostgreSQL may lack");
        pending.max(retained)
    }

    /// Writes what `cache` keeps into PostgreSQL; a passing failure (a lock wait
    /// against a drainer's batch, a busy pool) is tried again until `deadline`, as a
    /// drain would be. Whether it all went in.
    async fn write_back_kept(
        &self,
        cache: &dyn boardsync_core::cache::Cache<D>,
        deadline: tokio::time::Instant,
    ) -> bool {
        loop {
            match cache.restore_all(&self.pool).await {
                Ok(_) => return true,
                Err(error) if tokio::time::Instant::now() < deadline => {
                    tracing::warn!(domain = D::NAME, %error, "cannot write the writes this backend kept into PostgreSQL yet; retrying until the deadline");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(error) => {
                    tracing::error!(domain = D::NAME, %error, "cannot write the writes this backend kept into PostgreSQL");
                    return false;
                }
            }
        }
    }
}

/// What the domains on the SpacetimeDB adapter share: one warm-up scheduler (the
/// global concurrency limit), one status board, the metrics.
#[derive(Clone)]
pub struct CacheRuntime {
    pub scheduler: Addr<WarmupScheduler>,
    pub board: Arc<WarmupBoard>,
    pub metrics: CacheMetrics,
    /// This process' name among the nodes on one PostgreSQL (`server.node_name`).
    pub node: String,
    pub liveness: Arc<crate::liveness::Liveness>,
}

impl CacheRuntime {
    pub fn start(metrics: CacheMetrics, max_concurrent_scopes: usize, node: String) -> Self {
        Self {
            liveness: Arc::new(crate::liveness::Liveness::new(&node)),
            node,
            scheduler: WarmupScheduler::start_in_arbiter(&Arbiter::new().handle(), move |_| {
                WarmupScheduler::new(max_concurrent_scopes)
            }),
            board: Arc::new(WarmupBoard::new(metrics.clone())),
            metrics,
        }
    }
}

/// Every running domain, by name.
#[derive(Clone)]
pub struct Domains {
    by_name: BTreeMap<&'static str, Arc<dyn DomainService>>,
    runtime: CacheRuntime,
}

impl Domains {
    pub fn new(runtime: CacheRuntime) -> Self {
        Self { by_name: BTreeMap::new(), runtime }
    }

    /// Connects domain `D` (migrating its PostgreSQL schema first) on SpacetimeDB
    /// when `spacetimedb` is given and on PostgreSQL otherwise, and starts its
    /// supervised [`AdapterActor`] on an arbiter of its own; with a cache, also its
    /// [`OutboxPoller`] and [`WarmupCoordinator`].
    pub async fn start<D: DomainAdapters>(
        &mut self,
        context: AdapterContext<D>,
        spacetimedb: Vec<SpacetimeTarget>,
        scopes: Arc<ScopeStore>,
        pages: PageLimits,
    ) -> Result<(), DomainError> {
        D::migrator()
            .run(&context.pool)
            .await
            .map_err(|e| DomainError::internal(format!("migrating {}", D::NAME)).caused_by(e))?;
        let domain_settings = context.settings.domain.clone();
        let framework = context.settings.framework.clone();
        let pool = context.pool.clone();
        let adapters = connect::<D>(context, spacetimedb).await?;
        let kind = adapters[0].connection.kind();
        let arbiter = Arbiter::new().handle();
        let mut shards = Vec::with_capacity(adapters.len());
        for adapter in adapters {
            let drains_here = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let shard = match &adapter.cache {
                Some(cache) => cache.shard().clone(),
                None => Shard::new(D::NAME, "", true),
            };
            let warmup = adapter.cache.clone().map(|cache| {
                self.runtime.metrics.start_domain(&shard.unit);
                let poller = OutboxPoller::<D>::new(
                    cache.clone(),
                    pool.clone(),
                    &self.runtime.node,
                    drains_here.clone(),
                    framework.outbox_batch_size,
                    std::time::Duration::from_millis(framework.outbox_poll_interval_ms),
                    framework.outbox_push,
                    self.runtime.metrics.clone(),
                );
                // Draining runs on a thread of its own, beside the domain's live fan-out.
                OutboxPoller::start_in_arbiter(&Arbiter::new().handle(), move |_| poller);
                let context = WarmupContext {
                    cache,
                    pool: pool.clone(),
                    scopes: scopes.clone(),
                    defaults: framework.warmup.clone(),
                    scheduler: self.runtime.scheduler.clone(),
                    board: self.runtime.board.clone(),
                    metrics: self.runtime.metrics.clone(),
                    liveness: self.runtime.liveness.clone(),
                    joined: std::sync::atomic::AtomicBool::new(false),
                };
                WarmupCoordinator::start_in_arbiter(&arbiter, move |_| WarmupCoordinator::new(context))
            });
            shards.push(ShardHandle {
                shard,
                connection: adapter.connection,
                cache: adapter.cache,
                warmup,
                drains_here,
            });
        }
        let routed = Arc::new(Routed::new(shards, scopes.clone()));
        let fan_out: Arc<dyn Connection<D>> = routed.clone();
        let actor = Supervisor::start_in_arbiter(&arbiter, move |_| AdapterActor::new(fan_out));
        let handle = DomainHandle::<D> {
            routed,
            actor,
            adapter: kind,
            scopes,
            settings: domain_settings,
            pages,
            board: self.runtime.board.clone(),
            warm_wait: Duration::from_millis(framework.warm_wait_ms),
            pool,
            metrics: self.runtime.metrics.clone(),
            outbox_batch_size: framework.outbox_batch_size,
            stopping: std::sync::atomic::AtomicBool::new(false),
            liveness: self.runtime.liveness.clone(),
            _domain: PhantomData,
        };
        self.by_name.insert(D::NAME, Arc::new(handle));
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn DomainService>> {
        self.by_name.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.by_name.keys().copied()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn DomainService>> {
        self.by_name.values()
    }

    /// Every scope's warm-up status.
    pub fn warmup_board(&self) -> &WarmupBoard {
        &self.runtime.board
    }
}
