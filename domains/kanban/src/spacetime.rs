//! Kanban on the cache adapter: how the module's columns and cards become board
//! items, and what a committed command tells its caller. The adapter itself is the
//! framework's [`boardsync_core::cache_adapter`]; boards are warmed whole and listed
//! in board order like on PostgreSQL.

use async_trait::async_trait;
use boardsync_core::cache_adapter::{CacheBinding, CachedScope, Placement};
use boardsync_core::pg_adapter::Applied;
use boardsync_core::spacetime::{time, timestamp};
use boardsync_core::warmup::WarmupSettings;
use boardsync_core::{DomainError, Page, ScopeKey, UserId};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::{board_items, page, BoardItem, Card, Column, Kanban, KanbanCommand};
use crate::module_bindings as stdb;
use crate::postgres::{applied, load_board, persist_states, Decision};

boardsync_core::spacetime_module!(crate::module_bindings, row: BoardRow, tables: [board_column: board, board_card: board]);

impl From<stdb::BoardColumn> for stdb::BoardRow {
    fn from(column: stdb::BoardColumn) -> Self {
        Self::Column(column)
    }
}

impl From<stdb::BoardCard> for stdb::BoardRow {
    fn from(card: stdb::BoardCard) -> Self {
        Self::Card(card)
    }
}

#[async_trait]
impl CacheBinding for Kanban {
    type Module = stdb::DbConnection;
    /// Boards are ordered by the domain (`board_items`), not by the index.
    type Order = ();

    fn version(item: &BoardItem) -> u64 {
        match item {
            BoardItem::Column(column) => column.version,
            BoardItem::Card(card) => card.version,
        }
    }

    fn item(row: &stdb::BoardRow) -> Option<BoardItem> {
        Some(match row {
            stdb::BoardRow::Column(c) => BoardItem::Column(Column {
                id: Uuid::parse_str(&c.id).ok()?,
                board: c.board.clone(),
                name: c.name.clone(),
                position: c.position.clone(),
                wip_limit: c.wip_limit,
                deleted: c.deleted,
                created_at: time(c.created_at)?,
                created_by: c.created_by.clone(),
                updated_by: c.updated_by.clone(),
                version: c.version,
            }),
            stdb::BoardRow::Card(c) => BoardItem::Card(Card {
                id: Uuid::parse_str(&c.id).ok()?,
                board: c.board.clone(),
                column: Uuid::parse_str(&c.column).ok()?,
                title: c.title.clone(),
                description: c.description.clone(),
                assignees: c.assignees.clone(),
                labels: c.labels.clone(),
                position: c.position.clone(),
                deleted: c.deleted,
                created_at: time(c.created_at)?,
                created_by: c.created_by.clone(),
                updated_by: c.updated_by.clone(),
                version: c.version,
            }),
        })
    }

    fn row(item: &BoardItem) -> stdb::BoardRow {
        match item {
            BoardItem::Column(c) => stdb::BoardRow::Column(stdb::BoardColumn {
                id: c.id.to_string(),
                board: c.board.clone(),
                name: c.name.clone(),
                position: c.position.clone(),
                wip_limit: c.wip_limit,
                deleted: c.deleted,
                created_at: timestamp(c.created_at),
                created_by: c.created_by.clone(),
                updated_by: c.updated_by.clone(),
                version: c.version,
            }),
            BoardItem::Card(c) => stdb::BoardRow::Card(stdb::BoardCard {
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
                created_by: c.created_by.clone(),
                updated_by: c.updated_by.clone(),
                version: c.version,
            }),
        }
    }

    fn owner(item: &BoardItem) -> Option<&str> {
        Some(match item {
            BoardItem::Column(column) => &column.created_by,
            BoardItem::Card(card) => &card.created_by,
        })
    }

    fn placement(row: &stdb::BoardRow) -> Placement<()> {
        let (board, id) = match row {
            stdb::BoardRow::Column(c) => (&c.board, &c.id),
            stdb::BoardRow::Card(c) => (&c.board, &c.id),
        };
        Placement { scope: board.clone(), order: (), entity: id.clone() }
    }

    /// The command's own item answers (a column deleted with its cards comes first).
    fn applied(
        command: &KanbanCommand,
        _: &UserId,
        writes: Vec<BoardItem>,
    ) -> Result<Applied<crate::KanbanEvent>, DomainError> {
        let answer = writes.first().cloned().ok_or_else(|| DomainError::internal("a Kanban command wrote nothing"))?;
        Ok(applied(command, &Decision { answer, writes }))
    }

    /// The command's own item (the first it touches) answers, as it is.
    fn unchanged(
        command: &KanbanCommand,
        _: &UserId,
        current: Vec<BoardItem>,
    ) -> Result<crate::KanbanEvent, DomainError> {
        let own = Self::touches(command).into_iter().next();
        let answer = current.into_iter().find(|item| Some(item.id().to_string()) == own).ok_or_else(|| {
            DomainError::internal("a Kanban command that changed nothing names no item the cache holds")
        })?;
        Ok(applied(command, &Decision::unchanged(answer)).answer)
    }

    fn page(cached: &CachedScope<'_, Self>, request: Page) -> Result<Vec<BoardItem>, DomainError> {
        let (mut columns, mut cards) = (Vec::new(), Vec::new());
        for item in cached.all() {
            match item {
                BoardItem::Column(column) => columns.push(column),
                BoardItem::Card(card) => cards.push(card),
            }
        }
        page(board_items(columns, cards), request.before.as_deref(), request.limit)
    }

    /// A board is warmed whole, deleted items included (so a cached item deleted in
    /// PostgreSQL meanwhile is updated too); `max_age_secs` still applies.
    async fn load_window(
        db: &mut PgConnection,
        board: &ScopeKey,
        window: &WarmupSettings,
    ) -> Result<Vec<BoardItem>, DomainError> {
        let (columns, cards) = load_board(db, board, window.since()).await?;
        Ok(columns.into_iter().map(BoardItem::Column).chain(cards.into_iter().map(BoardItem::Card)).collect())
    }

    async fn persist(tx: &mut PgConnection, items: Vec<BoardItem>) -> Result<usize, DomainError> {
        persist_states(tx, &items).await
    }

    fn touches(command: &KanbanCommand) -> Vec<String> {
        let ids: Vec<Uuid> = match command {
            KanbanCommand::CreateColumn { id, after, .. } | KanbanCommand::ReorderColumn { id, after } => {
                std::iter::once(*id).chain(*after).collect()
            }
            KanbanCommand::RenameColumn { id, .. }
            | KanbanCommand::SetWipLimit { id, .. }
            | KanbanCommand::DeleteColumn { id, .. }
            | KanbanCommand::EditCard { id, .. }
            | KanbanCommand::DeleteCard { id } => vec![*id],
            KanbanCommand::CreateCard { id, column, after, .. } | KanbanCommand::MoveCard { id, column, after } => {
                [*id, *column].into_iter().chain(*after).collect()
            }
        };
        ids.iter().map(Uuid::to_string).collect()
    }
}
