//! The poll domain: options people vote on. It is the worked example of
//! `docs/adding-a-domain.md`: everything a domain needs, and nothing more.
//!
//! - [`rules`]: its commands, settings and data-free rules, shared with `modules/poll`.
//! - [`domain`]: [`Poll`] and its types ([`PollOption`], [`PollEvent`]).
//! - [`postgres`]: its SQL, for the PostgreSQL adapter, warm-up and the outbox.
//! - [`spacetime`]: its binding to the generic cache adapter.
//! - [`module_bindings`]: the client bindings of `modules/poll` (generated).

pub mod domain;
#[allow(clippy::all, unused)]
#[rustfmt::skip]
pub mod module_bindings;
pub mod postgres;
pub mod rules;
pub mod spacetime;

pub use boardsync_core::refusal;
use boardsync_core::DomainAdapters;
use sqlx::migrate::Migrator;

pub use domain::{Poll, PollCommand, PollEvent, PollOption, PollSettings};

static MIGRATIONS: Migrator = sqlx::migrate!("./migrations");

impl DomainAdapters for Poll {
    fn migrator() -> Migrator {
        boardsync_core::migrations::shared(&MIGRATIONS)
    }
}
