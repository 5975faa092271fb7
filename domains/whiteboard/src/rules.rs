//! The whiteboard's commands, settings and data-free rules, written once: the backend
//! uses this module and `modules/whiteboard` includes this file (`#[path]`), so both
//! adapters parse the same commands and refuse the same geometry, styles and strokes.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::refusal::{check_text_chars, Refusal};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
// For the API document; the wasm module that includes this file builds without it.
#[cfg_attr(not(target_family = "wasm"), derive(schemars::JsonSchema))]
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
        /// How clients draw it: a JSON object as text (`{"stroke":"#333"}`), opaque
        /// to the server; `{}` when absent.
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
        /// A JSON object as text, replacing the element's style.
        #[serde(default)]
        style: Option<String>,
        #[serde(default)]
        points: Option<Vec<f32>>,
        /// Locks the element (only its creator and the board's owners change a
        /// locked element) or unlocks it; only they may do either.
        #[serde(default)]
        locked: Option<bool>,
    },
    /// Puts many elements where given, in one write, all or nothing. Positions are
    /// absolute, so a retried move (after a timeout whose write went through) puts
    /// them in the same place again instead of moving them twice.
    Move {
        to: Vec<Position>,
    },
    Delete {
        id: Uuid,
    },
    /// Puts an element directly above element `above` in the z-order (at the back
    /// when absent). Absolute too: a retry leaves the same order.
    Reorder {
        id: Uuid,
        #[serde(default)]
        above: Option<Uuid>,
    },
}

/// Where one element of a move goes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
// For the API document; the wasm module that includes this file builds without it.
#[cfg_attr(not(target_family = "wasm"), derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Position {
    pub id: Uuid,
    pub x: f64,
    pub y: f64,
}

fn empty_style() -> String {
    "{}".to_string()
}

/// `[domains.whiteboard]`, less the framework's keys.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    /// Live elements one board holds.
    pub max_elements_per_board: u32,
}

/// Refuses a new element on a board that holds `live` elements already.
pub fn check_room_for_element(live: usize, settings: &WhiteboardSettings) -> Result<(), Refusal> {
    if live < settings.max_elements_per_board as usize {
        return Ok(());
    }
    let message = format!("a board holds at most {} elements", settings.max_elements_per_board);
    Err(Refusal::new("invalid", "too_many_elements", message))
}

fn finite(values: &[Option<f64>]) -> Result<(), Refusal> {
    if values.iter().flatten().all(|v| v.is_finite()) {
        Ok(())
    } else {
        Err(Refusal::new("invalid", "invalid_geometry", "coordinates must be finite numbers"))
    }
}

fn check_points(points: &[f32], settings: &WhiteboardSettings) -> Result<(), Refusal> {
    if !points.chunks_exact(2).remainder().is_empty() || points.iter().any(|p| !p.is_finite()) {
        return Err(Refusal::new("invalid", "invalid_points", "points are finite x, y pairs"));
    }
    if points.len() / 2 > settings.max_stroke_points as usize {
        return Err(Refusal::new(
            "invalid",
            "stroke_too_large",
            format!("a stroke may have at most {} points", settings.max_stroke_points),
        ));
    }
    Ok(())
}

fn check_style(style: &str, settings: &WhiteboardSettings) -> Result<(), Refusal> {
    check_text_chars("the style", style)?;
    if style.len() > settings.max_style_bytes as usize {
        return Err(Refusal::new(
            "invalid",
            "style_too_large",
            format!("a style may have at most {} bytes", settings.max_style_bytes),
        ));
    }
    // Opaque to the server, but one shape for every client to parse.
    if serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(style).is_err() {
        return Err(Refusal::new(
            "invalid",
            "invalid_style",
            r##"the style must be a JSON object as text, such as {"stroke":"#333","fill":"none"}"##,
        ));
    }
    Ok(())
}

/// Refuses kinds, geometry, styles, strokes and moves past the configured limits.
pub fn check(command: &WhiteboardCommand, s: &WhiteboardSettings) -> Result<(), Refusal> {
    match command {
        WhiteboardCommand::Add { kind, x, y, width, height, rotation, style, points, .. } => {
            if !s.kinds.contains(kind) {
                return Err(Refusal::new("invalid", "invalid_kind", format!("kind must be one of {:?}", s.kinds)));
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
        WhiteboardCommand::Move { to } => {
            to.iter().try_for_each(|p| finite(&[Some(p.x), Some(p.y)]))?;
            if to.is_empty() {
                return Err(Refusal::new("invalid", "invalid_move", "name at least one element to move"));
            }
            if to.len() > s.max_move_elements as usize {
                return Err(Refusal::new(
                    "invalid",
                    "move_too_large",
                    format!("one move may carry at most {} elements", s.max_move_elements),
                ));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Whether `user` may change an element created by `created_by`: anyone may change an
/// unlocked one; a locked one, and the lock itself, only its creator and the board's
/// owners.
pub fn check_may_change(
    created_by: &str,
    locked: bool,
    user: &str,
    owns_board: bool,
    locking: bool,
) -> Result<(), Refusal> {
    if owns_board || created_by == user || (!locked && !locking) {
        return Ok(());
    }
    let message = if locking {
        "only the element's creator or the board's owners lock or unlock it"
    } else {
        "the element is locked by its creator"
    };
    Err(Refusal::new("forbidden", "element_locked", message))
}

pub fn element_not_found(id: &str) -> Refusal {
    Refusal::new("not_found", "element_not_found", format!("element {id} not found"))
}

pub fn id_conflict(id: &str) -> Refusal {
    Refusal::new("conflict", "id_conflict", format!("element id {id} is already used"))
}

/// A stored element as the retry rules see it; each adapter builds one from its own
/// row, so both decide alike.
pub struct ElementState<'a> {
    pub board: &'a str,
    pub kind: &'a str,
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
    pub rotation: f64,
    pub style: &'a str,
    pub points: &'a [f32],
    pub deleted: bool,
    pub created_by: &'a str,
    pub locked: bool,
}

/// Whether an `add` by `user` on `board` is the add that created `existing`: a retry,
/// answered with the element as it is. Any other add with its id is an
/// [`id_conflict`]: other values, another creator or board, or an element deleted
/// since.
pub fn is_same_add(command: &WhiteboardCommand, existing: &ElementState, board: &str, user: &str) -> bool {
    let WhiteboardCommand::Add { kind, x, y, width, height, rotation, style, points, .. } = command else {
        return false;
    };
    !existing.deleted
        && existing.board == board
        && existing.created_by == user
        && existing.kind == kind
        && (existing.x, existing.y, existing.width, existing.height, existing.rotation)
            == (*x, *y, *width, *height, *rotation)
        && existing.style == style
        && existing.points == points.as_slice()
}

/// Whether `command` leaves every element it names as it is: an update to the values
/// an element has, a move of elements to where they are, a reorder to where it is, a
/// delete of a deleted element. Such a command writes nothing, raises no version and
/// tells no subscriber; it answers with the elements as they are. `element` finds a
/// named element (deleted ones too) on the board; `layers` holds the board's live
/// elements as (z, id). (An add never changes an element: see [`is_same_add`].)
pub fn changes_nothing<'a>(
    command: &WhiteboardCommand,
    element: impl Fn(&Uuid) -> Option<ElementState<'a>>,
    layers: &[(&str, &str)],
) -> bool {
    let keeps = |value: &Option<f64>, current: f64| value.is_none_or(|value| value == current);
    match command {
        WhiteboardCommand::Add { .. } => false,
        WhiteboardCommand::Update { id, x, y, width, height, rotation, style, points, locked } => element(id)
            .is_some_and(|e| {
                keeps(x, e.x)
                    && keeps(y, e.y)
                    && keeps(width, e.width)
                    && keeps(height, e.height)
                    && keeps(rotation, e.rotation)
                    && style.as_deref().is_none_or(|style| style == e.style)
                    && points.as_deref().is_none_or(|points| points == e.points)
                    && locked.is_none_or(|locked| locked == e.locked)
            }),
        // A move puts each element where its first position says (later ones for the
        // same element are ignored).
        WhiteboardCommand::Move { to } => to.iter().enumerate().all(|(index, position)| {
            to[..index].iter().any(|earlier| earlier.id == position.id)
                || element(&position.id).is_some_and(|e| (e.x, e.y) == (position.x, position.y))
        }),
        WhiteboardCommand::Delete { id } => element(id).is_some_and(|e| e.deleted),
        WhiteboardCommand::Reorder { id, above } => {
            let id = id.to_string();
            layers.iter().any(|(_, layer)| *layer == id)
                && crate::layers::below(layers, &id) == above.map(|above| above.to_string()).as_deref()
        }
    }
}
