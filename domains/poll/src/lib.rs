//! The poll domain: options people vote on. It is the worked example of
//! `docs/adding-a-domain.md`: everything a domain needs, and nothing more.
//!
//! - [`domain`]: [`Poll`] and its types ([`PollOption`], [`PollCommand`], [`PollEvent`]).
//! - [`postgres`]: the PostgreSQL adapter.
//! - [`spacetime`]: the SpacetimeDB adapter (the warm cache), on the framework's `Link`.
//! - [`module_bindings`]: the client bindings of `modules/poll` (generated).

pub mod domain;
#[allow(clippy::all, unused)]
#[rustfmt::skip]
pub mod module_bindings;
pub mod postgres;
pub mod spacetime;

use std::sync::Arc;

use async_trait::async_trait;
use boardsync_core::factory::SpacetimeTarget;
use boardsync_core::{Adapter, AdapterContext, Connection, DomainAdapters, DomainError};
use sqlx::migrate::Migrator;

pub use domain::{Poll, PollCommand, PollEvent, PollOption, PollSettings};

static MIGRATIONS: Migrator = sqlx::migrate!("./migrations");

#[async_trait]
impl DomainAdapters for Poll {
    fn migrator() -> Migrator {
        boardsync_core::migrations::shared(&MIGRATIONS)
    }

    async fn postgres(context: AdapterContext<Self>) -> Result<Arc<dyn Connection<Self>>, DomainError> {
        Ok(Arc::new(postgres::PostgresPoll::connect(context).await?))
    }

    async fn spacetimedb(context: AdapterContext<Self>, target: SpacetimeTarget) -> Result<Adapter<Self>, DomainError> {
        let poll = Arc::new(spacetime::SpacetimePoll::connect(context, target));
        Ok(Adapter { connection: poll.clone(), cache: Some(poll) })
    }
}
