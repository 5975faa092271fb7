//! Whiteboards on the cache adapter: how the module's rows become elements, and what
//! a committed command tells its caller (every element it wrote, in one event). The
//! adapter itself is the framework's [`boardsync_core::cache_adapter`]; boards are
//! warmed whole and layered like on PostgreSQL.

use async_trait::async_trait;
use boardsync_core::cache_adapter::{CacheBinding, CachedScope, Placement};
use boardsync_core::pg_adapter::Applied;
use boardsync_core::spacetime::{time, timestamp};
use boardsync_core::warmup::WarmupSettings;
use boardsync_core::{DomainError, Page, ScopeKey, UserId};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::{layered, page, Element, Whiteboard, WhiteboardCommand, WhiteboardEvent};
use crate::module_bindings as stdb;
use crate::postgres::{load_board, persist_states};

boardsync_core::spacetime_module!(crate::module_bindings, row: Element, tables: [element: board]);

#[async_trait]
impl CacheBinding for Whiteboard {
    type Module = stdb::DbConnection;
    /// Boards are layered by the domain (`layered`), not by the index.
    type Order = ();

    fn version(element: &Element) -> u64 {
        element.version
    }

    fn item(row: &stdb::Element) -> Option<Element> {
        Some(Element {
            id: Uuid::parse_str(&row.id).ok()?,
            board: row.board.clone(),
            kind: row.kind.clone(),
            x: row.x,
            y: row.y,
            width: row.width,
            height: row.height,
            rotation: row.rotation,
            style: row.style.clone(),
            points: row.points.clone(),
            z: row.z.clone(),
            deleted: row.deleted,
            created_at: time(row.created_at)?,
            created_by: row.created_by.clone(),
            updated_by: row.updated_by.clone(),
            locked: row.locked,
            version: row.version,
        })
    }

    fn row(e: &Element) -> stdb::Element {
        stdb::Element {
            id: e.id.to_string(),
            board: e.board.clone(),
            kind: e.kind.clone(),
            x: e.x,
            y: e.y,
            width: e.width,
            height: e.height,
            rotation: e.rotation,
            style: e.style.clone(),
            points: e.points.clone(),
            z: e.z.clone(),
            deleted: e.deleted,
            created_at: timestamp(e.created_at),
            created_by: e.created_by.clone(),
            updated_by: e.updated_by.clone(),
            locked: e.locked,
            version: e.version,
        }
    }

    fn owner(element: &Element) -> Option<&str> {
        Some(&element.created_by)
    }

    fn placement(row: &stdb::Element) -> Placement<()> {
        Placement { scope: row.board.clone(), order: (), entity: row.id.clone() }
    }

    fn applied(
        _: &WhiteboardCommand,
        _: &UserId,
        elements: Vec<Element>,
    ) -> Result<Applied<WhiteboardEvent>, DomainError> {
        Ok(Applied::one(WhiteboardEvent::ElementsChanged { elements }))
    }

    /// The elements the command puts somewhere answer, as they are (not the one a
    /// reorder names as its neighbour), each once.
    fn unchanged(
        command: &WhiteboardCommand,
        _: &UserId,
        current: Vec<Element>,
    ) -> Result<WhiteboardEvent, DomainError> {
        let own: Vec<Uuid> = match command {
            WhiteboardCommand::Move { to } => to.iter().map(|position| position.id).collect(),
            WhiteboardCommand::Add { id, .. }
            | WhiteboardCommand::Update { id, .. }
            | WhiteboardCommand::Delete { id }
            | WhiteboardCommand::Reorder { id, .. } => vec![*id],
        };
        let mut elements: Vec<Element> = Vec::new();
        for id in own {
            if elements.iter().any(|e| e.id == id) {
                continue;
            }
            let element = current.iter().find(|e| e.id == id).cloned().ok_or_else(|| {
                DomainError::internal("a whiteboard command that changed nothing names an element the cache lacks")
            })?;
            elements.push(element);
        }
        Ok(WhiteboardEvent::ElementsChanged { elements })
    }

    fn page(cached: &CachedScope<'_, Self>, request: Page) -> Result<Vec<Element>, DomainError> {
        page(layered(cached.all()), request.before.as_deref(), request.limit)
    }

    /// A board is warmed whole, deleted elements included (so a cached element deleted
    /// in PostgreSQL meanwhile is updated too); `max_age_secs` still applies.
    async fn load_window(
        db: &mut PgConnection,
        board: &ScopeKey,
        window: &WarmupSettings,
    ) -> Result<Vec<Element>, DomainError> {
        load_board(db, board, window.since()).await
    }

    async fn persist(tx: &mut PgConnection, elements: Vec<Element>) -> Result<usize, DomainError> {
        persist_states(tx, &elements).await
    }

    fn touches(command: &WhiteboardCommand) -> Vec<String> {
        let ids = match command {
            WhiteboardCommand::Add { id, .. }
            | WhiteboardCommand::Update { id, .. }
            | WhiteboardCommand::Delete { id } => {
                vec![*id]
            }
            WhiteboardCommand::Move { to } => to.iter().map(|p| p.id).collect(),
            WhiteboardCommand::Reorder { id, above } => std::iter::once(*id).chain(*above).collect(),
        };
        ids.iter().map(Uuid::to_string).collect()
    }
}
