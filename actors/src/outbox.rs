//! `OutboxPoller<D>`: drains a domain's `sync_outbox` from SpacetimeDB into
//! PostgreSQL, with exactly-once effect.
//!
//! Push-driven (woken by every new outbox entry) with a poll as the safety net. Of
//! all the nodes on one PostgreSQL, the one holding the domain's [`DrainerLease`]
//! drains; the others try to take the lease at every poll. [`commit_batch`] applies
//! a batch's full states in one PostgreSQL transaction (PostgreSQL takes a state
//! only over an older version); only after that commit are the entries acknowledged
//! to SpacetimeDB ([`acknowledge`]), for the cache incarnation they were read from,
//! while the next batch commits. A crash between the two leaves entries that the
//! next batch applies again, which changes nothing. An entry PostgreSQL refuses for
//! good is dead-lettered rather than stalling the rest; any other failure stalls the
//! outbox until it clears. While PostgreSQL is down, batches fail and are retried;
//! writes keep going to the cache and the outbox grows up to `outbox_max_pending`.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use boardsync_core::cache::{dead_letter, refused_for_good, Cache, CacheSignal, Pending};
use boardsync_core::{Domain, DomainError};
use chrono::Utc;
use sqlx::{Connection, PgConnection, PgPool};
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::StreamExt;

use crate::drainer::DrainerLease;
use crate::metrics::CacheMetrics;

/// A batch committed in PostgreSQL and not yet acknowledged to the cache.
pub struct Committed<D: Domain> {
    /// The cache incarnation the entries were read from.
    pub epoch: u64,
    pub entries: Vec<Pending<D>>,
    /// How many states were written now (the rest PostgreSQL already had, at that
    /// version or newer, or a later entry of the same batch superseded, or were
    /// dead-lettered).
    pub applied: usize,
    /// How many PostgreSQL refused on their own and were set aside in `outbox_dead_letters`.
    pub dead_lettered: usize,
}

/// Applies up to `limit` pending entries in one PostgreSQL transaction on
/// `connection`. `None` when nothing is pending or the cache is not connected.
///
/// When PostgreSQL refuses the batch for good ([`refused_for_good`]), the entries are
/// applied one by one instead, and one that is refused on its own is set aside in
/// `outbox_dead_letters` (with the error, and counted), so that a single poison entry
/// cannot stall every write behind it. Any other failure stalls the batch (nothing is
/// set aside) until a later poll succeeds.
pub async fn commit_batch<D: Domain>(
    cache: &dyn Cache<D>,
    connection: &mut PgConnection,
    limit: usize,
    metrics: &CacheMetrics,
) -> Result<Option<Committed<D>>, DomainError> {
    commit_batch_except(cache, connection, limit, &BTreeSet::new(), metrics).await
}

/// [`commit_batch`] of the entries not in `acking` (a batch committed before, whose
/// acknowledgement is on its way). A sequence number skipped so is only put off:
/// the batch after takes it unless that ack removed it (it matches the request id
/// too, so a number reused by a new incarnation stays).
pub async fn commit_batch_except<D: Domain>(
    cache: &dyn Cache<D>,
    connection: &mut PgConnection,
    limit: usize,
    acking: &BTreeSet<u64>,
    metrics: &CacheMetrics,
) -> Result<Option<Committed<D>>, DomainError> {
    let Some(epoch) = cache.epoch() else { return Ok(None) };
    let entries = cache.pending_except(acking, limit);
    if entries.is_empty() {
        return Ok(None);
    }
    let cache_epoch = epoch;
    let epoch = epoch as i64;
    let (written, dead) = match apply_once::<D>(cache, connection, epoch, &entries).await {
        Ok(written) => (written, Vec::new()),
        Err(error) if !refused_for_good(&error) => return Err(error),
        Err(error) => {
            tracing::warn!(domain = D::NAME, %error, entries = entries.len(), "outbox batch refused; applying it entry by entry");
            apply_one_by_one::<D>(cache, connection, epoch, &entries, metrics).await?
        }
    };

    // Everything but the dead letters is in PostgreSQL now, including what was skipped.
    let (set_aside, persisted): (Vec<Pending<D>>, Vec<Pending<D>>) =
        entries.iter().cloned().partition(|e| dead.contains(&e.seq));
    cache.set_aside(&set_aside);
    let now = Utc::now().timestamp_micros();
    let lag = metrics.outbox_lag.with_label_values(&[cache.shard().unit.as_str()]);
    for entry in &persisted {
        lag.observe((now - entry.created_at_micros).max(0) as f64 / 1e6);
    }
    metrics.outbox_applied.with_label_values(&[cache.shard().unit.as_str()]).inc_by(written as u64);
    let skipped = persisted.len().saturating_sub(written);
    metrics.outbox_skipped.with_label_values(&[cache.shard().unit.as_str()]).inc_by(skipped as u64);
    cache.persisted(&persisted);
    Ok(Some(Committed { epoch: cache_epoch, applied: written, dead_lettered: dead.len(), entries }))
}

/// Applies every entry in one transaction that also records the newest sequence;
/// returns how many states it wrote.
///
/// Sequence numbers are not trusted to tell what was applied: SpacetimeDB answers a
/// commit before it is on disk, and after a crash it can hand out a sequence number
/// again. Each entry is the entity's full state with its version, and PostgreSQL
/// takes a state only over an older version, so applying an entry twice (a crash
/// between this commit and the ack) changes nothing, and a reused number is applied
/// like any other.
async fn apply_once<D: Domain>(
    cache: &dyn Cache<D>,
    connection: &mut PgConnection,
    epoch: i64,
    entries: &[Pending<D>],
) -> Result<usize, DomainError> {
    let newest = entries.iter().map(|e| e.seq).max().unwrap_or(0);
    let mut tx = connection.begin().await.map_err(DomainError::from_sqlx)?;
    record_progress::<D>(&mut tx, epoch, newest).await?;
    let written = cache.persist(&mut tx, entries).await?;
    tx.commit().await.map_err(DomainError::from_sqlx)?;
    Ok(written)
}

/// The batch again, one entry per transaction; an entry refused on its own goes to
/// `outbox_dead_letters`. Returns the states written and the dead letters' seqs.
async fn apply_one_by_one<D: Domain>(
    cache: &dyn Cache<D>,
    connection: &mut PgConnection,
    epoch: i64,
    entries: &[Pending<D>],
    metrics: &CacheMetrics,
) -> Result<(usize, Vec<u64>), DomainError> {
    let (mut written, mut dead) = (0, Vec::new());
    for entry in entries {
        match apply_once::<D>(cache, connection, epoch, std::slice::from_ref(entry)).await {
            Ok(applied) => written += applied,
            Err(error) if !refused_for_good(&error) => return Err(error),
            Err(error) => {
                tracing::error!(domain = D::NAME, seq = entry.seq, entity = %entry.entity, %error, "outbox entry dead-lettered");
                let mut tx = connection.begin().await.map_err(DomainError::from_sqlx)?;
                record_progress::<D>(&mut tx, epoch, entry.seq).await?;
                let scope = entry.payload.as_ref().ok().map(|item| cache.scope_of(item));
                dead_letter::<D>(&mut tx, epoch, entry, scope.as_deref(), &error).await?;
                tx.commit().await.map_err(DomainError::from_sqlx)?;
                metrics.outbox_dead_letters.with_label_values(&[cache.shard().unit.as_str()]).inc();
                dead.push(entry.seq);
            }
        }
    }
    Ok((written, dead))
}

/// Records `seq` as the newest applied sequence of this cache incarnation (for
/// operators: it decides nothing), first thing in the batch's transaction: the row
/// lock it takes makes a domain's batches commit one by one (with another node that
/// still believes it drains, say). One statement where it was three (insert,
/// `FOR UPDATE`, update): a batch's round trips are most of its cost.
async fn record_progress<D: Domain>(tx: &mut PgConnection, epoch: i64, seq: u64) -> Result<(), DomainError> {
    sqlx::query(
        "INSERT INTO outbox_progress (domain, cache_epoch, last_applied_seq) VALUES ($1, $2, $3)
         ON CONFLICT (domain, cache_epoch) DO UPDATE
         SET last_applied_seq = GREATEST(outbox_progress.last_applied_seq, excluded.last_applied_seq), updated_at = now()",
    )
    .bind(D::NAME)
    .bind(epoch)
    .bind(seq as i64)
    .execute(&mut *tx)
    .await
    .map_err(DomainError::from_sqlx)?;
    Ok(())
}

/// Removes a committed batch from the cache's outbox.
pub async fn acknowledge<D: Domain>(cache: &dyn Cache<D>, committed: &Committed<D>) -> Result<(), DomainError> {
    cache.ack(committed.epoch, committed.entries.iter().map(|e| (e.seq, e.request_id.clone())).collect()).await
}

pub struct OutboxPoller<D: Domain> {
    cache: Arc<dyn Cache<D>>,
    /// This node's claim to drain; away (in the running drain) while `draining`.
    lease: Option<DrainerLease>,
    /// Whether this node drains the outbox now (for `/health`).
    drains_here: Arc<AtomicBool>,
    batch_size: usize,
    poll_interval: Duration,
    push: bool,
    metrics: CacheMetrics,
    draining: bool,
    again: bool,
}

impl<D: Domain> OutboxPoller<D> {
    /// `push`: also drain whenever the cache reports new entries (not only on the
    /// poll). `node` names this process to operators; `drains_here` is kept current.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cache: Arc<dyn Cache<D>>,
        pool: PgPool,
        node: &str,
        drains_here: Arc<AtomicBool>,
        batch_size: usize,
        poll_interval: Duration,
        push: bool,
        metrics: CacheMetrics,
    ) -> Self {
        Self {
            lease: Some(DrainerLease::new(cache.shard().unit.clone(), &pool, node, poll_interval)),
            cache,

            drains_here,
            batch_size: batch_size.max(1),
            poll_interval,
            push,
            metrics,
            draining: false,
            again: false,
        }
    }

    fn update_gauges(&self) {
        let pending = self.cache.pending(1);
        self.metrics
            .outbox_pending
            .with_label_values(&[self.cache.shard().unit.as_str()])
            .set(self.cache.pending_count() as i64);
        let oldest_ms =
            pending.first().map_or(0, |e| ((Utc::now().timestamp_micros() - e.created_at_micros) / 1000).max(0));
        self.metrics.outbox_oldest_pending_ms.with_label_values(&[self.cache.shard().unit.as_str()]).set(oldest_ms);
    }

    /// Drains batch after batch until the outbox is empty or a batch fails.
    fn drain(&mut self, ctx: &mut Context<Self>) {
        if self.draining {
            self.again = true;
            return;
        }
        let Some(mut lease) = self.lease.take() else { return };
        self.draining = true;
        self.again = false;
        let (cache, limit, metrics) = (self.cache.clone(), self.batch_size, self.metrics.clone());
        // Polling only (as the seed did): one batch of what is pending per poll.
        // Pushed: batch after batch until the outbox is empty.
        let until_empty = self.push;
        let drained = async move {
            let outcome = async {
                // Another node drains (or PostgreSQL is out of reach): nothing to do.
                let Some(connection) = lease.connection().await else { return Ok(()) };
                if !until_empty {
                    if let Some(committed) = commit_batch(cache.as_ref(), connection, limit, &metrics).await? {
                        acknowledge(cache.as_ref(), &committed).await?;
                    }
                    return Ok(());
                }
                // The next batch commits in PostgreSQL while the last one's ack is on
                // its way to the cache: a batch waits for one round trip, not two.
                // An ack that fails leaves its entries (and the next batch's) in the
                // outbox, to be applied again, which changes nothing.
                let mut acking: Option<Committed<D>> = None;
                loop {
                    let taken: BTreeSet<u64> =
                        acking.iter().flat_map(|committed| committed.entries.iter().map(|e| e.seq)).collect();
                    let ack = async {
                        match &acking {
                            Some(committed) => acknowledge(cache.as_ref(), committed).await,
                            None => Ok(()),
                        }
                    };
                    let (next, acked) =
                        tokio::join!(commit_batch_except(cache.as_ref(), connection, limit, &taken, &metrics), ack);
                    if let Err(error) = acked {
                        if let Err(also) = &next {
                            tracing::warn!(domain = D::NAME, error = %also, "the outbox batch after a failed ack failed too");
                        }
                        return Err(error);
                    }
                    if let Some(acked) = acking.take() {
                        tracing::debug!(
                            domain = D::NAME,
                            entries = acked.entries.len(),
                            applied = acked.applied,
                            "outbox batch"
                        );
                    }
                    match next? {
                        Some(committed) => acking = Some(committed),
                        // Once more from the start (an entry the ack kept, such as a
                        // reused sequence number, is pending again), then done.
                        None if !taken.is_empty() => {}
                        None => return Ok(()),
                    }
                }
            }
            .await;
            if outcome.is_err() {
                lease.suspect();
            }
            (outcome, lease)
        };
        ctx.spawn(drained.into_actor(self).map(|(outcome, lease): (Result<(), DomainError>, DrainerLease), poller, ctx| {
            let held = lease.is_held();
            poller.drains_here.store(held, Ordering::Relaxed);
            poller.metrics.outbox_drainer.with_label_values(&[poller.cache.shard().unit.as_str()]).set(i64::from(held));
            poller.lease = Some(lease);
            poller.draining = false;
            if let Err(error) = outcome {
                poller.metrics.outbox_failures.with_label_values(&[poller.cache.shard().unit.as_str()]).inc();
                tracing::error!(domain = D::NAME, %error, "outbox stalled: batch failed; retrying at the next poll");
            } else if poller.again {
                poller.drain(ctx);
            }
            poller.update_gauges();
        }));
    }
}

impl<D: Domain> Actor for OutboxPoller<D> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if self.push {
            self.listen(ctx);
        }
        ctx.run_interval(self.poll_interval, |poller, ctx| {
            poller.update_gauges();
            poller.drain(ctx);
        });
    }
}

impl<D: Domain> OutboxPoller<D> {
    fn listen(&mut self, ctx: &mut Context<Self>) {
        let signals = BroadcastStream::new(self.cache.signals()).filter_map(|signal| match signal {
            Ok(CacheSignal::Lost) => None,
            // A lagged receiver missed signals: drain anyway.
            Ok(_) | Err(_) => Some(Wake),
        });
        ctx.add_stream(signals);
    }
}

/// A reason to look at the outbox now.
struct Wake;

impl<D: Domain> StreamHandler<Wake> for OutboxPoller<D> {
    fn handle(&mut self, _: Wake, ctx: &mut Context<Self>) {
        self.drain(ctx);
    }

    fn finished(&mut self, _: &mut Context<Self>) {}
}
