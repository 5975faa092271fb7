//! Kanban in PostgreSQL, for the PostgreSQL adapter, warm-up and the outbox. Each
//! command locks its board (one writer per
//! board at a time, so WIP counts and positions are decided on current data), decides
//! the new states with [`decide`], writes them, and appends the events.

use async_trait::async_trait;
use boardsync_core::pg_adapter::{Applied, PostgresBinding};
use boardsync_core::{ActingUser, DomainError, Page, ScopeKey};
use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::{
    board_items, page, refused, BoardItem, Card, Column, Kanban, KanbanCommand, KanbanEvent, KanbanSettings,
};
use crate::rules::{self, CardState, CardView, ColumnState, ColumnView, ItemState};

#[derive(sqlx::FromRow)]
struct ColumnRow {
    id: Uuid,
    board: String,
    name: String,
    position: String,
    wip_limit: Option<i32>,
    deleted: bool,
    created_at: DateTime<Utc>,
    created_by: String,
    updated_by: String,
    version: i64,
}

#[derive(sqlx::FromRow)]
struct CardRow {
    id: Uuid,
    board: String,
    column_id: Uuid,
    title: String,
    description: String,
    assignees: Vec<String>,
    labels: Vec<String>,
    position: String,
    deleted: bool,
    created_at: DateTime<Utc>,
    created_by: String,
    updated_by: String,
    version: i64,
}

impl From<ColumnRow> for Column {
    fn from(r: ColumnRow) -> Self {
        Column {
            id: r.id,
            board: r.board,
            name: r.name,
            position: r.position,
            wip_limit: r.wip_limit.map(|l| l.max(0) as u32),
            deleted: r.deleted,
            created_at: r.created_at,
            created_by: r.created_by,
            updated_by: r.updated_by,
            version: r.version.max(0) as u64,
        }
    }
}

impl From<CardRow> for Card {
    fn from(r: CardRow) -> Self {
        Card {
            id: r.id,
            board: r.board,
            column: r.column_id,
            title: r.title,
            description: r.description,
            assignees: r.assignees,
            labels: r.labels,
            position: r.position,
            deleted: r.deleted,
            created_at: r.created_at,
            created_by: r.created_by,
            updated_by: r.updated_by,
            version: r.version.max(0) as u64,
        }
    }
}

const COLUMN_COLUMNS: &str =
    "id, board, name, position, wip_limit, deleted, created_at, created_by, updated_by, version";
const CARD_COLUMNS: &str = "id, board, column_id, title, description, assignees, labels, position, deleted, \
                            created_at, created_by, updated_by, version";

/// Columns and cards matching `filter` (SQL over `$1` and `$2`, bound to `first` and `second`).
async fn load_where<A, B>(
    db: &mut PgConnection,
    filter: &str,
    first: A,
    second: B,
) -> Result<(Vec<Column>, Vec<Card>), DomainError>
where
    A: for<'q> sqlx::Encode<'q, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Clone + Send,
    B: for<'q> sqlx::Encode<'q, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Clone + Send,
{
    let columns: Vec<ColumnRow> =
        sqlx::query_as(&format!("SELECT {COLUMN_COLUMNS} FROM kanban_columns WHERE {filter}"))
            .bind(first.clone())
            .bind(second.clone())
            .fetch_all(&mut *db)
            .await
            .map_err(DomainError::from_sqlx)?;
    let cards: Vec<CardRow> = sqlx::query_as(&format!("SELECT {CARD_COLUMNS} FROM kanban_cards WHERE {filter}"))
        .bind(first)
        .bind(second)
        .fetch_all(&mut *db)
        .await
        .map_err(DomainError::from_sqlx)?;
    Ok((columns.into_iter().map(Column::from).collect(), cards.into_iter().map(Card::from).collect()))
}

/// A board's columns and cards, deleted ones included, as of `since` (none: all).
pub(crate) async fn load_board(
    db: &mut PgConnection,
    board: &ScopeKey,
    since: Option<DateTime<Utc>>,
) -> Result<(Vec<Column>, Vec<Card>), DomainError> {
    let filter = "board = $1 AND ($2::timestamptz IS NULL OR created_at >= $2)";
    load_where(db, filter, board.as_str().to_string(), since).await
}

/// The columns and cards with these ids, whichever board they are on.
pub(crate) async fn load_ids(db: &mut PgConnection, ids: Vec<Uuid>) -> Result<Vec<BoardItem>, DomainError> {
    let (columns, cards) = load_where(db, "id = ANY($1) AND $2", ids, true).await?;
    Ok(columns.into_iter().map(BoardItem::Column).chain(cards.into_iter().map(BoardItem::Card)).collect())
}

/// What a command decided: the item to answer with and the new states to write
/// (none when it changes nothing: it answers with the item as it is).
pub(crate) struct Decision {
    pub answer: BoardItem,
    pub writes: Vec<BoardItem>,
}

impl Decision {
    /// A command that changes nothing: it answers with `answer` as it is.
    pub(crate) fn unchanged(answer: BoardItem) -> Self {
        Self { answer, writes: Vec::new() }
    }
}

/// A column as the shared retry rules see it, among the board's live columns.
fn column_state<'a>(column: &'a Column, live_columns: &[ColumnView<'a>]) -> ItemState<'a> {
    ItemState::Column(ColumnState {
        board: &column.board,
        name: &column.name,
        wip_limit: column.wip_limit,
        deleted: column.deleted,
        created_by: &column.created_by,
        before: rules::column_before(live_columns, &column.id.to_string()),
    })
}

/// A card as the shared retry rules see it (`column`: its column's id), among its
/// column's live cards.
fn card_state<'a>(card: &'a Card, column: &'a str, column_cards: &[CardView<'a>]) -> ItemState<'a> {
    ItemState::Card(CardState {
        board: &card.board,
        column,
        title: &card.title,
        description: &card.description,
        assignees: &card.assignees,
        labels: &card.labels,
        deleted: card.deleted,
        created_by: &card.created_by,
        before: rules::card_before(column_cards, &card.id.to_string()),
    })
}

/// Decides the new states for `command` on the board (`columns`, `cards`, deleted ones
/// included), at time `now`.
pub(crate) fn decide(
    board: &ScopeKey,
    columns: &[Column],
    cards: &[Card],
    command: KanbanCommand,
    now: DateTime<Utc>,
    actor: &ActingUser,
    settings: &KanbanSettings,
) -> Result<Decision, DomainError> {
    let user = actor.user.as_str();
    let column_on_board = |id: Uuid| {
        columns.iter().find(|c| c.id == id).cloned().ok_or_else(|| refused(rules::column_not_found(&id.to_string())))
    };
    let card_on_board = |id: Uuid| {
        cards.iter().find(|c| c.id == id).cloned().ok_or_else(|| refused(rules::card_not_found(&id.to_string())))
    };
    let live_column = |id: Uuid| {
        column_on_board(id).ok().filter(|c| !c.deleted).ok_or_else(|| refused(rules::column_not_found(&id.to_string())))
    };
    let live_card = |id: Uuid| {
        card_on_board(id).ok().filter(|c| !c.deleted).ok_or_else(|| refused(rules::card_not_found(&id.to_string())))
    };
    // Views borrow their ids as strings: one per column, in `columns` order.
    let column_ids: Vec<String> = columns.iter().map(|c| c.id.to_string()).collect();
    let card_strings: Vec<(String, String, Uuid)> =
        cards.iter().filter(|c| !c.deleted).map(|c| (c.id.to_string(), c.position.clone(), c.column)).collect();
    let view_of = |index: usize| {
        let column = &columns[index];
        ColumnView {
            id: &column_ids[index],
            position: &column.position,
            wip_limit: column.wip_limit,
            cards: cards.iter().filter(|card| !card.deleted && card.column == column.id).count(),
        }
    };
    let column_views = |except: Option<Uuid>| -> Vec<ColumnView> {
        (0..columns.len()).filter(|&i| !columns[i].deleted && Some(columns[i].id) != except).map(view_of).collect()
    };
    let live_view = |id: Uuid| {
        let index = columns.iter().position(|c| c.id == id && !c.deleted);
        index.map(view_of).ok_or_else(|| refused(rules::column_not_found(&id.to_string())))
    };
    let card_views = |column: Uuid, except: Option<Uuid>| -> Vec<CardView> {
        card_strings
            .iter()
            .filter(|(_, _, c)| *c == column)
            .filter(|(id, _, _)| except.is_none_or(|e| *id != e.to_string()))
            .map(|(id, position, _)| CardView { id, position })
            .collect()
    };
    let room = |column: Uuid| rules::check_room(&live_view(column)?).map_err(refused);
    let id_conflict = |id: Uuid| refused(rules::id_conflict(&id.to_string()));
    let one = |item: BoardItem| Decision { answer: item.clone(), writes: vec![item] };
    // Whether `command` leaves the column (card) as it is, by the shared rules.
    let column_unchanged =
        |column: &Column| rules::changes_nothing(&command, &column_state(column, &column_views(None)));
    let card_unchanged = |card: &Card| {
        let column = card.column.to_string();
        rules::changes_nothing(&command, &card_state(card, &column, &card_views(card.column, None)))
    };

    let mut decision = match command.clone() {
        KanbanCommand::CreateColumn { id, name, wip_limit, after } => {
            if let Some(existing) = columns.iter().find(|c| c.id == id) {
                let state = column_state(existing, &column_views(None));
                if rules::is_same_create(&command, &state, board.as_str(), user) {
                    return Ok(Decision::unchanged(BoardItem::Column(existing.clone())));
                }
                return Err(id_conflict(id));
            }
            let live_columns = columns.iter().filter(|c| !c.deleted).count();
            rules::check_room_on_board(live_columns, false, settings).map_err(refused)?;
            let after = after.map(|a| a.to_string());
            let position = rules::column_position(&column_views(None), after.as_deref(), true).map_err(refused)?;
            let column = Column {
                id,
                board: board.to_string(),
                name,
                position,
                wip_limit,
                deleted: false,
                created_at: now,
                created_by: user.to_string(),
                updated_by: user.to_string(),
                version: 1,
            };
            one(BoardItem::Column(column))
        }
        KanbanCommand::RenameColumn { id, name } => {
            let mut column = live_column(id)?;
            if column_unchanged(&column) {
                return Ok(Decision::unchanged(BoardItem::Column(column)));
            }
            column.name = name;
            column.version += 1;
            one(BoardItem::Column(column))
        }
        KanbanCommand::SetWipLimit { id, wip_limit } => {
            let mut column = live_column(id)?;
            if column_unchanged(&column) {
                return Ok(Decision::unchanged(BoardItem::Column(column)));
            }
            column.wip_limit = wip_limit;
            column.version += 1;
            one(BoardItem::Column(column))
        }
        KanbanCommand::ReorderColumn { id, after } => {
            let mut column = live_column(id)?;
            if column_unchanged(&column) {
                return Ok(Decision::unchanged(BoardItem::Column(column)));
            }
            let after = after.map(|a| a.to_string());
            column.position =
                rules::column_position(&column_views(Some(id)), after.as_deref(), false).map_err(refused)?;
            column.version += 1;
            one(BoardItem::Column(column))
        }
        KanbanCommand::DeleteColumn { id, force } => {
            // A deleted column is found too: deleting it again changes nothing.
            let mut column = column_on_board(id)?;
            if column_unchanged(&column) {
                return Ok(Decision::unchanged(BoardItem::Column(column)));
            }
            rules::check_deletable(&live_view(id)?, force).map_err(refused)?;
            for card in cards.iter().filter(|c| !c.deleted && c.column == id) {
                rules::check_card_deletable(&card.created_by, user, actor.owns_scope).map_err(refused)?;
            }
            column.deleted = true;
            column.version += 1;
            let mut writes = vec![BoardItem::Column(column.clone())];
            for card in cards.iter().filter(|c| !c.deleted && c.column == id) {
                let mut card = card.clone();
                card.deleted = true;
                card.version += 1;
                writes.push(BoardItem::Card(card));
            }
            Decision { answer: BoardItem::Column(column), writes }
        }
        KanbanCommand::CreateCard { id, column, title, description, assignees, labels, after } => {
            if let Some(existing) = cards.iter().find(|c| c.id == id) {
                let existing_column = existing.column.to_string();
                let state = card_state(existing, &existing_column, &card_views(existing.column, None));
                if rules::is_same_create(&command, &state, board.as_str(), user) {
                    return Ok(Decision::unchanged(BoardItem::Card(existing.clone())));
                }
                return Err(id_conflict(id));
            }
            live_view(column)?;
            let live_cards = cards.iter().filter(|c| !c.deleted).count();
            rules::check_room_on_board(live_cards, true, settings).map_err(refused)?;
            room(column)?;
            let after = after.map(|a| a.to_string());
            let position = rules::card_position(&card_views(column, None), after.as_deref(), true).map_err(refused)?;
            let card = Card {
                id,
                board: board.to_string(),
                column,
                title,
                description,
                assignees,
                labels,
                position,
                deleted: false,
                created_at: now,
                created_by: user.to_string(),
                updated_by: user.to_string(),
                version: 1,
            };
            one(BoardItem::Card(card))
        }
        KanbanCommand::EditCard { id, title, description, assignees, labels } => {
            let mut card = live_card(id)?;
            if card_unchanged(&card) {
                return Ok(Decision::unchanged(BoardItem::Card(card)));
            }
            card.title = title.unwrap_or(card.title);
            card.description = description.unwrap_or(card.description);
            card.assignees = assignees.unwrap_or(card.assignees);
            card.labels = labels.unwrap_or(card.labels);
            card.version += 1;
            one(BoardItem::Card(card))
        }
        KanbanCommand::DeleteCard { id } => {
            // A deleted card is found too: deleting it again changes nothing.
            let mut card = card_on_board(id)?;
            rules::check_card_deletable(&card.created_by, user, actor.owns_scope).map_err(refused)?;
            if card_unchanged(&card) {
                return Ok(Decision::unchanged(BoardItem::Card(card)));
            }
            card.deleted = true;
            card.version += 1;
            one(BoardItem::Card(card))
        }
        KanbanCommand::MoveCard { id, column, after } => {
            let mut card = live_card(id)?;
            live_view(column)?;
            if card_unchanged(&card) {
                return Ok(Decision::unchanged(BoardItem::Card(card)));
            }
            if card.column != column {
                room(column)?;
            }
            let after = after.map(|a| a.to_string());
            card.position =
                rules::card_position(&card_views(column, Some(id)), after.as_deref(), false).map_err(refused)?;
            card.column = column;
            card.version += 1;
            one(BoardItem::Card(card))
        }
    };
    // Whoever wrote a state changed it last.
    for item in decision.writes.iter_mut().chain(std::iter::once(&mut decision.answer)) {
        match item {
            BoardItem::Column(column) => column.updated_by = user.to_string(),
            BoardItem::Card(card) => card.updated_by = user.to_string(),
        }
    }
    Ok(decision)
}

/// The event telling of `item` (`deleting_column`: the column a delete_column names).
fn event(item: &BoardItem, deleting_column: bool) -> KanbanEvent {
    match item {
        BoardItem::Column(column) if deleting_column => KanbanEvent::ColumnDeleted { column: column.clone() },
        BoardItem::Column(column) => KanbanEvent::ColumnChanged { column: column.clone() },
        BoardItem::Card(card) => KanbanEvent::CardChanged { card: card.clone() },
    }
}

/// What `command` answers and tells subscribers, given what it `decided`: an event
/// per item written (the answer's first), or, when it wrote nothing, the answer
/// alone and no event.
pub(crate) fn applied(command: &KanbanCommand, decided: &Decision) -> Applied<KanbanEvent> {
    let deleting_column = matches!(command, KanbanCommand::DeleteColumn { .. });
    if decided.writes.is_empty() {
        return Applied::unchanged(event(&decided.answer, deleting_column));
    }
    let events: Vec<KanbanEvent> =
        decided.writes.iter().enumerate().map(|(i, item)| event(item, i == 0 && deleting_column)).collect();
    Applied { answer: events[0].clone(), events }
}

/// Writes full states (from a decision, or from the cache's outbox) unless
/// PostgreSQL already has the same or a newer version.
pub(crate) async fn persist_states(db: &mut PgConnection, items: &[BoardItem]) -> Result<usize, DomainError> {
    let mut written = 0;
    for item in items {
        let query = match item {
            BoardItem::Column(c) => sqlx::query(
                "INSERT INTO kanban_columns (id, board, name, position, wip_limit, deleted, created_at, version,
                     created_by, updated_by)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                 ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, position = EXCLUDED.position,
                     wip_limit = EXCLUDED.wip_limit, deleted = EXCLUDED.deleted, version = EXCLUDED.version,
                     updated_by = EXCLUDED.updated_by
                 WHERE kanban_columns.version < EXCLUDED.version AND kanban_columns.board = EXCLUDED.board
                     AND kanban_columns.created_by = EXCLUDED.created_by",
            )
            .bind(c.id)
            .bind(&c.board)
            .bind(&c.name)
            .bind(&c.position)
            .bind(c.wip_limit.map(|l| l.min(i32::MAX as u32) as i32))
            .bind(c.deleted)
            .bind(c.created_at)
            .bind(c.version as i64)
            .bind(&c.created_by)
            .bind(&c.updated_by),
            BoardItem::Card(c) => sqlx::query(
                "INSERT INTO kanban_cards (id, board, column_id, title, description, assignees, labels, position,
                     deleted, created_at, version, created_by, updated_by)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
                 ON CONFLICT (id) DO UPDATE SET column_id = EXCLUDED.column_id, title = EXCLUDED.title,
                     description = EXCLUDED.description, assignees = EXCLUDED.assignees, labels = EXCLUDED.labels,
                     position = EXCLUDED.position, deleted = EXCLUDED.deleted, version = EXCLUDED.version,
                     updated_by = EXCLUDED.updated_by
                 WHERE kanban_cards.version < EXCLUDED.version AND kanban_cards.board = EXCLUDED.board
                     AND kanban_cards.created_by = EXCLUDED.created_by",
            )
            .bind(c.id)
            .bind(&c.board)
            .bind(c.column)
            .bind(&c.title)
            .bind(&c.description)
            .bind(&c.assignees)
            .bind(&c.labels)
            .bind(&c.position)
            .bind(c.deleted)
            .bind(c.created_at)
            .bind(c.version as i64)
            .bind(&c.created_by)
            .bind(&c.updated_by),
        };
        written += query.execute(&mut *db).await.map_err(DomainError::from_sqlx)?.rows_affected() as usize;
    }
    Ok(written)
}

/// Columns and cards share one id space, across boards: a new column or card may not
/// take the id of a card or column of any board, nor of a column (card) elsewhere.
async fn refuse_foreign_ids(
    tx: &mut PgConnection,
    board: &ScopeKey,
    command: &KanbanCommand,
) -> Result<(), DomainError> {
    let (id, kind) = match command {
        KanbanCommand::CreateColumn { id, .. } => (id, "column"),
        KanbanCommand::CreateCard { id, .. } => (id, "card"),
        _ => return Ok(()),
    };
    let holders: Vec<(String, String)> = sqlx::query_as(
        "SELECT board, 'column' FROM kanban_columns WHERE id = $1
         UNION ALL SELECT board, 'card' FROM kanban_cards WHERE id = $1",
    )
    .bind(id)
    .fetch_all(&mut *tx)
    .await
    .map_err(DomainError::from_sqlx)?;
    if holders.iter().any(|(holder, holder_kind)| holder != board.as_str() || holder_kind != kind) {
        return Err(refused(rules::id_conflict(&id.to_string())));
    }
    Ok(())
}

#[async_trait]
impl PostgresBinding for Kanban {
    async fn page(db: &mut PgConnection, board: &ScopeKey, request: Page) -> Result<Vec<BoardItem>, DomainError> {
        let (columns, cards) = load_board(db, board, None).await?;
        page(board_items(columns, cards), request.before.as_deref(), request.limit)
    }

    async fn apply_in(
        tx: &mut PgConnection,
        settings: &KanbanSettings,
        board: &ScopeKey,
        actor: &ActingUser,
        command: KanbanCommand,
    ) -> Result<Applied<KanbanEvent>, DomainError> {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('kanban:' || $1))")
            .bind(board.as_str())
            .execute(&mut *tx)
            .await
            .map_err(DomainError::from_sqlx)?;
        refuse_foreign_ids(tx, board, &command).await?;
        let (columns, cards) = load_board(tx, board, None).await?;
        let now: DateTime<Utc> =
            sqlx::query_scalar("SELECT now()").fetch_one(&mut *tx).await.map_err(DomainError::from_sqlx)?;
        let decision = decide(board, &columns, &cards, command.clone(), now, actor, settings)?;
        persist_states(tx, &decision.writes).await?;
        Ok(applied(&command, &decision))
    }

    /// Cards, then columns.
    async fn purge(tx: &mut PgConnection, scope: &ScopeKey) -> Result<u64, DomainError> {
        let mut deleted = 0;
        for statement in ["DELETE FROM kanban_cards WHERE board = $1", "DELETE FROM kanban_columns WHERE board = $1"] {
            let done =
                sqlx::query(statement).bind(scope.as_str()).execute(&mut *tx).await.map_err(DomainError::from_sqlx)?;
            deleted += done.rows_affected();
        }
        Ok(deleted)
    }

    async fn stored(db: &mut PgConnection, ids: &[String]) -> Result<Vec<BoardItem>, DomainError> {
        load_ids(db, boardsync_core::pg_adapter::uuids(ids)).await
    }
    fn changed_outside(item: BoardItem, _new: bool) -> crate::KanbanEvent {
        use crate::KanbanEvent;
        match item {
            BoardItem::Column(column) if column.deleted => KanbanEvent::ColumnDeleted { column },
            BoardItem::Column(column) => KanbanEvent::ColumnChanged { column },
            BoardItem::Card(card) => KanbanEvent::CardChanged { card },
        }
    }
}
