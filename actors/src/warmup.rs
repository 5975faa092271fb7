//! Warm-up: loading PostgreSQL's data into the SpacetimeDB cache, per scope.
//!
//! - [`WarmupCoordinator<D>`] (one per domain on the SpacetimeDB adapter) warms every
//!   scope of its domain whenever the cache signals `Ready` (at start, after a
//!   reconnect, after the cache database was recreated), and single scopes on demand.
//! - [`WarmupActor<D>`] (one per scope) does the work: reads the scope's window from
//!   PostgreSQL and loads it in batches through the module's warm-up reducer, with
//!   the domain's defaults layered with the scope's own `config.warmup`.
//! - [`WarmupScheduler`] (one for all domains) bounds how many scopes warm at once
//!   and starts higher priorities first.
//! - [`WarmupBoard`] holds every scope's status for the admin API and the metrics.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use boardsync_core::cache::{Cache, CacheSignal};
use boardsync_core::warmup::WarmupSettings;
use boardsync_core::{Domain, DomainError, ScopeKey, ScopeStore};
use chrono::{DateTime, Utc};
use dashmap::DashMap;
use serde::Serialize;
use sqlx::PgPool;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::StreamExt;

use crate::metrics::CacheMetrics;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WarmupState {
    Pending,
    Warming,
    Warm,
    Failed,
    Disabled,
}

impl WarmupState {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Warming => "warming",
            Self::Warm => "warm",
            Self::Failed => "failed",
            Self::Disabled => "disabled",
        }
    }
}

/// One scope's warm-up, as `GET /api/admin/warmup` lists it.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct WarmupStatus {
    pub domain: &'static str,
    pub scope: ScopeKey,
    pub state: WarmupState,
    pub priority: i32,
    pub rows_loaded: u64,
    pub rows_total: u64,
    pub duration_ms: Option<u64>,
    /// Of the last run: time reading PostgreSQL, and time loading the cache.
    pub load_ms: Option<u64>,
    pub cache_ms: Option<u64>,
    pub error: Option<String>,
    /// Completed runs of this scope since the backend started.
    pub runs: u64,
    /// The last run found the scope warm already (warmed since the cache started,
    /// by this backend or another), and loaded nothing.
    pub already_warm: bool,
    /// The cache generation the last run started in: a scope is warm only for the
    /// generation it was warmed in.
    pub generation: Option<u64>,
    /// The cache shard it was last warmed on, and when the scope was placed there:
    /// warm holds only for that placement (a scope that moved away and back must
    /// load again).
    pub shard: String,
    pub placed_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

/// Every scope's warm-up status (a lock-free map: many writers, the admin API reads).
pub struct WarmupBoard {
    statuses: DashMap<(&'static str, ScopeKey), WarmupStatus>,
    metrics: CacheMetrics,
}

impl WarmupBoard {
    pub fn new(metrics: CacheMetrics) -> Self {
        Self { statuses: DashMap::new(), metrics }
    }

    /// Statuses, by domain and scope; only `domain`'s when given.
    pub fn list(&self, domain: Option<&str>) -> Vec<WarmupStatus> {
        let mut all: Vec<WarmupStatus> = self
            .statuses
            .iter()
            .filter(|entry| domain.is_none_or(|d| entry.domain == d))
            .map(|entry| entry.value().clone())
            .collect();
        all.sort_by(|a, b| (a.domain, &a.scope).cmp(&(b.domain, &b.scope)));
        all
    }

    /// Lists `scope` as pending on `shard` if this node never listed it there (since
    /// it started, or since the scope moved); whether it did now. One caller wins,
    /// however many ask at once.
    pub fn list_if_new(&self, domain: &'static str, scope: &ScopeKey, shard: &str, placed_at: DateTime<Utc>) -> bool {
        let listed = |status: &WarmupStatus| status.shard == shard && status.placed_at == Some(placed_at);
        if self.statuses.get(&(domain, scope.clone())).is_some_and(|status| listed(&status)) {
            return false;
        }
        let mut new = false;
        self.update(domain, scope, |status| {
            if !listed(status) {
                new = true;
                status.shard = shard.to_string();
                status.placed_at = Some(placed_at);
                status.state = WarmupState::Pending;
            }
        });
        new
    }

    /// The priority `scope` was last queued with.
    pub fn priority(&self, domain: &'static str, scope: &ScopeKey) -> i32 {
        self.statuses.get(&(domain, scope.clone())).map_or(0, |status| status.priority)
    }

    /// Whether `scope` is warm in cache generation `generation`, for its placement
    /// at `placed_at`, so it takes writes and serves snapshots: warmed in it (or,
    /// with warm-up disabled, its lost writes restored in it).
    pub fn is_warm(
        &self,
        domain: &'static str,
        scope: &ScopeKey,
        generation: Option<u64>,
        placed_at: DateTime<Utc>,
    ) -> bool {
        self.statuses.get(&(domain, scope.clone())).is_some_and(|status| match status.state {
            WarmupState::Warm | WarmupState::Disabled => {
                generation.is_some() && status.generation == generation && status.placed_at == Some(placed_at)
            }
            _ => false,
        })
    }

    /// Changes one scope's status; the per-state gauges move with it (a scope leaves
    /// its old state's count and joins its new one), so an update costs O(1).
    /// Returns whether the scope was listed before (the map's entry lock decides
    /// between callers racing to list it).
    fn update(&self, domain: &'static str, scope: &ScopeKey, change: impl FnOnce(&mut WarmupStatus)) -> bool {
        let mut known = true;
        let mut status = self.statuses.entry((domain, scope.clone())).or_insert_with(|| {
            known = false;
            WarmupStatus {
                domain,
                scope: scope.clone(),
                state: WarmupState::Pending,
                priority: 0,
                rows_loaded: 0,
                rows_total: 0,
                duration_ms: None,
                load_ms: None,
                cache_ms: None,
                error: None,
                runs: 0,
                already_warm: false,
                generation: None,
                shard: String::new(),
                placed_at: None,
                updated_at: Utc::now(),
            }
        });
        let before = known.then_some(status.state);
        change(&mut status);
        status.updated_at = Utc::now();
        let after = status.state;
        drop(status);
        if before != Some(after) {
            let gauge = |state: WarmupState| self.metrics.warmup_scopes.with_label_values(&[domain, state.as_str()]);
            if let Some(before) = before {
                gauge(before).dec();
            }
            gauge(after).inc();
        }
        known
    }
}

/// A warm-up slot; dropping it (the run ended, however it ended) frees the slot.
pub struct Slot {
    scheduler: Addr<WarmupScheduler>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.scheduler.do_send(SlotFreed);
    }
}

/// Runs a warm-up now, holding `slot` while it runs.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RunWarmup(pub Slot);

#[derive(Message)]
#[rtype(result = "()")]
pub struct Enqueue {
    pub priority: i32,
    pub job: Recipient<RunWarmup>,
}

#[derive(Message)]
#[rtype(result = "()")]
struct SlotFreed;

struct Queued {
    priority: i32,
    order: u64,
    job: Recipient<RunWarmup>,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    /// Higher priority first; first come, first served within a priority.
    fn cmp(&self, other: &Self) -> Ordering {
        self.priority.cmp(&other.priority).then_with(|| other.order.cmp(&self.order))
    }
}

/// Bounds concurrent warm-ups across all domains (`warmup.max_concurrent_scopes`).
pub struct WarmupScheduler {
    max_running: usize,
    running: usize,
    queue: BinaryHeap<Queued>,
    order: u64,
}

impl WarmupScheduler {
    pub fn new(max_running: usize) -> Self {
        Self { max_running: max_running.max(1), running: 0, queue: BinaryHeap::new(), order: 0 }
    }

    fn dispatch(&mut self, ctx: &mut Context<Self>) {
        while self.running < self.max_running {
            let Some(next) = self.queue.pop() else { return };
            let slot = Slot { scheduler: ctx.address() };
            // A job whose actor is gone drops its slot at once, which frees it again.
            self.running += 1;
            if next.job.try_send(RunWarmup(slot)).is_err() {
                continue;
            }
        }
    }
}

impl Actor for WarmupScheduler {
    type Context = Context<Self>;
}

impl Handler<Enqueue> for WarmupScheduler {
    type Result = ();

    fn handle(&mut self, msg: Enqueue, ctx: &mut Context<Self>) {
        self.order += 1;
        self.queue.push(Queued { priority: msg.priority, order: self.order, job: msg.job });
        self.dispatch(ctx);
    }
}

impl Handler<SlotFreed> for WarmupScheduler {
    type Result = ();

    fn handle(&mut self, _: SlotFreed, ctx: &mut Context<Self>) {
        self.running = self.running.saturating_sub(1);
        self.dispatch(ctx);
    }
}

/// What a WarmupActor and its coordinator share.
pub struct WarmupContext<D: Domain> {
    pub cache: Arc<dyn Cache<D>>,
    pub pool: PgPool,
    pub scopes: Arc<ScopeStore>,
    pub defaults: WarmupSettings,
    pub scheduler: Addr<WarmupScheduler>,
    pub board: Arc<WarmupBoard>,
    pub metrics: CacheMetrics,
    /// Whether other nodes run the domain on the cache (see [`crate::liveness`]).
    pub liveness: Arc<crate::liveness::Liveness>,
    /// Set once this node has decided whether it is the first to run the domain:
    /// until then no run trusts the cache's record of a warm scope (another node's
    /// decision may be about to void it).
    pub joined: std::sync::atomic::AtomicBool,
}

/// Warms one scope, whenever the scheduler gives it a slot. A run that fails (say,
/// PostgreSQL is down) is retried with backoff, through the scheduler again: a scope
/// that is not warm takes no writes, so it must not stay failed.
pub struct WarmupActor<D: Domain> {
    scope: ScopeKey,
    context: Arc<WarmupContext<D>>,
    /// Failed runs in a row.
    failures: u32,
    /// The next run loads the scope even if the cache says it is warm.
    force: bool,
}

/// The next run of a WarmupActor loads its scope whatever the cache says.
#[derive(Message)]
#[rtype(result = "()")]
struct Force;

impl<D: Domain> Handler<Force> for WarmupActor<D> {
    type Result = ();

    fn handle(&mut self, _: Force, _: &mut Context<Self>) {
        self.force = true;
    }
}

/// What a warm-up run did.
enum Warmed {
    /// Loaded this many rows.
    Loaded(u64),
    /// The cache held the scope already, warmed since it started.
    Already,
    /// Warm-up is disabled for the scope.
    Disabled,
    /// Another node is warming the scope now: this run waits its turn (retried soon,
    /// it is no failure and no run).
    Elsewhere,
    /// The scope lives on another shard (it moved): nothing to do on this one.
    Moved,
}

/// The first retry of a failed warm-up, doubled per failure up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(5);

impl<D: Domain> Actor for WarmupActor<D> {
    type Context = Context<Self>;
}

impl<D: Domain> Handler<RunWarmup> for WarmupActor<D> {
    type Result = ();

    fn handle(&mut self, RunWarmup(slot): RunWarmup, ctx: &mut Context<Self>) {
        let (scope, context, force) = (self.scope.clone(), self.context.clone(), self.force);
        // `wait`: one run at a time per scope; a second request queues behind it.
        ctx.wait(
            async move {
                let started = Instant::now();
                let outcome = warm_scope(&scope, &context, force).await;
                let elapsed = started.elapsed();
                context.board.update(D::NAME, &scope, |status| {
                    status.duration_ms = Some(elapsed.as_millis() as u64);
                    if !matches!(outcome, Ok(Warmed::Elsewhere)) {
                        status.runs += 1;
                    }
                    status.already_warm = matches!(outcome, Ok(Warmed::Already));
                    match &outcome {
                        Ok(Warmed::Loaded(rows)) => {
                            status.state = WarmupState::Warm;
                            status.rows_loaded = *rows;
                            status.error = None;
                        }
                        Ok(Warmed::Already) => {
                            status.state = WarmupState::Warm;
                            status.rows_loaded = 0;
                            status.rows_total = 0;
                            status.error = None;
                        }
                        Ok(Warmed::Disabled) => status.state = WarmupState::Disabled,
                        Ok(Warmed::Moved) => {}
                        Ok(Warmed::Elsewhere) => {
                            status.state = WarmupState::Pending;
                            status.error = None;
                        }
                        Err(error) => {
                            status.state = WarmupState::Failed;
                            status.error = Some(error.to_string());
                        }
                    }
                });
                // `None`: done; else retried, after a failure with backoff.
                let failed = match &outcome {
                    Ok(Warmed::Elsewhere) => Some(false),
                    Err(_) => Some(true),
                    Ok(_) => None,
                };
                match outcome {
                    Ok(Warmed::Loaded(rows)) => {
                        context.cache.warmed(&scope);
                        context.metrics.warmup_duration.with_label_values(&[context.cache.shard().unit.as_str()]).observe(elapsed.as_secs_f64());
                        tracing::info!(domain = D::NAME, scope = %scope, rows, ms = elapsed.as_millis() as u64, "scope warm");
                    }
                    Ok(Warmed::Already) => {
                        context.cache.warmed(&scope);
                        tracing::info!(domain = D::NAME, scope = %scope, "scope warm already (since the cache started)");
                    }
                    Ok(Warmed::Disabled) => {
                        context.cache.not_warmed(&scope);
                        tracing::debug!(domain = D::NAME, scope = %scope, "warm-up disabled for scope");
                    }
                    Ok(Warmed::Elsewhere) => {
                        tracing::debug!(domain = D::NAME, scope = %scope, "another node warms this scope; retrying")
                    }
                    Ok(Warmed::Moved) => {
                        tracing::debug!(domain = D::NAME, scope = %scope, "the scope lives on another shard now")
                    }
                    Err(error) => tracing::warn!(domain = D::NAME, scope = %scope, %error, "warm-up failed"),
                }
                drop(slot);
                failed
            }
            .into_actor(self)
            .map(|failed, actor, ctx| {
                let delay = match failed {
                    None => {
                        actor.failures = 0;
                        actor.force = false;
                        return;
                    }
                    Some(false) => RETRY_FIRST,
                    Some(true) => {
                        actor.failures += 1;
                        RETRY_FIRST.saturating_mul(1 << (actor.failures - 1).min(8)).min(RETRY_MAX)
                    }
                };
                let (scheduler, board) = (actor.context.scheduler.clone(), actor.context.board.clone());
                let (scope, job) = (actor.scope.clone(), ctx.address().recipient());
                ctx.run_later(delay, move |_, _| {
                    let priority = board.priority(D::NAME, &scope);
                    scheduler.do_send(Enqueue { priority, job });
                });
            }),
        );
    }
}

/// Consecutive batches of `items`, each at most `rows` items and, unless one item
/// alone is larger, at most about `bytes` bytes.
fn batches<D: Domain>(items: &[D::Item], rows: usize, bytes: usize) -> Vec<&[D::Item]> {
    let mut batches = Vec::new();
    let (mut start, mut size) = (0, 0);
    for (i, item) in items.iter().enumerate() {
        let weight = D::weight(item);
        if i > start && (i - start >= rows || size + weight > bytes) {
            batches.push(&items[start..i]);
            (start, size) = (i, 0);
        }
        size += weight;
    }
    if start < items.len() {
        batches.push(&items[start..]);
    }
    batches
}

/// Warm-up batches of one scope sent before waiting for them to load: enough that
/// a scope's batches follow each other in the cache without a round trip between
/// them, few enough that what is on its way stays small. A batch may be
/// `batch_bytes` (several MiB), SpacetimeDB 1.2 queues a connection's incoming
/// messages without bound and runs them one at a time, and a check (like a client's
/// command on the same connection) waits behind every warming scope's batches within
/// `reducer_timeout_ms`.
const BATCHES_IN_FLIGHT: u32 = 4;

/// The first key of the two-key advisory lock a scope's warm-up holds (the second is
/// `hashtext('<domain>/<scope>')`): apart from every other lock boardsync takes.
pub const WARMUP_LOCKS: i32 = 0x6273_776d; // "bswm"

/// Loads `scope`'s window into the cache, unless the cache holds it warm already
/// (and not `force`). One backend at a time warms a scope: the run holds the
/// scope's warm-up lock in PostgreSQL, so another backend's run tries again
/// shortly, then finds it warm.
async fn warm_scope<D: Domain>(
    scope: &ScopeKey,
    context: &WarmupContext<D>,
    force: bool,
) -> Result<Warmed, DomainError> {
    let Some(stored) = context.scopes.get(D::NAME, scope).await? else {
        return Err(DomainError::not_found("scope_not_found", format!("{} {scope} no longer exists", D::SCOPE)));
    };
    let settings = context.defaults.with(&stored.warmup_overrides());
    let generation = context.cache.generation();
    let shard = context.cache.shard().name.clone();
    let placed_at = Some(stored.placed_at);
    // A transaction only for its lock: ended (and the lock freed) however the run
    // ends, also if this process dies.
    // Not a wait: a slot spent waiting would hold up the other scopes. The run is retried.
    let Some(mut lock) = crate::scope_lock::try_scope_lock(&context.pool, WARMUP_LOCKS, D::NAME, scope).await? else {
        return Ok(Warmed::Elsewhere);
    };
    // First, whatever the cache may have lost: a scope without warm-up takes writes
    // too, so it needs this as much.
    let restored = context.cache.restore(&context.pool, scope).await?;
    if restored > 0 {
        tracing::info!(domain = D::NAME, scope = %scope, restored, "wrote acknowledged writes into PostgreSQL before warm-up");
    }
    // (What this node kept of the scope's writes on this shard is written back even
    // when the scope moved away: it may be all that is left of them.)
    if !context.cache.shard().holds(stored.shard.as_deref()) {
        return Ok(Warmed::Moved);
    }
    if !settings.enabled {
        context.board.update(D::NAME, scope, |status| {
            status.generation = generation;
            status.shard = shard;
            status.placed_at = placed_at;
        });
        return Ok(Warmed::Disabled);
    }
    // Writes just restored into PostgreSQL must reach the cache too.
    let joined = context.joined.load(std::sync::atomic::Ordering::SeqCst);
    let Some(claim) = context.cache.begin_warm(scope, force || restored > 0 || !joined).await? else {
        context.board.update(D::NAME, scope, |status| {
            status.generation = generation;
            status.shard = shard;
            status.placed_at = placed_at;
        });
        return Ok(Warmed::Already);
    };
    context.board.update(D::NAME, scope, |status| {
        status.state = WarmupState::Warming;
        status.shard = shard;
        status.placed_at = placed_at;
        status.generation = generation;
        status.rows_loaded = 0;
        status.rows_total = 0;
        status.error = None;
    });
    let reading = Instant::now();
    // On the lock's connection (a warming scope holds one), in a savepoint rolled back
    // after: the read's table locks end with it, not with the warm-up (a migration's
    // DDL would wait for them, and every query behind it).
    let items = {
        let mut read = sqlx::Acquire::begin(&mut lock).await.map_err(DomainError::from_sqlx)?;
        let items = context.cache.load_window(&mut read, scope, &settings).await?;
        read.rollback().await.map_err(DomainError::from_sqlx)?;
        items
    };
    let total = items.len() as u64;
    let load_ms = reading.elapsed().as_millis() as u64;
    context.board.update(D::NAME, scope, |status| {
        status.rows_total = total;
        status.load_ms = Some(load_ms);
    });
    let loading = Instant::now();
    // Batches go out without waiting for each (a scope's next batch would otherwise
    // queue in the cache behind every other warming scope's); a check every
    // BATCHES_IN_FLIGHT of them bounds what is on its way. The end is refused unless
    // every batch loaded, and trims the scope's window in the same transaction.
    let batches = batches::<D>(&items, settings.batch_size as usize, settings.batch_bytes);
    let unit = context.cache.shard().unit.clone();
    // Rows are counted (and shown) as loaded once a check or the end says so.
    let mut loaded = 0u64;
    let mut confirm = |upto: u64| {
        context.metrics.warmup_rows.with_label_values(&[unit.as_str()]).inc_by(upto - loaded);
        loaded = upto;
        context.board.update(D::NAME, scope, |status| status.rows_loaded = upto);
    };
    let mut sent_rows = 0u64;
    for (index, batch) in batches.iter().enumerate() {
        context.cache.send_warm_batch(scope, &claim, batch)?;
        sent_rows += batch.len() as u64;
        let sent = index as u32 + 1;
        if sent % BATCHES_IN_FLIGHT == 0 && index + 1 < batches.len() {
            context.cache.check_warm(scope, &claim, sent).await?;
            confirm(sent_rows);
        }
    }
    // The end records the floor it loaded from; a trim then raises the recorded floor
    // as it drops rows (a node holding none of the scope's rows could not tell the
    // raised floor's place).
    context.cache.end_warm(scope, claim, batches.len() as u32, settings.max_items).await?;
    confirm(total);
    lock.commit().await.map_err(DomainError::from_sqlx)?;
    let cache_ms = loading.elapsed().as_millis() as u64;
    context.board.update(D::NAME, scope, |status| status.cache_ms = Some(cache_ms));
    Ok(Warmed::Loaded(total))
}

/// Warms one scope of the coordinator's domain (admin re-warm, a new scope, a changed
/// window, a scope first used here that another backend created).
#[derive(Message)]
#[rtype(result = "()")]
pub struct WarmScope {
    pub scope: ScopeKey,
    /// Loads even if the cache holds it warm already.
    pub force: bool,
}

/// Warms every scope of the coordinator's domain; `force` loads even those the
/// cache holds warm already (an operator's re-warm), else they are only checked
/// (the cache reconnected, or this backend started).
#[derive(Message)]
#[rtype(result = "()")]
pub struct WarmAll {
    pub force: bool,
}

pub struct WarmupCoordinator<D: Domain> {
    context: Arc<WarmupContext<D>>,
    actors: HashMap<ScopeKey, Addr<WarmupActor<D>>>,
}

impl<D: Domain> WarmupCoordinator<D> {
    pub fn new(context: WarmupContext<D>) -> Self {
        Self { context: Arc::new(context), actors: HashMap::new() }
    }

    fn enqueue(&mut self, scope: ScopeKey, priority: i32, force: bool) {
        let context = self.context.clone();
        let actor = self
            .actors
            .entry(scope.clone())
            .or_insert_with(|| WarmupActor { scope: scope.clone(), context, failures: 0, force: false }.start())
            .clone();
        if force {
            // Before the run is queued, so that run sees it.
            actor.do_send(Force);
        }
        let shard = self.context.cache.shard().name.clone();
        self.context.board.update(D::NAME, &scope, |status| {
            status.state = WarmupState::Pending;
            status.priority = priority;
            status.shard = shard;
        });
        self.context.scheduler.do_send(Enqueue { priority, job: actor.recipient() });
    }

    /// Enqueues `scopes` (looked up now, for their priority), highest priority first.
    fn warm(&mut self, only: Option<ScopeKey>, force: bool, ctx: &mut Context<Self>) {
        let context = self.context.clone();
        let only_again = only.clone();
        let only_all = only.is_none();
        ctx.wait(
            async move {
                let scopes: Vec<_> = match only {
                    Some(key) => context.scopes.get(D::NAME, &key).await.map(|s| s.into_iter().collect()),
                    None => context.scopes.list(Some(D::NAME)).await,
                }?;
                // Only the scopes that live on this coordinator's shard.
                let shard = context.cache.shard();
                let scopes: Vec<_> = scopes.into_iter().filter(|scope| shard.holds(scope.shard.as_deref())).collect();
                let unit = shard.unit.clone();
                // The first time the cache is ready: whether this node is the first
                // to run the domain after none ran (the cache then forgets which
                // scopes are warm, so each is loaded from PostgreSQL again).
                if only_all && !context.joined.load(std::sync::atomic::Ordering::SeqCst) {
                    let cache = context.cache.clone();
                    let first =
                        context.liveness.join(&context.pool, &unit, || async move { cache.forget_warm_ups().await });
                    if first.await? {
                        tracing::info!(domain = D::NAME, "first node up: every scope loads from PostgreSQL");
                    }
                    context.joined.store(true, std::sync::atomic::Ordering::SeqCst);
                }
                Ok::<_, DomainError>(scopes)
            }
            .into_actor(self)
            .map(move |found, coordinator, ctx| match found {
                Ok(scopes) => {
                    let defaults = coordinator.context.defaults.clone();
                    let mut queue: Vec<(i32, ScopeKey)> =
                        scopes.into_iter().map(|s| (defaults.with(&s.warmup_overrides()).priority, s.key)).collect();
                    queue.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
                    for (priority, scope) in queue {
                        coordinator.enqueue(scope, priority, force);
                    }
                }
                Err(error) => {
                    // Say, PostgreSQL is down: its scopes take no writes until warm, so
                    // try again rather than wait for the next reconnect.
                    tracing::warn!(domain = D::NAME, %error, "cannot list scopes to warm; retrying");
                    ctx.run_later(RETRY_MAX, move |coordinator, ctx| coordinator.warm(only_again, force, ctx));
                }
            }),
        );
    }
}

impl<D: Domain> Actor for WarmupCoordinator<D> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // A lagged receiver may have missed a `Ready` among many `OutboxGrew`s: warm
        // anyway (warming is idempotent; missing one leaves scopes refusing writes).
        let ready = BroadcastStream::new(self.context.cache.signals()).filter_map(|signal| {
            matches!(signal, Ok(CacheSignal::Ready { .. }) | Err(_)).then_some(WarmAll { force: false })
        });
        ctx.add_stream(ready);
        // The cache may have connected before this actor subscribed to its signals.
        if self.context.cache.epoch().is_some() {
            self.warm(None, false, ctx);
        }
    }
}

impl<D: Domain> StreamHandler<WarmAll> for WarmupCoordinator<D> {
    fn handle(&mut self, _: WarmAll, ctx: &mut Context<Self>) {
        tracing::info!(domain = D::NAME, "cache ready: warming every scope");
        self.warm(None, false, ctx);
    }

    fn finished(&mut self, _: &mut Context<Self>) {}
}

impl<D: Domain> Handler<WarmAll> for WarmupCoordinator<D> {
    type Result = ();

    fn handle(&mut self, WarmAll { force }: WarmAll, ctx: &mut Context<Self>) {
        self.warm(None, force, ctx);
    }
}

impl<D: Domain> Handler<WarmScope> for WarmupCoordinator<D> {
    type Result = ();

    fn handle(&mut self, WarmScope { scope, force }: WarmScope, ctx: &mut Context<Self>) {
        self.warm(Some(scope), force, ctx);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;

    /// A job that records when it starts and holds its slot until told to finish.
    struct Job {
        name: &'static str,
        log: Arc<Mutex<Vec<&'static str>>>,
        slots: Arc<Mutex<Vec<Slot>>>,
    }

    impl Actor for Job {
        type Context = Context<Self>;
    }

    impl Handler<RunWarmup> for Job {
        type Result = ();
        fn handle(&mut self, RunWarmup(slot): RunWarmup, _: &mut Context<Self>) {
            self.log.lock().unwrap().push(self.name);
            self.slots.lock().unwrap().push(slot);
        }
    }

    #[actix::test]
    async fn runs_at_most_the_limit_at_once_highest_priority_first() {
        let scheduler = WarmupScheduler::new(2).start();
        let log = Arc::new(Mutex::new(Vec::new()));
        let slots = Arc::new(Mutex::new(Vec::new()));
        let job = |name| Job { name, log: log.clone(), slots: slots.clone() }.start().recipient();
        // The first two take both slots; the rest queue and start by priority.
        for (name, priority) in [("a", 0), ("b", 0), ("low", -1), ("high", 9), ("mid", 5), ("mid2", 5)] {
            scheduler.send(Enqueue { priority, job: job(name) }).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(*log.lock().unwrap(), ["a", "b"], "no more than two at once");

        for expected in [vec!["a", "b", "high", "mid"], vec!["a", "b", "high", "mid", "mid2", "low"]] {
            slots.lock().unwrap().clear(); // both running jobs finish
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert_eq!(*log.lock().unwrap(), expected);
        }
    }
}
