//! The Kanban domain: boards of ordered columns (with optional WIP limits) holding
//! ordered cards.
//!
//! - [`domain`]: [`Kanban`] and its types ([`Column`], [`Card`], [`BoardItem`],
//!   [`KanbanCommand`], [`KanbanEvent`]); snapshot order and paging.
//! - [`rules`]: placement, WIP limits and deletion rules, shared with `modules/kanban`.
//! - [`postgres`]: the PostgreSQL adapter; [`spacetime`]: the SpacetimeDB adapter.
//! - [`module_bindings`]: the client bindings of `modules/kanban` (generated).

pub mod domain;
#[allow(clippy::all, unused)]
#[rustfmt::skip]
pub mod module_bindings;
pub mod postgres;
pub mod rules;

/// Fractional ordering keys, from the core (`rules` uses them as `crate::ordering`).
pub use boardsync_core::ordering;
pub mod spacetime;

use std::sync::Arc;

use async_trait::async_trait;
use boardsync_core::factory::SpacetimeTarget;
use boardsync_core::{Adapter, AdapterContext, Connection, DomainAdapters, DomainError};
use sqlx::migrate::Migrator;

pub use domain::{BoardItem, Card, Column, Kanban, KanbanCommand, KanbanEvent, KanbanSettings};

static MIGRATIONS: Migrator = sqlx::migrate!("./migrations");

#[async_trait]
impl DomainAdapters for Kanban {
    fn migrator() -> Migrator {
        boardsync_core::migrations::shared(&MIGRATIONS)
    }

    async fn postgres(context: AdapterContext<Self>) -> Result<Arc<dyn Connection<Self>>, DomainError> {
        Ok(Arc::new(postgres::PostgresKanban::connect(context).await?))
    }

    async fn spacetimedb(context: AdapterContext<Self>, target: SpacetimeTarget) -> Result<Adapter<Self>, DomainError> {
        let kanban = Arc::new(spacetime::SpacetimeKanban::connect(context, target));
        Ok(Adapter { connection: kanban.clone(), cache: Some(kanban) })
    }
}
