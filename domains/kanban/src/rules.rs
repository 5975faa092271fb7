//! The Kanban rules that need the board's data, written once for both adapters: the
//! PostgreSQL adapter uses this module and `modules/kanban` includes this file
//! (`#[path]`), so the cache and PostgreSQL place and refuse identically. No
//! dependencies; ids and positions are strings.

use crate::ordering::key_between;

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

/// A refusal, as `(kind, code, message)` in the shape every boardsync error has.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    pub kind: &'static str,
    pub code: &'static str,
    pub message: String,
}

fn refusal(kind: &'static str, code: &'static str, message: String) -> Refusal {
    Refusal { kind, code, message }
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
