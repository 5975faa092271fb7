//! Chat on the cache adapter: how the module's rows become messages, where they sit in
//! a channel's snapshot, and what a committed command tells its caller. The adapter
//! itself is the framework's [`boardsync_core::cache_adapter`]; a channel's window is
//! trimmed to its newest `max_items` after warm-up.

use async_trait::async_trait;
use boardsync_core::cache_adapter::{CacheBinding, Placement};
use boardsync_core::pg_adapter::Applied;
use boardsync_core::spacetime::{time, timestamp};
use boardsync_core::warmup::WarmupSettings;
use boardsync_core::{DomainError, ScopeKey, UserId};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::{Chat, ChatCommand, ChatEvent, Message, Reaction};
use crate::module_bindings as stdb;
use crate::postgres::{load_messages, persist_states};

boardsync_core::spacetime_module!(crate::module_bindings, row: Message, tables: [message: channel]);

#[async_trait]
impl CacheBinding for Chat {
    type Module = stdb::DbConnection;
    /// Creation time in microseconds (then the id): oldest first.
    type Order = i64;
    const TRIMS: bool = true;

    fn version(message: &Message) -> u64 {
        message.version
    }

    fn item(row: &stdb::Message) -> Option<Message> {
        Some(Message {
            id: Uuid::parse_str(&row.id).ok()?,
            channel: row.channel.clone(),
            author: row.author.clone(),
            text: row.text.clone(),
            created_at: time(row.created_at)?,
            edited_at: row.edited_at.and_then(time),
            deleted: row.deleted,
            reactions: row
                .reactions
                .iter()
                .map(|r| Reaction { user: r.user.clone(), emoji: r.emoji.clone() })
                .collect(),
            version: row.version,
        })
    }

    fn row(message: &Message) -> stdb::Message {
        stdb::Message {
            id: message.id.to_string(),
            channel: message.channel.clone(),
            author: message.author.clone(),
            text: message.text.clone(),
            created_at: timestamp(message.created_at),
            edited_at: message.edited_at.map(timestamp),
            deleted: message.deleted,
            reactions: message
                .reactions
                .iter()
                .map(|r| stdb::Reaction { user: r.user.clone(), emoji: r.emoji.clone() })
                .collect(),
            version: message.version,
        }
    }

    fn placement(row: &stdb::Message) -> Placement<i64> {
        Placement {
            scope: row.channel.clone(),
            order: row.created_at.to_micros_since_unix_epoch(),
            entity: row.id.clone(),
        }
    }

    fn owner(message: &Message) -> Option<&str> {
        Some(&message.author)
    }

    fn applied(command: &ChatCommand, user: &UserId, written: Vec<Message>) -> Result<Applied<ChatEvent>, DomainError> {
        let message =
            written.into_iter().last().ok_or_else(|| DomainError::internal("a chat command wrote nothing"))?;
        Ok(Applied::one(ChatEvent::of(command, user.as_str(), message)))
    }

    fn unchanged(command: &ChatCommand, user: &UserId, current: Vec<Message>) -> Result<ChatEvent, DomainError> {
        let message = current.into_iter().next().ok_or_else(|| {
            DomainError::internal("a chat command that changed nothing names no message the cache holds")
        })?;
        Ok(ChatEvent::of(command, user.as_str(), message))
    }

    async fn load_window(
        db: &mut PgConnection,
        channel: &ScopeKey,
        window: &WarmupSettings,
    ) -> Result<Vec<Message>, DomainError> {
        load_messages(db, channel, window.limit(), None, window.since()).await
    }

    async fn persist(tx: &mut PgConnection, messages: Vec<Message>) -> Result<usize, DomainError> {
        persist_states(tx, &messages).await
    }

    fn touches(command: &ChatCommand) -> Vec<String> {
        vec![command.message_id().to_string()]
    }
}
