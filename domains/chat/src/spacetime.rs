//! Chat on the SpacetimeDB adapter: SpacetimeDB is the warm cache in front of
//! PostgreSQL.
//!
//! Reads and live events come from the module's subscription (the SDK's client
//! cache, indexed here by channel); commands call reducers and answer with the
//! reducer's outcome; every write lands in the module's `sync_outbox`, which the
//! OutboxPoller drains into PostgreSQL through [`Cache::persist`].
//!
//! The connection lives on a thread of its own and is rebuilt with backoff when it
//! drops (the SDK does not reconnect by itself). Meanwhile commands and snapshots
//! answer 503, live subscribers stay connected and are told to resync, and on
//! reconnect the cache signals `Ready` so every channel is warmed again.

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

use crate::domain::{Chat, ChatCommand, ChatEvent, ChatSettings, Message, Reaction};
use crate::module_bindings as stdb;
use crate::module_bindings::{
    ack_outbox, configure, delete, edit, react, send, set_flags_for_warm_messages, trim_channel, unreact, warm_done,
    warm_messages, CacheEpochTableAccess, DbConnection, MessageTableAccess, SyncOutboxTableAccess,
};
use crate::postgres::{load_messages, persist_states};

const SUBSCRIPTIONS: [&str; 3] = ["SELECT * FROM message", "SELECT * FROM sync_outbox", "SELECT * FROM cache_epoch"];

pub struct SpacetimeChat {
    shared: Arc<Shared>,
    _connection: ConnectionLoop,
}

struct Shared {
    settings: ChatSettings,
    link: Link<DbConnection, stdb::Message>,
    live: ScopedBroadcast<ChatEvent>,
    /// Messages of each channel in snapshot order, `(created_at micros, id)`.
    index: ScopeIndex<(i64, String)>,
}

impl SpacetimeChat {
    /// Starts connecting in the background; until connected, calls answer 503.
    pub fn connect(context: AdapterContext<Chat>, target: SpacetimeTarget) -> Self {
        let name = format!("chat:{}", target.database);
        let backoff = target.backoff.clone();
        let shared = Arc::new(Shared {
            settings: context.settings.domain.clone(),
            live: ScopedBroadcast::new(context.settings.framework.subscriber_capacity),
            link: Link::new(target),
            index: ScopeIndex::default(),
        });
        let session_shared = shared.clone();
        let connection = keep_connected(name, backoff, move || session(&session_shared));
        Self { shared, _connection: connection }
    }
}

/// One connection's life: connect, subscribe, process messages until it drops.
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
                .on_applied(move |ctx| {
                    let _ = ctx.reducers.configure(String::new(), applied.settings.max_text_chars);
                    applied.link.ready(ctx.db.cache_epoch().id().find(&0).map(|row| row.epoch));
                })
                .on_error(|_, error| tracing::error!(%error, "chat cache subscription failed"))
                .subscribe(SUBSCRIPTIONS);
            Ok(connection)
        },
        |connection| connection.advance_one_message_blocking(),
        || shared.live.resync_all(),
    )
}

fn register_callbacks(connection: &DbConnection, shared: &Arc<Shared>) {
    let s = shared.clone();
    connection.db.message().on_insert(move |ctx, row| {
        s.index_insert(row);
        if let Event::Reducer(event) = &ctx.event {
            if let stdb::Reducer::Send { .. } = &event.reducer {
                s.publish(row, |message| ChatEvent::Sent { message });
            }
        }
    });
    let s = shared.clone();
    connection.db.message().on_update(move |ctx, _old, row| {
        let Event::Reducer(event) = &ctx.event else { return };
        match &event.reducer {
            stdb::Reducer::Edit { .. } => s.publish(row, |message| ChatEvent::Edited { message }),
            stdb::Reducer::Delete { .. } => s.publish(row, |message| ChatEvent::Deleted { message }),
            stdb::Reducer::React { user, emoji, .. } => {
                s.publish(row, |message| ChatEvent::Reacted { message, user: user.clone(), emoji: emoji.clone() })
            }
            stdb::Reducer::Unreact { user, emoji, .. } => {
                s.publish(row, |message| ChatEvent::Unreacted { message, user: user.clone(), emoji: emoji.clone() })
            }
            // Warm-up brings the cache up to PostgreSQL; clients already had that state.
            _ => {}
        }
    });
    let s = shared.clone();
    connection.db.message().on_delete(move |_, row| s.index_remove(row));
    let s = shared.clone();
    connection.db.cache_epoch().on_insert(move |ctx, row| {
        if !matches!(ctx.event, Event::SubscribeApplied) {
            s.link.epoch_seen(row.epoch);
        }
    });
    let s = shared.clone();
    connection.db.sync_outbox().on_insert(move |_, _| s.link.signal(CacheSignal::OutboxGrew));

    let s = shared.clone();
    connection.reducers.on_send(move |ctx, request_id, _, id, _, _| s.client_outcome(ctx, request_id, id));
    let s = shared.clone();
    connection.reducers.on_edit(move |ctx, request_id, _, id, _, _| s.client_outcome(ctx, request_id, id));
    let s = shared.clone();
    connection.reducers.on_delete(move |ctx, request_id, _, id, _| s.client_outcome(ctx, request_id, id));
    let s = shared.clone();
    connection.reducers.on_react(move |ctx, request_id, _, id, _, _| s.client_outcome(ctx, request_id, id));
    let s = shared.clone();
    connection.reducers.on_unreact(move |ctx, request_id, _, id, _, _| s.client_outcome(ctx, request_id, id));
    // Warm-up batches are large: their success is not echoed back (see `Cache::warm`).
    connection.set_reducer_flags().warm_messages(CallReducerFlags::NoSuccessNotify);
    let s = shared.clone();
    connection.reducers.on_warm_messages(move |ctx, request_id, _| s.owner_outcome(&ctx.event.status, request_id));
    let s = shared.clone();
    connection.reducers.on_warm_done(move |ctx, request_id| s.owner_outcome(&ctx.event.status, request_id));
    let s = shared.clone();
    connection.reducers.on_ack_outbox(move |ctx, request_id, _| s.owner_outcome(&ctx.event.status, request_id));
    let s = shared.clone();
    connection.reducers.on_trim_channel(move |ctx, request_id, _, _| s.owner_outcome(&ctx.event.status, request_id));
    connection.reducers.on_configure(move |ctx, _, _| {
        if let Err(error) = reducer_outcome(&ctx.event.status) {
            tracing::error!(%error, "cannot configure the chat module's limits");
        }
    });
}

fn micros(timestamp: Timestamp) -> i64 {
    timestamp.to_micros_since_unix_epoch()
}

fn to_chrono(timestamp: Timestamp) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros(timestamp)).unwrap_or_default()
}

fn to_timestamp(time: DateTime<Utc>) -> Timestamp {
    Timestamp::from_micros_since_unix_epoch(time.timestamp_micros())
}

/// The domain's view of a cached row (`None` for a row with a foreign id).
fn from_row(row: &stdb::Message) -> Option<Message> {
    Some(Message {
        id: Uuid::parse_str(&row.id).ok()?,
        channel: row.channel.clone(),
        author: row.author.clone(),
        text: row.text.clone(),
        created_at: to_chrono(row.created_at),
        edited_at: row.edited_at.map(to_chrono),
        deleted: row.deleted,
        reactions: row.reactions.iter().map(|r| Reaction { user: r.user.clone(), emoji: r.emoji.clone() }).collect(),
        version: row.version,
    })
}

fn to_row(message: &Message) -> stdb::Message {
    stdb::Message {
        id: message.id.to_string(),
        channel: message.channel.clone(),
        author: message.author.clone(),
        text: message.text.clone(),
        created_at: to_timestamp(message.created_at),
        edited_at: message.edited_at.map(to_timestamp),
        deleted: message.deleted,
        reactions: message
            .reactions
            .iter()
            .map(|r| stdb::Reaction { user: r.user.clone(), emoji: r.emoji.clone() })
            .collect(),
        version: message.version,
    }
}

impl Shared {
    fn index_insert(&self, row: &stdb::Message) {
        self.index.insert(&row.channel, (micros(row.created_at), row.id.clone()));
    }

    fn index_remove(&self, row: &stdb::Message) {
        self.index.remove(&row.channel, &(micros(row.created_at), row.id.clone()));
    }

    fn publish(&self, row: &stdb::Message, event: impl FnOnce(Message) -> ChatEvent) {
        let (Ok(scope), Some(message)) = (ScopeKey::parse(&row.channel), from_row(row)) else { return };
        if self.live.is_watched(&scope) {
            self.live.publish(&scope, event(message));
        }
    }

    fn client_outcome(&self, ctx: &stdb::ReducerEventContext, request_id: &str, id: &str) {
        let outcome = reducer_outcome(&ctx.event.status).map(|()| ctx.db.message().id().find(&id.to_string()));
        // The SDK runs reducer callbacks before row callbacks: index the row now, so
        // the caller reads its own write as soon as `apply` returns.
        if let Ok(Some(row)) = &outcome {
            self.index_insert(row);
        }
        self.link.client_calls.resolve(request_id, outcome);
    }

    fn owner_outcome(&self, status: &Status, request_id: &str) {
        self.link.owner_calls.resolve(request_id, reducer_outcome(status));
    }
}

fn not_found(id: &Uuid) -> DomainError {
    DomainError::not_found("message_not_found", format!("message {id} not found"))
}

#[async_trait]
impl Connection<Chat> for SpacetimeChat {
    fn kind(&self) -> AdapterKind {
        AdapterKind::Spacetimedb
    }

    async fn snapshot(&self, channel: &ScopeKey, page: Page) -> Result<Vec<Message>, DomainError> {
        let connection = self.shared.link.connection()?;
        let before = match page.before.as_deref() {
            None => None,
            Some(cursor) => {
                let id = Uuid::parse_str(cursor).map_err(|_| {
                    DomainError::bad_request("invalid_cursor", format!("before={cursor:?} is not a message id"))
                })?;
                match connection.db.message().id().find(&id.to_string()) {
                    Some(row) => Some((micros(row.created_at), row.id)),
                    None => return Ok(Vec::new()),
                }
            }
        };
        let keys: Vec<String> = self
            .shared
            .index
            .newest(channel.as_str(), before.as_ref(), page.limit as usize)
            .into_iter()
            .map(|(_, id)| id)
            .collect();
        Ok(keys
            .iter()
            .filter_map(|id| connection.db.message().id().find(id))
            .filter_map(|row| from_row(&row))
            .collect())
    }

    async fn apply(
        &self,
        channel: &ScopeKey,
        user: &UserId,
        command: ChatCommand,
        durability: Durability,
    ) -> Result<ChatEvent, DomainError> {
        let (scope, who) = (channel.to_string(), user.0.clone());
        let id = match &command {
            ChatCommand::Send { id, .. }
            | ChatCommand::Edit { id, .. }
            | ChatCommand::Delete { id }
            | ChatCommand::React { id, .. }
            | ChatCommand::Unreact { id, .. } => *id,
        };
        let durable = durability == Durability::Durable;
        let row = self
            .shared
            .link
            .client_call(durable, |connection, rid| {
                let reducers = &connection.reducers;
                let target = id.to_string();
                match &command {
                    ChatCommand::Send { text, .. } => reducers.send(rid, scope, target, who, text.clone()),
                    ChatCommand::Edit { text, .. } => reducers.edit(rid, scope, target, who, text.clone()),
                    ChatCommand::Delete { .. } => reducers.delete(rid, scope, target, who),
                    ChatCommand::React { emoji, .. } => reducers.react(rid, scope, target, who, emoji.clone()),
                    ChatCommand::Unreact { emoji, .. } => reducers.unreact(rid, scope, target, who, emoji.clone()),
                }
            })
            .await?;
        let message = row.as_ref().and_then(from_row).ok_or_else(|| not_found(&id))?;
        Ok(match command {
            ChatCommand::Send { .. } => ChatEvent::Sent { message },
            ChatCommand::Edit { .. } => ChatEvent::Edited { message },
            ChatCommand::Delete { .. } => ChatEvent::Deleted { message },
            ChatCommand::React { emoji, .. } => ChatEvent::Reacted { message, user: user.0.clone(), emoji },
            ChatCommand::Unreact { emoji, .. } => ChatEvent::Unreacted { message, user: user.0.clone(), emoji },
        })
    }

    async fn subscribe(&self, channel: &ScopeKey) -> Result<EventStream<ChatEvent>, DomainError> {
        Ok(self.shared.live.subscribe(channel))
    }
}

/// The outbox payload: the message's full state after the write.
#[derive(serde::Deserialize)]
struct MessageState {
    id: Uuid,
    channel: String,
    author: String,
    text: String,
    created_at_micros: i64,
    edited_at_micros: Option<i64>,
    deleted: bool,
    reactions: Vec<Reaction>,
    version: u64,
}

impl MessageState {
    fn into_message(self) -> Message {
        Message {
            id: self.id,
            channel: self.channel,
            author: self.author,
            text: self.text,
            created_at: DateTime::from_timestamp_micros(self.created_at_micros).unwrap_or_default(),
            edited_at: self.edited_at_micros.and_then(DateTime::from_timestamp_micros),
            deleted: self.deleted,
            reactions: self.reactions,
            version: self.version,
        }
    }
}

#[async_trait]
impl Cache<Chat> for SpacetimeChat {
    fn epoch(&self) -> Option<u64> {
        self.shared.link.epoch()
    }

    fn signals(&self) -> broadcast::Receiver<CacheSignal> {
        self.shared.link.signals()
    }

    async fn load_window(
        &self,
        pool: &PgPool,
        channel: &ScopeKey,
        window: &WarmupSettings,
    ) -> Result<Vec<Message>, DomainError> {
        let since =
            window.max_age_secs.map(|secs| Utc::now() - chrono::Duration::seconds(secs.min(i64::MAX as u64) as i64));
        let limit = window.max_items.map_or(i64::MAX, i64::from);
        let mut db = pool.acquire().await.map_err(DomainError::from_sqlx)?;
        load_messages(&mut db, channel, limit, None, since).await
    }

    async fn warm(&self, _channel: &ScopeKey, batch: Vec<Message>) -> Result<(), DomainError> {
        let rows: Vec<stdb::Message> = batch.iter().map(to_row).collect();
        // A failure of the batch resolves the call through `on_warm_messages`; success
        // through the `warm_done` barrier queued right behind it.
        self.shared
            .link
            .owner_call(move |c, request_id| {
                c.reducers.warm_messages(request_id.clone(), rows)?;
                c.reducers.warm_done(request_id)
            })
            .await
    }

    async fn trim(&self, channel: &ScopeKey, keep: u32) -> Result<(), DomainError> {
        let cached = self.shared.index.len(channel.as_str());
        if cached <= keep as usize {
            return Ok(()); // already within the window: spare the round trip
        }
        let channel = channel.to_string();
        self.shared.link.owner_call(move |c, request_id| c.reducers.trim_channel(request_id, channel, keep)).await
    }

    fn pending(&self, limit: usize) -> Vec<OutboxEntry> {
        let Ok(connection) = self.shared.link.connection() else { return Vec::new() };
        boardsync_core::outbox_entries!(connection.db.sync_outbox().iter(), limit)
    }

    fn pending_count(&self) -> usize {
        self.shared.link.connection().map_or(0, |c| c.db.sync_outbox().count() as usize)
    }

    async fn persist(&self, tx: &mut PgConnection, entries: &[OutboxEntry]) -> Result<(), DomainError> {
        // Each payload is the entity's full state, so within a batch only the last
        // state of each message matters (order per entity is kept by seq).
        let states = latest_per_entity(entries)
            .into_iter()
            .map(|entry| {
                serde_json::from_str::<MessageState>(&entry.payload)
                    .map(MessageState::into_message)
                    .map_err(|e| DomainError::internal(format!("outbox entry {} is unreadable: {e}", entry.seq)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        persist_states(tx, &states).await
    }

    async fn ack(&self, seqs: Vec<u64>) -> Result<(), DomainError> {
        self.shared.link.owner_call(move |c, request_id| c.reducers.ack_outbox(request_id, seqs)).await
    }

    fn persisted(&self, entries: &[OutboxEntry]) {
        self.shared.link.persisted(entries);
    }
}
