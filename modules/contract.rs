//! The contract every boardsync module keeps with the backend, written once. A module
//! includes it (`#[path = "../../contract.rs"] mod contract;`), defines its `Row`
//! (the rows it caches, and what its outbox carries), and implements [`Rules`] for
//! `crate::Module`. The backend's generic cache adapter
//! (`boardsync_core::cache_adapter`) speaks to exactly this.
//!
//! - `owner` (private): the identity that published the module, i.e. the backend.
//!   Every reducer here refuses any other caller.
//! - `cache_epoch` (private): set once in `init`; a new value tells the backend the
//!   database was recreated and must be warmed again.
//! - `module_settings` (private): the domain's settings as the backend has them, sent
//!   by `configure` on every connect, so the cache enforces the same limits as
//!   PostgreSQL.
//! - `warm_scope` (private): which scopes a warm-up ended in since this cache
//!   instance started, so that several backends warm each scope once.
//! - `warm_batches` (private): how many batches the run claiming a scope's warm-up
//!   has loaded, so that the run ends only once every batch it sent is in.
//! - `sync_outbox` (private): one entry per write, in the write's transaction, with
//!   the entity's full state as the module's own `Row`; the backend decodes it with
//!   the generated type of the same row, drains it into PostgreSQL, and acks. A
//!   command that changes nothing writes no entry: the backend answers it from the
//!   cached rows, and no subscriber hears of it.
//!
//! Every table is private, the module's own data tables included: only the owner (the
//! backend) may read or subscribe to them, so a SpacetimeDB client of anyone else's
//! reads nothing. Users reach the data only through the backend, which checks who
//! may see what.
//!
//! Every reducer takes the caller's `request_id` first, so the backend can match the
//! outcome to the call. Errors are `kind|code|message`, which the backend turns into
//! the same JSON error the PostgreSQL adapter gives.

use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};

use serde::de::DeserializeOwned;
use spacetimedb::{reducer, table, Identity, ReducerContext, SpacetimeType, Table, Timestamp};

use crate::Row;

#[path = "../domains/core/src/refusal.rs"]
pub mod refusal;

use refusal::Refusal;

impl From<Refusal> for String {
    fn from(refusal: Refusal) -> Self {
        refusal.to_reducer_error()
    }
}

#[table(name = owner)]
pub struct Owner {
    #[primary_key]
    pub id: u8,
    pub identity: Identity,
}

#[table(name = cache_epoch)]
pub struct CacheEpoch {
    #[primary_key]
    pub id: u8,
    /// Microseconds since the Unix epoch at `init`: unique per database incarnation.
    pub epoch: u64,
}

#[table(name = module_settings)]
pub struct ModuleSettings {
    #[primary_key]
    pub id: u8,
    /// The domain's `[domains.<name>]` settings, as JSON.
    pub json: String,
}

#[table(name = sync_outbox)]
pub struct SyncOutbox {
    #[primary_key]
    #[auto_inc]
    pub seq: u64,
    #[index(btree)]
    pub entity: String,
    pub kind: String,
    /// The entity's full state after this write.
    pub payload: Row,
    pub request_id: String,
    pub created_at: Timestamp,
}

/// Scopes purged from the cache (`forget_scope`): commands to them are refused and
/// warm-up batches skip their rows until the backend warms the scope again
/// (`remember_scope`, sent before a re-created scope's warm-up), so a command or a
/// warm-up batch already on its way cannot bring a purged scope's rows back.
#[table(name = forgotten_scope)]
pub struct ForgottenScope {
    #[primary_key]
    pub scope: String,
}

/// Scopes on their way to another shard (an operator's move): commands to them are
/// refused with `scope_moving` (the client retries, and reaches the scope's new
/// shard) from `freeze_scope` on. Once the move switched over, `release_scope` clears
/// the scope's rows here and sets `cleared`: a backend that has not yet heard of the
/// switch refuses its snapshots too, rather than serving an empty scope. Warm-up
/// batches skip a cleared scope's rows. `take_scope` (the scope moving here) ends it.
#[table(name = moving_scope)]
pub struct MovingScope {
    #[primary_key]
    pub scope: String,
    pub cleared: bool,
}

/// Scopes whose warm-up ran in this cache process: one node warms a scope, and the
/// others (and the same node after a reconnect) see that it need not be warmed
/// again, as long as the cache has not restarted since (a restart can lose the tail
/// of what it held). `boot` names the module instance the warm-up ran in; `done` is
/// set only if it ended in that same instance; `floor` is where the scope's whole
/// history in the cache begins, as the warming node found it ("" for all of it, "*"
/// for none of it, or an entity id).
#[table(name = warm_scope)]
pub struct WarmScope {
    #[primary_key]
    pub scope: String,
    pub boot: u64,
    /// The run that claimed it (`warm_begin`), which alone may end it.
    pub claim: String,
    pub done: bool,
    pub floor: String,
}

/// How many warm-up batches run `claim` loaded, counted in each batch's own
/// transaction. The backend sends batches without waiting for them: SpacetimeDB
/// echoes neither the success nor the failure of a call made that way
/// (`NoSuccessNotify`), so a failed batch would pass unseen. It rolls back its count
/// with its rows, and `warm_check` and `warm_end` refuse a run whose count falls short
/// of what it sent.
#[table(name = warm_batches)]
pub struct WarmBatches {
    #[primary_key]
    pub claim: String,
    pub loaded: u32,
}

/// A recorded floor of a scope none of whose history the cache holds whole.
pub const NONE_CACHED: &str = "*";

/// This module instance's boot: set by the first call after the instance started,
/// and new after every restart of the cache (memory does not survive one). An
/// instance SpacetimeDB replaces for another reason (a trap) gets a new one too:
/// that only costs a warm-up that was not needed.
static BOOT: AtomicU64 = AtomicU64::new(0);

fn boot(ctx: &ReducerContext) -> u64 {
    let now = (ctx.timestamp.to_micros_since_unix_epoch() as u64).max(1);
    match BOOT.compare_exchange(0, now, AtomicOrdering::Relaxed, AtomicOrdering::Relaxed) {
        Ok(_) => now,
        Err(set) => set,
    }
}

/// What a module adds to the contract: its commands and how a row is cached.
pub trait Rules {
    /// The domain's command (the backend sends it as JSON).
    type Command: DeserializeOwned;
    /// The domain's settings, or the part of them the module enforces.
    type Settings: DeserializeOwned;

    /// Applies a command; every write goes through [`Write::record`]. A command that
    /// changes nothing (a retry, or values the item already has; the domain's
    /// `rules.rs` says which) returns `Ok` without recording anything, so no version
    /// rises, nothing reaches PostgreSQL and no subscriber hears of it.
    fn apply(ctx: &Write<'_>, settings: &Self::Settings, command: Self::Command) -> Result<(), String>;

    /// A row's entity id and version.
    fn entity(row: &Row) -> &str;
    fn version(row: &Row) -> u64;
    /// The cached version of the row's entity, if it is cached.
    fn cached_version(ctx: &ReducerContext, row: &Row) -> Option<u64>;
    /// Inserts the row in its table, or replaces the entity's row if `cached` (the
    /// caller has just looked it up: one index lookup per row fewer in warm-up).
    fn store(ctx: &ReducerContext, row: Row, cached: bool);
    /// Inserts the row unless its entity is cached with other content: true if the
    /// table holds the row now (it was new, or cached exactly so). One call into the
    /// datastore, where a lookup and then an insert are two.
    fn insert_new(ctx: &ReducerContext, row: &Row) -> bool;
    /// The scope the row belongs to.
    fn scope(row: &Row) -> &str;
    /// Deletes every cached row of the scope.
    fn forget(ctx: &ReducerContext, scope: &str);
    /// Keeps only a scope's newest `keep` entities (none pending in the outbox), if
    /// the domain trims its window at all. `floor` is where the scope's whole history
    /// in the cache begins now ("" all of it, "*" none of it, or an entity id);
    /// returns where it begins after, if that moved (only ever up: rows below the
    /// floor, such as single ones read through, are not whole history).
    fn trim(_ctx: &ReducerContext, _scope: &str, _keep: u32, _floor: &str) -> Option<String> {
        None
    }
}

/// The row-level half of [`Rules`] for a module whose `Row` is the row of one table
/// keyed by `id`, carrying a `version` and indexed by its scope column:
/// `impl Rules for Module { ...; rows_in!(table, scope_column); }`.
/// (A macro because a module's table handles share no trait; a module with several
/// tables, like Kanban, writes these four itself.)
#[allow(unused_macros)]
macro_rules! rows_in {
    ($table:ident, $scope:ident) => {
        fn scope(row: &Row) -> &str {
            &row.$scope
        }

        fn forget(ctx: &ReducerContext, scope: &str) {
            let ids: Vec<String> = ctx.db.$table().$scope().filter(scope).map(|row| row.id).collect();
            for id in ids {
                ctx.db.$table().id().delete(id);
            }
        }

        fn entity(row: &Row) -> &str {
            &row.id
        }

        fn version(row: &Row) -> u64 {
            row.version
        }

        fn cached_version(ctx: &ReducerContext, row: &Row) -> Option<u64> {
            ctx.db.$table().id().find(&row.id).map(|cached| cached.version)
        }

        fn store(ctx: &ReducerContext, row: Row, cached: bool) {
            if cached {
                ctx.db.$table().id().update(row);
            } else {
                ctx.db.$table().insert(row);
            }
        }

        fn insert_new(ctx: &ReducerContext, row: &Row) -> bool {
            // An exact duplicate is no violation: inserting it changes nothing.
            ctx.db.$table().try_insert(row.clone()).is_ok()
        }
    };
}

/// One command in progress: who asks, in which scope, and the call to answer. (Not
/// every domain reads every field.)
#[allow(dead_code)]
pub struct Write<'a> {
    pub ctx: &'a ReducerContext,
    pub request_id: &'a str,
    pub scope: &'a str,
    pub user: &'a str,
    /// Whether the user owns the scope (the backend checked): the domain's rules may
    /// give owners more, such as deleting another user's card.
    pub owns_scope: bool,
    pub kind: &'a str,
}

impl Write<'_> {
    /// Stores `row` and records it in the outbox, in this transaction.
    pub fn record(&self, row: Row) {
        let entity = <crate::Module as Rules>::entity(&row).to_string();
        let cached = <crate::Module as Rules>::cached_version(self.ctx, &row).is_some();
        <crate::Module as Rules>::store(self.ctx, row.clone(), cached);
        self.ctx.db.sync_outbox().insert(SyncOutbox {
            seq: 0,
            entity,
            kind: self.kind.to_string(),
            payload: row,
            request_id: self.request_id.to_string(),
            created_at: self.ctx.timestamp,
        });
    }
}

pub fn err(kind: &str, code: &str, message: impl std::fmt::Display) -> String {
    format!("{kind}|{code}|{message}")
}

fn require_owner(ctx: &ReducerContext) -> Result<(), String> {
    match ctx.db.owner().id().find(0) {
        Some(owner) if owner.identity == ctx.sender => Ok(()),
        _ => Err(err("forbidden", "not_owner", "only the backend may call this reducer")),
    }
}

/// Whether `entity` has writes not yet in PostgreSQL (for modules that trim).
#[allow(dead_code)]
pub fn pending(ctx: &ReducerContext, entity: &str) -> bool {
    ctx.db.sync_outbox().entity().filter(entity).next().is_some()
}

#[reducer(init)]
pub fn init(ctx: &ReducerContext) {
    ctx.db.owner().insert(Owner { id: 0, identity: ctx.sender });
    ctx.db.cache_epoch().insert(CacheEpoch { id: 0, epoch: ctx.timestamp.to_micros_since_unix_epoch() as u64 });
}

/// Takes the domain's settings; refuses what the module cannot read.
#[reducer]
pub fn configure(ctx: &ReducerContext, request_id: String, settings: String) -> Result<(), String> {
    let _ = request_id;
    require_owner(ctx)?;
    serde_json::from_str::<<crate::Module as Rules>::Settings>(&settings)
        .map_err(|e| err("invalid", "invalid_settings", e))?;
    let row = ModuleSettings { id: 0, json: settings };
    if ctx.db.module_settings().id().find(0).is_some() {
        ctx.db.module_settings().id().update(row);
    } else {
        ctx.db.module_settings().insert(row);
    }
    Ok(())
}

/// Applies a client's command on behalf of `user`.
#[reducer]
pub fn apply(
    ctx: &ReducerContext,
    request_id: String,
    scope: String,
    user: String,
    owns_scope: bool,
    command: String,
) -> Result<(), String> {
    require_owner(ctx)?;
    let settings =
        ctx.db.module_settings().id().find(0).ok_or_else(|| {
            err("unavailable", "cache_unconfigured", "the backend has not configured this module yet")
        })?;
    let settings = serde_json::from_str(&settings.json).map_err(|e| err("internal", "invalid_settings", e))?;
    let command: serde_json::Value =
        serde_json::from_str(&command).map_err(|e| err("invalid", "invalid_command", e))?;
    let kind = command.get("type").and_then(|t| t.as_str()).unwrap_or("").to_string();
    let command = serde_json::from_value(command).map_err(|e| err("invalid", "invalid_command", e))?;
    if ctx.db.forgotten_scope().scope().find(&scope).is_some() {
        return Err(err("not_found", "scope_not_found", "this scope was purged"));
    }
    if ctx.db.moving_scope().scope().find(&scope).is_some() {
        return Err(err("unavailable", "scope_moving", "this scope is moving to another cache shard; retry shortly"));
    }
    let write = Write { ctx, request_id: &request_id, scope: &scope, user: &user, owns_scope, kind: &kind };
    <crate::Module as Rules>::apply(&write, &settings, command)
}

/// Loads rows from PostgreSQL into the cache (read-throughs, outside changes, newer
/// states found in PostgreSQL), except over a higher cached version: a write still on
/// its way to PostgreSQL (or acked after it was read) is newer in the cache, so this
/// never reverts an edit, resurrects a delete or drops a vote. Versions alone decide,
/// not pending outbox entries: after a cache crash lost a tail of writes that the
/// backend then put into PostgreSQL itself, an older pending entry must not keep
/// PostgreSQL's newer state out of the cache. Rows of a purged scope, or of one moved
/// away, stay out.
#[reducer]
pub fn warm(ctx: &ReducerContext, request_id: String, rows: Vec<Row>) -> Result<(), String> {
    let _ = request_id;
    require_owner(ctx)?;
    // Whether a scope is kept out is looked up once per run of rows of one scope.
    let mut last_scope: Option<(String, bool)> = None;
    for row in rows {
        let scope = <crate::Module as Rules>::scope(&row);
        let kept_out = match &last_scope {
            Some((known, kept_out)) if known == scope => *kept_out,
            _ => {
                let kept_out = kept_out(ctx, scope);
                last_scope = Some((scope.to_string(), kept_out));
                kept_out
            }
        };
        if !kept_out {
            load(ctx, row);
        }
    }
    Ok(())
}

/// One batch of `scope`'s warm-up, for run `claim` (refused once another run claimed
/// the scope or the cache restarted): loaded as [`warm`] loads rows, and counted in
/// `warm_batches` in the same transaction.
#[reducer]
pub fn warm_batch(
    ctx: &ReducerContext,
    request_id: String,
    scope: String,
    claim: String,
    rows: Vec<Row>,
) -> Result<(), String> {
    let _ = request_id;
    require_owner(ctx)?;
    claimed(ctx, &scope, &claim)?;
    // (A batch kept out still counts: it did what it should.)
    if !kept_out(ctx, &scope) {
        for row in rows {
            if <crate::Module as Rules>::scope(&row) != scope {
                return Err(err("invalid", "foreign_row", "a warm-up batch holds a row of another scope"));
            }
            load(ctx, row);
        }
    }
    match ctx.db.warm_batches().claim().find(&claim) {
        Some(count) => {
            ctx.db.warm_batches().claim().update(WarmBatches { loaded: count.loaded + 1, ..count });
        }
        None => {
            ctx.db.warm_batches().insert(WarmBatches { claim, loaded: 1 });
        }
    }
    Ok(())
}

/// Whether `scope`'s rows stay out of the cache: it was purged, or moved away.
fn kept_out(ctx: &ReducerContext, scope: &str) -> bool {
    ctx.db.forgotten_scope().scope().find(scope.to_string()).is_some()
        || ctx.db.moving_scope().scope().find(scope.to_string()).is_some_and(|mark| mark.cleared)
}

/// Puts a row read from PostgreSQL into the cache unless the cached version is newer.
fn load(ctx: &ReducerContext, row: Row) {
    // Most rows are new to the cache (a cold start) or held as they are (a re-warm):
    // either takes one insert. Only a row cached with other content is looked up,
    // and replaced unless the cache's version is newer.
    if <crate::Module as Rules>::insert_new(ctx, &row) {
        return;
    }
    match <crate::Module as Rules>::cached_version(ctx, &row) {
        Some(cached) if cached > <crate::Module as Rules>::version(&row) => {}
        cached => <crate::Module as Rules>::store(ctx, row, cached.is_some()),
    }
}

/// A barrier between warm-up batches: succeeds only if run `claim` of `scope`'s
/// warm-up still holds it and loaded all `batches` it sent so far (reducers from one
/// connection run in order).
#[reducer]
pub fn warm_check(
    ctx: &ReducerContext,
    request_id: String,
    scope: String,
    claim: String,
    batches: u32,
) -> Result<(), String> {
    let _ = request_id;
    require_owner(ctx)?;
    loaded_all(ctx, &scope, &claim, batches).map(drop)
}

fn superseded() -> String {
    err("unavailable", "warm_up_superseded", "the cache restarted or another run claimed this warm-up")
}

/// `scope`'s warm-up record, if run `claim` holds it in this cache instance.
fn claimed(ctx: &ReducerContext, scope: &str, claim: &str) -> Result<WarmScope, String> {
    match ctx.db.warm_scope().scope().find(scope.to_string()) {
        Some(row) if row.boot == boot(ctx) && row.claim == claim => Ok(row),
        _ => Err(superseded()),
    }
}

/// [`claimed`], and every one of the `batches` the run sent is loaded.
fn loaded_all(ctx: &ReducerContext, scope: &str, claim: &str, batches: u32) -> Result<WarmScope, String> {
    let row = claimed(ctx, scope, claim)?;
    let loaded = ctx.db.warm_batches().claim().find(claim.to_string()).map_or(0, |count| count.loaded);
    if loaded != batches {
        let message = format!(
            "{loaded} of the {batches} batches this warm-up sent are loaded: a batch failed (the cache's module log says why)"
        );
        return Err(err("unavailable", "warm_up_incomplete", message));
    }
    Ok(row)
}

/// Drops `scope`'s warm-up record, with the batch count of the run that claimed it.
fn drop_warm_record(ctx: &ReducerContext, scope: &str) {
    if let Some(row) = ctx.db.warm_scope().scope().find(scope.to_string()) {
        ctx.db.warm_batches().claim().delete(&row.claim);
        ctx.db.warm_scope().scope().delete(scope.to_string());
    }
}

/// Claims `scope`'s warm-up for this cache instance, as run `claim`. Refused with
/// `already_warm` when a warm-up of it ended in this same instance (nothing was lost
/// since), unless `force` (its window changed, an operator asked, or PostgreSQL may
/// hold what the cache does not).
#[reducer]
pub fn warm_begin(
    ctx: &ReducerContext,
    request_id: String,
    scope: String,
    force: bool,
    claim: String,
) -> Result<(), String> {
    let _ = request_id;
    require_owner(ctx)?;
    let boot = boot(ctx);
    let known = ctx.db.warm_scope().scope().find(&scope);
    if !force && known.as_ref().is_some_and(|row| row.boot == boot && row.done) {
        return Err(err("conflict", "already_warm", "warmed since the cache started"));
    }
    // The floor stays what the cache holds until this run records its own (none of
    // a scope not warmed before is whole in the cache).
    let floor = known.as_ref().map_or_else(|| NONE_CACHED.to_string(), |row| row.floor.clone());
    let row = WarmScope { scope, boot, claim, done: false, floor };
    if let Some(known) = known {
        // The run this one supersedes counts no more batches.
        ctx.db.warm_batches().claim().delete(&known.claim);
        ctx.db.warm_scope().scope().update(row);
    } else {
        ctx.db.warm_scope().insert(row);
    }
    Ok(())
}

/// Forgets every warm-up record: each scope is loaded from PostgreSQL again before
/// it is taken as warm. The first backend to start after none ran calls it
/// (PostgreSQL may have changed meanwhile without the cache hearing of it).
#[reducer]
pub fn forget_warm_ups(ctx: &ReducerContext, request_id: String) -> Result<(), String> {
    let _ = request_id;
    require_owner(ctx)?;
    // Kept, with their floors (the cache still holds what they say), but no longer
    // warm, and no claim in progress may end.
    let counts: Vec<String> = ctx.db.warm_batches().iter().map(|count| count.claim).collect();
    for claim in counts {
        ctx.db.warm_batches().claim().delete(&claim);
    }
    let rows: Vec<WarmScope> = ctx.db.warm_scope().iter().collect();
    for row in rows {
        ctx.db.warm_scope().scope().update(WarmScope { done: false, claim: String::new(), ..row });
    }
    Ok(())
}

/// Run `claim` of `scope`'s warm-up ended, with the scope's whole history in the
/// cache from `floor` on, and all `batches` it sent loaded; with `keep`, only the
/// scope's newest `keep` entities stay cached (PostgreSQL keeps all), and the
/// recorded floor rises with the rows that go, in this same transaction, so that no
/// backend pages through the gap. Refused with `warm_up_superseded` if the cache
/// restarted since the run began (what it loaded before may be lost) or another run
/// claimed the scope since, and with `warm_up_incomplete` if a batch did not load.
#[reducer]
pub fn warm_end(
    ctx: &ReducerContext,
    request_id: String,
    scope: String,
    claim: String,
    floor: String,
    batches: u32,
    keep: Option<u32>,
) -> Result<(), String> {
    let _ = request_id;
    require_owner(ctx)?;
    let row = loaded_all(ctx, &scope, &claim, batches)?;
    ctx.db.warm_batches().claim().delete(&claim);
    let floor = match keep {
        Some(keep) => <crate::Module as Rules>::trim(ctx, &scope, keep, &floor).unwrap_or(floor),
        None => floor,
    };
    ctx.db.warm_scope().scope().update(WarmScope { done: true, floor, ..row });
    Ok(())
}

/// An outbox entry as the backend acknowledges it: its sequence number and the call
/// that wrote it.
#[derive(SpacetimeType)]
pub struct OutboxAck {
    pub seq: u64,
    pub request_id: String,
}

/// Removes outbox entries whose effect is committed in PostgreSQL. `epoch` is the
/// cache incarnation the backend read them from: an ack for another incarnation (a
/// late ack, after the database was recreated and its sequence numbers started over)
/// is refused. Within one incarnation a crash can hand a sequence number out again,
/// so an entry is deleted only if the call that wrote it matches too.
#[reducer]
pub fn ack_outbox(ctx: &ReducerContext, request_id: String, epoch: u64, acks: Vec<OutboxAck>) -> Result<(), String> {
    let _ = request_id;
    require_owner(ctx)?;
    let current = ctx.db.cache_epoch().id().find(0).map(|row| row.epoch);
    if current != Some(epoch) {
        let message = format!("an ack for cache epoch {epoch}, but this database is epoch {current:?}");
        return Err(err("conflict", "stale_epoch", message));
    }
    for ack in acks {
        if ctx.db.sync_outbox().seq().find(ack.seq).is_some_and(|entry| entry.request_id == ack.request_id) {
            ctx.db.sync_outbox().seq().delete(ack.seq);
        }
    }
    Ok(())
}

/// Purges a scope from the cache: its rows, and its outbox entries (the backend has
/// already deleted the scope's data in PostgreSQL, under a lock the outbox's writes
/// take too, and drops any entry of it still on its way). Commands to it are refused
/// until `remember_scope`.
#[reducer]
pub fn forget_scope(ctx: &ReducerContext, request_id: String, scope: String) -> Result<(), String> {
    let _ = request_id;
    require_owner(ctx)?;
    if ctx.db.forgotten_scope().scope().find(&scope).is_none() {
        ctx.db.forgotten_scope().insert(ForgottenScope { scope: scope.clone() });
    }
    drop_warm_record(ctx, &scope);
    // A purged scope is gone from here, moving or not.
    ctx.db.moving_scope().scope().delete(&scope);
    let entries: Vec<u64> = ctx
        .db
        .sync_outbox()
        .iter()
        .filter(|entry| <crate::Module as Rules>::scope(&entry.payload) == scope)
        .map(|entry| entry.seq)
        .collect();
    for seq in entries {
        ctx.db.sync_outbox().seq().delete(seq);
    }
    <crate::Module as Rules>::forget(ctx, &scope);
    Ok(())
}

/// A scope exists again (it is being warmed): commands to it are taken again.
#[reducer]
pub fn remember_scope(ctx: &ReducerContext, request_id: String, scope: String) -> Result<(), String> {
    let _ = request_id;
    require_owner(ctx)?;
    ctx.db.forgotten_scope().scope().delete(&scope);
    Ok(())
}

/// Whether any write of `scope` is still waiting for PostgreSQL here.
fn has_pending(ctx: &ReducerContext, scope: &str) -> bool {
    ctx.db.sync_outbox().iter().any(|entry| <crate::Module as Rules>::scope(&entry.payload) == scope)
}

fn not_drained() -> String {
    err("conflict", "scope_not_drained", "writes of this scope still wait for PostgreSQL here")
}

/// A move of `scope` away from this shard begins: its commands are refused from now
/// on (its writes already here drain to PostgreSQL as usual).
#[reducer]
pub fn freeze_scope(ctx: &ReducerContext, request_id: String, scope: String) -> Result<(), String> {
    let _ = request_id;
    require_owner(ctx)?;
    if ctx.db.moving_scope().scope().find(&scope).is_none() {
        ctx.db.moving_scope().insert(MovingScope { scope, cleared: false });
    }
    Ok(())
}

/// A move of `scope` was called off before it switched: its commands are taken again.
#[reducer]
pub fn thaw_scope(ctx: &ReducerContext, request_id: String, scope: String) -> Result<(), String> {
    let _ = request_id;
    require_owner(ctx)?;
    match ctx.db.moving_scope().scope().find(&scope) {
        Some(mark) if mark.cleared => Err(err("conflict", "scope_moved", "this scope has moved away already")),
        Some(_) => {
            ctx.db.moving_scope().scope().delete(&scope);
            Ok(())
        }
        None => Ok(()),
    }
}

/// `scope` moved to another shard and is served there: its rows here go, and its
/// warm-up record with them. Refused while any write of it waits for PostgreSQL here
/// (nothing is dropped), or if it was not frozen first.
#[reducer]
pub fn release_scope(ctx: &ReducerContext, request_id: String, scope: String) -> Result<(), String> {
    let _ = request_id;
    require_owner(ctx)?;
    let Some(mark) = ctx.db.moving_scope().scope().find(&scope) else {
        return Err(err("conflict", "scope_not_frozen", "freeze the scope before releasing it"));
    };
    if has_pending(ctx, &scope) {
        return Err(not_drained());
    }
    drop_warm_record(ctx, &scope);
    <crate::Module as Rules>::forget(ctx, &scope);
    ctx.db.moving_scope().scope().update(MovingScope { cleared: true, ..mark });
    Ok(())
}

/// `scope` moves here: whatever an earlier stay left of it goes (its rows, its
/// warm-up record, a mark of moving away or of a purge), so that only a warm-up from
/// PostgreSQL fills it. Refused while a write of it from an earlier stay still waits
/// for PostgreSQL here.
#[reducer]
pub fn take_scope(ctx: &ReducerContext, request_id: String, scope: String) -> Result<(), String> {
    let _ = request_id;
    require_owner(ctx)?;
    if has_pending(ctx, &scope) {
        return Err(not_drained());
    }
    drop_warm_record(ctx, &scope);
    <crate::Module as Rules>::forget(ctx, &scope);
    ctx.db.moving_scope().scope().delete(&scope);
    ctx.db.forgotten_scope().scope().delete(&scope);
    Ok(())
}
