//! Whiteboards on the SpacetimeDB adapter: reads and live events from the module's
//! subscription, writes through reducers and the outbox, on the framework's [`Link`].
//! Live events carry one element each (one per row the cache changed); replies list
//! every element the command wrote.

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

use crate::domain::{element_not_found, layered, page, Element, Whiteboard, WhiteboardCommand, WhiteboardEvent};
use crate::module_bindings as stdb;
use crate::module_bindings::{
    ack_outbox, add_element, bring_forward, delete_element, move_elements, send_backward, set_flags_for_warm_elements,
    update_element, warm_done, warm_elements, CacheEpochTableAccess, DbConnection, ElementTableAccess,
    SyncOutboxTableAccess,
};
use crate::postgres::{load_board, persist_states};

const SUBSCRIPTIONS: [&str; 3] = ["SELECT * FROM element", "SELECT * FROM sync_outbox", "SELECT * FROM cache_epoch"];

pub struct SpacetimeWhiteboard {
    shared: Arc<Shared>,
    _connection: ConnectionLoop,
}

struct Shared {
    link: Link<DbConnection, Vec<Element>>,
    live: ScopedBroadcast<WhiteboardEvent>,
    /// Element ids of each board.
    index: ScopeIndex<String>,
}

impl SpacetimeWhiteboard {
    pub fn connect(context: AdapterContext<Whiteboard>, target: SpacetimeTarget) -> Self {
        let (name, backoff) = (format!("whiteboard:{}", target.database), target.backoff.clone());
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
                .on_error(|_, error| tracing::error!(%error, "whiteboard cache subscription failed"))
                .subscribe(SUBSCRIPTIONS);
            Ok(connection)
        },
        |connection| connection.advance_one_message_blocking(),
        || shared.live.resync_all(),
    )
}

/// Whether a transaction came from a client command (warm-up is not an event).
fn from_command(event: &Event<stdb::Reducer>) -> bool {
    match event {
        Event::Reducer(event) => !matches!(
            event.reducer,
            stdb::Reducer::WarmElements { .. } | stdb::Reducer::WarmDone { .. } | stdb::Reducer::AckOutbox { .. }
        ),
        _ => false,
    }
}

fn register_callbacks(connection: &DbConnection, shared: &Arc<Shared>) {
    let s = shared.clone();
    connection.db.element().on_insert(move |ctx, row| {
        s.index_insert(row);
        if from_command(&ctx.event) {
            s.publish(row);
        }
    });
    let s = shared.clone();
    connection.db.element().on_update(move |ctx, _, row| {
        if from_command(&ctx.event) {
            s.publish(row);
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
    connection.reducers.on_add_element(move |ctx, rid, _, id, _, _, _, _, _, _, _, _| s.outcome(ctx, rid, &[id]));
    let s = shared.clone();
    connection.reducers.on_update_element(move |ctx, rid, _, id, _, _, _, _, _, _, _| s.outcome(ctx, rid, &[id]));
    let s = shared.clone();
    connection.reducers.on_move_elements(move |ctx, rid, _, ids, _, _| {
        let ids: Vec<&String> = ids.iter().collect();
        s.outcome(ctx, rid, &ids)
    });
    let s = shared.clone();
    connection.reducers.on_delete_element(move |ctx, rid, _, id| s.outcome(ctx, rid, &[id]));
    let s = shared.clone();
    connection.reducers.on_bring_forward(move |ctx, rid, _, id| s.outcome(ctx, rid, &[id]));
    let s = shared.clone();
    connection.reducers.on_send_backward(move |ctx, rid, _, id| s.outcome(ctx, rid, &[id]));
    // Warm-up batches are not echoed back on success; `warm_done` confirms them.
    connection.set_reducer_flags().warm_elements(CallReducerFlags::NoSuccessNotify);
    let s = shared.clone();
    connection.reducers.on_warm_elements(move |ctx, rid, _| s.owner_outcome(&ctx.event.status, rid));
    let s = shared.clone();
    connection.reducers.on_warm_done(move |ctx, rid| s.owner_outcome(&ctx.event.status, rid));
    let s = shared.clone();
    connection.reducers.on_ack_outbox(move |ctx, rid, _| s.owner_outcome(&ctx.event.status, rid));
}

fn element_of(row: &stdb::Element) -> Element {
    Element {
        id: Uuid::parse_str(&row.id).unwrap_or_default(),
        board: row.board.clone(),
        kind: row.kind.clone(),
        x: row.x,
        y: row.y,
        width: row.width,
        height: row.height,
        rotation: row.rotation,
        style: row.style.clone(),
        points: row.points.clone(),
        z: row.z.clone(),
        deleted: row.deleted,
        created_at: DateTime::from_timestamp_micros(row.created_at.to_micros_since_unix_epoch()).unwrap_or_default(),
        version: row.version,
    }
}

fn element_row(e: &Element) -> stdb::Element {
    stdb::Element {
        id: e.id.to_string(),
        board: e.board.clone(),
        kind: e.kind.clone(),
        x: e.x,
        y: e.y,
        width: e.width,
        height: e.height,
        rotation: e.rotation,
        style: e.style.clone(),
        points: e.points.clone(),
        z: e.z.clone(),
        deleted: e.deleted,
        created_at: Timestamp::from_micros_since_unix_epoch(e.created_at.timestamp_micros()),
        version: e.version,
    }
}

impl Shared {
    fn index_insert(&self, row: &stdb::Element) {
        self.index.insert(&row.board, row.id.clone());
    }

    fn publish(&self, row: &stdb::Element) {
        if let Ok(scope) = ScopeKey::parse(&row.board) {
            if self.live.is_watched(&scope) {
                self.live.publish(&scope, WhiteboardEvent::ElementsChanged { elements: vec![element_of(row)] });
            }
        }
    }

    fn outcome(&self, ctx: &stdb::ReducerEventContext, request_id: &str, ids: &[&String]) {
        let rows = reducer_outcome(&ctx.event.status).map(|()| {
            let rows: Vec<stdb::Element> = ids.iter().filter_map(|id| ctx.db.element().id().find(id)).collect();
            // Reducer callbacks run before row callbacks: index now for read-your-writes.
            rows.iter().for_each(|row| self.index_insert(row));
            Some(rows.iter().map(element_of).collect())
        });
        self.link.client_calls.resolve(request_id, rows);
    }

    fn owner_outcome(&self, status: &Status, request_id: &str) {
        self.link.owner_calls.resolve(request_id, reducer_outcome(status));
    }
}

#[async_trait]
impl Connection<Whiteboard> for SpacetimeWhiteboard {
    fn kind(&self) -> AdapterKind {
        AdapterKind::Spacetimedb
    }

    async fn snapshot(&self, board: &ScopeKey, request: Page) -> Result<Vec<Element>, DomainError> {
        let connection = self.shared.link.connection()?;
        let ids = self.shared.index.keys(board.as_str());
        let elements =
            ids.iter().filter_map(|id| connection.db.element().id().find(id)).map(|r| element_of(&r)).collect();
        page(layered(elements), request.before.as_deref(), request.limit)
    }

    async fn apply(
        &self,
        board: &ScopeKey,
        _user: &UserId,
        command: WhiteboardCommand,
        durability: Durability,
    ) -> Result<WhiteboardEvent, DomainError> {
        let b = board.to_string();
        let first = command.ids()[0];
        let elements = self
            .shared
            .link
            .client_call(durability == Durability::Durable, |connection, rid| {
                let r = &connection.reducers;
                match &command {
                    WhiteboardCommand::Add { id, kind, x, y, width, height, rotation, style, points } => r.add_element(
                        rid,
                        b,
                        id.to_string(),
                        kind.clone(),
                        *x,
                        *y,
                        *width,
                        *height,
                        *rotation,
                        style.clone(),
                        points.clone(),
                    ),
                    WhiteboardCommand::Update { id, x, y, width, height, rotation, style, points } => r.update_element(
                        rid,
                        b,
                        id.to_string(),
                        *x,
                        *y,
                        *width,
                        *height,
                        *rotation,
                        style.clone(),
                        points.clone(),
                    ),
                    WhiteboardCommand::Move { ids, dx, dy } => {
                        r.move_elements(rid, b, ids.iter().map(Uuid::to_string).collect(), *dx, *dy)
                    }
                    WhiteboardCommand::Delete { id } => r.delete_element(rid, b, id.to_string()),
                    WhiteboardCommand::BringForward { id } => r.bring_forward(rid, b, id.to_string()),
                    WhiteboardCommand::SendBackward { id } => r.send_backward(rid, b, id.to_string()),
                }
            })
            .await?
            .filter(|elements| !elements.is_empty())
            .ok_or_else(|| element_not_found(first))?;
        Ok(WhiteboardEvent::ElementsChanged { elements })
    }

    async fn subscribe(&self, board: &ScopeKey) -> Result<EventStream<WhiteboardEvent>, DomainError> {
        Ok(self.shared.live.subscribe(board))
    }
}

/// The outbox payload: an element's full state.
#[derive(serde::Deserialize)]
struct ElementState {
    id: Uuid,
    board: String,
    kind: String,
    x: f64,
    y: f64,
    width: f64,
    height: f64,
    rotation: f64,
    style: String,
    points: Vec<f32>,
    z: String,
    deleted: bool,
    created_at_micros: i64,
    version: u64,
}

#[async_trait]
impl Cache<Whiteboard> for SpacetimeWhiteboard {
    fn epoch(&self) -> Option<u64> {
        self.shared.link.epoch()
    }

    fn signals(&self) -> broadcast::Receiver<CacheSignal> {
        self.shared.link.signals()
    }

    /// A board is warmed whole, deleted elements included; `max_age_secs` still applies.
    async fn load_window(
        &self,
        pool: &PgPool,
        board: &ScopeKey,
        window: &WarmupSettings,
    ) -> Result<Vec<Element>, DomainError> {
        let since =
            window.max_age_secs.map(|secs| Utc::now() - chrono::Duration::seconds(secs.min(i64::MAX as u64) as i64));
        let mut db = pool.acquire().await.map_err(DomainError::from_sqlx)?;
        load_board(&mut db, board, since).await
    }

    async fn warm(&self, _board: &ScopeKey, batch: Vec<Element>) -> Result<(), DomainError> {
        let rows: Vec<stdb::Element> = batch.iter().map(element_row).collect();
        self.shared
            .link
            .owner_call(move |c, request_id| {
                c.reducers.warm_elements(request_id.clone(), rows)?;
                c.reducers.warm_done(request_id)
            })
            .await
    }

    /// Boards are warmed whole: nothing to drop.
    async fn trim(&self, _board: &ScopeKey, _keep: u32) -> Result<(), DomainError> {
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
        let elements = latest_per_entity(entries)
            .into_iter()
            .map(|entry| {
                let s: ElementState = serde_json::from_str(&entry.payload)
                    .map_err(|e| DomainError::internal(format!("outbox entry {} is unreadable: {e}", entry.seq)))?;
                Ok(Element {
                    id: s.id,
                    board: s.board,
                    kind: s.kind,
                    x: s.x,
                    y: s.y,
                    width: s.width,
                    height: s.height,
                    rotation: s.rotation,
                    style: s.style,
                    points: s.points,
                    z: s.z,
                    deleted: s.deleted,
                    created_at: DateTime::from_timestamp_micros(s.created_at_micros).unwrap_or_default(),
                    version: s.version,
                })
            })
            .collect::<Result<Vec<_>, DomainError>>()?;
        persist_states(tx, &elements).await
    }

    async fn ack(&self, seqs: Vec<u64>) -> Result<(), DomainError> {
        self.shared.link.owner_call(move |c, request_id| c.reducers.ack_outbox(request_id, seqs)).await
    }

    fn persisted(&self, entries: &[OutboxEntry]) {
        self.shared.link.persisted(entries);
    }
}
