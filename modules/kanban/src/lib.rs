//! SpacetimeDB module for the Kanban domain: the warm cache in front of PostgreSQL.
//!
//! - `board_column`, `board_card`: a board's columns and cards; deleted ones stay as
//!   tombstones. Positions are fractional keys from `domains/core/src/ordering.rs`,
//!   and placement, WIP limits and deletion follow `domains/kanban/src/rules.rs`: the
//!   same files the PostgreSQL adapter uses, so both decide identically.
//! - `sync_outbox` (private), `owner` (private), `cache_epoch`: the contract every
//!   boardsync module keeps (see `docs/adding-a-domain.md`). Outbox entities are
//!   `column:<id>` and `card:<id>`.

#[path = "../../../domains/core/src/ordering.rs"]
mod ordering;
#[path = "../../../domains/kanban/src/rules.rs"]
mod rules;

use rules::{CardView, ColumnView, Refusal};
use spacetimedb::{reducer, table, Identity, ReducerContext, Table, Timestamp};

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

#[table(name = board_column, public)]
#[derive(Clone)]
pub struct BoardColumn {
    #[primary_key]
    pub id: String,
    #[index(btree)]
    pub board: String,
    pub name: String,
    pub position: String,
    pub wip_limit: Option<u32>,
    pub deleted: bool,
    pub created_at: Timestamp,
    pub version: u64,
}

#[table(name = board_card, public)]
#[derive(Clone)]
pub struct BoardCard {
    #[primary_key]
    pub id: String,
    #[index(btree)]
    pub board: String,
    pub column: String,
    pub title: String,
    pub description: String,
    pub assignees: Vec<String>,
    pub labels: Vec<String>,
    pub position: String,
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

fn refused(refusal: Refusal) -> String {
    err(refusal.kind, refusal.code, refusal.message)
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

fn micros(t: Timestamp) -> i64 {
    t.to_micros_since_unix_epoch()
}

fn column_json(c: &BoardColumn) -> String {
    serde_json::json!({
        "kind": "column", "id": c.id, "board": c.board, "name": c.name, "position": c.position,
        "wip_limit": c.wip_limit, "deleted": c.deleted, "created_at_micros": micros(c.created_at), "version": c.version,
    })
    .to_string()
}

fn card_json(c: &BoardCard) -> String {
    serde_json::json!({
        "kind": "card", "id": c.id, "board": c.board, "column": c.column, "title": c.title,
        "description": c.description, "assignees": c.assignees, "labels": c.labels, "position": c.position,
        "deleted": c.deleted, "created_at_micros": micros(c.created_at), "version": c.version,
    })
    .to_string()
}

fn outbox(ctx: &ReducerContext, entity: String, kind: &str, payload: String, request_id: &str) {
    ctx.db.sync_outbox().insert(SyncOutbox {
        seq: 0,
        entity,
        kind: kind.to_string(),
        payload,
        request_id: request_id.to_string(),
        created_at: ctx.timestamp,
    });
}

fn write_column(ctx: &ReducerContext, kind: &str, request_id: &str, mut c: BoardColumn) {
    c.version += 1;
    let c = if ctx.db.board_column().id().find(c.id.clone()).is_some() {
        ctx.db.board_column().id().update(c)
    } else {
        ctx.db.board_column().insert(c)
    };
    outbox(ctx, format!("column:{}", c.id), kind, column_json(&c), request_id);
}

fn write_card(ctx: &ReducerContext, kind: &str, request_id: &str, mut c: BoardCard) {
    c.version += 1;
    let c = if ctx.db.board_card().id().find(c.id.clone()).is_some() {
        ctx.db.board_card().id().update(c)
    } else {
        ctx.db.board_card().insert(c)
    };
    outbox(ctx, format!("card:{}", c.id), kind, card_json(&c), request_id);
}

struct Board {
    columns: Vec<BoardColumn>,
    cards: Vec<BoardCard>,
}

impl Board {
    fn load(ctx: &ReducerContext, board: &str) -> Self {
        let board = board.to_string();
        Self {
            columns: ctx.db.board_column().board().filter(&board).filter(|c| !c.deleted).collect(),
            cards: ctx.db.board_card().board().filter(&board).filter(|c| !c.deleted).collect(),
        }
    }

    fn column(&self, id: &str) -> Result<BoardColumn, String> {
        self.columns.iter().find(|c| c.id == id).cloned().ok_or_else(|| refused(rules::column_not_found(id)))
    }

    fn card(&self, id: &str) -> Result<BoardCard, String> {
        self.cards.iter().find(|c| c.id == id).cloned().ok_or_else(|| refused(rules::card_not_found(id)))
    }

    fn column_views(&self, except: Option<&str>) -> Vec<ColumnView<'_>> {
        self.columns
            .iter()
            .filter(|c| Some(c.id.as_str()) != except)
            .map(|c| ColumnView {
                id: &c.id,
                position: &c.position,
                wip_limit: c.wip_limit,
                cards: self.cards.iter().filter(|card| card.column == c.id).count(),
            })
            .collect()
    }

    fn card_views(&self, column: &str, except: Option<&str>) -> Vec<CardView<'_>> {
        self.cards
            .iter()
            .filter(|c| c.column == column && Some(c.id.as_str()) != except)
            .map(|c| CardView { id: &c.id, position: &c.position })
            .collect()
    }

    fn check_room(&self, column: &str) -> Result<(), String> {
        let views = self.column_views(None);
        let view = views.iter().find(|v| v.id == column).ok_or_else(|| refused(rules::column_not_found(column)))?;
        rules::check_room(view).map_err(refused)
    }
}

fn id_conflict(id: &str) -> String {
    err("conflict", "id_conflict", format!("id {id} is already used"))
}

#[reducer]
pub fn create_column(
    ctx: &ReducerContext,
    request_id: String,
    board: String,
    id: String,
    name: String,
    wip_limit: Option<u32>,
    after: Option<String>,
) -> Result<(), String> {
    require_owner(ctx)?;
    if let Some(existing) = ctx.db.board_column().id().find(id.clone()) {
        if existing.name == name && !existing.deleted && existing.board == board {
            outbox(ctx, format!("column:{id}"), "create_column", column_json(&existing), &request_id);
            return Ok(());
        }
        return Err(id_conflict(&id));
    }
    let state = Board::load(ctx, &board);
    let position = rules::column_position(&state.column_views(None), after.as_deref(), true).map_err(refused)?;
    let column =
        BoardColumn { id, board, name, position, wip_limit, deleted: false, created_at: ctx.timestamp, version: 0 };
    write_column(ctx, "create_column", &request_id, column);
    Ok(())
}

#[reducer]
pub fn rename_column(
    ctx: &ReducerContext,
    request_id: String,
    board: String,
    id: String,
    name: String,
) -> Result<(), String> {
    require_owner(ctx)?;
    let mut column = Board::load(ctx, &board).column(&id)?;
    column.name = name;
    write_column(ctx, "rename_column", &request_id, column);
    Ok(())
}

#[reducer]
pub fn set_wip_limit(
    ctx: &ReducerContext,
    request_id: String,
    board: String,
    id: String,
    wip_limit: Option<u32>,
) -> Result<(), String> {
    require_owner(ctx)?;
    let mut column = Board::load(ctx, &board).column(&id)?;
    column.wip_limit = wip_limit;
    write_column(ctx, "set_wip_limit", &request_id, column);
    Ok(())
}

#[reducer]
pub fn reorder_column(
    ctx: &ReducerContext,
    request_id: String,
    board: String,
    id: String,
    after: Option<String>,
) -> Result<(), String> {
    require_owner(ctx)?;
    let state = Board::load(ctx, &board);
    let mut column = state.column(&id)?;
    column.position =
        rules::column_position(&state.column_views(Some(&id)), after.as_deref(), false).map_err(refused)?;
    write_column(ctx, "reorder_column", &request_id, column);
    Ok(())
}

#[reducer]
pub fn delete_column(
    ctx: &ReducerContext,
    request_id: String,
    board: String,
    id: String,
    force: bool,
) -> Result<(), String> {
    require_owner(ctx)?;
    let state = Board::load(ctx, &board);
    let mut column = state.column(&id)?;
    let views = state.column_views(None);
    let view = views.iter().find(|v| v.id == id).expect("a live column has a view");
    rules::check_deletable(view, force).map_err(refused)?;
    for card in state.cards.iter().filter(|c| c.column == id) {
        let mut card = card.clone();
        card.deleted = true;
        write_card(ctx, "delete_column", &request_id, card);
    }
    column.deleted = true;
    write_column(ctx, "delete_column", &request_id, column);
    Ok(())
}

#[reducer]
#[allow(clippy::too_many_arguments)]
pub fn create_card(
    ctx: &ReducerContext,
    request_id: String,
    board: String,
    id: String,
    column: String,
    title: String,
    description: String,
    assignees: Vec<String>,
    labels: Vec<String>,
    after: Option<String>,
) -> Result<(), String> {
    require_owner(ctx)?;
    if let Some(existing) = ctx.db.board_card().id().find(id.clone()) {
        if existing.title == title && existing.column == column && !existing.deleted {
            outbox(ctx, format!("card:{id}"), "create_card", card_json(&existing), &request_id);
            return Ok(());
        }
        return Err(id_conflict(&id));
    }
    let state = Board::load(ctx, &board);
    state.column(&column)?;
    state.check_room(&column)?;
    let position = rules::card_position(&state.card_views(&column, None), after.as_deref(), true).map_err(refused)?;
    let card = BoardCard {
        id,
        board,
        column,
        title,
        description,
        assignees,
        labels,
        position,
        deleted: false,
        created_at: ctx.timestamp,
        version: 0,
    };
    write_card(ctx, "create_card", &request_id, card);
    Ok(())
}

#[reducer]
#[allow(clippy::too_many_arguments)]
pub fn edit_card(
    ctx: &ReducerContext,
    request_id: String,
    board: String,
    id: String,
    title: Option<String>,
    description: Option<String>,
    assignees: Option<Vec<String>>,
    labels: Option<Vec<String>>,
) -> Result<(), String> {
    require_owner(ctx)?;
    let mut card = Board::load(ctx, &board).card(&id)?;
    card.title = title.unwrap_or(card.title);
    card.description = description.unwrap_or(card.description);
    card.assignees = assignees.unwrap_or(card.assignees);
    card.labels = labels.unwrap_or(card.labels);
    write_card(ctx, "edit_card", &request_id, card);
    Ok(())
}

#[reducer]
pub fn delete_card(ctx: &ReducerContext, request_id: String, board: String, id: String) -> Result<(), String> {
    require_owner(ctx)?;
    let mut card = Board::load(ctx, &board).card(&id)?;
    card.deleted = true;
    write_card(ctx, "delete_card", &request_id, card);
    Ok(())
}

#[reducer]
pub fn move_card(
    ctx: &ReducerContext,
    request_id: String,
    board: String,
    id: String,
    column: String,
    after: Option<String>,
) -> Result<(), String> {
    require_owner(ctx)?;
    let state = Board::load(ctx, &board);
    let mut card = state.card(&id)?;
    state.column(&column)?;
    if card.column != column {
        state.check_room(&column)?;
    }
    card.position =
        rules::card_position(&state.card_views(&column, Some(&id)), after.as_deref(), false).map_err(refused)?;
    card.column = column;
    write_card(ctx, "move_card", &request_id, card);
    Ok(())
}

fn pending(ctx: &ReducerContext, entity: String) -> bool {
    ctx.db.sync_outbox().entity().filter(&entity).next().is_some()
}

/// Warm-up: never touches a row with a pending outbox entry or a newer cached version.
#[reducer]
pub fn warm_board(
    ctx: &ReducerContext,
    request_id: String,
    columns: Vec<BoardColumn>,
    cards: Vec<BoardCard>,
) -> Result<(), String> {
    let _ = request_id;
    require_owner(ctx)?;
    for row in columns {
        if pending(ctx, format!("column:{}", row.id)) {
            continue;
        }
        match ctx.db.board_column().id().find(row.id.clone()) {
            Some(cached) if cached.version > row.version => {}
            Some(_) => {
                ctx.db.board_column().id().update(row);
            }
            None => {
                ctx.db.board_column().insert(row);
            }
        }
    }
    for row in cards {
        if pending(ctx, format!("card:{}", row.id)) {
            continue;
        }
        match ctx.db.board_card().id().find(row.id.clone()) {
            Some(cached) if cached.version > row.version => {}
            Some(_) => {
                ctx.db.board_card().id().update(row);
            }
            None => {
                ctx.db.board_card().insert(row);
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
