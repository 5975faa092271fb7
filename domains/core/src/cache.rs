//! What the warm-up and outbox machinery needs from a domain's SpacetimeDB adapter.
//!
//! The SpacetimeDB adapter of a domain implements both [`crate::Connection`] (for
//! clients) and [`Cache`] (for the WarmupActors and the OutboxPoller in `actors/`).
//! The PostgreSQL adapter has no cache and implements only the former.

use std::collections::BTreeSet;

use async_trait::async_trait;
use sqlx::{PgConnection, PgPool};
use tokio::sync::broadcast;

use crate::warmup::WarmupSettings;
use crate::{Domain, DomainError, ScopeKey};

/// One write recorded in the module's `sync_outbox`, in the same transaction as the
/// write. `P` is the written entity's full state: the module's own row type, decoded
/// with the module's generated type, so a renamed field fails to compile instead of
/// failing at run time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry<P> {
    /// Increases with every write to this cache incarnation.
    pub seq: u64,
    /// The entity written (e.g. a message id); order is kept per entity.
    pub entity: String,
    pub kind: String,
    /// The entity's full state after the write.
    pub payload: P,
    pub request_id: String,
    /// When the cache committed the write.
    pub created_at_micros: i64,
}

/// The newest entry of each entity, by the payload's `version` (then sequence: after
/// a cache crash a sequence number can be handed out again, so it alone cannot say
/// which state is newer), in sequence order. Payloads are full states, so within a
/// batch only an entity's newest state needs applying.
pub fn latest_per_entity<P>(entries: &[OutboxEntry<P>], version: impl Fn(&P) -> u64) -> Vec<&OutboxEntry<P>> {
    let mut latest: std::collections::HashMap<&str, &OutboxEntry<P>> = std::collections::HashMap::new();
    for entry in entries {
        let newer = latest
            .get(entry.entity.as_str())
            .is_none_or(|kept| (version(&entry.payload), entry.seq) >= (version(&kept.payload), kept.seq));
        if newer {
            latest.insert(entry.entity.as_str(), entry);
        }
    }
    let mut ordered: Vec<&OutboxEntry<P>> = latest.into_values().collect();
    ordered.sort_by_key(|entry| entry.seq);
    ordered
}

/// Whether PostgreSQL refused a write for good, so that setting it aside as a dead
/// letter is right: a data exception (SQLSTATE class 22) or an integrity constraint
/// (class 23), which no retry can fix, a row the domain cannot read, or a version
/// PostgreSQL holds with other content. Anything else (a column missing during a
/// rolling deploy, a lock timeout, a revoked permission, PostgreSQL down) may pass:
/// the write waits, and the failure is counted and logged.
pub fn refused_for_good(error: &DomainError) -> bool {
    error.code == crate::cache_adapter::UNREADABLE_ENTRY
        || error.code == crate::cache_adapter::VERSION_CONFLICT
        || error.sqlstate().is_some_and(|state| state.starts_with("22") || state.starts_with("23"))
}

/// Keeps a write PostgreSQL refused for good in `outbox_dead_letters`, with why and its
/// scope (when readable: a purge deletes the scope's letters), in the caller's
/// transaction (`boardsync` never drops one silently).
pub async fn dead_letter<D: Domain>(
    tx: &mut PgConnection,
    epoch: i64,
    entry: &Pending<D>,
    scope: Option<&str>,
    error: &DomainError,
) -> Result<(), DomainError> {
    let payload = match &entry.payload {
        Ok(item) => serde_json::to_string(item).unwrap_or_default(),
        Err(unreadable) => unreadable.clone(),
    };
    sqlx::query(
        "INSERT INTO outbox_dead_letters (domain, cache_epoch, seq, entity, kind, payload, request_id, error, scope)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
    )
    .bind(D::NAME)
    .bind(epoch)
    .bind(entry.seq as i64)
    .bind(&entry.entity)
    .bind(&entry.kind)
    .bind(payload)
    .bind(&entry.request_id)
    .bind(error.to_string())
    .bind(scope)
    .execute(&mut *tx)
    .await
    .map_err(DomainError::from_sqlx)?;
    Ok(())
}

/// What happened to the cache connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheSignal {
    /// Connected and subscribed; `epoch` names the cache incarnation. Sent on every
    /// (re)connect, so warm-up runs again after a restart or a recreation.
    Ready { epoch: u64 },
    /// The connection dropped; the adapter is reconnecting.
    Lost,
    /// New outbox entries arrived.
    OutboxGrew,
}

/// A pending outbox entry of domain `D`: its payload read as the domain's item, or,
/// when the module wrote a row the domain cannot read, that row as text (persisting
/// it fails, so it is dead-lettered with the row rather than lost).
pub type Pending<D> = OutboxEntry<Result<<D as Domain>::Item, String>>;

#[async_trait]
pub trait Cache<D: Domain>: Send + Sync + 'static {
    /// The cache incarnation connected now, if any.
    fn epoch(&self) -> Option<u64>;

    /// The cache's generation while connected: it changes with every reconnect and
    /// every recreation, after which the cache may have lost what it held (a
    /// SpacetimeDB restart loses the unsynced tail of its log), so a scope warmed in
    /// an earlier generation must be warmed again before it takes writes.
    fn generation(&self) -> Option<u64>;

    fn signals(&self) -> broadcast::Receiver<CacheSignal>;

    /// Reads `scope`'s warm-up window from PostgreSQL (newest first), on `db`: the
    /// connection holding the warm-up's lock, so that a warming scope takes one
    /// connection from the pool, not two.
    async fn load_window(
        &self,
        db: &mut PgConnection,
        scope: &ScopeKey,
        window: &WarmupSettings,
    ) -> Result<Vec<D::Item>, DomainError>;

    /// Loads items read from PostgreSQL outside a warm-up (a replayed dead letter)
    /// and waits for them. Never undoes a write still pending in the outbox, and never
    /// replaces a newer cached version.
    async fn warm(&self, scope: &ScopeKey, batch: Vec<D::Item>) -> Result<(), DomainError>;

    /// Sends one batch of run `claim` of `scope`'s warm-up, without waiting for it: a
    /// later [`Cache::check_warm`] or [`Cache::end_warm`] tells whether it loaded. A
    /// batch never undoes a write still pending in the outbox, and never replaces a
    /// newer cached version.
    fn send_warm_batch(&self, scope: &ScopeKey, claim: &str, batch: &[D::Item]) -> Result<(), DomainError>;

    /// Waits until every batch sent so far (`batches` of them) by run `claim` ran: an
    /// error if one failed, or if the run no longer holds the scope's warm-up.
    async fn check_warm(&self, scope: &ScopeKey, claim: &str, batches: u32) -> Result<(), DomainError>;

    /// Claims `scope`'s warm-up in the cache: the claim to end it with, or `None`
    /// when a warm-up of it (by any backend) ended since the cache last started, so
    /// nothing was lost since and nothing needs loading, unless `force` (its window
    /// changed, an operator asked, or PostgreSQL may hold what the cache does not).
    async fn begin_warm(&self, scope: &ScopeKey, force: bool) -> Result<Option<String>, DomainError>;

    /// Has the cache forget every scope's warm-up record (the first node up after
    /// none ran: PostgreSQL may have changed unseen).
    async fn forget_warm_ups(&self) -> Result<(), DomainError>;

    /// Records in the cache that `scope`'s warm-up (`claim`) ended, with where the
    /// scope's whole history in the cache begins (every backend takes that over), once
    /// all `batches` it sent loaded; with `keep`, only the scope's newest `keep` items
    /// stay cached (PostgreSQL keeps all), dropped in the same transaction. Refused if
    /// a batch failed, or the cache restarted or another run claimed the scope since.
    async fn end_warm(
        &self,
        scope: &ScopeKey,
        claim: String,
        batches: u32,
        keep: Option<u32>,
    ) -> Result<(), DomainError>;

    /// `scope` finished warming: its live subscribers are told to resync, since a
    /// snapshot they asked for while it warmed was refused (503 `scope_warming`), and
    /// the warm-up may have brought newer states than their events did.
    fn warmed(&self, scope: &ScopeKey);

    /// `scope`'s warm-up is disabled: the cache holds only its writes since, so its
    /// snapshots come from PostgreSQL (with the cache's newer versions).
    fn not_warmed(&self, scope: &ScopeKey);

    /// Purges `scope` from the cache: its rows and outbox entries; commands to it are
    /// refused until it is warmed again.
    async fn forget(&self, scope: &ScopeKey) -> Result<(), DomainError>;

    /// The purged `scope` is created again: the cache takes its commands again.
    async fn remember(&self, scope: &ScopeKey) -> Result<(), DomainError>;

    /// The scope an item belongs to.
    fn scope_of(&self, item: &D::Item) -> String;

    /// The shard this cache is.
    fn shard(&self) -> &crate::shards::Shard;

    /// How many scopes' rows this backend holds subscribed now (`None`: every scope's,
    /// `cache_subscriptions = "all"`).
    fn subscribed_scopes(&self) -> Option<usize>;

    /// One step of moving `scope` to or from this shard (see
    /// [`crate::cache_adapter::MoveStep`]).
    async fn move_step(&self, step: crate::cache_adapter::MoveStep, scope: &ScopeKey) -> Result<(), DomainError>;

    /// How many writes of `scope` PostgreSQL may still lack: in this cache's outbox,
    /// or kept by this backend.
    fn pending_in(&self, scope: &ScopeKey) -> usize;

    /// Unacknowledged outbox entries, oldest first, at most `limit`.
    fn pending(&self, limit: usize) -> Vec<Pending<D>> {
        self.pending_except(&BTreeSet::new(), limit)
    }

    /// [`Cache::pending`] without the sequences in `taken`: those of a drainer's last
    /// batch, while its acknowledgement is on its way. (By the numbers taken, not
    /// past the highest: a transaction's rows reach the list in no order, so a
    /// lower number can join it after a higher one.)
    fn pending_except(&self, taken: &BTreeSet<u64>, limit: usize) -> Vec<Pending<D>>;

    fn pending_count(&self) -> usize;

    /// The link's [`Cache::generation`] and the sequences of the unacknowledged
    /// outbox entries; `None` while the link is down.
    fn pending_snapshot(&self) -> Option<(u64, BTreeSet<u64>)>;

    /// Keeps in `seqs` only those still pending. `false` (and `seqs` untouched) when
    /// the link is down or is no longer at `generation`: the outbox has been listed
    /// anew since, and an entry missing from that list may have been lost rather
    /// than acknowledged.
    fn retain_pending(&self, generation: u64, seqs: &mut BTreeSet<u64>) -> bool;

    /// Applies the entries' effects in PostgreSQL inside `tx`, in order; returns how
    /// many states it wrote (a state PostgreSQL already has, at that version or
    /// newer, is not written again: applying an entry twice changes nothing).
    async fn persist(&self, tx: &mut PgConnection, entries: &[Pending<D>]) -> Result<usize, DomainError>;

    /// Removes entries read from cache incarnation `epoch` once their effect is
    /// committed in PostgreSQL; refused when the cache is another incarnation now.
    async fn ack(&self, epoch: u64, entries: Vec<(u64, String)>) -> Result<(), DomainError>;

    /// Tells writers waiting for durability that these entries are in PostgreSQL.
    fn persisted(&self, entries: &[Pending<D>]);

    /// These entries were set aside as dead letters: stop keeping them for
    /// [`Cache::restore`] (PostgreSQL refuses them for good).
    fn set_aside(&self, entries: &[Pending<D>]);

    /// Writes into PostgreSQL, in one transaction, the states of `scope` that this
    /// backend saw committed in the cache and not yet in PostgreSQL; returns how many.
    /// Warm-up calls it first: a cache crash (a power loss) can lose the last writes
    /// it acknowledged, and this puts them where the warm-up then reads them from.
    async fn restore(&self, pool: &PgPool, scope: &ScopeKey) -> Result<usize, DomainError>;

    /// [`Cache::restore`] for every scope (at shutdown: this backend's copy of the
    /// newest writes may be the only one).
    async fn restore_all(&self, pool: &PgPool) -> Result<usize, DomainError>;

    /// How many writes this backend keeps that PostgreSQL may not have yet (other
    /// nodes' among them, as this backend saw them committed).
    fn retained(&self) -> usize;

    /// How many of those this backend's own calls made.
    fn retained_own(&self) -> usize;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn versioned(seq: u64, entity: &str, version: u64) -> OutboxEntry<u64> {
        OutboxEntry {
            seq,
            entity: entity.into(),
            kind: "k".into(),
            payload: version,
            request_id: String::new(),
            created_at_micros: 0,
        }
    }

    fn entry(seq: u64, entity: &str) -> OutboxEntry<()> {
        OutboxEntry {
            seq,
            entity: entity.into(),
            kind: "k".into(),
            payload: (),
            request_id: String::new(),
            created_at_micros: 0,
        }
    }

    #[test]
    fn only_each_entitys_last_state_is_kept_in_sequence_order() {
        let entries = [entry(1, "a"), entry(2, "b"), entry(3, "a"), entry(4, "c"), entry(5, "b")];
        let seqs: Vec<u64> = latest_per_entity(&entries, |_| 0).iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [3, 4, 5]);
    }

    #[test]
    fn the_newest_state_wins_by_version_even_at_a_lower_sequence_number() {
        // After a cache crash a sequence number can be handed out again, lower than one
        // an older state of the same entity still holds.
        let entries = [versioned(5, "a", 7), versioned(6, "a", 3), versioned(1, "b", 2)];
        let seqs: Vec<u64> = latest_per_entity(&entries, |version| *version).iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [1, 5]);
    }
}
