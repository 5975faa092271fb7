//! The whiteboard domain: shapes, text and freehand strokes with geometry, style and
//! z-order; the last write to an element wins.
//!
//! - [`domain`]: [`Whiteboard`] and its types ([`Element`], [`WhiteboardCommand`],
//!   [`WhiteboardEvent`]), limits (stroke points, style size, elements per move).
//! - [`layers`]: z-order rules, shared with `modules/whiteboard`.
//! - [`postgres`]: the PostgreSQL adapter; [`spacetime`]: the SpacetimeDB adapter.
//! - [`module_bindings`]: the client bindings of `modules/whiteboard` (generated).

pub mod domain;
pub mod layers;
#[allow(clippy::all, unused)]
#[rustfmt::skip]
pub mod module_bindings;
pub mod postgres;
pub mod spacetime;

/// Fractional ordering keys, from the core (`layers` uses them as `crate::ordering`).
pub use boardsync_core::ordering;

use std::sync::Arc;

use async_trait::async_trait;
use boardsync_core::factory::SpacetimeTarget;
use boardsync_core::{Adapter, AdapterContext, Connection, DomainAdapters, DomainError};
use sqlx::migrate::Migrator;

pub use domain::{Element, Whiteboard, WhiteboardCommand, WhiteboardEvent, WhiteboardSettings};

static MIGRATIONS: Migrator = sqlx::migrate!("./migrations");

#[async_trait]
impl DomainAdapters for Whiteboard {
    fn migrator() -> Migrator {
        boardsync_core::migrations::shared(&MIGRATIONS)
    }

    async fn postgres(context: AdapterContext<Self>) -> Result<Arc<dyn Connection<Self>>, DomainError> {
        Ok(Arc::new(postgres::PostgresWhiteboard::connect(context).await?))
    }

    async fn spacetimedb(context: AdapterContext<Self>, target: SpacetimeTarget) -> Result<Adapter<Self>, DomainError> {
        let whiteboard = Arc::new(spacetime::SpacetimeWhiteboard::connect(context, target));
        Ok(Adapter { connection: whiteboard.clone(), cache: Some(whiteboard) })
    }
}
