//! Polls on the SpacetimeDB adapter: reads and live events from the module's
//! subscription, writes through reducers and the outbox. The connection machinery is
//! the framework's [`Link`]; what is here is the poll-specific part.

use std::sync::Arc;

use async_trait::async_trait;
use boardsync_core::cache::{latest_per_entity, Cache, CacheSignal, OutboxEntry};
use boardsync_core::factory::SpacetimeTarget;
use boardsync_core::index::ScopeIndex;
use boardsync_core::live::ScopedBroadcast;
use boardsync_core::spacetime::{keep_connected, reducer_outcome, ConnectionLoop, Link};
use boardsync_core::warmup::WarmupSettings;
use boardsync_core::{
    AdapterContext, AdapterKind, Connection, DomainError, Durability, EventStream, Page, ScopeKey, UserId,
};
use chrono::{DateTime, Utc};
use spacetimedb_client_api_messages::websocket::CallReducerFlags;
use spacetimedb_sdk::{Compression, DbContext, Event, Status, Table, TableWithPrimaryKey, Timestamp};
use sqlx::{PgConnection, PgPool};
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::domain::{Poll, PollCommand, PollEvent, PollOption};
use crate::module_bindings as stdb;
use crate::module_bindings::{
    ack_outbox, add_option, remove_option, set_flags_for_warm_options, unvote, vote, warm_done, warm_options,
    CacheEpochTableAccess, DbConnection, PollOptionTableAccess, SyncOutboxTableAccess,
};
use crate::postgres::{load_options, persist_states};

const SUBSCRIPTIONS: [&str; 3] =
    ["SELECT * FROM poll_option", "SELECT * FROM sync_outbox", "SELECT * FROM cache_epoch"];

pub struct SpacetimePoll {
    shared: Arc<Shared>,
    _connection: ConnectionLoop,
}

struct Shared {
    link: Link<DbConnection, stdb::PollOption>,
    live: ScopedBroadcast<PollEvent>,
    /// Options of each poll in snapshot order, `(created_at micros, id)`.
    index: ScopeIndex<(i64, String)>,
}

impl SpacetimePoll {
    pub fn connect(context: AdapterContext<Poll>, target: SpacetimeTarget) -> Self {
        let (name, backoff) = (format!("poll:{}", target.database), target.backoff.clone());
        let shared = Arc::new(Shared {
            link: Link::new(target),
            live: ScopedBroadcast::new(context.settings.framework.subscriber_capacity),
            index: ScopeIndex::default(),
        });
        let session_shared = shared.clone();
        let connection = keep_connected(name, backoff, move || session(&session_shared));
        Self { shared, _connection: connection }
    }
}

fn session(shared: &Arc<Shared>) -> Result<(), String> {
    let target = &shared.link.target;
    shared.link.run_session(
        || {
            let connection = DbConnection::builder()
                .with_uri(&target.url)
                .with_module_name(&target.database)
                .with_token(Some(target.token.clone()))
                .with_compression(if target.compression { Compression::Brotli } else { Compression::None })
                .build()
                .map_err(|e| e.to_string())?;
            shared.index.clear();
            register_callbacks(&connection, shared);
            let applied = shared.clone();
            connection
                .subscription_builder()
                .on_applied(move |ctx| applied.link.ready(ctx.db.cache_epoch().id().find(&0).map(|row| row.epoch)))
                .on_error(|_, error| tracing::error!(%error, "poll cache subscription failed"))
                .subscribe(SUBSCRIPTIONS);
            Ok(connection)
        },
        |connection| connection.advance_one_message_blocking(),
        || shared.live.resync_all(),
    )
}

fn register_callbacks(connection: &DbConnection, shared: &Arc<Shared>) {
    let s = shared.clone();
    connection.db.poll_option().on_insert(move |ctx, row| {
        s.index_insert(row);
        if let Event::Reducer(event) = &ctx.event {
            if let stdb::Reducer::AddOption { .. } = &event.reducer {
                s.publish(row, |option| PollEvent::OptionAdded { option });
            }
        }
    });
    let s = shared.clone();
    connection.db.poll_option().on_update(move |ctx, _old, row| {
        let Event::Reducer(event) = &ctx.event else { return };
        match &event.reducer {
            stdb::Reducer::Vote { user, .. } => {
                s.publish(row, |option| PollEvent::Voted { option, user: user.clone() })
            }
            stdb::Reducer::Unvote { user, .. } => {
                s.publish(row, |option| PollEvent::Unvoted { option, user: user.clone() })
            }
            stdb::Reducer::RemoveOption { .. } => s.publish(row, |option| PollEvent::OptionRemoved { option }),
            _ => {}
        }
    });
    let s = shared.clone();
    connection.db.cache_epoch().on_insert(move |ctx, row| {
        if !matches!(ctx.event, Event::SubscribeApplied) {
            s.link.epoch_seen(row.epoch);
        }
    });
    let s = shared.clone();
    connection.db.sync_outbox().on_insert(move |_, _| s.link.signal(CacheSignal::OutboxGrew));

    let s = shared.clone();
    connection.reducers.on_add_option(move |ctx, request_id, _, id, _, _| s.client_outcome(ctx, request_id, id));
    let s = shared.clone();
    connection.reducers.on_vote(move |ctx, request_id, _, id, _| s.client_outcome(ctx, request_id, id));
    let s = shared.clone();
    connection.reducers.on_unvote(move |ctx, request_id, _, id, _| s.client_outcome(ctx, request_id, id));
    let s = shared.clone();
    connection.reducers.on_remove_option(move |ctx, request_id, _, id, _| s.client_outcome(ctx, request_id, id));
    // Warm-up batches are not echoed back on success; `warm_done` confirms them.
    connection.set_reducer_flags().warm_options(CallReducerFlags::NoSuccessNotify);
    let s = shared.clone();
    connection.reducers.on_warm_options(move |ctx, request_id, _| s.owner_outcome(&ctx.event.status, request_id));
    let s = shared.clone();
    connection.reducers.on_warm_done(move |ctx, request_id| s.owner_outcome(&ctx.event.status, request_id));
    let s = shared.clone();
    connection.reducers.on_ack_outbox(move |ctx, request_id, _| s.owner_outcome(&ctx.event.status, request_id));
}

fn micros(timestamp: Timestamp) -> i64 {
    timestamp.to_micros_since_unix_epoch()
}

fn from_row(row: &stdb::PollOption) -> Option<PollOption> {
    Some(PollOption {
        id: Uuid::parse_str(&row.id).ok()?,
        poll: row.poll.clone(),
        label: row.label.clone(),
        author: row.author.clone(),
        created_at: DateTime::from_timestamp_micros(micros(row.created_at)).unwrap_or_default(),
        removed: row.removed,
        voters: row.voters.clone(),
        version: row.version,
    })
}

fn to_row(option: &PollOption) -> stdb::PollOption {
    stdb::PollOption {
        id: option.id.to_string(),
        poll: option.poll.clone(),
        label: option.label.clone(),
        author: option.author.clone(),
        created_at: Timestamp::from_micros_since_unix_epoch(option.created_at.timestamp_micros()),
        removed: option.removed,
        voters: option.voters.clone(),
        version: option.version,
    }
}

impl Shared {
    fn index_insert(&self, row: &stdb::PollOption) {
        self.index.insert(&row.poll, (micros(row.created_at), row.id.clone()));
    }

    fn publish(&self, row: &stdb::PollOption, event: impl FnOnce(PollOption) -> PollEvent) {
        let (Ok(scope), Some(option)) = (ScopeKey::parse(&row.poll), from_row(row)) else { return };
        if self.live.is_watched(&scope) {
            self.live.publish(&scope, event(option));
        }
    }

    fn client_outcome(&self, ctx: &stdb::ReducerEventContext, request_id: &str, id: &str) {
        let outcome = reducer_outcome(&ctx.event.status).map(|()| ctx.db.poll_option().id().find(&id.to_string()));
        // Reducer callbacks run before row callbacks: index now for read-your-writes.
        if let Ok(Some(row)) = &outcome {
            self.index_insert(row);
        }
        self.link.client_calls.resolve(request_id, outcome);
    }

    fn owner_outcome(&self, status: &Status, request_id: &str) {
        self.link.owner_calls.resolve(request_id, reducer_outcome(status));
    }
}

#[async_trait]
impl Connection<Poll> for SpacetimePoll {
    fn kind(&self) -> AdapterKind {
        AdapterKind::Spacetimedb
    }

    async fn snapshot(&self, poll: &ScopeKey, page: Page) -> Result<Vec<PollOption>, DomainError> {
        let connection = self.shared.link.connection()?;
        let before = match page.before.as_deref() {
            None => None,
            Some(cursor) => {
                let id = Uuid::parse_str(cursor).map_err(|_| {
                    DomainError::bad_request("invalid_cursor", format!("before={cursor:?} is not an option id"))
                })?;
                match connection.db.poll_option().id().find(&id.to_string()) {
                    Some(row) => Some((micros(row.created_at), row.id)),
                    None => return Ok(Vec::new()),
                }
            }
        };
        let ids: Vec<String> = self
            .shared
            .index
            .newest(poll.as_str(), before.as_ref(), page.limit as usize)
            .into_iter()
            .map(|(_, id)| id)
            .collect();
        Ok(ids.iter().filter_map(|id| connection.db.poll_option().id().find(id)).filter_map(|r| from_row(&r)).collect())
    }

    async fn apply(
        &self,
        poll: &ScopeKey,
        user: &UserId,
        command: PollCommand,
        durability: Durability,
    ) -> Result<PollEvent, DomainError> {
        let id = command.option_id();
        let (scope, who, target) = (poll.to_string(), user.0.clone(), id.to_string());
        let row = self
            .shared
            .link
            .client_call(durability == Durability::Durable, |connection, rid| {
                let reducers = &connection.reducers;
                match &command {
                    PollCommand::AddOption { label, .. } => reducers.add_option(rid, scope, target, who, label.clone()),
                    PollCommand::Vote { .. } => reducers.vote(rid, scope, target, who),
                    PollCommand::Unvote { .. } => reducers.unvote(rid, scope, target, who),
                    PollCommand::RemoveOption { .. } => reducers.remove_option(rid, scope, target, who),
                }
            })
            .await?;
        let option = row
            .as_ref()
            .and_then(from_row)
            .ok_or_else(|| DomainError::not_found("option_not_found", format!("option {id} not found")))?;
        Ok(PollEvent::of(&command, user.as_str(), option))
    }

    async fn subscribe(&self, poll: &ScopeKey) -> Result<EventStream<PollEvent>, DomainError> {
        Ok(self.shared.live.subscribe(poll))
    }
}

/// The outbox payload: the option's full state after the write.
#[derive(serde::Deserialize)]
struct OptionState {
    id: Uuid,
    poll: String,
    label: String,
    author: String,
    created_at_micros: i64,
    removed: bool,
    voters: Vec<String>,
    version: u64,
}

#[async_trait]
impl Cache<Poll> for SpacetimePoll {
    fn epoch(&self) -> Option<u64> {
        self.shared.link.epoch()
    }

    fn signals(&self) -> broadcast::Receiver<CacheSignal> {
        self.shared.link.signals()
    }

    async fn load_window(
        &self,
        pool: &PgPool,
        poll: &ScopeKey,
        window: &WarmupSettings,
    ) -> Result<Vec<PollOption>, DomainError> {
        let since =
            window.max_age_secs.map(|secs| Utc::now() - chrono::Duration::seconds(secs.min(i64::MAX as u64) as i64));
        let mut db = pool.acquire().await.map_err(DomainError::from_sqlx)?;
        load_options(&mut db, poll, window.max_items.map_or(i64::MAX, i64::from), None, since).await
    }

    async fn warm(&self, _poll: &ScopeKey, batch: Vec<PollOption>) -> Result<(), DomainError> {
        let rows: Vec<stdb::PollOption> = batch.iter().map(to_row).collect();
        self.shared
            .link
            .owner_call(move |c, request_id| {
                c.reducers.warm_options(request_id.clone(), rows)?;
                c.reducers.warm_done(request_id)
            })
            .await
    }

    /// Polls are small and warmed whole: the cache never holds more than the window
    /// worth trimming, so there is nothing to drop.
    async fn trim(&self, _poll: &ScopeKey, _keep: u32) -> Result<(), DomainError> {
        Ok(())
    }

    fn pending(&self, limit: usize) -> Vec<OutboxEntry> {
        let Ok(connection) = self.shared.link.connection() else { return Vec::new() };
        boardsync_core::outbox_entries!(connection.db.sync_outbox().iter(), limit)
    }

    fn pending_count(&self) -> usize {
        self.shared.link.connection().map_or(0, |c| c.db.sync_outbox().count() as usize)
    }

    async fn persist(&self, tx: &mut PgConnection, entries: &[OutboxEntry]) -> Result<(), DomainError> {
        let states = latest_per_entity(entries)
            .into_iter()
            .map(|entry| {
                let state: OptionState = serde_json::from_str(&entry.payload)
                    .map_err(|e| DomainError::internal(format!("outbox entry {} is unreadable: {e}", entry.seq)))?;
                Ok(PollOption {
                    id: state.id,
                    poll: state.poll,
                    label: state.label,
                    author: state.author,
                    created_at: DateTime::from_timestamp_micros(state.created_at_micros).unwrap_or_default(),
                    removed: state.removed,
                    voters: state.voters,
                    version: state.version,
                })
            })
            .collect::<Result<Vec<_>, DomainError>>()?;
        persist_states(tx, &states).await
    }

    async fn ack(&self, seqs: Vec<u64>) -> Result<(), DomainError> {
        self.shared.link.owner_call(move |c, request_id| c.reducers.ack_outbox(request_id, seqs)).await
    }

    fn persisted(&self, entries: &[OutboxEntry]) {
        self.shared.link.persisted(entries);
    }
}
