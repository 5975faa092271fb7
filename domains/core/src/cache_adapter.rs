//! The one SpacetimeDB adapter every domain runs on: [`CacheAdapter<D>`] implements
//! both [`Connection<D>`] (for clients) and [`Cache<D>`] (for warm-up and the outbox
//! poller) on top of a small per-domain [`CacheBinding`].
//!
//! Every boardsync module keeps the same contract (`modules/contract.rs`): an
//! `apply` reducer taking the domain's command as JSON, `warm`, the warm-up's
//! `warm_begin`/`warm_batch`/`warm_check`/`warm_end`, `ack_outbox` and `configure`,
//! the `owner`, `cache_epoch`,
//! `module_settings` and `sync_outbox` tables, and a `sync_outbox.payload` of the
//! module's own row type. The generated bindings of those share names but no trait,
//! so [`spacetime_module!`](crate::spacetime_module) implements [`ModuleLink`] for a
//! module's generated `DbConnection`; everything else is written once, here.
//!
//! How a command flows: `apply` registers the call, sends the reducer, and waits. On
//! the SDK thread, the reducer's outcome arrives first (a failure answers the call at
//! once), then the rows it wrote: the cached rows update the per-scope index, and its
//! `sync_outbox` rows (tagged with the call's request id) are the items it wrote.
//! Once the whole message is processed, each committed call gets its event, which is
//! published live in commit order, on the SDK thread, before the caller hears back.
//! A call that committed without writing (a retry, or values its items already had)
//! left no outbox row: it is answered with the items it names as the cache holds
//! them, and no subscriber hears of it.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use spacetimedb_sdk::Status;
use sqlx::{PgConnection, PgPool};
use tokio::sync::{broadcast, oneshot};

use crate::cache::{dead_letter, latest_per_entity, refused_for_good, Cache, CacheSignal, OutboxEntry, Pending};
use crate::factory::{CacheSubscriptions, SpacetimeTarget};
use crate::index::ScopeIndex;
use crate::live::ScopedBroadcast;
use crate::outside::{OutsideChange, OutsideSink};
use crate::pg_adapter::{Applied, PostgresBinding};
use crate::spacetime::{
    cache_unavailable, keep_connected, not_yet_durable, reducer_outcome, stale_in_cache, ConnectionLoop,
    DurableWaiters, Link, Released,
};
use crate::warmup::WarmupSettings;
use crate::{ActingUser, DomainSettings, UserId};
use crate::{
    AdapterContext, AdapterKind, Connection, Domain, DomainError, Durability, ErrorKind, EventStream, Page, ScopeKey,
};

/// The code of an outbox entry whose row the domain cannot read: no retry can fix it,
/// so the outbox poller sets it aside.
pub const UNREADABLE_ENTRY: &str = "unreadable_outbox_entry";

/// The code of a write whose version PostgreSQL already holds with other content
/// (which can only follow a cache crash): it must not be dropped silently, so it is
/// refused for good and set aside as a dead letter, counted and logged.
pub const VERSION_CONFLICT: &str = "version_conflict";

/// A state on its way to PostgreSQL, with when the cache committed it (microseconds
/// since the Unix epoch; none when unknown, e.g. a replayed dead letter).
pub(crate) type Timed<I> = (I, Option<i64>);

fn scope_of<D: CacheBinding>(item: &D::Item) -> String {
    D::placement(&D::row(item)).scope
}

/// Writes full states, and fails with [`VERSION_CONFLICT`] when PostgreSQL skipped one
/// it holds at the same version with other content, or under another scope.
pub(crate) async fn persist_checked<D: CacheBinding>(
    tx: &mut PgConnection,
    writes: Vec<Timed<D::Item>>,
) -> Result<usize, DomainError> {
    Ok(persist_unless_purged::<D>(tx, writes).await?.0)
}

/// [`persist_checked`], also returning the entities whose writes were dropped
/// because their scope was purged.
async fn persist_unless_purged<D: CacheBinding>(
    tx: &mut PgConnection,
    writes: Vec<Timed<D::Item>>,
) -> Result<(usize, BTreeSet<String>), DomainError> {
    // A purged scope's writes still on their way are dropped, under the lock its
    // purge takes, so none lands after the purge deleted the scope's rows.
    let scoped: Vec<(String, Timed<D::Item>)> =
        writes.into_iter().map(|write| (scope_of::<D>(&write.0), write)).collect();
    let scopes: Vec<String> =
        scoped.iter().map(|(scope, _)| scope.clone()).collect::<BTreeSet<_>>().into_iter().collect();
    let marks = crate::purge::guard_writes(tx, D::NAME, &scopes).await?;
    let mut dropped = BTreeSet::new();
    let mut items = Vec::with_capacity(scoped.len());
    for (scope, (item, at)) in scoped {
        if marks.get(&scope).is_some_and(|mark| mark.drops(at)) {
            dropped.insert(D::cursor(&item));
        } else {
            items.push(item);
        }
    }
    if !dropped.is_empty() {
        tracing::info!(domain = D::NAME, dropped = dropped.len(), "writes of a purged scope dropped");
    }
    if items.is_empty() {
        return Ok((0, dropped));
    }
    let written = D::persist(tx, items.clone()).await?;
    if written < items.len() {
        refuse_conflicts::<D>(tx, &items).await?;
    }
    Ok((written, dropped))
}

/// Fails with [`VERSION_CONFLICT`] when PostgreSQL holds any of `items` at the same
/// version with different content, or under another scope or owner (a state it
/// skipped): such a write, e.g. a send reusing another author's id taken while
/// PostgreSQL could not be read, is dead-lettered, never acknowledged silently.
async fn refuse_conflicts<D: CacheBinding>(db: &mut PgConnection, items: &[D::Item]) -> Result<(), DomainError> {
    let ids: Vec<String> = items.iter().map(D::cursor).collect();
    let stored = D::stored(db, &ids).await?;
    for item in items {
        let id = D::cursor(item);
        let scope_of = |item: &D::Item| D::placement(&D::row(item)).scope;
        let conflict = stored.iter().find(|s| D::cursor(s) == id).filter(|s| {
            scope_of(s) != scope_of(item)
                || D::owner(s) != D::owner(item)
                || (D::version(s) == D::version(item) && *s != item)
        });
        if conflict.is_some() {
            tracing::error!(domain = D::NAME, entity = %id, version = D::version(item), "version conflict: PostgreSQL holds other content at this version");
            let message =
                format!("PostgreSQL holds {id} at version {} with other content, scope or owner", D::version(item));
            return Err(DomainError::new(ErrorKind::Conflict, VERSION_CONFLICT, message));
        }
    }
    Ok(())
}

/// What a module's generated `DbConnection` offers the adapter: the contract's
/// reducers and tables. Implemented by [`spacetime_module!`](crate::spacetime_module).
pub trait ModuleLink: Send + Sync + Sized + 'static {
    /// The module's row type: what `warm` takes and `sync_outbox.payload` holds.
    type Row: Clone + std::fmt::Debug + Send + Sync + 'static;

    /// A subscription to one scope's rows.
    type ScopeSubscription: Send + Sync + 'static;

    /// Connects, registers the callbacks that report to `sink`, and subscribes: to
    /// the contract's tables, and to every scope's rows if `every_scope` (else to
    /// each scope as it is used, [`ModuleLink::subscribe_scope`]).
    fn connect(
        target: &SpacetimeTarget,
        sink: Arc<dyn SessionSink<Self::Row>>,
        every_scope: bool,
    ) -> Result<Self, spacetimedb_sdk::Error>;
    /// Subscribes to `scope`'s rows in every data table; `sink` hears
    /// [`SessionSink::scope_subscribed`] (with `id`) once they are in (or refused).
    fn subscribe_scope(&self, scope: &str, id: u64, sink: Arc<dyn SessionSink<Self::Row>>) -> Self::ScopeSubscription;
    /// Ends a scope's subscription: its rows leave the client cache.
    fn unsubscribe_scope(&self, subscription: Self::ScopeSubscription);
    /// The cache's warm-up record of `scope`: its floor, and the floor's row when cached.
    fn warm_record(&self, scope: &str) -> Option<(String, Option<Self::Row>)>;
    /// Processes one message, blocking until one arrives.
    fn advance(&self) -> Result<(), spacetimedb_sdk::Error>;
    /// A cached row by its entity id, from any of the module's data tables.
    fn find(&self, entity: &str) -> Option<Self::Row>;
    fn outbox_entry(&self, seq: u64) -> Option<OutboxEntry<Self::Row>>;
    fn apply(
        &self,
        request_id: String,
        scope: String,
        user: String,
        owns_scope: bool,
        command: String,
    ) -> Result<(), spacetimedb_sdk::Error>;
    /// Loads rows read from PostgreSQL (unless the cache holds a newer version).
    fn warm(&self, request_id: String, rows: Vec<Self::Row>) -> Result<(), spacetimedb_sdk::Error>;
    /// Sends one batch of run `claim` of `scope`'s warm-up, with `NoSuccessNotify` (a
    /// batch is large): its failure is reported to nobody, so `warm_check` and
    /// `warm_end` count the batches that loaded.
    fn warm_batch(
        &self,
        request_id: String,
        scope: String,
        claim: String,
        rows: Vec<Self::Row>,
    ) -> Result<(), spacetimedb_sdk::Error>;
    /// Succeeds if run `claim` still holds `scope`'s warm-up and loaded all `batches`
    /// it sent so far.
    fn warm_check(
        &self,
        request_id: String,
        scope: String,
        claim: String,
        batches: u32,
    ) -> Result<(), spacetimedb_sdk::Error>;
    /// Acknowledges entries, as (sequence, request id), read from cache incarnation
    /// `epoch` (refused by any other).
    fn ack(&self, request_id: String, epoch: u64, entries: Vec<(u64, String)>) -> Result<(), spacetimedb_sdk::Error>;
    fn configure(&self, request_id: String, settings: String) -> Result<(), spacetimedb_sdk::Error>;
    fn forget_scope(&self, request_id: String, scope: String) -> Result<(), spacetimedb_sdk::Error>;
    fn remember_scope(&self, request_id: String, scope: String) -> Result<(), spacetimedb_sdk::Error>;
    /// The contract's `freeze_scope`, `thaw_scope`, `release_scope` and `take_scope`
    /// (moving a scope between shards), by name.
    fn move_step(&self, step: MoveStep, request_id: String, scope: String) -> Result<(), spacetimedb_sdk::Error>;
    /// Claims a scope's warm-up in this cache instance as run `claim` (see
    /// `warm_begin` in the module's contract): refused with `already_warm` unless
    /// `force`.
    fn warm_begin(
        &self,
        request_id: String,
        scope: String,
        force: bool,
        claim: String,
    ) -> Result<(), spacetimedb_sdk::Error>;
    /// Forgets every warm-up record.
    fn forget_warm_ups(&self, request_id: String) -> Result<(), spacetimedb_sdk::Error>;
    /// Records that run `claim` of a scope's warm-up ended, with its floor, once all
    /// `batches` it sent are loaded; with `keep`, trims the scope to its newest `keep`
    /// entities in the same transaction.
    #[allow(clippy::too_many_arguments)]
    fn warm_end(
        &self,
        request_id: String,
        scope: String,
        claim: String,
        floor: String,
        batches: u32,
        keep: Option<u32>,
    ) -> Result<(), spacetimedb_sdk::Error>;
}

/// What the SDK thread reports to the adapter, from the module's callbacks.
pub trait SessionSink<Row>: Send + Sync + 'static {
    /// The subscription is applied; `epoch` names the cache incarnation.
    fn subscribed(&self, epoch: Option<u64>);
    /// A `cache_epoch` row arrived after subscribing: the database may be new.
    fn epoch_seen(&self, epoch: u64);
    /// A data row entered the cache (inserted, or the new side of an update).
    fn cached(&self, row: &Row);
    /// A data row left the cache.
    fn evicted(&self, row: &Row);
    /// A data row was replaced by a newer state of it.
    fn replaced(&self, old: &Row, new: &Row);
    /// A write recorded in `sync_outbox` by the call `request_id`.
    fn recorded(&self, seq: u64, request_id: &str, created_at_micros: i64, row: &Row);
    /// An outbox entry left the cache: acknowledged by a backend that committed it in
    /// PostgreSQL (`in_postgres`), or purged with its scope.
    fn acked(&self, seq: u64, request_id: &str, in_postgres: bool);
    /// The outcome of a client's `apply`.
    fn client_outcome(&self, request_id: &str, status: &Status);
    /// The outcome of an owner reducer (warm, warm_check, warm_end, ack, configure, ...).
    fn owner_outcome(&self, request_id: &str, status: &Status);
    /// The cache recorded where `scope`'s whole history in it begins (a warm-up
    /// ended or began, or a trim dropped older rows; this backend's or another's):
    /// at `floor` (see `warm_scope` in the contract), whose row is `floor_row` when
    /// it is an entity the cache holds.
    fn warm_recorded(&self, scope: &str, floor: &str, floor_row: Option<&Row>);
    /// `scope` is moving away from this shard (`cleared`: its rows here are gone), or
    /// no longer (`None`).
    fn moving(&self, scope: &str, cleared: Option<bool>);
    /// A scope's subscription is applied (its rows come in this same message), or
    /// was refused (`ok` false).
    /// `id` names the subscription: a late answer to one dropped since must not count
    /// for a newer one of the same scope.
    fn scope_subscribed(&self, scope: &str, id: u64, ok: bool);
}

/// One scope's subscription on this backend (see [`Shared::subscribed`]).
struct ScopeRows<H> {
    /// Unique per subscription: a guard from before a reconnect (which forgot every
    /// subscription) must not count against the one made since.
    id: u64,
    handle: H,
    /// Its rows are in the client cache (the message that brought them is processed).
    applied: bool,
    /// Callers waiting for that.
    waiters: Vec<oneshot::Sender<()>>,
    last_used: std::time::Instant,
    /// Snapshots and commands reading its rows now: it is not dropped under them.
    in_use: usize,
}

/// A scope's rows held in the client cache while a snapshot or command reads them.
struct InUse<D: CacheBinding> {
    shared: Option<Arc<Shared<D>>>,
    scope: String,
    id: u64,
}

impl<D: CacheBinding> Drop for InUse<D> {
    fn drop(&mut self) {
        let Some(shared) = self.shared.take() else { return };
        let mut all = shared.scope_rows.lock().expect("scope rows lock");
        if let Some(rows) = all.get_mut(&self.scope).filter(|rows| rows.id == self.id) {
            rows.in_use = rows.in_use.saturating_sub(1);
            rows.last_used = std::time::Instant::now();
        }
    }
}

/// A step of moving a scope between shards, as the module's contract names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoveStep {
    /// On the source: refuse the scope's commands.
    Freeze,
    /// On the source: take them again (the move was called off).
    Thaw,
    /// On the source, after the switch: drop the scope's rows.
    Release,
    /// On the target, before the switch: drop what an earlier stay left.
    Take,
}

/// Where a cached row sits: its scope, its place in the scope's snapshot order, and
/// its entity id (what [`Domain::cursor`] gives for its item).
pub struct Placement<O> {
    pub scope: String,
    pub order: O,
    pub entity: String,
}

/// The module's row type of domain `D`.
pub type RowOf<D> = <<D as CacheBinding>::Module as ModuleLink>::Row;

/// What differs per domain on the cache adapter: the module, conversions between its
/// rows and the domain's items, the snapshot order, and the PostgreSQL side of
/// warm-up and the outbox.
#[async_trait]
pub trait CacheBinding: PostgresBinding {
    /// The module's generated `DbConnection` (see [`spacetime_module!`](crate::spacetime_module)).
    type Module: ModuleLink;
    /// A scope's snapshot order (newest last).
    type Order: Ord + Clone + Send + Sync + 'static;
    /// Whether a scope's window may be trimmed (the module's `Rules::trim` does something).
    const TRIMS: bool = false;

    fn item(row: &RowOf<Self>) -> Option<Self::Item>;
    /// The version every write of the item raises.
    fn version(item: &Self::Item) -> u64;
    fn row(item: &Self::Item) -> RowOf<Self>;
    fn placement(row: &RowOf<Self>) -> Placement<Self::Order>;
    /// Who owns the item (its author), for domains where that never changes: a write
    /// PostgreSQL holds under another owner is a conflict, never applied.
    fn owner(_item: &Self::Item) -> Option<&str> {
        None
    }

    /// What a committed command did, from the items it wrote (in write order).
    fn applied(
        command: &Self::Command,
        user: &UserId,
        written: Vec<Self::Item>,
    ) -> Result<Applied<Self::Event>, DomainError>;

    /// The answer to a committed command that wrote nothing (a retry, or values its
    /// items already have), from `current`: the items it names
    /// ([`CacheBinding::touches`], in that order, those the cache holds) as they are.
    /// Nobody but the caller hears of it.
    fn unchanged(command: &Self::Command, user: &UserId, current: Vec<Self::Item>) -> Result<Self::Event, DomainError>;

    /// A page of a scope's cached items. The default: newest first, older than the
    /// cursor's item.
    fn page(cached: &CachedScope<'_, Self>, page: Page) -> Result<Vec<Self::Item>, DomainError> {
        cached.newest(page.before.as_deref(), page.limit as usize)
    }

    /// Reads `scope`'s warm-up window from PostgreSQL.
    async fn load_window(
        db: &mut PgConnection,
        scope: &ScopeKey,
        window: &WarmupSettings,
    ) -> Result<Vec<Self::Item>, DomainError>;

    /// Writes items' full states (from the outbox) unless PostgreSQL already has the
    /// same or a newer version; returns how many it wrote.
    async fn persist(tx: &mut PgConnection, items: Vec<Self::Item>) -> Result<usize, DomainError>;

    /// The entities a command names (their ids, as [`Domain::cursor`] gives them). The
    /// cache adapter reads those the cache lacks from PostgreSQL before the command,
    /// so the module judges it on what exists, not on what happens to be warm.
    fn touches(command: &Self::Command) -> Vec<String>;
}

/// What a committed command left in the cache.
enum Committed<I> {
    /// The items it wrote, in write order (each with an outbox entry).
    Wrote(Vec<I>),
    /// Nothing written: the items it names, as the cache holds them.
    Unchanged(Vec<I>),
}

/// Builds a committed command's answer and events.
type Outcome<D> =
    Box<dyn FnOnce(Committed<<D as Domain>::Item>) -> Result<Applied<<D as Domain>::Event>, DomainError> + Send>;

/// What a committed command answers its caller.
struct Answer<D: Domain> {
    event: D::Event,
    /// The items it wrote (their new states).
    written: Vec<D::Item>,
    /// The items it answered without writing them (none when it wrote): a durable
    /// caller waits until PostgreSQL holds them.
    unchanged: Vec<D::Item>,
}

/// Writes kept until PostgreSQL has them, in commit order.
type KeptWrite<D> = (u64, ScopeKey, <D as Domain>::Item, i64);

/// One kept write of a scope being restored: its key, arrival order, state and commit time.
type Restoring<D> = ((u64, String), u64, <D as Domain>::Item, i64);

struct Retained<D: Domain> {
    next: u64,
    /// By (sequence, request id): (arrival order, scope, state, when the cache committed it).
    writes: HashMap<(u64, String), KeptWrite<D>>,
    /// The keys of the writes this backend's own calls made (other nodes' writes are
    /// kept too). Some may have left `writes` already: pruned now and then, and
    /// counted only while kept.
    own: HashSet<(u64, String)>,
}

impl<D: Domain> Retained<D> {
    fn keep(&mut self, key: (u64, String), write: KeptWrite<D>, own: bool) {
        if own {
            if self.own.len() >= 2 * self.writes.len() + 1024 {
                let writes = &self.writes;
                self.own.retain(|key| writes.contains_key(key));
            }
            self.own.insert(key.clone());
        }
        self.writes.insert(key, write);
    }

    fn own_count(&self) -> usize {
        self.own.iter().filter(|key| self.writes.contains_key(*key)).count()
    }
}

/// A client command waiting for its outcome.
struct ClientCall<D: Domain> {
    scope: ScopeKey,
    /// The entities the command names ([`CacheBinding::touches`]).
    touches: Vec<String>,
    applied: Outcome<D>,
    reply: oneshot::Sender<Result<Answer<D>, DomainError>>,
    /// The items it wrote, by outbox sequence (the SDK reports a transaction's rows
    /// in no particular order); a durable writer waits for all these entries.
    written: Vec<(u64, D::Item)>,
}

/// A write no call here waits for: its outbox sequence, scope, entity, and new
/// state (when readable).
type ForeignWrite<I> = (u64, String, String, Option<I>);

struct Shared<D: CacheBinding> {
    link: Link<D::Module>,
    settings: D::Settings,
    max_pending: usize,
    /// The domain's settings as the module reads them (`configure`).
    module_settings: String,
    live: ScopedBroadcast<D::Event>,
    index: ScopeIndex<(D::Order, String)>,
    calls: Mutex<HashMap<String, ClientCall<D>>>,
    /// Calls whose reducer committed in the message being processed.
    committed: Mutex<Vec<String>>,
    /// Writes in the message being processed by calls nobody here waits for: another
    /// node's, or one of ours that timed out. Their subscribers get each item's new
    /// state as an event at the end of the message (else a resync).
    foreign: Mutex<Vec<ForeignWrite<D::Item>>>,
    /// Entities inserted (not updated) in the message being processed: a foreign
    /// write of one of them is new.
    inserted: Mutex<HashSet<String>>,
    /// The epoch of a subscription (or recreation) whose `configure` is in flight: the
    /// cache takes calls once the module has the settings.
    configuring: Mutex<Option<Option<u64>>>,
    /// Unacknowledged outbox sequence numbers, so `pending` reads only what it returns.
    outbox: Mutex<BTreeSet<u64>>,
    /// Every write this backend saw the cache commit, until PostgreSQL has it, by
    /// (outbox sequence, request id): SpacetimeDB answers before its fsync, so a
    /// power loss can take the cache's copy ([`Cache::restore`]).
    retained: Mutex<Retained<D>>,
    /// For reading through to PostgreSQL what the cache lacks.
    pool: PgPool,
    read_through_timeout: Duration,
    /// Per scope the cache does not hold whole (of a domain that trims): where its
    /// whole history in the cache begins; older pages come from PostgreSQL.
    floors: Mutex<HashMap<ScopeKey, Floor<D::Order>>>,
    /// About the most bytes one batch of outside changes warms (warm-up's bound).
    outside_batch_bytes: usize,
    /// Wakes durable callers of commands that changed nothing whenever outbox entries
    /// reach PostgreSQL, to look again whether it holds what they answered.
    persisted_signal: tokio::sync::Notify,
    /// Scopes that moved away from this shard (their rows here are gone): their
    /// snapshots are refused until this backend routes them to their new shard.
    moved_away: Mutex<HashSet<String>>,
    /// Whether this backend subscribes to every scope's rows (else only to the scopes
    /// in use here, [`Shared::subscribed`], dropped after `subscription_idle`).
    every_scope: bool,
    subscription_idle: Duration,
    scope_rows: Mutex<HashMap<String, ScopeRows<<D::Module as ModuleLink>::ScopeSubscription>>>,
    /// Subscriptions (scope, id) applied in the message being processed.
    just_subscribed: Mutex<Vec<(String, u64)>>,
    /// Set when a session becomes ready: the scopes with live subscribers here are
    /// subscribed again (a new connection starts with none).
    resubscribe: std::sync::atomic::AtomicBool,
}

/// A scope that moved to another shard, asked of this one (its backend has not heard
/// of the switch yet): the client retries.
pub fn scope_moving() -> DomainError {
    DomainError::unavailable("scope_moving", "this scope is moving to another cache shard; retry shortly")
}

/// The module's refusal of a warm-up claim for a scope warmed since the cache started.
const ALREADY_WARM: &str = "already_warm";
/// A recorded floor: the cache holds the scope's whole history...
const WHOLE: &str = "";
/// ...or none of it whole ([`Floor::Everything`]); any other floor is an entity id.
const NONE_CACHED: &str = "*";

/// Where the part of a scope the cache holds whole begins.
#[derive(Clone)]
enum Floor<O> {
    /// At this item (its order and id): it and everything newer are cached.
    At(O, String),
    /// Nowhere: warm-up is disabled, or its window held nothing; the cache has only
    /// the writes since, so pages come from PostgreSQL, with the cache's newer versions.
    Everything,
}

/// The SpacetimeDB adapter of domain `D`. Connects in the background: until it is
/// connected and subscribed, calls answer 503 `cache_unavailable`.
pub struct CacheAdapter<D: CacheBinding> {
    shared: Arc<Shared<D>>,
    _connection: ConnectionLoop,
    _outside: crate::outside::Follower,
}

impl<D: CacheBinding> CacheAdapter<D> {
    /// A page of the scope's history from PostgreSQL.
    async fn history(&self, scope: &ScopeKey, page: Page) -> Result<Vec<D::Item>, DomainError> {
        let mut db = self.shared.pool.acquire().await.map_err(DomainError::from_sqlx)?;
        <D as PostgresBinding>::page(&mut db, scope, page).await
    }

    /// A page of a scope the cache does not hold whole: PostgreSQL's, each item in the
    /// cache's version when that is newer, merged with what the cache has that
    /// PostgreSQL does not have yet (new writes the outbox has not delivered).
    async fn history_with_cached_versions(&self, scope: &ScopeKey, page: Page) -> Result<Vec<D::Item>, DomainError> {
        let place = |item: &D::Item| {
            let place = D::placement(&D::row(item));
            (place.order, place.entity)
        };
        let cached: Vec<D::Item> = {
            let connection = self.shared.link.connection()?;
            CachedScope { shared: &self.shared, connection: &connection, scope }.all()
        };
        let in_postgres: std::collections::HashSet<String> = if cached.is_empty() {
            Default::default()
        } else {
            let ids: Vec<String> = cached.iter().map(D::cursor).collect();
            let mut db = self.shared.pool.acquire().await.map_err(DomainError::from_sqlx)?;
            D::stored(&mut db, &ids).await?.iter().map(D::cursor).collect()
        };
        let (known, pending): (Vec<D::Item>, Vec<D::Item>) =
            cached.into_iter().partition(|item| in_postgres.contains(&D::cursor(item)));
        let pending_cursor = page.before.as_deref().and_then(|c| pending.iter().find(|i| D::cursor(i) == c));
        let below = pending_cursor.map(place);
        // A cursor PostgreSQL lacks: its page starts at PostgreSQL's newest (generously,
        // since some of those may be newer than the cursor).
        let from_postgres = match below {
            Some(_) => Page { limit: page.limit.saturating_mul(2), before: None },
            None => page.clone(),
        };
        let mut items = self.history(scope, from_postgres).await?;
        for item in &mut items {
            if let Some(cached) = known.iter().find(|k| D::cursor(k) == D::cursor(item)) {
                if D::version(cached) > D::version(item) {
                    *item = cached.clone();
                }
            }
        }
        // The cursor's place, to keep only what is older than it.
        let cursor = match (below, page.before.as_deref()) {
            (Some(key), _) => Some(key),
            (None, None) => None,
            (None, Some(c)) => match known.iter().find(|k| D::cursor(k) == c) {
                Some(item) => Some(place(item)),
                None => {
                    let mut db = self.shared.pool.acquire().await.map_err(DomainError::from_sqlx)?;
                    match D::stored(&mut db, &[c.to_string()]).await?.first() {
                        Some(item) => Some(place(item)),
                        None => return Ok(Vec::new()), // a cursor nothing holds
                    }
                }
            },
        };
        let oldest_in_page = items.last().map(place);
        let full = items.len() >= page.limit as usize;
        for item in pending {
            let key = place(&item);
            let older_than_cursor = cursor.as_ref().is_none_or(|cursor| key < *cursor);
            // Not past the page's end, when more pages follow.
            let within = !full || oldest_in_page.as_ref().is_none_or(|bottom| key > *bottom);
            if older_than_cursor && within {
                items.push(item);
            }
        }
        if let Some(cursor) = &cursor {
            items.retain(|item| place(item) < *cursor);
        }
        items.sort_by_key(|item| std::cmp::Reverse(place(item)));
        items.dedup_by(|a, b| D::cursor(a) == D::cursor(b));
        items.truncate(page.limit as usize);
        Ok(items)
    }

    /// Loads the entities `command` names that the cache lacks (outside the warm
    /// window, or in a scope not warmed) from PostgreSQL into the cache. A miss is not
    /// an absence: without this, a send reusing the id of another author's old message
    /// would create it anew in the cache, and its edits would overwrite theirs.
    ///
    /// While PostgreSQL does not answer within `read_through_timeout_ms`, the command
    /// goes on on the cache alone (writes keep flowing during an outage); PostgreSQL's
    /// upserts then refuse a change of an entity's author or scope, and the outbox
    /// dead-letters such a write.
    async fn read_through(&self, touches: &[String]) -> Result<(), DomainError> {
        let missing: Vec<String> = {
            let connection = self.shared.link.connection()?;
            touches.iter().filter(|id| connection.find(id).is_none()).cloned().collect()
        };
        if missing.is_empty() {
            return Ok(());
        }
        let load = async {
            let mut db = self.shared.pool.acquire().await.map_err(DomainError::from_sqlx)?;
            D::stored(&mut db, &missing).await
        };
        let stored = match tokio::time::timeout(self.shared.read_through_timeout, load).await {
            Ok(Ok(stored)) => stored,
            Ok(Err(error)) => {
                tracing::warn!(domain = D::NAME, %error, "cannot read through to PostgreSQL; applying on the cache alone");
                return Ok(());
            }
            Err(_) => {
                tracing::warn!(
                    domain = D::NAME,
                    "PostgreSQL did not answer a read-through in time; applying on the cache alone"
                );
                return Ok(());
            }
        };
        if stored.is_empty() {
            return Ok(());
        }
        tracing::debug!(domain = D::NAME, entities = stored.len(), "read through to PostgreSQL");
        // `warm` keeps a cached row that is as new or newer: a write racing this one wins.
        let rows: Vec<RowOf<D>> = stored.iter().map(D::row).collect();
        self.shared.link.owner_call(move |c, request_id| c.warm(request_id, rows)).await
    }

    /// Waits until PostgreSQL holds each of `items`, at its version and as answered,
    /// looking again whenever outbox entries reach it, for at most the durable
    /// timeout (then 503 `not_yet_durable`, as for any durable write).
    async fn until_in_postgres(&self, items: &[D::Item]) -> Result<(), DomainError> {
        if items.is_empty() {
            return Ok(());
        }
        let timeout = self.shared.link.target.durable_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let ids: Vec<String> = items.iter().map(D::cursor).collect();
        loop {
            // Listening before reading: an entry persisted meanwhile still wakes us.
            let mut persisted = std::pin::pin!(self.shared.persisted_signal.notified());
            persisted.as_mut().enable();
            let read = async {
                let mut db = self.shared.pool.acquire().await.map_err(DomainError::from_sqlx)?;
                D::stored(&mut db, &ids).await
            };
            // PostgreSQL unreadable counts as not there yet.
            let stored = tokio::time::timeout_at(deadline, read).await.ok().and_then(Result::ok).unwrap_or_default();
            // Durable means PostgreSQL holds the very state answered. A newer version
            // there (an outside writer's, or a row that refused the cache's write)
            // makes the answer stale: the cache takes PostgreSQL's row, and the
            // client's retry applies the command to it.
            let mut held = true;
            let mut newer = Vec::new();
            for item in items {
                match stored.iter().find(|s| D::cursor(s) == D::cursor(item)) {
                    Some(s) if D::version(s) == D::version(item) && s == item => {}
                    Some(s) if D::version(s) > D::version(item) => newer.push(s.clone()),
                    _ => held = false,
                }
            }
            if !newer.is_empty() {
                tracing::info!(
                    domain = D::NAME,
                    items = newer.len(),
                    "PostgreSQL holds newer states than a no-op answered"
                );
                let rows: Vec<RowOf<D>> = newer.iter().map(D::row).collect();
                self.shared.link.owner_call(move |c, request_id| c.warm(request_id, rows)).await?;
                return Err(stale_in_cache());
            }
            if held {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, persisted).await.is_err() {
                return Err(not_yet_durable(timeout));
            }
        }
    }

    /// [`Cache::restore`] one state per transaction; a state PostgreSQL refuses for
    /// good becomes a dead letter.
    async fn restore_one_by_one(
        &self,
        pool: &PgPool,
        writes: &[Restoring<D>],
        latest: Vec<Timed<D::Item>>,
    ) -> Result<(usize, Vec<String>), DomainError> {
        let (mut written, mut set_aside) = (0, Vec::new());
        for (item, at) in latest {
            let mut tx = pool.begin().await.map_err(DomainError::from_sqlx)?;
            match persist_checked::<D>(&mut tx, vec![(item.clone(), at)]).await {
                Ok(count) => written += count,
                Err(error) if refused_for_good(&error) => {
                    drop(tx);
                    tx = pool.begin().await.map_err(DomainError::from_sqlx)?;
                    let id = D::cursor(&item);
                    set_aside.push(id.clone());
                    // The entity's newest kept write names the dead letter.
                    let newest = writes
                        .iter()
                        .filter(|(_, _, kept, _)| D::cursor(kept) == id)
                        .max_by_key(|(_, order, _, _)| *order);
                    let key = newest.map(|(key, _, _, _)| key.clone());
                    let (seq, request_id) = key.unwrap_or((0, String::new()));
                    let entry = OutboxEntry {
                        seq,
                        entity: id,
                        kind: "restore".into(),
                        payload: Ok(item),
                        request_id,
                        created_at_micros: 0,
                    };
                    tracing::error!(domain = D::NAME, entity = %entry.entity, %error, "a kept write dead-lettered");
                    let epoch = self.shared.link.epoch().unwrap_or(0) as i64;
                    let scope = entry.payload.as_ref().ok().map(scope_of::<D>);
                    dead_letter::<D>(&mut tx, epoch, &entry, scope.as_deref(), &error).await?;
                }
                Err(error) => return Err(error),
            }
            tx.commit().await.map_err(DomainError::from_sqlx)?;
        }
        Ok((written, set_aside))
    }

    pub fn connect(context: AdapterContext<D>, target: SpacetimeTarget) -> Result<Self, DomainError> {
        let name = format!("{}:{}", D::NAME, target.database);
        let backoff = target.backoff.clone();
        let subscriber_capacity = context.settings.framework.subscriber_capacity;
        let event_log = context.settings.framework.event_log();
        let shared = Arc::new(Shared {
            module_settings: module_settings(&context.settings)?,
            settings: context.settings.domain,
            max_pending: context.settings.framework.outbox_max_pending,
            live: ScopedBroadcast::new(subscriber_capacity),
            link: Link::new(target),
            index: ScopeIndex::default(),
            calls: Mutex::new(HashMap::new()),
            committed: Mutex::new(Vec::new()),
            foreign: Mutex::new(Vec::new()),
            inserted: Mutex::new(HashSet::new()),
            configuring: Mutex::new(None),
            outbox: Mutex::new(BTreeSet::new()),
            retained: Mutex::new(Retained { next: 0, writes: HashMap::new(), own: HashSet::new() }),
            read_through_timeout: Duration::from_millis(context.settings.framework.read_through_timeout_ms),
            pool: context.pool,
            floors: Mutex::new(HashMap::new()),
            outside_batch_bytes: context.settings.framework.warmup.batch_bytes,
            persisted_signal: tokio::sync::Notify::new(),
            moved_away: Mutex::new(HashSet::new()),
            every_scope: context.settings.framework.cache_subscriptions == CacheSubscriptions::All,
            subscription_idle: Duration::from_secs(context.settings.framework.subscription_idle_secs),
            scope_rows: Mutex::new(HashMap::new()),
            just_subscribed: Mutex::new(Vec::new()),
            resubscribe: std::sync::atomic::AtomicBool::new(false),
        });
        let session_shared = shared.clone();
        let connection = keep_connected(name, backoff, move || session_shared.clone().session());
        if !shared.every_scope {
            tokio::spawn(drop_idle_scopes(Arc::downgrade(&shared)));
        }
        let outside = crate::outside::Follower::start::<D, _>(
            Arc::downgrade(&shared),
            shared.pool.clone(),
            event_log,
            crate::outside::StartAt::OldestKept,
            Some(shared.link.target.shard.clone()),
        );
        Ok(Self { shared, _connection: connection, _outside: outside })
    }
}

fn next_subscription_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Unsubscribes from the scopes nobody here has used for `subscription_idle` (no
/// snapshot or command, no live subscriber), so a backend's memory follows the
/// scopes in use rather than the whole cache.
async fn drop_idle_scopes<D: CacheBinding>(shared: std::sync::Weak<Shared<D>>) {
    let every = match shared.upgrade() {
        Some(shared) => (shared.subscription_idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(10)),
        None => return,
    };
    loop {
        tokio::time::sleep(every).await;
        let Some(shared) = shared.upgrade() else { return };
        let idle: Vec<_> = {
            let mut all = shared.scope_rows.lock().expect("scope rows lock");
            let gone: Vec<String> = all
                .iter()
                .filter(|(scope, rows)| {
                    // (One never applied is dropped too: its next use subscribes anew.)
                    rows.in_use == 0
                        && rows.last_used.elapsed() >= shared.subscription_idle
                        && !ScopeKey::parse(scope).is_ok_and(|key| shared.live.is_watched(&key))
                })
                .map(|(scope, _)| scope.clone())
                .collect();
            gone.into_iter().filter_map(|scope| all.remove(&scope).map(|rows| (scope, rows.handle))).collect()
        };
        if idle.is_empty() {
            continue;
        }
        tracing::debug!(domain = D::NAME, scopes = idle.len(), "dropping idle scope subscriptions");
        if let Ok(connection) = shared.link.connection() {
            // On a plain thread: the SDK's objects must not be dropped on an async one.
            let _ = tokio::task::spawn_blocking(move || {
                for (_, handle) in idle {
                    connection.unsubscribe_scope(handle);
                }
            })
            .await;
        }
    }
}

fn module_settings<D: Domain>(settings: &DomainSettings<D>) -> Result<String, DomainError> {
    serde_json::to_string(&settings.domain)
        .map_err(|e| DomainError::internal(format!("{} settings cannot be encoded", D::NAME)).caused_by(e))
}

impl<D: CacheBinding> Shared<D> {
    /// One connection's life, on the connection thread.
    fn session(self: Arc<Self>) -> Result<(), spacetimedb_sdk::Error> {
        let sink: Arc<dyn SessionSink<RowOf<D>>> = self.clone();
        self.link.run_session(
            || {
                self.index.clear();
                self.outbox.lock().expect("outbox lock").clear();
                // A new connection starts with no scope subscribed (waiters hear
                // that the cache is unavailable).
                self.scope_rows.lock().expect("scope rows lock").clear();
                self.just_subscribed.lock().expect("just subscribed lock").clear();
                // The new subscription's rows say again which scopes moved away.
                self.moved_away.lock().expect("moved lock").clear();
                D::Module::connect(&self.link.target, sink, self.every_scope)
            },
            |connection| {
                connection.advance()?;
                self.finish_subscribed(connection);
                if self.resubscribe.swap(false, std::sync::atomic::Ordering::SeqCst) {
                    self.resubscribe_watched(connection);
                }
                self.finish_committed(connection);
                Ok::<(), spacetimedb_sdk::Error>(())
            },
            || self.lost(),
        )
    }

    /// Answers (and publishes) the calls that committed in the message just processed.
    fn finish_committed(&self, connection: &D::Module) {
        let committed = std::mem::take(&mut *self.committed.lock().expect("committed lock"));
        for request_id in committed {
            let Some(mut call) = self.calls.lock().expect("calls lock").remove(&request_id) else { continue };
            call.written.sort_by_key(|(seq, _)| *seq);
            self.durable().expect(&request_id, call.written.iter().map(|(seq, _)| *seq).collect());
            let written: Vec<D::Item> = call.written.iter().map(|(_, item)| item.clone()).collect();
            let (committed, unchanged) = if call.written.is_empty() {
                // No outbox row: the command changed nothing. The message it came in
                // is applied, so the cache holds the state it saw.
                let current: Vec<D::Item> =
                    call.touches.iter().filter_map(|id| connection.find(id)).filter_map(|row| D::item(&row)).collect();
                (Committed::Unchanged(current.clone()), current)
            } else {
                (Committed::Wrote(call.written.into_iter().map(|(_, item)| item).collect()), Vec::new())
            };
            let outcome = (call.applied)(committed).map(|applied| {
                if self.live.is_watched(&call.scope) {
                    for event in applied.events {
                        self.live.publish(&call.scope, event);
                    }
                }
                Answer { event: applied.answer, written, unchanged }
            });
            let _ = call.reply.send(outcome);
        }
        let mut foreign = std::mem::take(&mut *self.foreign.lock().expect("foreign lock"));
        let inserted = std::mem::take(&mut *self.inserted.lock().expect("inserted lock"));
        // In the order the cache committed them (a message's rows come in no order).
        foreign.sort_by_key(|(seq, ..)| *seq);
        for (_, scope, entity, item) in foreign {
            let Ok(scope) = ScopeKey::parse(&scope) else { continue };
            if !self.live.is_watched(&scope) {
                continue;
            }
            match item {
                // The item's full new state, as for a change made in PostgreSQL.
                Some(item) => self.live.publish(&scope, D::changed_outside(item, inserted.contains(&entity))),
                None => self.live.resync(&scope),
            }
        }
    }

    fn lost(&self) {
        self.committed.lock().expect("committed lock").clear();
        self.foreign.lock().expect("foreign lock").clear();
        self.inserted.lock().expect("inserted lock").clear();
        *self.configuring.lock().expect("configuring lock") = None;
        let calls = std::mem::take(&mut *self.calls.lock().expect("calls lock"));
        for (_, call) in calls {
            let _ = call.reply.send(Err(cache_unavailable()));
        }
        self.live.resync_all();
    }

    fn durable(&self) -> &DurableWaiters {
        &self.link.durable
    }

    /// Holds `scope`'s rows in the client cache while the returned guard lives,
    /// subscribing to them first if this backend is not (waiting until they are in,
    /// at most the reducer timeout). Every scope is, with `cache_subscriptions = "all"`.
    async fn subscribed(self: &Arc<Self>, scope: &ScopeKey) -> Result<InUse<D>, DomainError> {
        if self.every_scope {
            return Ok(InUse { shared: None, scope: String::new(), id: 0 });
        }
        let (id, waiting) = {
            let mut all = self.scope_rows.lock().expect("scope rows lock");
            let rows = match all.get_mut(scope.as_str()) {
                Some(rows) => rows,
                None => {
                    let connection = self.link.connection()?;
                    let sink: Arc<dyn SessionSink<RowOf<D>>> = self.clone();
                    let id = next_subscription_id();
                    let handle = connection.subscribe_scope(scope.as_str(), id, sink);
                    let rows = ScopeRows {
                        id,
                        handle,
                        applied: false,
                        waiters: Vec::new(),
                        last_used: std::time::Instant::now(),
                        in_use: 0,
                    };
                    tracing::debug!(domain = D::NAME, scope = %scope, "subscribing to a scope's rows");
                    all.entry(scope.to_string()).or_insert(rows)
                }
            };
            rows.in_use += 1;
            rows.last_used = std::time::Instant::now();
            let waiting = if rows.applied {
                None
            } else {
                let (sender, receiver) = oneshot::channel();
                rows.waiters.push(sender);
                Some(receiver)
            };
            (rows.id, waiting)
        };
        let in_use = InUse { shared: Some(self.clone()), scope: scope.to_string(), id };
        if let Some(receiver) = waiting {
            match tokio::time::timeout(self.link.target.reducer_timeout, receiver).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(cache_unavailable()),
                Err(_) => {
                    return Err(DomainError::unavailable(
                        "cache_timeout",
                        format!(
                            "SpacetimeDB did not send the scope's rows within {} ms",
                            self.link.target.reducer_timeout.as_millis()
                        ),
                    ))
                }
            }
        }
        Ok(in_use)
    }

    /// Subscribes again to the scopes with live subscribers here (after a reconnect):
    /// another node's new item must reach them as new, not as a change.
    fn resubscribe_watched(self: &Arc<Self>, connection: &D::Module) {
        if self.every_scope {
            return;
        }
        let mut all = self.scope_rows.lock().expect("scope rows lock");
        for scope in self.live.watched() {
            if all.contains_key(scope.as_str()) {
                continue;
            }
            let sink: Arc<dyn SessionSink<RowOf<D>>> = self.clone();
            let id = next_subscription_id();
            let rows = ScopeRows {
                id,
                handle: connection.subscribe_scope(scope.as_str(), id, sink),
                applied: false,
                waiters: Vec::new(),
                last_used: std::time::Instant::now(),
                in_use: 0,
            };
            all.insert(scope.to_string(), rows);
        }
    }

    /// Whether `scope`'s rows are in the client cache now.
    fn holds_rows(&self, scope: &str) -> bool {
        self.every_scope || self.scope_rows.lock().expect("scope rows lock").get(scope).is_some_and(|rows| rows.applied)
    }

    /// Wakes the callers waiting for the scopes subscribed in the message just
    /// processed (whose rows are all in by now), and takes their recorded floors
    /// (the floor's row could not be looked up while the scope was not subscribed).
    fn finish_subscribed(&self, connection: &D::Module) {
        let scopes = std::mem::take(&mut *self.just_subscribed.lock().expect("just subscribed lock"));
        for (scope, id) in scopes {
            if D::TRIMS {
                if let Some((floor, row)) = connection.warm_record(&scope) {
                    self.warm_recorded(&scope, &floor, row.as_ref());
                }
            }
            let mut all = self.scope_rows.lock().expect("scope rows lock");
            if let Some(rows) = all.get_mut(&scope).filter(|rows| rows.id == id) {
                rows.applied = true;
                for waiter in rows.waiters.drain(..) {
                    let _ = waiter.send(());
                }
            }
        }
    }

    /// Sends the module the domain's settings; the link is ready once it has them.
    fn configure(&self, epoch: Option<u64>) {
        *self.configuring.lock().expect("configuring lock") = Some(epoch);
        let sent = self.link.connected().map(|c| c.configure(CONFIGURE.into(), self.module_settings.clone()));
        if !matches!(sent, Ok(Ok(()))) {
            tracing::error!(domain = D::NAME, "cannot send the module its settings");
        }
    }
}

/// The request id of the `configure` call of a session.
const CONFIGURE: &str = "configure";

impl<D: CacheBinding> SessionSink<RowOf<D>> for Shared<D> {
    /// The subscription is applied, but its rows are still to come (the SDK runs
    /// this callback first): hand the module its settings, and take calls once that
    /// has succeeded, by when every initial row is in.
    fn subscribed(&self, epoch: Option<u64>) {
        self.configure(epoch);
    }

    /// A new `cache_epoch` row while connected: the database was recreated under us,
    /// without the settings; configure it before it takes calls again.
    fn epoch_seen(&self, epoch: u64) {
        if self.link.epoch() != Some(epoch) {
            self.link.unready();
            self.configure(Some(epoch));
        }
    }

    fn cached(&self, row: &RowOf<D>) {
        let place = D::placement(row);
        if self.link.epoch().is_some() {
            self.inserted.lock().expect("inserted lock").insert(place.entity.clone());
        }
        self.index.insert(&place.scope, (place.order, place.entity));
    }

    fn evicted(&self, row: &RowOf<D>) {
        let place = D::placement(row);
        self.index.remove(&place.scope, &(place.order, place.entity));
    }

    fn replaced(&self, old: &RowOf<D>, new: &RowOf<D>) {
        let (before, after) = (D::placement(old), D::placement(new));
        // Most updates keep their place: leave the index alone, so no snapshot taken
        // meanwhile misses the row.
        if (&before.scope, &before.order, &before.entity) != (&after.scope, &after.order, &after.entity) {
            self.index.remove(&before.scope, &(before.order, before.entity));
            self.index.insert(&after.scope, (after.order, after.entity));
        }
    }

    fn recorded(&self, seq: u64, request_id: &str, created_at_micros: i64, row: &RowOf<D>) {
        self.outbox.lock().expect("outbox lock").insert(seq);
        // The initial rows of a subscription are older than this session: nobody waits
        // for them, nothing here keeps them, no subscriber is told.
        let in_session = self.link.epoch().is_some();
        let (item, scope) = (D::item(row), D::placement(row).scope);
        if item.is_none() {
            tracing::error!(domain = D::NAME, seq, "a written row is unreadable");
        }
        let mut calls = self.calls.lock().expect("calls lock");
        let own = calls.contains_key(request_id);
        match (calls.get_mut(request_id), &item) {
            (Some(call), Some(item)) => call.written.push((seq, item.clone())),
            (Some(_), None) => {}
            (None, _) if in_session => {
                let entity = D::placement(row).entity;
                self.foreign.lock().expect("foreign lock").push((seq, scope.clone(), entity, item.clone()));
            }
            (None, _) => {}
        }
        drop(calls);
        if let (true, Some(item), Ok(scope)) = (in_session, item, ScopeKey::parse(&scope)) {
            let mut retained = self.retained.lock().expect("retained lock");
            let order = retained.next;
            retained.next += 1;
            retained.keep((seq, request_id.to_string()), (order, scope, item, created_at_micros), own);
        }
        self.link.signal(CacheSignal::OutboxGrew);
    }

    /// An outbox entry left the cache while connected: acknowledged (some backend
    /// committed it in PostgreSQL) or purged with its scope. Either way this backend's
    /// own copy has served its purpose; kept, it could bring a purged write back.
    /// Acknowledged by any node, a durable writer waiting here is released to read
    /// PostgreSQL for its state (a purge's delete releases nobody).
    fn acked(&self, seq: u64, request_id: &str, in_postgres: bool) {
        self.outbox.lock().expect("outbox lock").remove(&seq);
        self.retained.lock().expect("retained lock").writes.remove(&(seq, request_id.to_string()));
        if in_postgres {
            // Not proof by itself: the drainer acknowledges what it set aside or
            // dropped too. The writer reads PostgreSQL before it answers.
            self.durable().acked_elsewhere(request_id, seq);
            self.persisted_signal.notify_waiters();
        }
    }

    fn client_outcome(&self, request_id: &str, status: &Status) {
        match reducer_outcome(status) {
            Ok(()) => self.committed.lock().expect("committed lock").push(request_id.to_string()),
            Err(error) => {
                if let Some(call) = self.calls.lock().expect("calls lock").remove(request_id) {
                    let _ = call.reply.send(Err(error));
                }
            }
        }
    }

    fn warm_recorded(&self, scope: &str, floor: &str, floor_row: Option<&RowOf<D>>) {
        if !D::TRIMS {
            return;
        }
        let Ok(scope) = ScopeKey::parse(scope) else { return };
        let floor = match (floor, floor_row) {
            (WHOLE, _) => None,
            (NONE_CACHED, _) => Some(Floor::Everything),
            (_, Some(row)) => {
                let place = D::placement(row);
                Some(Floor::At(place.order, place.entity))
            }
            // Its row is gone from the cache (trimmed since): pages come from PostgreSQL.
            (_, None) => Some(Floor::Everything),
        };
        let mut floors = self.floors.lock().expect("floors lock");
        match floor {
            Some(floor) => floors.insert(scope, floor),
            None => floors.remove(&scope),
        };
    }

    fn scope_subscribed(&self, scope: &str, id: u64, ok: bool) {
        if ok {
            self.just_subscribed.lock().expect("just subscribed lock").push((scope.to_string(), id));
        } else {
            // Its waiters hear that the cache is unavailable; the next use tries again.
            tracing::error!(domain = D::NAME, scope, "the cache refused a scope's subscription");
            let mut all = self.scope_rows.lock().expect("scope rows lock");
            if all.get(scope).is_some_and(|rows| rows.id == id) {
                all.remove(scope);
            }
        }
    }

    fn moving(&self, scope: &str, cleared: Option<bool>) {
        let mut moved_away = self.moved_away.lock().expect("moved lock");
        if cleared == Some(true) {
            moved_away.insert(scope.to_string());
        } else {
            moved_away.remove(scope);
        }
    }

    fn owner_outcome(&self, request_id: &str, status: &Status) {
        let outcome = reducer_outcome(status);
        if request_id == CONFIGURE {
            let epoch = self.configuring.lock().expect("configuring lock").take();
            match (outcome, epoch) {
                (Ok(()), Some(epoch)) => {
                    self.link.ready(epoch);
                    self.resubscribe.store(true, std::sync::atomic::Ordering::SeqCst);
                }
                (Ok(()), None) => {}
                // Calls stay refused (503, `/health` shows the cache disconnected):
                // the module would apply other limits than PostgreSQL.
                (Err(error), _) => tracing::error!(domain = D::NAME, %error, "the module refused its settings"),
            }
            return;
        }
        self.link.owner_calls.resolve(request_id, outcome);
    }
}

/// A scope's cached items, for [`CacheBinding::page`].
pub struct CachedScope<'a, D: CacheBinding> {
    shared: &'a Shared<D>,
    connection: &'a D::Module,
    scope: &'a ScopeKey,
}

impl<D: CacheBinding> CachedScope<'_, D> {
    /// At most `limit` items, newest first, older than the item whose cursor is
    /// `before` (none when that item is not cached).
    pub fn newest(&self, before: Option<&str>, limit: usize) -> Result<Vec<D::Item>, DomainError> {
        let before = match before {
            None => None,
            Some(cursor) => match self.connection.find(cursor) {
                Some(row) => {
                    let place = D::placement(&row);
                    Some((place.order, place.entity))
                }
                None => return Ok(Vec::new()),
            },
        };
        let keys = self.shared.index.newest(self.scope.as_str(), before.as_ref(), limit);
        Ok(self.items(keys))
    }

    /// Every cached item of the scope, in snapshot order (oldest first).
    pub fn all(&self) -> Vec<D::Item> {
        self.items(self.shared.index.keys(self.scope.as_str()))
    }

    fn items(&self, keys: Vec<(D::Order, String)>) -> Vec<D::Item> {
        keys.iter().filter_map(|(_, entity)| self.connection.find(entity)).filter_map(|row| D::item(&row)).collect()
    }
}

/// Outside changes (see [`crate::outside`]): warmed into the cache when newer than
/// what it holds, unless below a windowed scope's floor, and published.
#[async_trait]
impl<D: CacheBinding> OutsideSink<D> for Shared<D> {
    async fn take(&self, changes: Vec<OutsideChange<D::Item>>) -> Result<(), DomainError> {
        let mut warm: Vec<(usize, RowOf<D>)> = Vec::new();
        let mut events: Vec<(ScopeKey, D::Event)> = Vec::new();
        {
            let connection = self.link.connection()?;
            let floors = self.floors.lock().expect("floors lock");
            for OutsideChange { item, inserted, .. } in changes {
                let row = D::row(&item);
                let place = D::placement(&row);
                let Ok(scope) = ScopeKey::parse(&place.scope) else { continue };
                // A scope not subscribed here: the cache may hold it all the same (for
                // another backend), and keeps the newer of the two versions.
                if !self.holds_rows(&place.scope) {
                    warm.push((D::weight(&item), row));
                    continue;
                }
                let cached = connection.find(&place.entity).and_then(|row| D::item(&row));
                if cached.as_ref().is_some_and(|cached| D::version(cached) >= D::version(&item)) {
                    continue; // already here
                }
                let below_floor = match floors.get(&scope) {
                    Some(Floor::At(order, entity)) => (&place.order, &place.entity) < (order, entity),
                    Some(Floor::Everything) => true,
                    None => false,
                };
                if cached.is_some() || !below_floor {
                    warm.push((D::weight(&item), row));
                }
                events.push((scope, D::changed_outside(item, inserted || cached.is_none())));
            }
        }
        // In batches as warm-up's: SpacetimeDB drops a connection over a message past
        // 32 MiB (a whiteboard's strokes are large).
        let mut batch: Vec<RowOf<D>> = Vec::new();
        let mut bytes = 0;
        let total = warm.len();
        for (index, (weight, row)) in warm.into_iter().enumerate() {
            bytes += weight;
            batch.push(row);
            if bytes >= self.outside_batch_bytes || index + 1 == total {
                let rows = std::mem::take(&mut batch);
                bytes = 0;
                tracing::debug!(domain = D::NAME, rows = rows.len(), "outside changes into the cache");
                self.link.owner_call(move |c: &D::Module, request_id| c.warm(request_id, rows)).await?;
            }
        }
        for (scope, event) in events {
            self.live.publish(&scope, event);
        }
        Ok(())
    }
}

#[async_trait]
impl<D: CacheBinding> Connection<D> for CacheAdapter<D> {
    fn kind(&self) -> AdapterKind {
        AdapterKind::Spacetimedb
    }

    /// The cache serves what it holds whole: a windowed scope's items from its floor
    /// up. A page reaching below the floor continues from PostgreSQL, so a client
    /// pages back through all history with one cursor and merges nothing.
    async fn snapshot(&self, scope: &ScopeKey, page: Page) -> Result<Vec<D::Item>, DomainError> {
        let moved = || self.shared.moved_away.lock().expect("moved lock").contains(scope.as_str());
        if moved() {
            return Err(scope_moving());
        }
        let _rows = self.shared.subscribed(scope).await?;
        let items = self.cached_page(scope, page).await?;
        // Checked again: a move's clearing of this shard may have landed while the
        // page was read (its mark comes in the same transaction as its deletes).
        if moved() {
            return Err(scope_moving());
        }
        Ok(items)
    }

    async fn apply(
        &self,
        scope: &ScopeKey,
        actor: &ActingUser,
        command: D::Command,
        durability: Durability,
    ) -> Result<D::Event, DomainError> {
        // The module checks the same limits (it has the same settings); checking here
        // spares the round trip.
        D::validate(&command, &self.shared.settings)?;
        if self.shared.outbox.lock().expect("outbox lock").len() >= self.shared.max_pending {
            tracing::warn!(domain = D::NAME, limit = self.shared.max_pending, "outbox full: refusing writes");
            return Err(DomainError::unavailable(
                "outbox_full",
                "too many writes are waiting for PostgreSQL; retry once it has caught up",
            ));
        }
        let _rows = self.shared.subscribed(scope).await?;
        let touches = D::touches(&command);
        self.read_through(&touches).await?;
        let json = serde_json::to_string(&command)
            .map_err(|e| DomainError::internal(format!("a {} command cannot be encoded", D::NAME)).caused_by(e))?;
        let request_id = uuid::Uuid::new_v4().simple().to_string();
        let (reply, outcome) = oneshot::channel();
        let author = actor.user.clone();
        let applied: Outcome<D> = Box::new(move |committed| match committed {
            Committed::Wrote(written) => D::applied(&command, &author, written),
            Committed::Unchanged(current) => D::unchanged(&command, &author, current).map(Applied::unchanged),
        });
        let call = ClientCall { scope: scope.clone(), touches, applied, reply, written: Vec::new() };
        self.shared.calls.lock().expect("calls lock").insert(request_id.clone(), call);
        let durable = (durability == Durability::Durable).then(|| self.shared.durable().register(&request_id));
        // The connection is not held across the await (see `spacetime::release`).
        let sent = self.shared.link.connection().and_then(|connection| {
            connection
                .apply(request_id.clone(), scope.to_string(), actor.user.0.clone(), actor.owns_scope, json)
                .map_err(|_| cache_unavailable())
        });
        let forget = |shared: &Shared<D>| {
            shared.calls.lock().expect("calls lock").remove(&request_id);
            shared.durable().forget(&request_id);
        };
        if let Err(error) = sent {
            forget(&self.shared);
            return Err(error);
        }
        let timeout = self.shared.link.target.reducer_timeout;
        let answer = match tokio::time::timeout(timeout, outcome).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Err(cache_unavailable()),
            Err(_) => {
                forget(&self.shared);
                return Err(DomainError::unavailable(
                    "cache_timeout",
                    format!("SpacetimeDB did not answer within {} ms", timeout.as_millis()),
                ));
            }
        };
        let answer = match answer {
            Ok(answer) => answer,
            Err(error) => {
                self.shared.durable().forget(&request_id);
                return Err(error);
            }
        };
        if let Some(receiver) = durable {
            let released =
                self.shared.durable().wait(&request_id, receiver, self.shared.link.target.durable_timeout).await?;
            if released == Released::AckedElsewhere {
                // Another node drained it: durable only if PostgreSQL holds the very
                // states written (not if that node set them aside or dropped them).
                self.until_in_postgres(&answer.written).await?;
            }
            // A command that changed nothing wrote no entry to wait for, but what it
            // answers may still be on its way (a retry of a write in the outbox).
            self.until_in_postgres(&answer.unchanged).await?;
        }
        Ok(answer.event)
    }

    /// A watched scope stays subscribed here (a new item's event needs its insert
    /// seen), so its subscribers' snapshots after a resync need not wait.
    async fn subscribe(&self, scope: &ScopeKey) -> Result<EventStream<D::Event>, DomainError> {
        let stream = self.shared.live.subscribe(scope);
        self.shared.subscribed(scope).await?;
        Ok(stream)
    }
}

impl<D: CacheBinding> CacheAdapter<D> {
    /// A page of the scope as the cache holds it (see [`Connection::snapshot`]).
    async fn cached_page(&self, scope: &ScopeKey, page: Page) -> Result<Vec<D::Item>, DomainError> {
        let floor = self.shared.floors.lock().expect("floors lock").get(scope).cloned();
        let floor = match floor {
            None => {
                let connection = self.shared.link.connection()?;
                return <D as CacheBinding>::page(
                    &CachedScope { shared: &self.shared, connection: &connection, scope },
                    page,
                );
            }
            Some(Floor::Everything) => return self.history_with_cached_versions(scope, page).await,
            Some(Floor::At(order, entity)) => (order, entity),
        };
        let mut items = {
            let connection = self.shared.link.connection()?;
            let place = |row: &RowOf<D>| {
                let place = D::placement(row);
                (place.order, place.entity)
            };
            let cursor = page.before.as_deref().map(|cursor| connection.find(cursor).map(|row| place(&row)));
            if let Some(None) = cursor {
                drop(connection);
                return self.history(scope, page).await; // a cursor older than the window
            }
            if cursor.flatten().is_some_and(|cursor| cursor <= floor) {
                drop(connection);
                return self.history(scope, page).await;
            }
            let cached = CachedScope { shared: &self.shared, connection: &connection, scope };
            let mut items = <D as CacheBinding>::page(&cached, page.clone())?;
            // Read-through may have cached single older items: they are not whole history.
            items.retain(|item| place(&D::row(item)) >= floor);
            items
        };
        let wanted = page.limit as usize;
        if items.len() < wanted {
            let rest = Page { limit: (wanted - items.len()) as u32, before: Some(floor.1) };
            items.extend(self.history(scope, rest).await?);
        }
        Ok(items)
    }
}

#[async_trait]
impl<D: CacheBinding> Cache<D> for CacheAdapter<D> {
    fn epoch(&self) -> Option<u64> {
        self.shared.link.epoch()
    }

    fn generation(&self) -> Option<u64> {
        self.shared.link.generation()
    }

    fn signals(&self) -> broadcast::Receiver<CacheSignal> {
        self.shared.link.signals()
    }

    async fn load_window(
        &self,
        db: &mut PgConnection,
        scope: &ScopeKey,
        window: &WarmupSettings,
    ) -> Result<Vec<D::Item>, DomainError> {
        let items = D::load_window(db, scope, window).await?;
        // A window short of the whole scope: older pages come from PostgreSQL.
        let truncated = items.len() as i64 >= window.limit() || window.since().is_some();
        let oldest = items.iter().map(|item| D::placement(&D::row(item))).min_by(|a, b| a.order.cmp(&b.order));
        let floor = match oldest {
            _ if !D::TRIMS || !truncated => None,
            Some(oldest) => Some(Floor::At(oldest.order, oldest.entity)),
            None => Some(Floor::Everything),
        };
        let mut floors = self.shared.floors.lock().expect("floors lock");
        match floor {
            Some(floor) => floors.insert(scope.clone(), floor),
            None => floors.remove(scope),
        };
        Ok(items)
    }

    async fn warm(&self, _scope: &ScopeKey, batch: Vec<D::Item>) -> Result<(), DomainError> {
        let rows: Vec<RowOf<D>> = batch.iter().map(D::row).collect();
        self.shared.link.owner_call(move |c, request_id| c.warm(request_id, rows)).await
    }

    fn send_warm_batch(&self, scope: &ScopeKey, claim: &str, batch: &[D::Item]) -> Result<(), DomainError> {
        let rows: Vec<RowOf<D>> = batch.iter().map(D::row).collect();
        let (key, claim) = (scope.to_string(), claim.to_string());
        self.shared.link.owner_send(move |c, request_id| c.warm_batch(request_id, key, claim, rows))
    }

    async fn check_warm(&self, scope: &ScopeKey, claim: &str, batches: u32) -> Result<(), DomainError> {
        let (key, claim) = (scope.to_string(), claim.to_string());
        self.shared.link.owner_call(move |c, request_id| c.warm_check(request_id, key, claim, batches)).await
    }

    fn warmed(&self, scope: &ScopeKey) {
        self.shared.live.resync(scope);
    }

    fn not_warmed(&self, scope: &ScopeKey) {
        if D::TRIMS {
            self.shared.floors.lock().expect("floors lock").insert(scope.clone(), Floor::Everything);
        }
    }

    async fn forget(&self, scope: &ScopeKey) -> Result<(), DomainError> {
        let key = scope.to_string();
        self.shared.link.owner_call(move |c, request_id| c.forget_scope(request_id, key)).await?;
        // This backend's own copies of the scope's writes go too: warm-up would write
        // them into PostgreSQL and the cache again once the scope is created anew. (Its
        // writes committed before the purge have all been reported by now: the SDK
        // reports transactions in order, and the purge's own outcome came after them.)
        self.shared.retained.lock().expect("retained lock").writes.retain(|_, (_, of, _, _)| of != scope);
        self.shared.floors.lock().expect("floors lock").remove(scope);
        // Its live subscribers (if any are left) must not keep what they were shown.
        self.shared.live.resync(scope);
        Ok(())
    }

    async fn remember(&self, scope: &ScopeKey) -> Result<(), DomainError> {
        let key = scope.to_string();
        self.shared.link.owner_call(move |c, request_id| c.remember_scope(request_id, key)).await
    }

    async fn begin_warm(&self, scope: &ScopeKey, force: bool) -> Result<Option<String>, DomainError> {
        let (key, claim) = (scope.to_string(), uuid::Uuid::new_v4().to_string());
        let claimed = claim.clone();
        match self.shared.link.owner_call(move |c, request_id| c.warm_begin(request_id, key, force, claimed)).await {
            Ok(()) => Ok(Some(claim)),
            // Its floor came with the warm-up that ended ([`SessionSink::warm_recorded`]):
            // the SDK reports transactions in order, and this refusal came after it.
            Err(error) if error.code == ALREADY_WARM => Ok(None),
            Err(error) => Err(error),
        }
    }

    async fn forget_warm_ups(&self) -> Result<(), DomainError> {
        self.shared.link.owner_call(|c, request_id| c.forget_warm_ups(request_id)).await
    }

    async fn end_warm(
        &self,
        scope: &ScopeKey,
        claim: String,
        batches: u32,
        keep: Option<u32>,
    ) -> Result<(), DomainError> {
        let floor = match self.shared.floors.lock().expect("floors lock").get(scope) {
            None => WHOLE.to_string(),
            Some(Floor::Everything) => NONE_CACHED.to_string(),
            Some(Floor::At(_, entity)) => entity.clone(),
        };
        // No trim where this node holds the scope's rows and counts no more than `keep`:
        // nothing would go, and its floor stays where the window put it. Counted once
        // every batch is in its index: the batches' rows reached it (as any subscriber
        // hears of them) in messages before the check's outcome.
        let counted = self.shared.holds_rows(scope.as_str());
        if counted && D::TRIMS && keep.is_some() {
            self.check_warm(scope, &claim, batches).await?;
        }
        let keep =
            keep.filter(|&keep| D::TRIMS && !(counted && self.shared.index.len(scope.as_str()) <= keep as usize));
        let key = scope.to_string();
        self.shared
            .link
            .owner_call(move |c, request_id| c.warm_end(request_id, key, claim, floor, batches, keep))
            .await?;
        // The module raised the recorded floor with the rows it dropped: a backend not
        // holding the scope's rows takes it when it subscribes to the scope; this one,
        // holding them, sees the window now start at the newest `keep`-th item (older
        // pending ones stay cached, but not as whole history).
        let Some(keep) = keep.filter(|_| counted) else { return Ok(()) };
        if let Some((order, entity)) = self.shared.index.newest(scope.as_str(), None, keep as usize).pop() {
            let mut floors = self.shared.floors.lock().expect("floors lock");
            let floor = floors.entry(scope.clone()).or_insert_with(|| Floor::At(order.clone(), entity.clone()));
            if let Floor::At(floor_order, floor_entity) = floor {
                if (&order, &entity) > (&*floor_order, &*floor_entity) {
                    *floor = Floor::At(order, entity);
                }
            }
        }
        Ok(())
    }

    fn scope_of(&self, item: &D::Item) -> String {
        scope_of::<D>(item)
    }

    fn shard(&self) -> &crate::shards::Shard {
        &self.shared.link.target.shard
    }

    fn subscribed_scopes(&self) -> Option<usize> {
        (!self.shared.every_scope).then(|| self.shared.scope_rows.lock().expect("scope rows lock").len())
    }

    async fn move_step(&self, step: MoveStep, scope: &ScopeKey) -> Result<(), DomainError> {
        let key = scope.to_string();
        self.shared.link.owner_call(move |c, request_id| c.move_step(step, request_id, key)).await?;
        if step == MoveStep::Release {
            self.shared.floors.lock().expect("floors lock").remove(scope);
        }
        Ok(())
    }

    fn pending_in(&self, scope: &ScopeKey) -> usize {
        let in_outbox = self
            .pending(usize::MAX)
            .iter()
            .filter(|entry| entry.payload.as_ref().map_or(true, |item| scope_of::<D>(item) == scope.as_str()))
            .count();
        let retained = self.shared.retained.lock().expect("retained lock");
        in_outbox.max(retained.writes.values().filter(|(_, of, _, _)| of == scope).count())
    }

    fn pending_except(&self, taken: &BTreeSet<u64>, limit: usize) -> Vec<Pending<D>> {
        let Ok(connection) = self.shared.link.connection() else { return Vec::new() };
        let seqs: Vec<u64> = {
            let outbox = self.shared.outbox.lock().expect("outbox lock");
            outbox.iter().filter(|seq| !taken.contains(seq)).take(limit).copied().collect()
        };
        seqs.into_iter()
            .filter_map(|seq| connection.outbox_entry(seq))
            .map(|entry| OutboxEntry {
                payload: D::item(&entry.payload).ok_or_else(|| format!("{:?}", entry.payload)),
                seq: entry.seq,
                entity: entry.entity,
                kind: entry.kind,
                request_id: entry.request_id,
                created_at_micros: entry.created_at_micros,
            })
            .collect()
    }

    fn pending_count(&self) -> usize {
        match self.shared.link.connection() {
            Ok(_) => self.shared.outbox.lock().expect("outbox lock").len(),
            Err(_) => 0,
        }
    }

    fn pending_snapshot(&self) -> Option<(u64, BTreeSet<u64>)> {
        // The generation before and after: a session that began in between has
        // cleared and refilled the list.
        let generation = self.shared.link.generation()?;
        let seqs = self.shared.outbox.lock().expect("outbox lock").clone();
        (self.shared.link.generation() == Some(generation)).then_some((generation, seqs))
    }

    fn retain_pending(&self, generation: u64, seqs: &mut BTreeSet<u64>) -> bool {
        if self.shared.link.generation() != Some(generation) {
            return false;
        }
        let still: BTreeSet<u64> = {
            let outbox = self.shared.outbox.lock().expect("outbox lock");
            seqs.iter().filter(|seq| outbox.contains(seq)).copied().collect()
        };
        if self.shared.link.generation() != Some(generation) {
            return false;
        }
        *seqs = still;
        true
    }

    async fn persist(&self, tx: &mut PgConnection, entries: &[Pending<D>]) -> Result<usize, DomainError> {
        // Payloads are full states: within a batch only each entity's newest matters.
        let items = latest_per_entity(entries, |payload| payload.as_ref().map_or(0, D::version))
            .into_iter()
            .map(|entry| match &entry.payload {
                Ok(item) => Ok((item.clone(), Some(entry.created_at_micros))),
                Err(_) => {
                    let message = format!("outbox entry {} holds a row the domain cannot read", entry.seq);
                    Err(DomainError::new(ErrorKind::Internal, UNREADABLE_ENTRY, message))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        let (written, dropped) = persist_unless_purged::<D>(tx, items).await?;
        // A durable writer of a purged scope's write hears "not yet durable", never
        // "in PostgreSQL": its retry finds the scope gone.
        for entry in entries.iter().filter(|entry| dropped.contains(&entry.entity)) {
            self.shared.durable().forget(&entry.request_id);
        }
        Ok(written)
    }

    async fn ack(&self, epoch: u64, entries: Vec<(u64, String)>) -> Result<(), DomainError> {
        let acked: Vec<u64> = entries.iter().map(|(seq, _)| *seq).collect();
        self.shared.link.owner_call(move |c, request_id| c.ack(request_id, epoch, entries)).await?;
        // The SDK reports the outcome before the deleted rows: forget them now, so
        // what `pending` says agrees with what the caller just did. (An entry the
        // module kept, a reused sequence number, comes back with the next subscription.)
        let connection = self.shared.link.connection()?;
        let mut outbox = self.shared.outbox.lock().expect("outbox lock");
        for seq in acked {
            if connection.outbox_entry(seq).is_none() {
                outbox.remove(&seq);
            }
        }
        Ok(())
    }

    fn persisted(&self, entries: &[Pending<D>]) {
        let mut retained = self.shared.retained.lock().expect("retained lock");
        for entry in entries {
            retained.writes.remove(&(entry.seq, entry.request_id.clone()));
            self.shared.durable().persisted(&entry.request_id, entry.seq);
        }
        self.shared.persisted_signal.notify_waiters();
    }

    async fn restore_all(&self, pool: &PgPool) -> Result<usize, DomainError> {
        let scopes: BTreeSet<ScopeKey> = {
            let retained = self.shared.retained.lock().expect("retained lock");
            retained.writes.values().map(|(_, scope, _, _)| scope.clone()).collect()
        };
        let mut written = 0;
        for scope in scopes {
            written += self.restore(pool, &scope).await?;
        }
        Ok(written)
    }

    fn retained(&self) -> usize {
        self.shared.retained.lock().expect("retained lock").writes.len()
    }

    fn retained_own(&self) -> usize {
        self.shared.retained.lock().expect("retained lock").own_count()
    }

    fn set_aside(&self, entries: &[Pending<D>]) {
        let mut retained = self.shared.retained.lock().expect("retained lock");
        for entry in entries {
            retained.writes.remove(&(entry.seq, entry.request_id.clone()));
        }
    }

    async fn restore(&self, pool: &PgPool, scope: &ScopeKey) -> Result<usize, DomainError> {
        let writes: Vec<Restoring<D>> = {
            let retained = self.shared.retained.lock().expect("retained lock");
            let of_scope = retained.writes.iter().filter(|(_, (_, s, _, _))| s == scope);
            of_scope.map(|(key, (order, _, item, at))| (key.clone(), *order, item.clone(), *at)).collect()
        };
        if writes.is_empty() {
            return Ok(0);
        }
        // Full states: each entity's newest is enough (versions guard the rest).
        let mut latest: HashMap<String, Timed<D::Item>> = HashMap::new();
        for (_, _, item, at) in &writes {
            let newer = latest.get(&D::cursor(item)).is_none_or(|(kept, _)| D::version(item) >= D::version(kept));
            if newer {
                latest.insert(D::cursor(item), (item.clone(), Some(*at)));
            }
        }
        let latest: Vec<Timed<D::Item>> = latest.into_values().collect();
        let mut tx = pool.begin().await.map_err(DomainError::from_sqlx)?;
        let (written, set_aside) = match persist_checked::<D>(&mut tx, latest.clone()).await {
            Ok(written) => {
                tx.commit().await.map_err(DomainError::from_sqlx)?;
                (written, Vec::new())
            }
            // One write PostgreSQL refuses for good must not keep the scope from ever
            // warming (and taking writes): the rest go one by one, it is set aside.
            Err(error) if refused_for_good(&error) => {
                drop(tx);
                self.restore_one_by_one(pool, &writes, latest).await?
            }
            Err(error) => return Err(error),
        };
        let mut retained = self.shared.retained.lock().expect("retained lock");
        for ((seq, request_id), _, item, _) in writes {
            retained.writes.remove(&(seq, request_id.clone()));
            // A durable writer hears "in PostgreSQL" only if it is.
            if !set_aside.contains(&D::cursor(&item)) {
                self.shared.durable().persisted(&request_id, seq);
            }
        }
        self.shared.persisted_signal.notify_waiters();
        Ok(written)
    }
}

/// Implements [`ModuleLink`] for a module's generated bindings:
/// `spacetime_module!(module_bindings, row: Row, tables: [table, ...])`, where `row`
/// is the module's row type (each listed table's row converts into it with `From`)
/// and `tables` its data tables, each with a `String` primary key `id`.
#[macro_export]
macro_rules! spacetime_module {
    ($($bindings:ident)::+, row: $row:ty, tables: [$($table:ident : $scope:ident),+ $(,)?]) => {
        const _: () = {
            use std::sync::Arc;
            use $crate::__private::sdk::{Compression, DbContext, Event, SubscriptionHandle as _, Table, TableWithPrimaryKey};
            use $crate::__private::CallReducerFlags;
            use $crate::cache::OutboxEntry;
            use $crate::cache_adapter::{ModuleLink, SessionSink};
            use $crate::factory::SpacetimeTarget;
            use $($bindings)::+::*;

            type SdkResult<T> = Result<T, $crate::__private::sdk::Error>;

            impl ModuleLink for DbConnection {
                type Row = $row;
                type ScopeSubscription = SubscriptionHandle;

                fn connect(target: &SpacetimeTarget, sink: Arc<dyn SessionSink<$row>>, every_scope: bool) -> SdkResult<Self> {
                    let connection = DbConnection::builder()
                        .with_uri(&target.url)
                        .with_module_name(&target.database)
                        .with_token(Some(target.token.clone()))
                        .with_compression(if target.compression { Compression::Brotli } else { Compression::None })
                        .build()?;
                    $(
                        let s = sink.clone();
                        connection.db.$table().on_insert(move |_, row| s.cached(&<$row>::from(row.clone())));
                        let s = sink.clone();
                        connection.db.$table().on_update(move |_, old, row| {
                            s.replaced(&<$row>::from(old.clone()), &<$row>::from(row.clone()))
                        });
                        let s = sink.clone();
                        connection.db.$table().on_delete(move |_, row| s.evicted(&<$row>::from(row.clone())));
                    )+
                    let s = sink.clone();
                    connection.db.cache_epoch().on_insert(move |ctx, row| {
                        if !matches!(ctx.event, Event::SubscribeApplied) {
                            s.epoch_seen(row.epoch);
                        }
                    });
                    let s = sink.clone();
                    connection.db.sync_outbox().on_insert(move |_, row| {
                        s.recorded(row.seq, &row.request_id, row.created_at.to_micros_since_unix_epoch(), &row.payload)
                    });
                    let s = sink.clone();
                    connection.db.sync_outbox().on_delete(move |ctx, row| {
                        // Deleted by an ack (some node committed it in PostgreSQL), or by a purge.
                        let in_postgres = matches!(&ctx.event, Event::Reducer(call) if matches!(call.reducer, Reducer::AckOutbox { .. }));
                        s.acked(row.seq, &row.request_id, in_postgres)
                    });
                    let s = sink.clone();
                    connection.reducers.on_apply(move |ctx, request_id, _, _, _, _| s.client_outcome(request_id, &ctx.event.status));
                    // Warm-up batches are large: no outcome of theirs is awaited. Called so,
                    // a batch is not echoed unless it changed rows this node subscribes to,
                    // and its failure is reported to nobody: `warm_check` and `warm_end`
                    // count the batches that loaded.
                    connection.set_reducer_flags().warm_batch(CallReducerFlags::NoSuccessNotify);
                    let s = sink.clone();
                    connection.reducers.on_warm(move |ctx, request_id, _| s.owner_outcome(request_id, &ctx.event.status));
                    let s = sink.clone();
                    connection.reducers.on_warm_check(move |ctx, request_id, _, _, _| s.owner_outcome(request_id, &ctx.event.status));
                    let s = sink.clone();
                    connection.reducers.on_ack_outbox(move |ctx, request_id, _, _| s.owner_outcome(request_id, &ctx.event.status));
                    let s = sink.clone();
                    connection.reducers.on_configure(move |ctx, request_id, _| s.owner_outcome(request_id, &ctx.event.status));
                    let s = sink.clone();
                    connection.reducers.on_forget_scope(move |ctx, request_id, _| s.owner_outcome(request_id, &ctx.event.status));
                    let s = sink.clone();
                    connection.reducers.on_remember_scope(move |ctx, request_id, _| s.owner_outcome(request_id, &ctx.event.status));
                    let s = sink.clone();
                    connection.reducers.on_warm_begin(move |ctx, request_id, _, _, _| s.owner_outcome(request_id, &ctx.event.status));
                    let s = sink.clone();
                    connection.reducers.on_warm_end(move |ctx, request_id, _, _, _, _, _| s.owner_outcome(request_id, &ctx.event.status));
                    let s = sink.clone();
                    connection.reducers.on_forget_warm_ups(move |ctx, request_id| s.owner_outcome(request_id, &ctx.event.status));
                    let s = sink.clone();
                    connection.reducers.on_freeze_scope(move |ctx, request_id, _| s.owner_outcome(request_id, &ctx.event.status));
                    let s = sink.clone();
                    connection.reducers.on_thaw_scope(move |ctx, request_id, _| s.owner_outcome(request_id, &ctx.event.status));
                    let s = sink.clone();
                    connection.reducers.on_release_scope(move |ctx, request_id, _| s.owner_outcome(request_id, &ctx.event.status));
                    let s = sink.clone();
                    connection.reducers.on_take_scope(move |ctx, request_id, _| s.owner_outcome(request_id, &ctx.event.status));
                    let s = sink.clone();
                    connection.db.moving_scope().on_insert(move |_, row| s.moving(&row.scope, Some(row.cleared)));
                    let s = sink.clone();
                    connection.db.moving_scope().on_update(move |_, _, row| s.moving(&row.scope, Some(row.cleared)));
                    let s = sink.clone();
                    connection.db.moving_scope().on_delete(move |_, row| s.moving(&row.scope, None));
                    // Every backend keeps every scope's floor as the cache records it
                    // (a warm-up's end, a trim).
                    fn recorded(ctx: &EventContext, sink: &dyn SessionSink<$row>, row: &WarmScope) {
                        let entity = row.floor.clone();
                        let floor_row = None::<$row>$(.or_else(|| ctx.db.$table().id().find(&entity).map(<$row>::from)))+;
                        sink.warm_recorded(&row.scope, &row.floor, floor_row.as_ref());
                    }
                    let s = sink.clone();
                    connection.db.warm_scope().on_insert(move |ctx, row| recorded(ctx, s.as_ref(), row));
                    let s = sink.clone();
                    connection.db.warm_scope().on_update(move |ctx, _, row| recorded(ctx, s.as_ref(), row));
                    let s = sink;
                    let mut queries: Vec<String> = [
                        "SELECT * FROM sync_outbox",
                        "SELECT * FROM cache_epoch",
                        "SELECT * FROM warm_scope",
                        "SELECT * FROM moving_scope",
                    ]
                    .into_iter()
                    .map(String::from)
                    .collect();
                    if every_scope {
                        $(queries.push(concat!("SELECT * FROM ", stringify!($table)).to_string());)+
                    }
                    connection
                        .subscription_builder()
                        .on_applied(move |ctx| s.subscribed(ctx.db.cache_epoch().id().find(&0).map(|row| row.epoch)))
                        .on_error(|_, error| $crate::__private::tracing::error!(%error, "cache subscription failed"))
                        .subscribe(queries);
                    Ok(connection)
                }

                fn subscribe_scope(&self, scope: &str, id: u64, sink: Arc<dyn SessionSink<$row>>) -> SubscriptionHandle {
                    // Scope keys are slugs (`ScopeKey::parse`); quotes are doubled all the same.
                    let quoted = scope.replace('\'', "''");
                    let queries: Vec<String> = vec![$(format!(
                        "SELECT * FROM {} WHERE {} = '{}'",
                        stringify!($table),
                        stringify!($scope),
                        quoted
                    )),+];
                    let (applied, failed) = (sink.clone(), sink);
                    let (scope, scope_again) = (scope.to_string(), scope.to_string());
                    self.subscription_builder()
                        .on_applied(move |_| applied.scope_subscribed(&scope, id, true))
                        .on_error(move |_, error| {
                            $crate::__private::tracing::error!(%error, "a scope's cache subscription failed");
                            failed.scope_subscribed(&scope_again, id, false)
                        })
                        .subscribe(queries)
                }

                fn unsubscribe_scope(&self, subscription: SubscriptionHandle) {
                    if let Err(error) = subscription.unsubscribe() {
                        $crate::__private::tracing::warn!(%error, "cannot end a scope's cache subscription");
                    }
                }

                fn warm_record(&self, scope: &str) -> Option<(String, Option<$row>)> {
                    let record = self.db.warm_scope().scope().find(&scope.to_string())?;
                    let entity = record.floor.clone();
                    let floor_row = None::<$row>$(.or_else(|| self.db.$table().id().find(&entity).map(<$row>::from)))+;
                    Some((record.floor, floor_row))
                }

                fn advance(&self) -> SdkResult<()> {
                    self.advance_one_message_blocking()
                }

                fn find(&self, entity: &str) -> Option<$row> {
                    let entity = entity.to_string();
                    None::<$row>$(.or_else(|| self.db.$table().id().find(&entity).map(<$row>::from)))+
                }

                fn outbox_entry(&self, seq: u64) -> Option<OutboxEntry<$row>> {
                    self.db.sync_outbox().seq().find(&seq).map(|row| OutboxEntry {
                        seq: row.seq,
                        entity: row.entity,
                        kind: row.kind,
                        payload: row.payload,
                        request_id: row.request_id,
                        created_at_micros: row.created_at.to_micros_since_unix_epoch(),
                    })
                }

                fn apply(
                    &self,
                    request_id: String,
                    scope: String,
                    user: String,
                    owns_scope: bool,
                    command: String,
                ) -> SdkResult<()> {
                    self.reducers.apply(request_id, scope, user, owns_scope, command)
                }

                fn warm(&self, request_id: String, rows: Vec<$row>) -> SdkResult<()> {
                    self.reducers.warm(request_id, rows)
                }

                fn warm_batch(&self, request_id: String, scope: String, claim: String, rows: Vec<$row>) -> SdkResult<()> {
                    self.reducers.warm_batch(request_id, scope, claim, rows)
                }

                fn warm_check(&self, request_id: String, scope: String, claim: String, batches: u32) -> SdkResult<()> {
                    self.reducers.warm_check(request_id, scope, claim, batches)
                }

                fn ack(&self, request_id: String, epoch: u64, entries: Vec<(u64, String)>) -> SdkResult<()> {
                    let acks = entries.into_iter().map(|(seq, request_id)| OutboxAck { seq, request_id }).collect();
                    self.reducers.ack_outbox(request_id, epoch, acks)
                }

                fn configure(&self, request_id: String, settings: String) -> SdkResult<()> {
                    self.reducers.configure(request_id, settings)
                }

                fn forget_scope(&self, request_id: String, scope: String) -> SdkResult<()> {
                    self.reducers.forget_scope(request_id, scope)
                }

                fn remember_scope(&self, request_id: String, scope: String) -> SdkResult<()> {
                    self.reducers.remember_scope(request_id, scope)
                }

                fn move_step(&self, step: $crate::cache_adapter::MoveStep, request_id: String, scope: String) -> SdkResult<()> {
                    use $crate::cache_adapter::MoveStep;
                    match step {
                        MoveStep::Freeze => self.reducers.freeze_scope(request_id, scope),
                        MoveStep::Thaw => self.reducers.thaw_scope(request_id, scope),
                        MoveStep::Release => self.reducers.release_scope(request_id, scope),
                        MoveStep::Take => self.reducers.take_scope(request_id, scope),
                    }
                }

                fn warm_begin(&self, request_id: String, scope: String, force: bool, claim: String) -> SdkResult<()> {
                    self.reducers.warm_begin(request_id, scope, force, claim)
                }

                fn forget_warm_ups(&self, request_id: String) -> SdkResult<()> {
                    self.reducers.forget_warm_ups(request_id)
                }

                fn warm_end(
                    &self,
                    request_id: String,
                    scope: String,
                    claim: String,
                    floor: String,
                    batches: u32,
                    keep: Option<u32>,
                ) -> SdkResult<()> {
                    self.reducers.warm_end(request_id, scope, claim, floor, batches, keep)
                }
            }
        };
    };
}
