//! Whiteboards: elements (shapes, text, freehand strokes) with geometry, style and
//! z-order. Concurrent updates to one element: the last write wins, and every write
//! raises the element's version, so every client and PostgreSQL end on the same state.

use crate::rules::check;
pub use crate::rules::{WhiteboardCommand, WhiteboardSettings};
use boardsync_core::{Domain, DomainError};
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The whiteboard domain.
pub struct Whiteboard;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Element {
    pub id: Uuid,
    pub board: String,
    /// One of `[domains.whiteboard] kinds` (rect, ellipse, line, arrow, text, stroke, ...).
    pub kind: String,
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
    pub rotation: f64,
    /// How clients draw it (colours, stroke width, font): a JSON object as text,
    /// opaque to the server. Commands are checked to send an object within
    /// `max_style_bytes`; a row written by SQL (or before the check) may hold other
    /// text, which clients should treat as `{}`.
    pub style: String,
    /// A freehand stroke's points as x, y pairs.
    pub points: Vec<f32>,
    /// Fractional z-order key, back to front.
    pub z: String,
    pub deleted: bool,
    pub created_at: DateTime<Utc>,
    /// Who created it (it and the board's owners may lock it), and who changed it last.
    pub created_by: String,
    pub updated_by: String,
    /// Locked: only its creator and the board's owners change it.
    pub locked: bool,
    pub version: u64,
}

/// What changed: the full new state of each element written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WhiteboardEvent {
    ElementsChanged { elements: Vec<Element> },
}

impl WhiteboardEvent {
    pub fn elements(&self) -> &[Element] {
        let Self::ElementsChanged { elements } = self;
        elements
    }
}

/// A board's own settings: none yet, and unknown keys are refused.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "WhiteboardBoardConfig")]
pub struct BoardConfig {}

impl Domain for Whiteboard {
    const NAME: &'static str = "whiteboard";
    const SCOPE: &'static str = "board";
    const SNAPSHOT: &'static str = "Live elements back to front (by z, then id). Deleted elements are left out; live events carry them with `deleted` set. Pages follow the current order: an item moved between two pages may be skipped or repeated (live events carry every change), and a page after a deleted item is 409 `cursor_gone`.";
    type Item = Element;
    type Command = WhiteboardCommand;
    type Event = WhiteboardEvent;
    type Settings = WhiteboardSettings;
    type ScopeConfig = BoardConfig;

    fn validate(command: &WhiteboardCommand, settings: &WhiteboardSettings) -> Result<(), DomainError> {
        check(command, settings).map_err(DomainError::from)
    }

    fn cursor(element: &Element) -> String {
        element.id.to_string()
    }

    /// A stroke is its points (at most about 16 bytes each as JSON).
    fn weight(element: &Element) -> usize {
        300 + element.style.len() + element.board.len() + element.points.len() * 16
    }
}

/// A board's live elements back to front (by z, then id).
pub fn layered(mut elements: Vec<Element>) -> Vec<Element> {
    elements.retain(|e| !e.deleted);
    elements.sort_by(|a, b| (&a.z, a.id).cmp(&(&b.z, b.id)));
    elements
}

/// At most `limit` elements following the element `before` (the previous page's cursor).
pub fn page(elements: Vec<Element>, before: Option<&str>, limit: u32) -> Result<Vec<Element>, DomainError> {
    let start = match before {
        None => 0,
        Some(cursor) => {
            let id = Uuid::parse_str(cursor).map_err(|_| {
                DomainError::bad_request("invalid_cursor", format!("before={cursor:?} is not an element id"))
            })?;
            match elements.iter().position(|e| e.id == id) {
                Some(index) => index + 1,
                // An empty page would read as the end of the board: say it is not.
                None => return Err(cursor_gone(cursor)),
            }
        }
    };
    Ok(elements.into_iter().skip(start).take(limit as usize).collect())
}

pub fn element_not_found(id: impl std::fmt::Display) -> DomainError {
    crate::rules::element_not_found(&id.to_string()).into()
}

/// The element a page was to continue after is no longer on the board.
fn cursor_gone(cursor: &str) -> DomainError {
    DomainError::conflict(
        "cursor_gone",
        format!("element {cursor} was deleted since the last page; fetch the board again from the start"),
    )
}
