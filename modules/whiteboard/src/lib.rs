//! SpacetimeDB module for the whiteboard domain: the warm cache in front of PostgreSQL.
//! The contract with the backend (owner, epoch, settings, outbox, warm-up, acks) is
//! `modules/contract.rs`; commands and limits are `domains/whiteboard/src/rules.rs` and
//! z-order `layers.rs`: the files the PostgreSQL adapter uses too.
//!
//! `element` holds a board's elements; deleted ones stay as tombstones. Strokes are
//! bounded by the configured `max_stroke_points`, so no row or outbox entry can
//! approach SpacetimeDB's 32 MiB message limit.

#[macro_use]
#[path = "../../contract.rs"]
mod contract;
#[path = "../../../domains/whiteboard/src/layers.rs"]
mod layers;
#[path = "../../../domains/core/src/ordering.rs"]
mod ordering;
#[path = "../../../domains/whiteboard/src/rules.rs"]
mod rules;

use contract::{refusal, Rules, Write};
use rules::{
    changes_nothing, check, check_may_change, check_room_for_element, element_not_found, id_conflict, is_same_add,
    ElementState, WhiteboardCommand, WhiteboardSettings,
};
use spacetimedb::{table, ReducerContext, Table, Timestamp};

#[table(name = element)]
#[derive(Clone)]
pub struct Element {
    #[primary_key]
    pub id: String,
    #[index(btree)]
    pub board: String,
    pub kind: String,
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
    pub rotation: f64,
    pub style: String,
    pub points: Vec<f32>,
    pub z: String,
    pub deleted: bool,
    pub created_at: Timestamp,
    pub created_by: String,
    pub updated_by: String,
    pub locked: bool,
    pub version: u64,
}

pub type Row = Element;

pub struct Module;

/// An element of the board, deleted or not.
fn on_board(w: &Write<'_>, id: &str) -> Option<Element> {
    w.ctx.db.element().id().find(id.to_string()).filter(|e| e.board == w.scope)
}

/// A live element of the board that the writer may change (`locking`: its lock).
fn changeable(w: &Write<'_>, id: &str, locking: bool) -> Result<Element, refusal::Refusal> {
    match on_board(w, id) {
        Some(e) if !e.deleted => {
            check_may_change(&e.created_by, e.locked, w.user, w.owns_scope, locking)?;
            Ok(e)
        }
        _ => Err(element_not_found(id)),
    }
}

/// An element as the shared retry rules see it.
fn element_state(e: &Element) -> ElementState<'_> {
    ElementState {
        board: &e.board,
        kind: &e.kind,
        x: e.x,
        y: e.y,
        width: e.width,
        height: e.height,
        rotation: e.rotation,
        style: &e.style,
        points: &e.points,
        deleted: e.deleted,
        created_by: &e.created_by,
        locked: e.locked,
    }
}

/// Whether `command` leaves the elements it names as they are, by the shared rules.
fn unchanged(w: &Write<'_>, command: &WhiteboardCommand) -> bool {
    let named: Vec<Element> = match command {
        WhiteboardCommand::Move { to } => to.iter().filter_map(|p| on_board(w, &p.id.to_string())).collect(),
        WhiteboardCommand::Add { id, .. }
        | WhiteboardCommand::Update { id, .. }
        | WhiteboardCommand::Delete { id }
        | WhiteboardCommand::Reorder { id, .. } => on_board(w, &id.to_string()).into_iter().collect(),
    };
    let layers = board_layers(w);
    let element = |id: &uuid::Uuid| named.iter().find(|e| e.id == id.to_string()).map(element_state);
    changes_nothing(command, element, &as_refs(&layers))
}

fn live(w: &Write<'_>, id: &str) -> Result<Element, refusal::Refusal> {
    changeable(w, id, false)
}

/// `(z, id)` of the board's live elements.
fn board_layers(w: &Write<'_>) -> Vec<(String, String)> {
    w.ctx.db.element().board().filter(w.scope).filter(|e| !e.deleted).map(|e| (e.z, e.id)).collect()
}

fn as_refs(layers: &[(String, String)]) -> Vec<(&str, &str)> {
    layers.iter().map(|(z, id)| (z.as_str(), id.as_str())).collect()
}

/// Whoever writes a state changed it last.
fn write(w: &Write<'_>, mut e: Element) {
    e.version += 1;
    e.updated_by = w.user.to_string();
    w.record(e);
}

impl Rules for Module {
    type Command = WhiteboardCommand;
    type Settings = WhiteboardSettings;

    fn apply(w: &Write<'_>, settings: &WhiteboardSettings, command: WhiteboardCommand) -> Result<(), String> {
        check(&command, settings)?;
        match command.clone() {
            WhiteboardCommand::Add { id, kind, x, y, width, height, rotation, style, points } => {
                let id = id.to_string();
                if let Some(existing) = w.ctx.db.element().id().find(&id) {
                    // A retried add changes nothing; any other reuse of the id is a conflict.
                    if is_same_add(&command, &element_state(&existing), w.scope, w.user) {
                        return Ok(());
                    }
                    return Err(id_conflict(&id).into());
                }
                let layers = board_layers(w);
                check_room_for_element(layers.len(), settings)?;
                let z = layers::top(&as_refs(&layers));
                let board = w.scope.to_string();
                let (deleted, created_at, version) = (false, w.ctx.timestamp, 0);
                let e = Element {
                    id,
                    board,
                    kind,
                    x,
                    y,
                    width,
                    height,
                    rotation,
                    style,
                    points,
                    z,
                    deleted,
                    created_at,
                    created_by: w.user.to_string(),
                    updated_by: w.user.to_string(),
                    locked: false,
                    version,
                };
                write(w, e);
            }
            WhiteboardCommand::Update { id, x, y, width, height, rotation, style, points, locked } => {
                let mut e = changeable(w, &id.to_string(), locked.is_some())?;
                if unchanged(w, &command) {
                    return Ok(());
                }
                e.locked = locked.unwrap_or(e.locked);
                e.x = x.unwrap_or(e.x);
                e.y = y.unwrap_or(e.y);
                e.width = width.unwrap_or(e.width);
                e.height = height.unwrap_or(e.height);
                e.rotation = rotation.unwrap_or(e.rotation);
                e.style = style.unwrap_or(e.style);
                e.points = points.unwrap_or(e.points);
                write(w, e);
            }
            WhiteboardCommand::Move { to } => {
                // All or nothing: check every element before moving any.
                let mut moved: Vec<Element> = Vec::new();
                for position in &to {
                    let id = position.id.to_string();
                    if !moved.iter().any(|e| e.id == id) {
                        let mut e = live(w, &id)?;
                        (e.x, e.y) = (position.x, position.y);
                        moved.push(e);
                    }
                }
                if unchanged(w, &command) {
                    return Ok(());
                }
                for e in moved {
                    write(w, e);
                }
            }
            WhiteboardCommand::Delete { id } => {
                // A deleted element is found too: deleting it again changes nothing.
                let id = id.to_string();
                let mut e = on_board(w, &id).ok_or_else(|| element_not_found(&id))?;
                check_may_change(&e.created_by, e.locked, w.user, w.owns_scope, false)?;
                if unchanged(w, &command) {
                    return Ok(());
                }
                e.deleted = true;
                write(w, e);
            }
            WhiteboardCommand::Reorder { id, above } => {
                let id = id.to_string();
                let mut e = live(w, &id)?;
                if unchanged(w, &command) {
                    return Ok(());
                }
                let (layers, above) = (board_layers(w), above.map(|above| above.to_string()));
                e.z = layers::above(&as_refs(&layers), &id, above.as_deref()).map_err(element_not_found)?;
                write(w, e);
            }
        }
        Ok(())
    }

    rows_in!(element, board);
}
