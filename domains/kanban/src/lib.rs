//! The Kanban domain: boards of ordered columns (with optional WIP limits) holding
//! ordered cards.
//!
//! - [`domain`]: [`Kanban`] and its types ([`Column`], [`Card`], [`BoardItem`],
//!   [`KanbanCommand`], [`KanbanEvent`]); snapshot order and paging.
//! - [`rules`]: its commands, settings, placement, WIP limits and deletion rules,
//!   shared with `modules/kanban`.
//! - [`postgres`]: its SQL, for the PostgreSQL adapter, warm-up and the outbox.
//! - [`spacetime`]: its binding to the generic cache adapter.
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

/// Refusals, from the core (the shared rules use them as `crate::refusal`).
pub use boardsync_core::refusal;
use boardsync_core::DomainAdapters;
use sqlx::migrate::Migrator;

pub use domain::{BoardItem, Card, Column, Kanban, KanbanCommand, KanbanEvent, KanbanSettings};

static MIGRATIONS: Migrator = sqlx::migrate!("./migrations");

impl DomainAdapters for Kanban {
    fn migrator() -> Migrator {
        boardsync_core::migrations::shared(&MIGRATIONS)
    }
}
