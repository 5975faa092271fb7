//! The whiteboard domain: shapes, text and freehand strokes with geometry, style and
//! z-order; the last write to an element wins.
//!
//! - [`domain`]: [`Whiteboard`] and its types ([`Element`], [`WhiteboardCommand`],
//!   [`WhiteboardEvent`]), limits (stroke points, style size, elements per move).
//! - [`rules`]: its commands, settings and data-free rules, shared with `modules/whiteboard`.
//! - [`layers`]: z-order rules, shared with `modules/whiteboard`.
//! - [`postgres`]: its SQL, for the PostgreSQL adapter, warm-up and the outbox.
//! - [`spacetime`]: its binding to the generic cache adapter.
//! - [`module_bindings`]: the client bindings of `modules/whiteboard` (generated).

pub mod domain;
pub mod layers;
#[allow(clippy::all, unused)]
#[rustfmt::skip]
pub mod module_bindings;
pub mod postgres;
pub mod rules;
pub mod spacetime;

/// Fractional ordering keys, from the core (`layers` uses them as `crate::ordering`).
pub use boardsync_core::ordering;

/// Refusals, from the core (the shared rules use them as `crate::refusal`).
pub use boardsync_core::refusal;
use boardsync_core::DomainAdapters;
use sqlx::migrate::Migrator;

pub use domain::{Element, Whiteboard, WhiteboardCommand, WhiteboardEvent, WhiteboardSettings};

static MIGRATIONS: Migrator = sqlx::migrate!("./migrations");

impl DomainAdapters for Whiteboard {
    fn migrator() -> Migrator {
        boardsync_core::migrations::shared(&MIGRATIONS)
    }
}
