//! The one PostgreSQL adapter every domain runs on: [`PostgresAdapter<D>`] implements
//! [`Connection<D>`] on top of a per-domain [`PostgresBinding`] (its SQL), with the
//! framework's event log for live events. A write and its events commit in one
//! transaction, so every write is durable when it is acknowledged.

use async_trait::async_trait;
use sqlx::{PgConnection, PgPool};

use std::sync::Arc;

use crate::live::ScopedBroadcast;
use crate::outside::{Follower, OutsideChange, OutsideSink};
use crate::postgres::PgEventLog;
use crate::ActingUser;
use crate::{AdapterContext, AdapterKind, Connection, Domain, DomainError, Durability, EventStream, Page, ScopeKey};

/// What differs per domain on the PostgreSQL adapter: reading a page and applying a
/// command, both in SQL.
#[async_trait]
pub trait PostgresBinding: Domain {
    /// A page of a scope's items (the same order and semantics as the cache adapter's).
    async fn page(db: &mut PgConnection, scope: &ScopeKey, page: Page) -> Result<Vec<Self::Item>, DomainError>;

    /// Applies a validated command inside `tx`; returns its answer and events. A
    /// command that changes nothing (a retry, or values the item already has) writes
    /// nothing and answers [`Applied::unchanged`].
    async fn apply_in(
        tx: &mut PgConnection,
        settings: &Self::Settings,
        scope: &ScopeKey,
        actor: &ActingUser,
        command: Self::Command,
    ) -> Result<Applied<Self::Event>, DomainError>;

    /// Deletes every item of the scope (and their children), in the purge's
    /// transaction; returns how many items.
    async fn purge(tx: &mut PgConnection, scope: &ScopeKey) -> Result<u64, DomainError>;

    /// What PostgreSQL holds now of the entities with these ids (those it has, in any
    /// scope; ids that are not the domain's are skipped).
    async fn stored(db: &mut PgConnection, ids: &[String]) -> Result<Vec<Self::Item>, DomainError>;

    /// The event live subscribers get when an outside writer changed `item` in
    /// PostgreSQL (`new`: it was inserted, or the cache did not hold it).
    fn changed_outside(item: Self::Item, new: bool) -> Self::Event;
}

/// The ids among `ids` that are UUIDs, for a [`PostgresBinding::stored`] whose
/// entities all have UUIDs (an id of another shape names nothing).
pub fn uuids(ids: &[String]) -> Vec<uuid::Uuid> {
    ids.iter().filter_map(|id| uuid::Uuid::parse_str(id).ok()).collect()
}

/// What a command did on PostgreSQL.
pub struct Applied<E> {
    /// The caller's answer.
    pub answer: E,
    /// What live subscribers see (empty when nothing changed).
    pub events: Vec<E>,
}

impl<E: Clone> Applied<E> {
    /// One event, which is both the answer and what subscribers see.
    pub fn one(event: E) -> Self {
        Self { answer: event.clone(), events: vec![event] }
    }

    /// A command that changed nothing: it answers with the items as they are, and
    /// nobody else hears of it (a retry must not look like a second change).
    pub fn unchanged(answer: E) -> Self {
        Self { answer, events: Vec::new() }
    }
}

pub struct PostgresAdapter<D: Domain> {
    pool: PgPool,
    settings: D::Settings,
    events: PgEventLog<D::Event>,
    /// Tells live subscribers what outside writers change (see [`crate::outside`]).
    _outside: Follower,
    _outside_sink: Arc<OutsideEvents<D>>,
}

/// Outside changes as live events (the rows are PostgreSQL's already).
struct OutsideEvents<D: Domain> {
    live: Arc<ScopedBroadcast<D::Event>>,
}

#[async_trait]
impl<D: PostgresBinding> OutsideSink<D> for OutsideEvents<D> {
    async fn take(&self, changes: Vec<OutsideChange<D::Item>>) -> Result<(), DomainError> {
        for OutsideChange { scope, item, inserted } in changes {
            self.live.publish(&scope, D::changed_outside(item, inserted));
        }
        Ok(())
    }
}

impl<D: PostgresBinding> PostgresAdapter<D> {
    pub async fn connect(context: AdapterContext<D>) -> Result<Self, DomainError> {
        let event_log = context.settings.framework.event_log();
        let events = PgEventLog::start(context.pool.clone(), D::NAME, event_log.clone()).await?;
        let sink = Arc::new(OutsideEvents::<D> { live: events.live().clone() });
        let outside = Follower::start::<D, _>(
            Arc::downgrade(&sink),
            context.pool.clone(),
            event_log,
            crate::outside::StartAt::Newest,
            None,
        );
        Ok(Self {
            pool: context.pool,
            settings: context.settings.domain,
            events,
            _outside: outside,
            _outside_sink: sink,
        })
    }
}

#[async_trait]
impl<D: PostgresBinding> Connection<D> for PostgresAdapter<D> {
    fn kind(&self) -> AdapterKind {
        AdapterKind::Postgres
    }

    async fn snapshot(&self, scope: &ScopeKey, page: Page) -> Result<Vec<D::Item>, DomainError> {
        let mut db = self.pool.acquire().await.map_err(DomainError::from_sqlx)?;
        D::page(&mut db, scope, page).await
    }

    async fn apply(
        &self,
        scope: &ScopeKey,
        actor: &ActingUser,
        command: D::Command,
        // Every write here is committed in PostgreSQL before it is acknowledged.
        _durability: Durability,
    ) -> Result<D::Event, DomainError> {
        // The same limits as the cache adapter, whoever calls.
        D::validate(&command, &self.settings)?;
        let mut tx = self.pool.begin().await.map_err(DomainError::from_sqlx)?;
        // Under the scope's lock: a command authorized just before a purge is refused
        // after it, not written into the purged scope.
        let purged = crate::purge::guard_write(&mut tx, D::NAME, scope.as_str()).await?;
        if purged.is_some_and(|mark| mark.drops(None)) {
            return Err(crate::scope::missing(D::NAME, D::SCOPE, scope));
        }
        let applied = D::apply_in(&mut tx, &self.settings, scope, actor, command).await?;
        for event in &applied.events {
            self.events.append(&mut tx, scope, event).await?;
        }
        tx.commit().await.map_err(DomainError::from_sqlx)?;
        Ok(applied.answer)
    }

    async fn subscribe(&self, scope: &ScopeKey) -> Result<EventStream<D::Event>, DomainError> {
        Ok(self.events.subscribe(scope))
    }
}
