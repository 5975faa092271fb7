//! Whiteboards in PostgreSQL, for the PostgreSQL adapter, warm-up and the outbox.
//! Each command locks its board, decides the
//! elements' new states with [`decide`] (z-order from the shared `layers`), writes
//! them, and appends one event listing them.

use async_trait::async_trait;
use boardsync_core::pg_adapter::{Applied, PostgresBinding};
use boardsync_core::{ActingUser, DomainError, Page, ScopeKey};
use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::{
    element_not_found, layered, page, Element, Whiteboard, WhiteboardCommand, WhiteboardEvent, WhiteboardSettings,
};
use crate::layers;
use crate::rules::{changes_nothing, is_same_add, ElementState};

#[derive(sqlx::FromRow)]
struct ElementRow {
    id: Uuid,
    board: String,
    kind: String,
    x: f64,
    y: f64,
    width: f64,
    height: f64,
    rotation: f64,
    style: String,
    points: Vec<f32>,
    z: String,
    deleted: bool,
    created_at: DateTime<Utc>,
    created_by: String,
    updated_by: String,
    locked: bool,
    version: i64,
}

impl From<ElementRow> for Element {
    fn from(r: ElementRow) -> Self {
        Element {
            id: r.id,
            board: r.board,
            kind: r.kind,
            x: r.x,
            y: r.y,
            width: r.width,
            height: r.height,
            rotation: r.rotation,
            style: r.style,
            points: r.points,
            z: r.z,
            deleted: r.deleted,
            created_at: r.created_at,
            created_by: r.created_by,
            updated_by: r.updated_by,
            locked: r.locked,
            version: r.version.max(0) as u64,
        }
    }
}

const ELEMENT_COLUMNS: &str = "id, board, kind, x, y, width, height, rotation, style, points, z, deleted, \
                               created_at, created_by, updated_by, locked, version";

/// A board's elements, deleted ones included, created no earlier than `since`.
pub(crate) async fn load_board(
    db: &mut PgConnection,
    board: &ScopeKey,
    since: Option<DateTime<Utc>>,
) -> Result<Vec<Element>, DomainError> {
    let rows: Vec<ElementRow> = sqlx::query_as(&format!(
        "SELECT {ELEMENT_COLUMNS} FROM whiteboard_elements WHERE board = $1 AND ($2::timestamptz IS NULL OR created_at >= $2)"
    ))
    .bind(board.as_str())
    .bind(since)
    .fetch_all(&mut *db)
    .await
    .map_err(DomainError::from_sqlx)?;
    Ok(rows.into_iter().map(Element::from).collect())
}

/// The elements of `ids` that PostgreSQL has, on any board.
pub(crate) async fn load_some(db: &mut PgConnection, ids: Vec<Uuid>) -> Result<Vec<Element>, DomainError> {
    let rows: Vec<ElementRow> =
        sqlx::query_as(&format!("SELECT {ELEMENT_COLUMNS} FROM whiteboard_elements WHERE id = ANY($1)"))
            .bind(&ids)
            .fetch_all(&mut *db)
            .await
            .map_err(DomainError::from_sqlx)?;
    Ok(rows.into_iter().map(Element::from).collect())
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

/// The elements `command` names with their new states, and whether it writes them
/// (not when it changes nothing: it answers with them as they are).
pub(crate) fn decide(
    board: &ScopeKey,
    elements: &[Element],
    command: WhiteboardCommand,
    now: DateTime<Utc>,
    actor: &ActingUser,
    settings: &WhiteboardSettings,
) -> Result<(Vec<Element>, bool), DomainError> {
    let user = actor.user.as_str();
    // An element of the board, deleted or not.
    let on_board = |id: Uuid| elements.iter().find(|e| e.id == id);
    let find = |id: Uuid| on_board(id).filter(|e| !e.deleted).cloned().ok_or_else(|| element_not_found(id));
    // A live element the actor may change (`locking`: its lock).
    let changeable = |id: Uuid, locking: bool| -> Result<Element, DomainError> {
        let e = find(id)?;
        crate::rules::check_may_change(&e.created_by, e.locked, user, actor.owns_scope, locking)?;
        Ok(e)
    };
    let live = |id: Uuid| changeable(id, false);
    let ids: Vec<String> = elements.iter().map(|e| e.id.to_string()).collect();
    let layers: Vec<(&str, &str)> =
        elements.iter().zip(&ids).filter(|(e, _)| !e.deleted).map(|(e, id)| (e.z.as_str(), id.as_str())).collect();
    // Whether the command leaves the elements it names as they are, by the shared rules.
    let unchanged = || changes_nothing(&command, |id| on_board(*id).map(element_state), &layers);
    let bump = |mut element: Element| {
        element.version += 1;
        element.updated_by = user.to_string();
        element
    };
    Ok(match command.clone() {
        WhiteboardCommand::Add { id, kind, x, y, width, height, rotation, style, points } => {
            if let Some(existing) = on_board(id) {
                if is_same_add(&command, &element_state(existing), board.as_str(), user) {
                    return Ok((vec![existing.clone()], false));
                }
                return Err(crate::rules::id_conflict(&id.to_string()).into());
            }
            crate::rules::check_room_for_element(layers.len(), settings)?;
            let element = Element {
                id,
                board: board.to_string(),
                kind,
                x,
                y,
                width,
                height,
                rotation,
                style,
                points,
                z: layers::top(&layers),
                deleted: false,
                created_at: now,
                created_by: user.to_string(),
                updated_by: user.to_string(),
                locked: false,
                version: 1,
            };
            (vec![element], true)
        }
        WhiteboardCommand::Update { id, x, y, width, height, rotation, style, points, locked } => {
            let mut e = changeable(id, locked.is_some())?;
            if unchanged() {
                return Ok((vec![e], false));
            }
            e.locked = locked.unwrap_or(e.locked);
            e.x = x.unwrap_or(e.x);
            e.y = y.unwrap_or(e.y);
            e.width = width.unwrap_or(e.width);
            e.height = height.unwrap_or(e.height);
            e.rotation = rotation.unwrap_or(e.rotation);
            e.style = style.unwrap_or(e.style);
            e.points = points.unwrap_or(e.points);
            (vec![bump(e)], true)
        }
        WhiteboardCommand::Move { to } => {
            let mut moved = Vec::new();
            for position in to {
                if moved.iter().any(|e: &Element| e.id == position.id) {
                    continue;
                }
                let mut e = live(position.id)?;
                (e.x, e.y) = (position.x, position.y);
                moved.push(e);
            }
            if unchanged() {
                return Ok((moved, false));
            }
            (moved.into_iter().map(bump).collect(), true)
        }
        WhiteboardCommand::Delete { id } => {
            // A deleted element is found too: deleting it again changes nothing.
            let mut e = on_board(id).cloned().ok_or_else(|| element_not_found(id))?;
            crate::rules::check_may_change(&e.created_by, e.locked, user, actor.owns_scope, false)?;
            if unchanged() {
                return Ok((vec![e], false));
            }
            e.deleted = true;
            (vec![bump(e)], true)
        }
        WhiteboardCommand::Reorder { id, above } => {
            let mut e = live(id)?;
            if unchanged() {
                return Ok((vec![e], false));
            }
            let above = above.map(|above| above.to_string());
            e.z = layers::above(&layers, &id.to_string(), above.as_deref()).map_err(element_not_found)?;
            (vec![bump(e)], true)
        }
    })
}

/// Writes full states unless PostgreSQL already has the same or a newer version.
pub(crate) async fn persist_states(db: &mut PgConnection, elements: &[Element]) -> Result<usize, DomainError> {
    let mut written = 0;
    for e in elements {
        written += sqlx::query(
            "INSERT INTO whiteboard_elements (id, board, kind, x, y, width, height, rotation, style, points, z,
                 deleted, created_at, version, created_by, updated_by, locked)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
             ON CONFLICT (id) DO UPDATE SET x = EXCLUDED.x, y = EXCLUDED.y, width = EXCLUDED.width,
                 height = EXCLUDED.height, rotation = EXCLUDED.rotation, style = EXCLUDED.style,
                 points = EXCLUDED.points, z = EXCLUDED.z, deleted = EXCLUDED.deleted, version = EXCLUDED.version,
                 updated_by = EXCLUDED.updated_by, locked = EXCLUDED.locked
             WHERE whiteboard_elements.version < EXCLUDED.version AND whiteboard_elements.board = EXCLUDED.board
                 AND whiteboard_elements.created_by = EXCLUDED.created_by",
        )
        .bind(e.id)
        .bind(&e.board)
        .bind(&e.kind)
        .bind(e.x)
        .bind(e.y)
        .bind(e.width)
        .bind(e.height)
        .bind(e.rotation)
        .bind(&e.style)
        .bind(&e.points)
        .bind(&e.z)
        .bind(e.deleted)
        .bind(e.created_at)
        .bind(e.version as i64)
        .bind(&e.created_by)
        .bind(&e.updated_by)
        .bind(e.locked)
        .execute(&mut *db)
        .await
        .map_err(DomainError::from_sqlx)?
        .rows_affected() as usize;
    }
    Ok(written)
}

#[async_trait]
impl PostgresBinding for Whiteboard {
    async fn page(db: &mut PgConnection, board: &ScopeKey, request: Page) -> Result<Vec<Element>, DomainError> {
        page(layered(load_board(db, board, None).await?), request.before.as_deref(), request.limit)
    }

    async fn apply_in(
        tx: &mut PgConnection,
        settings: &WhiteboardSettings,
        board: &ScopeKey,
        actor: &ActingUser,
        command: WhiteboardCommand,
    ) -> Result<Applied<WhiteboardEvent>, DomainError> {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('whiteboard:' || $1))")
            .bind(board.as_str())
            .execute(&mut *tx)
            .await
            .map_err(DomainError::from_sqlx)?;
        if let WhiteboardCommand::Add { id, .. } = &command {
            // An id of another board's element: a conflict, never that element.
            let owner: Option<String> = sqlx::query_scalar("SELECT board FROM whiteboard_elements WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(DomainError::from_sqlx)?;
            if owner.is_some_and(|owner| owner != board.as_str()) {
                return Err(crate::rules::id_conflict(&id.to_string()).into());
            }
        }
        let elements = load_board(tx, board, None).await?;
        let now: DateTime<Utc> =
            sqlx::query_scalar("SELECT now()").fetch_one(&mut *tx).await.map_err(DomainError::from_sqlx)?;
        let (elements, write) = decide(board, &elements, command, now, actor, settings)?;
        let event = WhiteboardEvent::ElementsChanged { elements };
        if !write {
            return Ok(Applied::unchanged(event));
        }
        persist_states(tx, event.elements()).await?;
        Ok(Applied::one(event))
    }

    /// Every element.
    async fn purge(tx: &mut PgConnection, scope: &ScopeKey) -> Result<u64, DomainError> {
        let deleted = sqlx::query("DELETE FROM whiteboard_elements WHERE board = $1")
            .bind(scope.as_str())
            .execute(&mut *tx)
            .await
            .map_err(DomainError::from_sqlx)?;
        Ok(deleted.rows_affected())
    }

    async fn stored(db: &mut PgConnection, ids: &[String]) -> Result<Vec<Element>, DomainError> {
        load_some(db, boardsync_core::pg_adapter::uuids(ids)).await
    }
    fn changed_outside(element: Element, _new: bool) -> WhiteboardEvent {
        WhiteboardEvent::ElementsChanged { elements: vec![element] }
    }
}
