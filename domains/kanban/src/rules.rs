//! Kanban's commands, settings and rules, written once for both adapters: the backend
//! uses this module and `modules/kanban` includes this file (`#[path]`), so the cache
//! and PostgreSQL parse, place and refuse identically. Ids and positions are strings
//! here; no dependencies beyond serde and uuid.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ordering::key_between;
use crate::refusal::check_text_chars;
pub use crate::refusal::Refusal;

/// What a client may ask of a board. Ids come from the client, so a retried create
/// is idempotent; `after` places a column or card right after a sibling.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
// For the API document; the wasm module that includes this file builds without it.
#[cfg_attr(not(target_family = "wasm"), derive(schemars::JsonSchema))]
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

/// `[domains.kanban]`, less the framework's keys.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KanbanSettings {
    pub max_name_chars: u32,
    pub max_title_chars: u32,
    pub max_description_chars: u32,
    /// Assignees or labels per card.
    pub max_tags: u32,
    /// Live columns, and live cards, one board holds.
    pub max_columns_per_board: u32,
    pub max_cards_per_board: u32,
}

/// Refuses a new column (`card`: a new card) on a board that holds `live` already.
pub fn check_room_on_board(live: usize, card: bool, settings: &KanbanSettings) -> Result<(), Refusal> {
    let (max, what, code) = if card {
        (settings.max_cards_per_board, "cards", "too_many_cards")
    } else {
        (settings.max_columns_per_board, "columns", "too_many_columns")
    };
    if live < max as usize {
        return Ok(());
    }
    Err(refusal("invalid", code, format!("a board holds at most {max} {what}")))
}

/// A WIP limit past the cards a board may hold limits nothing, and one past what
/// PostgreSQL's column holds would be stored as another number than the cache's.
fn check_wip_limit(wip_limit: Option<u32>, s: &KanbanSettings) -> Result<(), Refusal> {
    match wip_limit {
        Some(limit) if limit > s.max_cards_per_board.min(i32::MAX as u32) => Err(refusal(
            "invalid",
            "invalid_wip_limit",
            format!("a WIP limit is at most {} (the cards a board holds)", s.max_cards_per_board),
        )),
        _ => Ok(()),
    }
}

/// Refuses names, titles, descriptions, tags and WIP limits past the configured limits.
pub fn check(command: &KanbanCommand, s: &KanbanSettings) -> Result<(), Refusal> {
    match command {
        KanbanCommand::CreateColumn { name, wip_limit, .. } => {
            check_text("invalid_name", "name", name, s.max_name_chars, false)?;
            check_wip_limit(*wip_limit, s)
        }
        KanbanCommand::RenameColumn { name, .. } => check_text("invalid_name", "name", name, s.max_name_chars, false),
        KanbanCommand::SetWipLimit { wip_limit, .. } => check_wip_limit(*wip_limit, s),
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

fn check_text(code: &'static str, what: &str, text: &str, max: u32, may_be_empty: bool) -> Result<(), Refusal> {
    if !may_be_empty && text.trim().is_empty() {
        return Err(refusal("invalid", code, format!("the {what} must not be empty")));
    }
    check_text_chars("the text", text)?;
    if text.chars().count() > max as usize {
        return Err(refusal("invalid", code, format!("the {what} is longer than {max} characters")));
    }
    Ok(())
}

fn check_tags(tags: &[String], settings: &KanbanSettings) -> Result<(), Refusal> {
    tags.iter().try_for_each(|tag| check_text_chars("a tag", tag))?;
    if tags.len() > settings.max_tags as usize || tags.iter().any(|t| t.trim().is_empty() || t.chars().count() > 64) {
        return Err(refusal(
            "invalid",
            "invalid_tags",
            format!("at most {} assignees or labels, each 1-64 characters", settings.max_tags),
        ));
    }
    // A card's assignees and labels are sets: a repeated one means nothing more, and
    // clients key them by value.
    if tags.iter().enumerate().any(|(i, tag)| tags[..i].contains(tag)) {
        return Err(refusal("invalid", "duplicate_tags", "an assignee or label appears twice".to_string()));
    }
    Ok(())
}

/// A column as the rules see it.
pub struct ColumnView<'a> {
    pub id: &'a str,
    pub position: &'a str,
    pub wip_limit: Option<u32>,
    /// Live cards in the column now.
    pub cards: usize,
}

/// A card as the rules see it.
pub struct CardView<'a> {
    pub id: &'a str,
    pub position: &'a str,
}

fn refusal(kind: &'static str, code: &'static str, message: String) -> Refusal {
    Refusal::new(kind, code, message)
}

/// Only a card's creator, or an owner of the board, deletes it (also by deleting its
/// column). A card from before creators were recorded (`created_by` empty) is anyone's.
pub fn check_card_deletable(created_by: &str, user: &str, owns_board: bool) -> Result<(), Refusal> {
    if owns_board || created_by == user || created_by.is_empty() {
        return Ok(());
    }
    let message = "only the card's creator or the board's owners may delete it".to_string();
    Err(refusal("forbidden", "not_creator", message))
}

pub fn id_conflict(id: &str) -> Refusal {
    refusal("conflict", "id_conflict", format!("id {id} is already used"))
}

pub fn column_not_found(id: &str) -> Refusal {
    refusal("not_found", "column_not_found", format!("column {id} not found"))
}

pub fn card_not_found(id: &str) -> Refusal {
    refusal("not_found", "card_not_found", format!("card {id} not found"))
}

/// Siblings ordered by position, then id (equal positions from concurrent writers
/// still give one order everywhere).
fn sorted<'a, T>(items: &'a [T], key: impl Fn(&'a T) -> (&'a str, &'a str)) -> Vec<(&'a str, &'a str)> {
    let mut keys: Vec<(&str, &str)> = items.iter().map(key).collect();
    keys.sort();
    keys
}

/// The position right after sibling `after` (`None`: first, or last when `at_end`),
/// among `siblings` (the item being placed left out). `missing` builds the refusal
/// for an unknown `after`.
fn place(
    siblings: Vec<(&str, &str)>,
    after: Option<&str>,
    at_end: bool,
    missing: impl Fn(&str) -> Refusal,
) -> Result<String, Refusal> {
    match after {
        Some(after) => {
            let index = siblings.iter().position(|(_, id)| *id == after).ok_or_else(|| missing(after))?;
            let next = siblings.get(index + 1).map(|(position, _)| *position);
            Ok(key_between(Some(siblings[index].0), next))
        }
        None if at_end => Ok(key_between(siblings.last().map(|(position, _)| *position), None)),
        None => Ok(key_between(None, siblings.first().map(|(position, _)| *position))),
    }
}

/// Where a column goes: after `after`, or last when creating / first when reordering.
pub fn column_position(columns: &[ColumnView], after: Option<&str>, creating: bool) -> Result<String, Refusal> {
    place(sorted(columns, |c| (c.position, c.id)), after, creating, column_not_found)
}

/// Where a card goes in a column: after `after`, or last when creating / first when moving.
pub fn card_position(cards: &[CardView], after: Option<&str>, creating: bool) -> Result<String, Refusal> {
    place(sorted(cards, |c| (c.position, c.id)), after, creating, card_not_found)
}

/// Refuses a card entering a column that is at its WIP limit.
pub fn check_room(column: &ColumnView) -> Result<(), Refusal> {
    match column.wip_limit {
        Some(limit) if column.cards >= limit as usize => {
            Err(refusal("conflict", "column_full", format!("column {} is at its WIP limit of {limit}", column.id)))
        }
        _ => Ok(()),
    }
}

/// Refuses deleting a column that still has cards, unless forced.
pub fn check_deletable(column: &ColumnView, force: bool) -> Result<(), Refusal> {
    if column.cards > 0 && !force {
        return Err(refusal(
            "conflict",
            "column_not_empty",
            format!("column {} has {} cards: delete with \"force\": true to delete them too", column.id, column.cards),
        ));
    }
    Ok(())
}

/// A stored column as the retry rules see it; each adapter builds one from its own
/// row, so both decide alike.
pub struct ColumnState<'a> {
    pub board: &'a str,
    pub name: &'a str,
    pub wip_limit: Option<u32>,
    pub deleted: bool,
    pub created_by: &'a str,
    /// The live column right before it on the board ([`column_before`]).
    pub before: Option<&'a str>,
}

/// A stored card as the retry rules see it.
pub struct CardState<'a> {
    pub board: &'a str,
    /// Its column's id.
    pub column: &'a str,
    pub title: &'a str,
    pub description: &'a str,
    pub assignees: &'a [String],
    pub labels: &'a [String],
    pub deleted: bool,
    pub created_by: &'a str,
    /// The live card right before it in its column ([`card_before`]).
    pub before: Option<&'a str>,
}

/// The column or card a command names, as stored.
pub enum ItemState<'a> {
    Column(ColumnState<'a>),
    Card(CardState<'a>),
}

/// The sibling right before `id` among `siblings` as (position, id), in sibling
/// order (as [`sorted`] orders them); `None` when it is first or not among them.
fn sibling_before<'a>(mut siblings: Vec<(&'a str, &'a str)>, id: &str) -> Option<&'a str> {
    siblings.sort();
    let index = siblings.iter().position(|(_, sibling)| *sibling == id)?;
    index.checked_sub(1).map(|before| siblings[before].1)
}

/// The column right before column `id` among the board's live `columns` (it among
/// them); `None` when it is first.
pub fn column_before<'a>(columns: &[ColumnView<'a>], id: &str) -> Option<&'a str> {
    sibling_before(columns.iter().map(|c| (c.position, c.id)).collect(), id)
}

/// The card right before card `id` among its column's live `cards` (it among them);
/// `None` when it is first.
pub fn card_before<'a>(cards: &[CardView<'a>], id: &str) -> Option<&'a str> {
    sibling_before(cards.iter().map(|c| (c.position, c.id)).collect(), id)
}

/// Whether a create by `user` on `board` is the create that made `existing`: a retry,
/// answered with the item as it is. Any other create with its id is an
/// [`id_conflict`]: other values, another creator or board, another kind of item, or
/// an item deleted since. (`after` names a neighbour, not something the item holds,
/// so it is not compared.)
pub fn is_same_create(command: &KanbanCommand, existing: &ItemState, board: &str, user: &str) -> bool {
    match (command, existing) {
        (KanbanCommand::CreateColumn { name, wip_limit, .. }, ItemState::Column(column)) => {
            !column.deleted
                && column.board == board
                && column.created_by == user
                && column.name == name
                && column.wip_limit == *wip_limit
        }
        (KanbanCommand::CreateCard { column, title, description, assignees, labels, .. }, ItemState::Card(card)) => {
            !card.deleted
                && card.board == board
                && card.created_by == user
                && card.column == column.to_string()
                && card.title == title
                && card.description == description
                && card.assignees == assignees.as_slice()
                && card.labels == labels.as_slice()
        }
        _ => false,
    }
}

/// Whether `command` leaves `existing`, the live item it names (a deleted one for a
/// delete), as it is: a rename to its name, a WIP limit it has, an edit to the values
/// it has, a reorder or move to where it is, a delete of a deleted item. Such a
/// command writes nothing, raises no version and tells no subscriber; it answers with
/// the item as it is. (A create never changes an item: see [`is_same_create`].)
pub fn changes_nothing(command: &KanbanCommand, existing: &ItemState) -> bool {
    let placed_after =
        |before: Option<&str>, after: &Option<Uuid>| before.map(str::to_string) == after.map(|a| a.to_string());
    match (command, existing) {
        (KanbanCommand::RenameColumn { name, .. }, ItemState::Column(column)) => column.name == name,
        (KanbanCommand::SetWipLimit { wip_limit, .. }, ItemState::Column(column)) => column.wip_limit == *wip_limit,
        (KanbanCommand::ReorderColumn { after, .. }, ItemState::Column(column)) => placed_after(column.before, after),
        (KanbanCommand::DeleteColumn { .. }, ItemState::Column(column)) => column.deleted,
        (KanbanCommand::EditCard { title, description, assignees, labels, .. }, ItemState::Card(card)) => {
            title.as_deref().is_none_or(|title| title == card.title)
                && description.as_deref().is_none_or(|description| description == card.description)
                && assignees.as_deref().is_none_or(|assignees| assignees == card.assignees)
                && labels.as_deref().is_none_or(|labels| labels == card.labels)
        }
        (KanbanCommand::DeleteCard { .. }, ItemState::Card(card)) => card.deleted,
        (KanbanCommand::MoveCard { column, after, .. }, ItemState::Card(card)) => {
            card.column == column.to_string() && placed_after(card.before, after)
        }
        _ => false,
    }
}
