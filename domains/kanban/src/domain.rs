//! Kanban: boards of ordered columns (with optional WIP limits) holding ordered cards.

use boardsync_core::{Domain, DomainError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The Kanban domain.
pub struct Kanban;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    pub id: Uuid,
    pub board: String,
    pub name: String,
    /// Fractional ordering key among the board's columns.
    pub position: String,
    pub wip_limit: Option<u32>,
    pub deleted: bool,
    pub created_at: DateTime<Utc>,
    pub version: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    pub version: u64,
}

/// One entry of a board's snapshot: its columns in order, then its cards by column
/// order and position. Deleted items are not listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

/// Where to put an item among its siblings: right after `after`, or first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum KanbanCommand {
    CreateColumn {
        id: Uuid,
        name: String,
        #[serde(default)]
        wip_limit: Option<u32>,
        /// Place after this column; at the end when absent.
        #[serde(default)]
        after: Option<Uuid>,
    },
    RenameColumn {
        id: Uuid,
        name: String,
    },
    SetWipLimit {
        id: Uuid,
        wip_limit: Option<u32>,
    },
    /// Moves a column right after `after`, or first when absent.
    ReorderColumn {
        id: Uuid,
        #[serde(default)]
        after: Option<Uuid>,
    },
    /// Deletes a column; one with cards needs `force`, which deletes them too.
    DeleteColumn {
        id: Uuid,
        #[serde(default)]
        force: bool,
    },
    CreateCard {
        id: Uuid,
        column: Uuid,
        title: String,
        #[serde(default)]
        description: String,
        #[serde(default)]
        assignees: Vec<String>,
        #[serde(default)]
        labels: Vec<String>,
        /// Place after this card of the column; at the end when absent.
        #[serde(default)]
        after: Option<Uuid>,
    },
    /// Changes the fields given.
    EditCard {
        id: Uuid,
        #[serde(default)]
        title: Option<String>,
        #[serde(default)]
        description: Option<String>,
        #[serde(default)]
        assignees: Option<Vec<String>>,
        #[serde(default)]
        labels: Option<Vec<String>>,
    },
    DeleteCard {
        id: Uuid,
    },
    /// Moves a card into `column` (the same or another) right after `after`, or first.
    MoveCard {
        id: Uuid,
        column: Uuid,
        #[serde(default)]
        after: Option<Uuid>,
    },
}

/// What happened, with the full new state of what changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

/// `[domains.kanban]`, less the framework's keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KanbanSettings {
    pub max_name_chars: u32,
    pub max_title_chars: u32,
    pub max_description_chars: u32,
    /// Assignees or labels per card.
    pub max_tags: u32,
}

/// A board's own settings: none yet, and unknown keys are refused.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoardConfig {}

fn check_text(code: &'static str, what: &str, text: &str, max: u32, may_be_empty: bool) -> Result<(), DomainError> {
    if !may_be_empty && text.trim().is_empty() {
        return Err(DomainError::invalid(code, format!("the {what} must not be empty")));
    }
    if text.chars().count() > max as usize {
        return Err(DomainError::too_large(code, format!("the {what} is longer than {max} characters")));
    }
    Ok(())
}

fn check_tags(tags: &[String], settings: &KanbanSettings) -> Result<(), DomainError> {
    if tags.len() > settings.max_tags as usize || tags.iter().any(|t| t.trim().is_empty() || t.chars().count() > 64) {
        return Err(DomainError::invalid(
            "invalid_tags",
            format!("at most {} assignees or labels, each 1-64 characters", settings.max_tags),
        ));
    }
    Ok(())
}

impl Domain for Kanban {
    const NAME: &'static str = "kanban";
    const SCOPE: &'static str = "board";
    type Item = BoardItem;
    type Command = KanbanCommand;
    type Event = KanbanEvent;
    type Settings = KanbanSettings;
    type ScopeConfig = BoardConfig;

    fn validate(command: &KanbanCommand, s: &KanbanSettings) -> Result<(), DomainError> {
        match command {
            KanbanCommand::CreateColumn { name, .. } | KanbanCommand::RenameColumn { name, .. } => {
                check_text("invalid_name", "name", name, s.max_name_chars, false)
            }
            KanbanCommand::CreateCard { title, description, assignees, labels, .. } => {
                check_text("invalid_title", "title", title, s.max_title_chars, false)?;
                check_text("invalid_description", "description", description, s.max_description_chars, true)?;
                check_tags(assignees, s)?;
                check_tags(labels, s)
            }
            KanbanCommand::EditCard { title, description, assignees, labels, .. } => {
                if let Some(title) = title {
                    check_text("invalid_title", "title", title, s.max_title_chars, false)?;
                }
                if let Some(description) = description {
                    check_text("invalid_description", "description", description, s.max_description_chars, true)?;
                }
                assignees.iter().chain(labels.iter()).try_for_each(|tags| check_tags(tags, s))
            }
            _ => Ok(()),
        }
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
                None => return Ok(Vec::new()),
            }
        }
    };
    Ok(items.into_iter().skip(start).take(limit as usize).collect())
}

/// A rule's refusal as the error every adapter returns.
pub fn refused(refusal: crate::rules::Refusal) -> DomainError {
    let kind = boardsync_core::ErrorKind::parse(refusal.kind).unwrap_or(boardsync_core::ErrorKind::Invalid);
    DomainError::new(kind, refusal.code, refusal.message)
}
