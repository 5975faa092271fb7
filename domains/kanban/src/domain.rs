//! Kanban: boards of ordered columns (with optional WIP limits) holding ordered cards.

use crate::rules::check;
pub use crate::rules::{KanbanCommand, KanbanSettings};
use boardsync_core::{Domain, DomainError};
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The Kanban domain.
pub struct Kanban;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Column {
    pub id: Uuid,
    pub board: String,
    pub name: String,
    /// Fractional ordering key among the board's columns.
    pub position: String,
    pub wip_limit: Option<u32>,
    pub deleted: bool,
    pub created_at: DateTime<Utc>,
    /// Who created it, and who changed it last.
    pub created_by: String,
    pub updated_by: String,
    pub version: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Card {
    pub id: Uuid,
    pub board: String,
    pub column: Uuid,
    pub title: String,
    pub description: String,
    pub assignees: Vec<String>,
    pub labels: Vec<String>,
    /// Fractional ordering key among the column's cards.
    pub position: String,
    pub deleted: bool,
    pub created_at: DateTime<Utc>,
    /// Who created it (it and the board's owners may delete it), and who changed it last.
    pub created_by: String,
    pub updated_by: String,
    pub version: u64,
}

/// One entry of a board's snapshot: its columns in order, then its cards by column
/// order and position. Deleted items are not listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BoardItem {
    Column(Column),
    Card(Card),
}

impl BoardItem {
    pub fn id(&self) -> Uuid {
        match self {
            Self::Column(column) => column.id,
            Self::Card(card) => card.id,
        }
    }
}

/// What happened, with the full new state of what changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum KanbanEvent {
    ColumnChanged {
        column: Column,
    },
    /// A deleted column; cards deleted with it (`force`) come as their own events.
    ColumnDeleted {
        column: Column,
    },
    CardChanged {
        card: Card,
    },
}

/// A board's own settings: none yet, and unknown keys are refused.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "KanbanBoardConfig")]
pub struct BoardConfig {}

impl Domain for Kanban {
    const NAME: &'static str = "kanban";
    const SCOPE: &'static str = "board";
    const SNAPSHOT: &'static str = "Live columns by position, then the live cards of each column (in column order) by position; ties by id. Deleted columns and cards are left out; live events carry them with `deleted` set. Pages follow the current order: an item moved between two pages may be skipped or repeated (live events carry every change), and a page after a deleted item is 409 `cursor_gone`.";
    type Item = BoardItem;
    type Command = KanbanCommand;
    type Event = KanbanEvent;
    type Settings = KanbanSettings;
    type ScopeConfig = BoardConfig;

    fn validate(command: &KanbanCommand, settings: &KanbanSettings) -> Result<(), DomainError> {
        check(command, settings).map_err(DomainError::from)
    }

    fn cursor(item: &BoardItem) -> String {
        item.id().to_string()
    }
}

/// A board as its snapshot lists it: live columns by position, then the live cards of
/// each column (in column order) by position; ties by id.
pub fn board_items(mut columns: Vec<Column>, mut cards: Vec<Card>) -> Vec<BoardItem> {
    columns.retain(|c| !c.deleted);
    columns.sort_by(|a, b| (&a.position, a.id).cmp(&(&b.position, b.id)));
    cards.retain(|c| !c.deleted);
    cards.sort_by(|a, b| (&a.position, a.id).cmp(&(&b.position, b.id)));
    let mut items: Vec<BoardItem> = Vec::with_capacity(columns.len() + cards.len());
    for column in &columns {
        items.extend(cards.iter().filter(|card| card.column == column.id).cloned().map(BoardItem::Card));
    }
    let cards = std::mem::take(&mut items);
    items.extend(columns.into_iter().map(BoardItem::Column));
    items.extend(cards);
    items
}

/// At most `limit` items following the item `before` (the cursor of the previous page).
pub fn page(items: Vec<BoardItem>, before: Option<&str>, limit: u32) -> Result<Vec<BoardItem>, DomainError> {
    let start = match before {
        None => 0,
        Some(cursor) => {
            let id = Uuid::parse_str(cursor).map_err(|_| {
                DomainError::bad_request("invalid_cursor", format!("before={cursor:?} is not an item id"))
            })?;
            match items.iter().position(|item| item.id() == id) {
                Some(index) => index + 1,
                // An empty page would read as the end of the board: say it is not.
                None => return Err(cursor_gone(cursor)),
            }
        }
    };
    Ok(items.into_iter().skip(start).take(limit as usize).collect())
}

/// A rule's refusal as the error every adapter returns.
pub fn refused(refusal: crate::rules::Refusal) -> DomainError {
    refusal.into()
}

/// The item a page was to continue after is no longer on the board.
fn cursor_gone(cursor: &str) -> DomainError {
    DomainError::conflict(
        "cursor_gone",
        format!("item {cursor} was deleted since the last page; fetch the board again from the start"),
    )
}
