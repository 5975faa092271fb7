//! SpacetimeDB module for the whiteboard domain: the warm cache in front of PostgreSQL.
//!
//! - `element`: a board's elements; deleted ones stay as tombstones. Z-order uses the
//!   fractional keys of `domains/core/src/ordering.rs` and the rules of
//!   `domains/whiteboard/src/layers.rs`: the files the PostgreSQL adapter uses too.
//! - `sync_outbox` (private), `owner` (private), `cache_epoch`: the contract every
//!   boardsync module keeps (see `docs/adding-a-domain.md`).
//!
//! A stroke's points are bounded by the backend (`max_stroke_points`); this module
//! also refuses anything past a hard bound, so no row or outbox entry can approach
//! SpacetimeDB's 32 MiB message limit.

#[path = "../../../domains/whiteboard/src/layers.rs"]
mod layers;
#[path = "../../../domains/core/src/ordering.rs"]
mod ordering;

use spacetimedb::{reducer, table, Identity, ReducerContext, Table, Timestamp};

/// Hard bound on a stroke's coordinates (x and y each count): 1 M points.
const MAX_POINT_COORDINATES: usize = 2_000_000;

#[table(name = owner)]
pub struct Owner {
    #[primary_key]
    pub id: u8,
    pub identity: Identity,
}

#[table(name = cache_epoch, public)]
pub struct CacheEpoch {
    #[primary_key]
    pub id: u8,
    pub epoch: u64,
}

#[table(name = element, public)]
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
    pub version: u64,
}

#[table(name = sync_outbox)]
pub struct SyncOutbox {
    #[primary_key]
    #[auto_inc]
    pub seq: u64,
    #[index(btree)]
    pub entity: String,
    pub kind: String,
    pub payload: String,
    pub request_id: String,
    pub created_at: Timestamp,
}

fn err(kind: &str, code: &str, message: impl std::fmt::Display) -> String {
    format!("{kind}|{code}|{message}")
}

fn require_owner(ctx: &ReducerContext) -> Result<(), String> {
    match ctx.db.owner().id().find(0) {
        Some(owner) if owner.identity == ctx.sender => Ok(()),
        _ => Err(err("forbidden", "not_owner", "only the backend may call this reducer")),
    }
}

#[reducer(init)]
pub fn init(ctx: &ReducerContext) {
    ctx.db.owner().insert(Owner { id: 0, identity: ctx.sender });
    ctx.db.cache_epoch().insert(CacheEpoch { id: 0, epoch: ctx.timestamp.to_micros_since_unix_epoch() as u64 });
}

fn state_json(e: &Element) -> String {
    serde_json::json!({
        "id": e.id, "board": e.board, "kind": e.kind, "x": e.x, "y": e.y, "width": e.width, "height": e.height,
        "rotation": e.rotation, "style": e.style, "points": e.points, "z": e.z, "deleted": e.deleted,
        "created_at_micros": e.created_at.to_micros_since_unix_epoch(), "version": e.version,
    })
    .to_string()
}

fn outbox(ctx: &ReducerContext, kind: &str, request_id: &str, e: &Element) {
    ctx.db.sync_outbox().insert(SyncOutbox {
        seq: 0,
        entity: e.id.clone(),
        kind: kind.to_string(),
        payload: state_json(e),
        request_id: request_id.to_string(),
        created_at: ctx.timestamp,
    });
}

fn write(ctx: &ReducerContext, kind: &str, request_id: &str, mut e: Element) {
    e.version += 1;
    let e = if ctx.db.element().id().find(e.id.clone()).is_some() {
        ctx.db.element().id().update(e)
    } else {
        ctx.db.element().insert(e)
    };
    outbox(ctx, kind, request_id, &e);
}

fn live(ctx: &ReducerContext, board: &str, id: &str) -> Result<Element, String> {
    match ctx.db.element().id().find(id.to_string()) {
        Some(e) if !e.deleted && e.board == board => Ok(e),
        _ => Err(err("not_found", "element_not_found", format!("element {id} not found"))),
    }
}

/// `(z, id)` of the board's live elements.
fn board_layers(ctx: &ReducerContext, board: &str) -> Vec<(String, String)> {
    let board = board.to_string();
    ctx.db.element().board().filter(&board).filter(|e| !e.deleted).map(|e| (e.z, e.id)).collect()
}

fn as_refs(layers: &[(String, String)]) -> Vec<(&str, &str)> {
    layers.iter().map(|(z, id)| (z.as_str(), id.as_str())).collect()
}

fn check_points(points: &[f32]) -> Result<(), String> {
    if points.len() > MAX_POINT_COORDINATES {
        return Err(err("too_large", "stroke_too_large", "the stroke has too many points"));
    }
    Ok(())
}

#[reducer]
#[allow(clippy::too_many_arguments)]
pub fn add_element(
    ctx: &ReducerContext,
    request_id: String,
    board: String,
    id: String,
    kind: String,
    x: f64,
    y: f64,
    width: f64,
    height: f64,
    rotation: f64,
    style: String,
    points: Vec<f32>,
) -> Result<(), String> {
    require_owner(ctx)?;
    check_points(&points)?;
    if let Some(existing) = ctx.db.element().id().find(id.clone()) {
        if existing.kind == kind && !existing.deleted {
            outbox(ctx, "add_element", &request_id, &existing);
            return Ok(());
        }
        return Err(err("conflict", "id_conflict", format!("element id {id} is already used")));
    }
    let layers = board_layers(ctx, &board);
    let z = layers::top(&as_refs(&layers));
    let element = Element {
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
        deleted: false,
        created_at: ctx.timestamp,
        version: 0,
    };
    write(ctx, "add_element", &request_id, element);
    Ok(())
}

#[reducer]
#[allow(clippy::too_many_arguments)]
pub fn update_element(
    ctx: &ReducerContext,
    request_id: String,
    board: String,
    id: String,
    x: Option<f64>,
    y: Option<f64>,
    width: Option<f64>,
    height: Option<f64>,
    rotation: Option<f64>,
    style: Option<String>,
    points: Option<Vec<f32>>,
) -> Result<(), String> {
    require_owner(ctx)?;
    if let Some(points) = &points {
        check_points(points)?;
    }
    let mut e = live(ctx, &board, &id)?;
    e.x = x.unwrap_or(e.x);
    e.y = y.unwrap_or(e.y);
    e.width = width.unwrap_or(e.width);
    e.height = height.unwrap_or(e.height);
    e.rotation = rotation.unwrap_or(e.rotation);
    e.style = style.unwrap_or(e.style);
    e.points = points.unwrap_or(e.points);
    write(ctx, "update_element", &request_id, e);
    Ok(())
}

#[reducer]
pub fn move_elements(
    ctx: &ReducerContext,
    request_id: String,
    board: String,
    ids: Vec<String>,
    dx: f64,
    dy: f64,
) -> Result<(), String> {
    require_owner(ctx)?;
    // All or nothing: check every element before moving any.
    let mut elements = Vec::new();
    for id in &ids {
        if !elements.iter().any(|e: &Element| &e.id == id) {
            elements.push(live(ctx, &board, id)?);
        }
    }
    for mut e in elements {
        e.x += dx;
        e.y += dy;
        write(ctx, "move_elements", &request_id, e);
    }
    Ok(())
}

#[reducer]
pub fn delete_element(ctx: &ReducerContext, request_id: String, board: String, id: String) -> Result<(), String> {
    require_owner(ctx)?;
    let mut e = live(ctx, &board, &id)?;
    e.deleted = true;
    write(ctx, "delete_element", &request_id, e);
    Ok(())
}

#[reducer]
pub fn bring_forward(ctx: &ReducerContext, request_id: String, board: String, id: String) -> Result<(), String> {
    require_owner(ctx)?;
    let mut e = live(ctx, &board, &id)?;
    if let Some(z) = layers::forward(&as_refs(&board_layers(ctx, &board)), &id) {
        e.z = z;
    }
    write(ctx, "bring_forward", &request_id, e);
    Ok(())
}

#[reducer]
pub fn send_backward(ctx: &ReducerContext, request_id: String, board: String, id: String) -> Result<(), String> {
    require_owner(ctx)?;
    let mut e = live(ctx, &board, &id)?;
    if let Some(z) = layers::backward(&as_refs(&board_layers(ctx, &board)), &id) {
        e.z = z;
    }
    write(ctx, "send_backward", &request_id, e);
    Ok(())
}

/// Warm-up: never touches a row with a pending outbox entry or a newer cached version.
#[reducer]
pub fn warm_elements(ctx: &ReducerContext, request_id: String, rows: Vec<Element>) -> Result<(), String> {
    let _ = request_id;
    require_owner(ctx)?;
    for row in rows {
        if ctx.db.sync_outbox().entity().filter(&row.id).next().is_some() {
            continue;
        }
        match ctx.db.element().id().find(row.id.clone()) {
            Some(cached) if cached.version > row.version => {}
            Some(_) => {
                ctx.db.element().id().update(row);
            }
            None => {
                ctx.db.element().insert(row);
            }
        }
    }
    Ok(())
}

/// The barrier after a warm-up batch (see `modules/chat`).
#[reducer]
pub fn warm_done(ctx: &ReducerContext, request_id: String) -> Result<(), String> {
    let _ = request_id;
    require_owner(ctx)
}

#[reducer]
pub fn ack_outbox(ctx: &ReducerContext, request_id: String, seqs: Vec<u64>) -> Result<(), String> {
    let _ = request_id;
    require_owner(ctx)?;
    for seq in seqs {
        ctx.db.sync_outbox().seq().delete(seq);
    }
    Ok(())
}
