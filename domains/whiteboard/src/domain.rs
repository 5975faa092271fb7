//! Whiteboards: elements (shapes, text, freehand strokes) with geometry, style and
//! z-order. Concurrent updates to one element: the last write wins, and every write
//! raises the element's version, so every client and PostgreSQL end on the same state.

use boardsync_core::{Domain, DomainError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The whiteboard domain.
pub struct Whiteboard;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// Free-form style (JSON text), bounded by `max_style_bytes`.
    pub style: String,
    /// A freehand stroke's points as x, y pairs.
    pub points: Vec<f32>,
    /// Fractional z-order key, back to front.
    pub z: String,
    pub deleted: bool,
    pub created_at: DateTime<Utc>,
    pub version: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum WhiteboardCommand {
    Add {
        id: Uuid,
        kind: String,
        x: f64,
        y: f64,
        #[serde(default)]
        width: f64,
        #[serde(default)]
        height: f64,
        #[serde(default)]
        rotation: f64,
        #[serde(default = "empty_style")]
        style: String,
        #[serde(default)]
        points: Vec<f32>,
    },
    /// Changes the geometry and style fields given.
    Update {
        id: Uuid,
        #[serde(default)]
        x: Option<f64>,
        #[serde(default)]
        y: Option<f64>,
        #[serde(default)]
        width: Option<f64>,
        #[serde(default)]
        height: Option<f64>,
        #[serde(default)]
        rotation: Option<f64>,
        #[serde(default)]
        style: Option<String>,
        #[serde(default)]
        points: Option<Vec<f32>>,
    },
    /// Moves many elements by the same offset, in one write.
    Move {
        ids: Vec<Uuid>,
        dx: f64,
        dy: f64,
    },
    Delete {
        id: Uuid,
    },
    BringForward {
        id: Uuid,
    },
    SendBackward {
        id: Uuid,
    },
}

fn empty_style() -> String {
    "{}".to_string()
}

impl WhiteboardCommand {
    /// The elements the command writes.
    pub fn ids(&self) -> Vec<Uuid> {
        match self {
            Self::Move { ids, .. } => ids.clone(),
            Self::Add { id, .. }
            | Self::Update { id, .. }
            | Self::Delete { id }
            | Self::BringForward { id }
            | Self::SendBackward { id } => vec![*id],
        }
    }
}

/// What changed: the full new state of each element written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

/// `[domains.whiteboard]`, less the framework's keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhiteboardSettings {
    pub kinds: Vec<String>,
    /// Points of one freehand stroke (each an x, y pair); more is refused with 413.
    /// Keep strokes well under SpacetimeDB's 32 MiB message limit (a point is 8 bytes
    /// in the cache and about 20 in the outbox's JSON).
    pub max_stroke_points: u32,
    pub max_style_bytes: u32,
    /// Elements one `move` may carry.
    pub max_move_elements: u32,
}

/// A board's own settings: none yet, and unknown keys are refused.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoardConfig {}

fn finite(values: &[Option<f64>]) -> Result<(), DomainError> {
    if values.iter().flatten().all(|v| v.is_finite()) {
        Ok(())
    } else {
        Err(DomainError::invalid("invalid_geometry", "coordinates must be finite numbers"))
    }
}

fn check_points(points: &[f32], settings: &WhiteboardSettings) -> Result<(), DomainError> {
    if points.len() % 2 != 0 || points.iter().any(|p| !p.is_finite()) {
        return Err(DomainError::invalid("invalid_points", "points are finite x, y pairs"));
    }
    if points.len() / 2 > settings.max_stroke_points as usize {
        return Err(DomainError::too_large(
            "stroke_too_large",
            format!("a stroke may have at most {} points", settings.max_stroke_points),
        ));
    }
    Ok(())
}

fn check_style(style: &str, settings: &WhiteboardSettings) -> Result<(), DomainError> {
    if style.len() > settings.max_style_bytes as usize {
        return Err(DomainError::too_large(
            "style_too_large",
            format!("a style may have at most {} bytes", settings.max_style_bytes),
        ));
    }
    Ok(())
}

impl Domain for Whiteboard {
    const NAME: &'static str = "whiteboard";
    const SCOPE: &'static str = "board";
    type Item = Element;
    type Command = WhiteboardCommand;
    type Event = WhiteboardEvent;
    type Settings = WhiteboardSettings;
    type ScopeConfig = BoardConfig;

    fn validate(command: &WhiteboardCommand, s: &WhiteboardSettings) -> Result<(), DomainError> {
        match command {
            WhiteboardCommand::Add { kind, x, y, width, height, rotation, style, points, .. } => {
                if !s.kinds.contains(kind) {
                    return Err(DomainError::invalid("invalid_kind", format!("kind must be one of {:?}", s.kinds)));
                }
                finite(&[Some(*x), Some(*y), Some(*width), Some(*height), Some(*rotation)])?;
                check_style(style, s)?;
                check_points(points, s)
            }
            WhiteboardCommand::Update { x, y, width, height, rotation, style, points, .. } => {
                finite(&[*x, *y, *width, *height, *rotation])?;
                style.as_deref().map_or(Ok(()), |style| check_style(style, s))?;
                points.as_deref().map_or(Ok(()), |points| check_points(points, s))
            }
            WhiteboardCommand::Move { ids, dx, dy } => {
                finite(&[Some(*dx), Some(*dy)])?;
                if ids.is_empty() {
                    return Err(DomainError::invalid("invalid_move", "name at least one element to move"));
                }
                if ids.len() > s.max_move_elements as usize {
                    return Err(DomainError::too_large(
                        "move_too_large",
                        format!("one move may carry at most {} elements", s.max_move_elements),
                    ));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn cursor(element: &Element) -> String {
        element.id.to_string()
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
                None => return Ok(Vec::new()),
            }
        }
    };
    Ok(elements.into_iter().skip(start).take(limit as usize).collect())
}

pub fn element_not_found(id: impl std::fmt::Display) -> DomainError {
    DomainError::not_found("element_not_found", format!("element {id} not found"))
}
