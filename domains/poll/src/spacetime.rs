//! Polls on the cache adapter: how the module's rows become options, where they sit
//! in a poll's snapshot, and what a committed command tells its caller. The adapter
//! itself is the framework's [`boardsync_core::cache_adapter`].

use async_trait::async_trait;
use boardsync_core::cache_adapter::{CacheBinding, Placement};
use boardsync_core::pg_adapter::Applied;
use boardsync_core::spacetime::{time, timestamp};
use boardsync_core::warmup::WarmupSettings;
use boardsync_core::{DomainError, ScopeKey, UserId};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::{Poll, PollCommand, PollEvent, PollOption};
use crate::module_bindings as stdb;
use crate::postgres::{load_options, persist_states};

boardsync_core::spacetime_module!(crate::module_bindings, row: PollOption, tables: [poll_option: poll]);

#[async_trait]
impl CacheBinding for Poll {
    type Module = stdb::DbConnection;
    /// Creation time in microseconds (then the id): oldest first.
    type Order = i64;

    fn version(option: &PollOption) -> u64 {
        option.version
    }

    fn item(row: &stdb::PollOption) -> Option<PollOption> {
        Some(PollOption {
            id: Uuid::parse_str(&row.id).ok()?,
            poll: row.poll.clone(),
            label: row.label.clone(),
            author: row.author.clone(),
            updated_by: row.updated_by.clone(),
            created_at: time(row.created_at)?,
            removed: row.removed,
            voters: row.voters.clone(),
            version: row.version,
        })
    }

    fn row(option: &PollOption) -> stdb::PollOption {
        stdb::PollOption {
            id: option.id.to_string(),
            poll: option.poll.clone(),
            label: option.label.clone(),
            author: option.author.clone(),
            updated_by: option.updated_by.clone(),
            created_at: timestamp(option.created_at),
            removed: option.removed,
            voters: option.voters.clone(),
            version: option.version,
        }
    }

    fn placement(row: &stdb::PollOption) -> Placement<i64> {
        Placement {
            scope: row.poll.clone(),
            order: row.created_at.to_micros_since_unix_epoch(),
            entity: row.id.clone(),
        }
    }

    fn owner(option: &PollOption) -> Option<&str> {
        Some(&option.author)
    }

    fn applied(
        command: &PollCommand,
        user: &UserId,
        written: Vec<PollOption>,
    ) -> Result<Applied<PollEvent>, DomainError> {
        let option = written.into_iter().last().ok_or_else(|| DomainError::internal("a poll command wrote nothing"))?;
        Ok(Applied::one(PollEvent::of(command, user.as_str(), option)))
    }

    fn unchanged(command: &PollCommand, user: &UserId, current: Vec<PollOption>) -> Result<PollEvent, DomainError> {
        let option = current.into_iter().next().ok_or_else(|| {
            DomainError::internal("a poll command that changed nothing names no option the cache holds")
        })?;
        Ok(PollEvent::of(command, user.as_str(), option))
    }

    async fn load_window(
        db: &mut PgConnection,
        poll: &ScopeKey,
        window: &WarmupSettings,
    ) -> Result<Vec<PollOption>, DomainError> {
        load_options(db, poll, window.limit(), None, window.since()).await
    }

    async fn persist(tx: &mut PgConnection, options: Vec<PollOption>) -> Result<usize, DomainError> {
        persist_states(tx, &options).await
    }

    fn touches(command: &PollCommand) -> Vec<String> {
        vec![command.option_id().to_string()]
    }
}
