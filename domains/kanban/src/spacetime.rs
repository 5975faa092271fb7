//! Kanban on the SpacetimeDB adapter: reads and live events from the module's
//! subscription, writes through reducers (which place, limit and refuse with the
//! same `rules` as PostgreSQL) and the outbox. The connection machinery is the
//! framework's [`Link`].

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

use crate::domain::{board_items, page, BoardItem, Card, Column, Kanban, KanbanCommand, KanbanEvent};
use crate::module_bindings as stdb;
use crate::module_bindings::{
    ack_outbox, create_card, create_column, delete_card, delete_column, edit_card, move_card, rename_column,
    reorder_column, set_flags_for_warm_board, set_wip_limit, warm_board, warm_done, BoardCardTableAccess,
    BoardColumnTableAccess, CacheEpochTableAccess, DbConnection, SyncOutboxTableAccess,
};
use crate::postgres::{load_board, persist_states};

const SUBSCRIPTIONS: [&str; 4] = [
    "SELECT * FROM board_column",
    "SELECT * FROM board_card",
    "SELECT * FROM sync_outbox",
    "SELECT * FROM cache_epoch",
];

pub struct SpacetimeKanban {
    shared: Arc<Shared>,
    _connection: ConnectionLoop,
}

struct Shared {
    link: Link<DbConnection, BoardItem>,
    live: ScopedBroadcast<KanbanEvent>,
    /// Where each board's rows are: `(is_card, id)`.
    index: ScopeIndex<(bool, String)>,
}

impl SpacetimeKanban {
    pub fn connect(context: AdapterContext<Kanban>, target: SpacetimeTarget) -> Self {
        let (name, backoff) = (format!("kanban:{}", target.database), target.backoff.clone());
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
                .on_error(|_, error| tracing::error!(%error, "kanban cache subscription failed"))
                .subscribe(SUBSCRIPTIONS);
            Ok(connection)
        },
        |connection| connection.advance_one_message_blocking(),
        || shared.live.resync_all(),
    )
}

/// Whether a transaction came from a client command (warm-up is not an event).
fn from_command(event: &Event<stdb::Reducer>) -> Option<&stdb::Reducer> {
    match event {
        Event::Reducer(event) => match &event.reducer {
            stdb::Reducer::WarmBoard { .. } | stdb::Reducer::WarmDone { .. } | stdb::Reducer::AckOutbox { .. } => None,
            reducer => Some(reducer),
        },
        _ => None,
    }
}

fn register_callbacks(connection: &DbConnection, shared: &Arc<Shared>) {
    let s = shared.clone();
    connection.db.board_column().on_insert(move |ctx, row| {
        s.index_insert(&row.board, false, &row.id);
        if from_command(&ctx.event).is_some() {
            s.publish(&row.board, KanbanEvent::ColumnChanged { column: column_of(row) });
        }
    });
    let s = shared.clone();
    connection.db.board_column().on_update(move |ctx, _, row| match from_command(&ctx.event) {
        Some(stdb::Reducer::DeleteColumn { .. }) => {
            s.publish(&row.board, KanbanEvent::ColumnDeleted { column: column_of(row) })
        }
        Some(_) => s.publish(&row.board, KanbanEvent::ColumnChanged { column: column_of(row) }),
        None => {}
    });
    let s = shared.clone();
    connection.db.board_card().on_insert(move |ctx, row| {
        s.index_insert(&row.board, true, &row.id);
        if from_command(&ctx.event).is_some() {
            s.publish(&row.board, KanbanEvent::CardChanged { card: card_of(row) });
        }
    });
    let s = shared.clone();
    connection.db.board_card().on_update(move |ctx, _, row| {
        if from_command(&ctx.event).is_some() {
            s.publish(&row.board, KanbanEvent::CardChanged { card: card_of(row) });
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
    connection.reducers.on_create_column(move |ctx, rid, _, id, _, _, _| s.column_outcome(ctx, rid, id));
    let s = shared.clone();
    connection.reducers.on_rename_column(move |ctx, rid, _, id, _| s.column_outcome(ctx, rid, id));
    let s = shared.clone();
    connection.reducers.on_set_wip_limit(move |ctx, rid, _, id, _| s.column_outcome(ctx, rid, id));
    let s = shared.clone();
    connection.reducers.on_reorder_column(move |ctx, rid, _, id, _| s.column_outcome(ctx, rid, id));
    let s = shared.clone();
    connection.reducers.on_delete_column(move |ctx, rid, _, id, _| s.column_outcome(ctx, rid, id));
    let s = shared.clone();
    connection.reducers.on_create_card(move |ctx, rid, _, id, _, _, _, _, _, _| s.card_outcome(ctx, rid, id));
    let s = shared.clone();
    connection.reducers.on_edit_card(move |ctx, rid, _, id, _, _, _, _| s.card_outcome(ctx, rid, id));
    let s = shared.clone();
    connection.reducers.on_delete_card(move |ctx, rid, _, id| s.card_outcome(ctx, rid, id));
    let s = shared.clone();
    connection.reducers.on_move_card(move |ctx, rid, _, id, _, _| s.card_outcome(ctx, rid, id));
    // Warm-up batches are not echoed back on success; `warm_done` confirms them.
    connection.set_reducer_flags().warm_board(CallReducerFlags::NoSuccessNotify);
    let s = shared.clone();
    connection.reducers.on_warm_board(move |ctx, rid, _, _| s.owner_outcome(&ctx.event.status, rid));
    let s = shared.clone();
    connection.reducers.on_warm_done(move |ctx, rid| s.owner_outcome(&ctx.event.status, rid));
    let s = shared.clone();
    connection.reducers.on_ack_outbox(move |ctx, rid, _| s.owner_outcome(&ctx.event.status, rid));
}

fn time(timestamp: Timestamp) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(timestamp.to_micros_since_unix_epoch()).unwrap_or_default()
}

fn timestamp(time: DateTime<Utc>) -> Timestamp {
    Timestamp::from_micros_since_unix_epoch(time.timestamp_micros())
}

fn uuid(id: &str) -> Uuid {
    Uuid::parse_str(id).unwrap_or_default()
}

fn column_of(row: &stdb::BoardColumn) -> Column {
    Column {
        id: uuid(&row.id),
        board: row.board.clone(),
        name: row.name.clone(),
        position: row.position.clone(),
        wip_limit: row.wip_limit,
        deleted: row.deleted,
        created_at: time(row.created_at),
        version: row.version,
    }
}

fn card_of(row: &stdb::BoardCard) -> Card {
    Card {
        id: uuid(&row.id),
        board: row.board.clone(),
        column: uuid(&row.column),
        title: row.title.clone(),
        description: row.description.clone(),
        assignees: row.assignees.clone(),
        labels: row.labels.clone(),
        position: row.position.clone(),
        deleted: row.deleted,
        created_at: time(row.created_at),
        version: row.version,
    }
}

fn column_row(c: &Column) -> stdb::BoardColumn {
    stdb::BoardColumn {
        id: c.id.to_string(),
        board: c.board.clone(),
        name: c.name.clone(),
        position: c.position.clone(),
        wip_limit: c.wip_limit,
        deleted: c.deleted,
        created_at: timestamp(c.created_at),
        version: c.version,
    }
}

fn card_row(c: &Card) -> stdb::BoardCard {
    stdb::BoardCard {
        id: c.id.to_string(),
        board: c.board.clone(),
        column: c.column.to_string(),
        title: c.title.clone(),
        description: c.description.clone(),
        assignees: c.assignees.clone(),
        labels: c.labels.clone(),
        position: c.position.clone(),
        deleted: c.deleted,
        created_at: timestamp(c.created_at),
        version: c.version,
    }
}

impl Shared {
    fn index_insert(&self, board: &str, is_card: bool, id: &str) {
        self.index.insert(board, (is_card, id.to_string()));
    }

    fn publish(&self, board: &str, event: KanbanEvent) {
        if let Ok(scope) = ScopeKey::parse(board) {
            if self.live.is_watched(&scope) {
                self.live.publish(&scope, event);
            }
        }
    }

    fn column_outcome(&self, ctx: &stdb::ReducerEventContext, request_id: &str, id: &str) {
        let row = reducer_outcome(&ctx.event.status).map(|()| ctx.db.board_column().id().find(&id.to_string()));
        // Reducer callbacks run before row callbacks: index now for read-your-writes.
        if let Ok(Some(row)) = &row {
            self.index_insert(&row.board, false, &row.id);
        }
        self.link.client_calls.resolve(request_id, row.map(|r| r.map(|r| BoardItem::Column(column_of(&r)))));
    }

    fn card_outcome(&self, ctx: &stdb::ReducerEventContext, request_id: &str, id: &str) {
        let row = reducer_outcome(&ctx.event.status).map(|()| ctx.db.board_card().id().find(&id.to_string()));
        if let Ok(Some(row)) = &row {
            self.index_insert(&row.board, true, &row.id);
        }
        self.link.client_calls.resolve(request_id, row.map(|r| r.map(|r| BoardItem::Card(card_of(&r)))));
    }

    fn owner_outcome(&self, status: &Status, request_id: &str) {
        self.link.owner_calls.resolve(request_id, reducer_outcome(status));
    }
}

#[async_trait]
impl Connection<Kanban> for SpacetimeKanban {
    fn kind(&self) -> AdapterKind {
        AdapterKind::Spacetimedb
    }

    async fn snapshot(&self, board: &ScopeKey, request: Page) -> Result<Vec<BoardItem>, DomainError> {
        let connection = self.shared.link.connection()?;
        let ids = self.shared.index.keys(board.as_str());
        let (mut columns, mut cards) = (Vec::new(), Vec::new());
        for (is_card, id) in ids {
            if is_card {
                cards.extend(connection.db.board_card().id().find(&id).map(|r| card_of(&r)));
            } else {
                columns.extend(connection.db.board_column().id().find(&id).map(|r| column_of(&r)));
            }
        }
        page(board_items(columns, cards), request.before.as_deref(), request.limit)
    }

    async fn apply(
        &self,
        board: &ScopeKey,
        _user: &UserId,
        command: KanbanCommand,
        durability: Durability,
    ) -> Result<KanbanEvent, DomainError> {
        let deleting_column = matches!(command, KanbanCommand::DeleteColumn { .. });
        let b = board.to_string();
        let text = |id: &Uuid| id.to_string();
        let after = |after: &Option<Uuid>| after.as_ref().map(Uuid::to_string);
        let item = self
            .shared
            .link
            .client_call(durability == Durability::Durable, |connection, rid| {
                let r = &connection.reducers;
                match &command {
                    KanbanCommand::CreateColumn { id, name, wip_limit, after: a } => {
                        r.create_column(rid, b, text(id), name.clone(), *wip_limit, after(a))
                    }
                    KanbanCommand::RenameColumn { id, name } => r.rename_column(rid, b, text(id), name.clone()),
                    KanbanCommand::SetWipLimit { id, wip_limit } => r.set_wip_limit(rid, b, text(id), *wip_limit),
                    KanbanCommand::ReorderColumn { id, after: a } => r.reorder_column(rid, b, text(id), after(a)),
                    KanbanCommand::DeleteColumn { id, force } => r.delete_column(rid, b, text(id), *force),
                    KanbanCommand::CreateCard { id, column, title, description, assignees, labels, after: a } => r
                        .create_card(
                            rid,
                            b,
                            text(id),
                            text(column),
                            title.clone(),
                            description.clone(),
                            assignees.clone(),
                            labels.clone(),
                            after(a),
                        ),
                    KanbanCommand::EditCard { id, title, description, assignees, labels } => r.edit_card(
                        rid,
                        b,
                        text(id),
                        title.clone(),
                        description.clone(),
                        assignees.clone(),
                        labels.clone(),
                    ),
                    KanbanCommand::DeleteCard { id } => r.delete_card(rid, b, text(id)),
                    KanbanCommand::MoveCard { id, column, after: a } => {
                        r.move_card(rid, b, text(id), text(column), after(a))
                    }
                }
            })
            .await?
            .ok_or_else(|| DomainError::internal("the written item is missing from the cache"))?;
        Ok(match item {
            BoardItem::Column(column) if deleting_column => KanbanEvent::ColumnDeleted { column },
            BoardItem::Column(column) => KanbanEvent::ColumnChanged { column },
            BoardItem::Card(card) => KanbanEvent::CardChanged { card },
        })
    }

    async fn subscribe(&self, board: &ScopeKey) -> Result<EventStream<KanbanEvent>, DomainError> {
        Ok(self.shared.live.subscribe(board))
    }
}

/// The outbox payload: an item's full state, tagged by kind.
#[derive(serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum ItemState {
    Column {
        id: Uuid,
        board: String,
        name: String,
        position: String,
        wip_limit: Option<u32>,
        deleted: bool,
        created_at_micros: i64,
        version: u64,
    },
    Card {
        id: Uuid,
        board: String,
        column: Uuid,
        title: String,
        description: String,
        assignees: Vec<String>,
        labels: Vec<String>,
        position: String,
        deleted: bool,
        created_at_micros: i64,
        version: u64,
    },
}

impl ItemState {
    fn into_item(self) -> BoardItem {
        let at = |micros| DateTime::from_timestamp_micros(micros).unwrap_or_default();
        match self {
            Self::Column { id, board, name, position, wip_limit, deleted, created_at_micros, version } => {
                BoardItem::Column(Column {
                    id,
                    board,
                    name,
                    position,
                    wip_limit,
                    deleted,
                    created_at: at(created_at_micros),
                    version,
                })
            }
            Self::Card {
                id,
                board,
                column,
                title,
                description,
                assignees,
                labels,
                position,
                deleted,
                created_at_micros,
                version,
            } => BoardItem::Card(Card {
                id,
                board,
                column,
                title,
                description,
                assignees,
                labels,
                position,
                deleted,
                created_at: at(created_at_micros),
                version,
            }),
        }
    }
}

#[async_trait]
impl Cache<Kanban> for SpacetimeKanban {
    fn epoch(&self) -> Option<u64> {
        self.shared.link.epoch()
    }

    fn signals(&self) -> broadcast::Receiver<CacheSignal> {
        self.shared.link.signals()
    }

    /// A board is warmed whole, deleted items included (so a cached item deleted in
    /// PostgreSQL meanwhile is updated too); `max_age_secs` still applies.
    async fn load_window(
        &self,
        pool: &PgPool,
        board: &ScopeKey,
        window: &WarmupSettings,
    ) -> Result<Vec<BoardItem>, DomainError> {
        let since =
            window.max_age_secs.map(|secs| Utc::now() - chrono::Duration::seconds(secs.min(i64::MAX as u64) as i64));
        let mut db = pool.acquire().await.map_err(DomainError::from_sqlx)?;
        let (columns, cards) = load_board(&mut db, board, since).await?;
        Ok(columns.into_iter().map(BoardItem::Column).chain(cards.into_iter().map(BoardItem::Card)).collect())
    }

    async fn warm(&self, _board: &ScopeKey, batch: Vec<BoardItem>) -> Result<(), DomainError> {
        let (mut columns, mut cards) = (Vec::new(), Vec::new());
        for item in &batch {
            match item {
                BoardItem::Column(c) => columns.push(column_row(c)),
                BoardItem::Card(c) => cards.push(card_row(c)),
            }
        }
        self.shared
            .link
            .owner_call(move |c, request_id| {
                c.reducers.warm_board(request_id.clone(), columns, cards)?;
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
        let items = latest_per_entity(entries)
            .into_iter()
            .map(|entry| {
                serde_json::from_str::<ItemState>(&entry.payload)
                    .map(ItemState::into_item)
                    .map_err(|e| DomainError::internal(format!("outbox entry {} is unreadable: {e}", entry.seq)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        persist_states(tx, &items).await
    }

    async fn ack(&self, seqs: Vec<u64>) -> Result<(), DomainError> {
        self.shared.link.owner_call(move |c, request_id| c.reducers.ack_outbox(request_id, seqs)).await
    }

    fn persisted(&self, entries: &[OutboxEntry]) {
        self.shared.link.persisted(entries);
    }
}
