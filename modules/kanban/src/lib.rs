//! SpacetimeDB module for the Kanban domain: the warm cache in front of PostgreSQL. The
//! contract with the backend (owner, epoch, settings, outbox, warm-up, acks) is
//! `modules/contract.rs`; commands, limits, placement, WIP limits and deletion are
//! `domains/kanban/src/rules.rs`, the same file the PostgreSQL adapter uses, so both
//! decide identically.
//!
//! `board_column` and `board_card` hold a board's columns and cards; deleted ones stay
//! as tombstones. Positions are fractional keys (`domains/core/src/ordering.rs`).

#[path = "../../contract.rs"]
mod contract;
#[path = "../../../domains/core/src/ordering.rs"]
mod ordering;
#[path = "../../../domains/kanban/src/rules.rs"]
mod rules;

use contract::{refusal, Rules, Write};
use rules::{
    changes_nothing, check, id_conflict, is_same_create, CardState, CardView, ColumnState, ColumnView, ItemState,
    KanbanCommand, KanbanSettings, Refusal,
};
use spacetimedb::{table, ReducerContext, SpacetimeType, Table, Timestamp};

#[table(name = board_column)]
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
    pub created_by: String,
    pub updated_by: String,
    pub version: u64,
}

#[table(name = board_card)]
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
    pub created_by: String,
    pub updated_by: String,
    pub version: u64,
}

/// A column or a card: what warm-up loads and the outbox carries.
#[derive(SpacetimeType, Clone)]
pub enum BoardRow {
    Column(BoardColumn),
    Card(BoardCard),
}

pub type Row = BoardRow;

pub struct Module;

/// A board's live columns and cards, as the rules see them.
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

    fn column(&self, id: &str) -> Result<BoardColumn, Refusal> {
        self.columns.iter().find(|c| c.id == id).cloned().ok_or_else(|| rules::column_not_found(id))
    }

    fn card(&self, id: &str) -> Result<BoardCard, Refusal> {
        self.cards.iter().find(|c| c.id == id).cloned().ok_or_else(|| rules::card_not_found(id))
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

    fn check_room(&self, column: &str) -> Result<(), Refusal> {
        let views = self.column_views(None);
        let view = views.iter().find(|v| v.id == column).ok_or_else(|| rules::column_not_found(column))?;
        rules::check_room(view)
    }
}

/// Whoever writes a state changed it last.
fn write_column(w: &Write<'_>, mut column: BoardColumn) {
    column.version += 1;
    column.updated_by = w.user.to_string();
    w.record(BoardRow::Column(column));
}

fn write_card(w: &Write<'_>, mut card: BoardCard) {
    card.version += 1;
    card.updated_by = w.user.to_string();
    w.record(BoardRow::Card(card));
}

/// A column of the board, deleted or not.
fn column_on_board(ctx: &ReducerContext, board: &str, id: &str) -> Result<BoardColumn, Refusal> {
    ctx.db
        .board_column()
        .id()
        .find(id.to_string())
        .filter(|c| c.board == board)
        .ok_or_else(|| rules::column_not_found(id))
}

/// A card of the board, deleted or not.
fn card_on_board(ctx: &ReducerContext, board: &str, id: &str) -> Result<BoardCard, Refusal> {
    ctx.db.board_card().id().find(id.to_string()).filter(|c| c.board == board).ok_or_else(|| rules::card_not_found(id))
}

/// A column as the shared retry rules see it, on `state`'s board.
fn column_state<'a>(column: &'a BoardColumn, state: &'a Board) -> ItemState<'a> {
    ItemState::Column(ColumnState {
        board: &column.board,
        name: &column.name,
        wip_limit: column.wip_limit,
        deleted: column.deleted,
        created_by: &column.created_by,
        before: rules::column_before(&state.column_views(None), &column.id),
    })
}

/// A card as the shared retry rules see it, on `state`'s board.
fn card_state<'a>(card: &'a BoardCard, state: &'a Board) -> ItemState<'a> {
    ItemState::Card(CardState {
        board: &card.board,
        column: &card.column,
        title: &card.title,
        description: &card.description,
        assignees: &card.assignees,
        labels: &card.labels,
        deleted: card.deleted,
        created_by: &card.created_by,
        before: rules::card_before(&state.card_views(&card.column, None), &card.id),
    })
}

impl Rules for Module {
    type Command = KanbanCommand;
    type Settings = KanbanSettings;

    fn apply(w: &Write<'_>, settings: &KanbanSettings, command: KanbanCommand) -> Result<(), String> {
        check(&command, settings)?;
        let (ctx, board) = (w.ctx, w.scope);
        let after = |after: Option<uuid::Uuid>| after.map(|id| id.to_string());
        // Whether the command leaves the column (card) as it is, by the shared rules.
        let column_unchanged =
            |column: &BoardColumn, state: &Board| changes_nothing(&command, &column_state(column, state));
        let card_unchanged = |card: &BoardCard, state: &Board| changes_nothing(&command, &card_state(card, state));
        match command.clone() {
            KanbanCommand::CreateColumn { id, name, wip_limit, after: a } => {
                let id = id.to_string();
                // Columns and cards share one id space (an outbox entity is its id).
                if ctx.db.board_card().id().find(&id).is_some() {
                    return Err(id_conflict(&id).into());
                }
                let state = Board::load(ctx, board);
                if let Some(existing) = ctx.db.board_column().id().find(&id) {
                    // A retried create changes nothing; any other reuse of the id is a conflict.
                    if is_same_create(&command, &column_state(&existing, &state), board, w.user) {
                        return Ok(());
                    }
                    return Err(id_conflict(&id).into());
                }
                rules::check_room_on_board(state.columns.len(), false, settings)?;
                let position = rules::column_position(&state.column_views(None), after(a).as_deref(), true)?;
                let board = board.to_string();
                let (created_at, created_by, updated_by) = (ctx.timestamp, w.user.to_string(), w.user.to_string());
                let deleted = false;
                let column = BoardColumn {
                    id,
                    board,
                    name,
                    position,
                    wip_limit,
                    deleted,
                    created_at,
                    created_by,
                    updated_by,
                    version: 0,
                };
                write_column(w, column);
            }
            KanbanCommand::RenameColumn { id, name } => {
                let state = Board::load(ctx, board);
                let mut column = state.column(&id.to_string())?;
                if column_unchanged(&column, &state) {
                    return Ok(());
                }
                column.name = name;
                write_column(w, column);
            }
            KanbanCommand::SetWipLimit { id, wip_limit } => {
                let state = Board::load(ctx, board);
                let mut column = state.column(&id.to_string())?;
                if column_unchanged(&column, &state) {
                    return Ok(());
                }
                column.wip_limit = wip_limit;
                write_column(w, column);
            }
            KanbanCommand::ReorderColumn { id, after: a } => {
                let (state, id) = (Board::load(ctx, board), id.to_string());
                let mut column = state.column(&id)?;
                if column_unchanged(&column, &state) {
                    return Ok(());
                }
                column.position = rules::column_position(&state.column_views(Some(&id)), after(a).as_deref(), false)?;
                write_column(w, column);
            }
            KanbanCommand::DeleteColumn { id, force } => {
                let (state, id) = (Board::load(ctx, board), id.to_string());
                // A deleted column is found too: deleting it again changes nothing.
                let mut column = column_on_board(ctx, board, &id)?;
                if column_unchanged(&column, &state) {
                    return Ok(());
                }
                let views = state.column_views(None);
                rules::check_deletable(views.iter().find(|v| v.id == id).expect("a live column has a view"), force)?;
                for card in state.cards.iter().filter(|c| c.column == id) {
                    rules::check_card_deletable(&card.created_by, w.user, w.owns_scope)?;
                }
                column.deleted = true;
                write_column(w, column);
                for card in state.cards.iter().filter(|c| c.column == id) {
                    write_card(w, BoardCard { deleted: true, ..card.clone() });
                }
            }
            KanbanCommand::CreateCard { id, column, title, description, assignees, labels, after: a } => {
                let (id, column) = (id.to_string(), column.to_string());
                if ctx.db.board_column().id().find(&id).is_some() {
                    return Err(id_conflict(&id).into());
                }
                let state = Board::load(ctx, board);
                if let Some(existing) = ctx.db.board_card().id().find(&id) {
                    // A retried create changes nothing; any other reuse of the id is a conflict.
                    if is_same_create(&command, &card_state(&existing, &state), board, w.user) {
                        return Ok(());
                    }
                    return Err(id_conflict(&id).into());
                }
                state.column(&column)?;
                rules::check_room_on_board(state.cards.len(), true, settings)?;
                state.check_room(&column)?;
                let position = rules::card_position(&state.card_views(&column, None), after(a).as_deref(), true)?;
                let card = BoardCard {
                    id,
                    board: board.to_string(),
                    column,
                    title,
                    description,
                    assignees,
                    labels,
                    position,
                    deleted: false,
                    created_at: ctx.timestamp,
                    created_by: w.user.to_string(),
                    updated_by: w.user.to_string(),
                    version: 0,
                };
                write_card(w, card);
            }
            KanbanCommand::EditCard { id, title, description, assignees, labels } => {
                let state = Board::load(ctx, board);
                let mut card = state.card(&id.to_string())?;
                if card_unchanged(&card, &state) {
                    return Ok(());
                }
                card.title = title.unwrap_or(card.title);
                card.description = description.unwrap_or(card.description);
                card.assignees = assignees.unwrap_or(card.assignees);
                card.labels = labels.unwrap_or(card.labels);
                write_card(w, card);
            }
            KanbanCommand::DeleteCard { id } => {
                let state = Board::load(ctx, board);
                // A deleted card is found too: deleting it again changes nothing.
                let card = card_on_board(ctx, board, &id.to_string())?;
                rules::check_card_deletable(&card.created_by, w.user, w.owns_scope)?;
                if card_unchanged(&card, &state) {
                    return Ok(());
                }
                write_card(w, BoardCard { deleted: true, ..card });
            }
            KanbanCommand::MoveCard { id, column, after: a } => {
                let (state, id, column) = (Board::load(ctx, board), id.to_string(), column.to_string());
                let mut card = state.card(&id)?;
                state.column(&column)?;
                if card_unchanged(&card, &state) {
                    return Ok(());
                }
                if card.column != column {
                    state.check_room(&column)?;
                }
                card.position =
                    rules::card_position(&state.card_views(&column, Some(&id)), after(a).as_deref(), false)?;
                card.column = column;
                write_card(w, card);
            }
        }
        Ok(())
    }

    fn entity(row: &Row) -> &str {
        match row {
            BoardRow::Column(c) => &c.id,
            BoardRow::Card(c) => &c.id,
        }
    }

    fn version(row: &Row) -> u64 {
        match row {
            BoardRow::Column(c) => c.version,
            BoardRow::Card(c) => c.version,
        }
    }

    fn cached_version(ctx: &ReducerContext, row: &Row) -> Option<u64> {
        match row {
            BoardRow::Column(c) => ctx.db.board_column().id().find(&c.id).map(|c| c.version),
            BoardRow::Card(c) => ctx.db.board_card().id().find(&c.id).map(|c| c.version),
        }
    }

    fn scope(row: &Row) -> &str {
        match row {
            BoardRow::Column(c) => &c.board,
            BoardRow::Card(c) => &c.board,
        }
    }

    fn forget(ctx: &ReducerContext, board: &str) {
        let cards: Vec<String> = ctx.db.board_card().board().filter(board).map(|card| card.id).collect();
        for id in cards {
            ctx.db.board_card().id().delete(id);
        }
        let columns: Vec<String> = ctx.db.board_column().board().filter(board).map(|column| column.id).collect();
        for id in columns {
            ctx.db.board_column().id().delete(id);
        }
    }

    fn insert_new(ctx: &ReducerContext, row: &Row) -> bool {
        // An exact duplicate is no violation: inserting it changes nothing.
        match row {
            BoardRow::Column(c) => ctx.db.board_column().try_insert(c.clone()).is_ok(),
            BoardRow::Card(c) => ctx.db.board_card().try_insert(c.clone()).is_ok(),
        }
    }

    fn store(ctx: &ReducerContext, row: Row, cached: bool) {
        match row {
            BoardRow::Column(c) if cached => {
                ctx.db.board_column().id().update(c);
            }
            BoardRow::Column(c) => {
                ctx.db.board_column().insert(c);
            }
            BoardRow::Card(c) if cached => {
                ctx.db.board_card().id().update(c);
            }
            BoardRow::Card(c) => {
                ctx.db.board_card().insert(c);
            }
        }
    }
}
