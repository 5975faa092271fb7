//! Chat in PostgreSQL: the PostgreSQL adapter's SQL (reads and writes go straight to
//! PostgreSQL, which is authoritative, so this fallback is read-write), and what
//! warm-up reads and the outbox writes for the cache adapter.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use boardsync_core::pg_adapter::{Applied, PostgresBinding};
use boardsync_core::{ActingUser, DomainError, Page, ScopeKey, UserId};
use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::{Chat, ChatCommand, ChatEvent, ChatSettings, Message, Reaction};
use crate::rules::{
    changes_nothing, check_reaction_room, id_conflict, is_same_send, message_not_found, not_author, MessageView,
};

#[derive(sqlx::FromRow)]
struct MessageRow {
    id: Uuid,
    channel: String,
    author: String,
    text: String,
    created_at: DateTime<Utc>,
    edited_at: Option<DateTime<Utc>>,
    deleted: bool,
    version: i64,
}

impl MessageRow {
    fn into_message(self, reactions: Vec<Reaction>) -> Message {
        Message {
            id: self.id,
            channel: self.channel,
            author: self.author,
            text: self.text,
            created_at: self.created_at,
            edited_at: self.edited_at,
            deleted: self.deleted,
            reactions,
            version: self.version.max(0) as u64,
        }
    }
}

const MESSAGE_COLUMNS: &str = "id, channel, author, text, created_at, edited_at, deleted, version";

fn not_found(id: Uuid) -> DomainError {
    message_not_found(&id.to_string()).into()
}

/// Reactions of `ids`, each message's oldest first.
async fn reactions_of(db: &mut PgConnection, ids: &[Uuid]) -> Result<HashMap<Uuid, Vec<Reaction>>, DomainError> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(Uuid, String, String)> = sqlx::query_as(
        "SELECT message_id, user_id, emoji FROM chat_reactions WHERE message_id = ANY($1)
         ORDER BY created_at, user_id, emoji",
    )
    .bind(ids)
    .fetch_all(db)
    .await
    .map_err(DomainError::from_sqlx)?;
    let mut by_message: HashMap<Uuid, Vec<Reaction>> = HashMap::new();
    for (id, user, emoji) in rows {
        by_message.entry(id).or_default().push(Reaction { user, emoji });
    }
    Ok(by_message)
}

/// Message `id` of `channel` (deleted or not) with its reactions, locked for the rest
/// of the transaction.
async fn lock(db: &mut PgConnection, channel: &ScopeKey, id: Uuid) -> Result<Message, DomainError> {
    let row = sqlx::query_as::<_, MessageRow>(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM chat_messages WHERE id = $1 AND channel = $2 FOR UPDATE"
    ))
    .bind(id)
    .bind(channel.as_str())
    .fetch_optional(&mut *db)
    .await
    .map_err(DomainError::from_sqlx)?
    .ok_or_else(|| not_found(id))?;
    let reactions = reactions_of(db, &[id]).await?.remove(&id).unwrap_or_default();
    Ok(row.into_message(reactions))
}

/// A message as the shared retry rules see it.
fn view(message: &Message) -> MessageView<'_> {
    MessageView {
        channel: &message.channel,
        author: &message.author,
        text: &message.text,
        deleted: message.deleted,
        reactions: message.reactions.iter().map(|r| (r.user.as_str(), r.emoji.as_str())).collect(),
    }
}

async fn load(db: &mut PgConnection, id: Uuid) -> Result<Message, DomainError> {
    let row = sqlx::query_as::<_, MessageRow>(&format!("SELECT {MESSAGE_COLUMNS} FROM chat_messages WHERE id = $1"))
        .bind(id)
        .fetch_optional(&mut *db)
        .await
        .map_err(DomainError::from_sqlx)?
        .ok_or_else(|| not_found(id))?;
    let reactions = reactions_of(db, &[id]).await?.remove(&id).unwrap_or_default();
    Ok(row.into_message(reactions))
}

/// The messages of `ids` that PostgreSQL has.
pub(crate) async fn load_some(db: &mut PgConnection, ids: Vec<Uuid>) -> Result<Vec<Message>, DomainError> {
    let rows: Vec<MessageRow> =
        sqlx::query_as(&format!("SELECT {MESSAGE_COLUMNS} FROM chat_messages WHERE id = ANY($1)"))
            .bind(&ids)
            .fetch_all(&mut *db)
            .await
            .map_err(DomainError::from_sqlx)?;
    with_reactions(db, rows).await
}

/// Messages with their reactions, in the order the rows came.
async fn with_reactions(db: &mut PgConnection, rows: Vec<MessageRow>) -> Result<Vec<Message>, DomainError> {
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let mut reactions = reactions_of(db, &ids).await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let own = reactions.remove(&row.id).unwrap_or_default();
            row.into_message(own)
        })
        .collect())
}

const ADD_REACTION: &str =
    "INSERT INTO chat_reactions (message_id, user_id, emoji) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";
const REMOVE_REACTION: &str = "DELETE FROM chat_reactions WHERE message_id = $1 AND user_id = $2 AND emoji = $3";

/// Adds or removes (`statement`) `user`'s `emoji` on a message locked by the caller,
/// and raises its version (the caller checked that the reaction set changes).
async fn change_reaction(
    db: &mut PgConnection,
    user: &UserId,
    id: Uuid,
    emoji: &str,
    statement: &str,
) -> Result<(), DomainError> {
    sqlx::query(statement)
        .bind(id)
        .bind(user.as_str())
        .bind(emoji)
        .execute(&mut *db)
        .await
        .map_err(DomainError::from_sqlx)?;
    bump_version(db, id).await
}

async fn bump_version(db: &mut PgConnection, id: Uuid) -> Result<(), DomainError> {
    sqlx::query("UPDATE chat_messages SET version = version + 1 WHERE id = $1")
        .bind(id)
        .execute(db)
        .await
        .map_err(DomainError::from_sqlx)?;
    Ok(())
}

async fn send(
    db: &mut PgConnection,
    channel: &ScopeKey,
    user: &UserId,
    id: Uuid,
    text: String,
) -> Result<Applied<ChatEvent>, DomainError> {
    let inserted = sqlx::query(
        "INSERT INTO chat_messages (id, channel, author, text, created_at, version) VALUES ($1, $2, $3, $4, now(), 1)
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(id)
    .bind(channel.as_str())
    .bind(user.as_str())
    .bind(&text)
    .execute(&mut *db)
    .await
    .map_err(DomainError::from_sqlx)?
    .rows_affected();
    let message = load(db, id).await?;
    if inserted == 1 {
        return Ok(Applied::one(ChatEvent::Sent { message }));
    }
    if is_same_send(&view(&message), channel.as_str(), user.as_str(), &text) {
        return Ok(Applied::unchanged(ChatEvent::Sent { message }));
    }
    Err(id_conflict(&id.to_string()).into())
}

async fn apply_command(
    db: &mut PgConnection,
    settings: &ChatSettings,
    channel: &ScopeKey,
    user: &UserId,
    command: ChatCommand,
) -> Result<Applied<ChatEvent>, DomainError> {
    let id = command.message_id();
    if let ChatCommand::Send { text, .. } = command {
        return send(db, channel, user, id, text).await;
    }
    let message = lock(db, channel, id).await?;
    // A deleted message takes nothing but a delete again (which changes nothing).
    if message.deleted && !matches!(command, ChatCommand::Delete { .. }) {
        return Err(not_found(id));
    }
    if matches!(command, ChatCommand::Edit { .. } | ChatCommand::Delete { .. }) && message.author != user.as_str() {
        return Err(not_author().into());
    }
    if let ChatCommand::React { emoji, .. } = &command {
        let already = message.reactions.iter().any(|r| r.user == user.as_str() && &r.emoji == emoji);
        check_reaction_room(message.reactions.len(), already, settings)?;
    }
    if changes_nothing(&command, &view(&message), user.as_str()) {
        return Ok(Applied::unchanged(ChatEvent::of(&command, user.as_str(), message)));
    }
    match &command {
        ChatCommand::Send { .. } => unreachable!("a send was answered above"),
        ChatCommand::Edit { text, .. } => {
            sqlx::query("UPDATE chat_messages SET text = $2, edited_at = now(), version = version + 1 WHERE id = $1")
                .bind(id)
                .bind(text)
                .execute(&mut *db)
                .await
                .map_err(DomainError::from_sqlx)?;
        }
        ChatCommand::Delete { .. } => {
            sqlx::query("UPDATE chat_messages SET deleted = true, text = '', edited_at = now(), version = version + 1 WHERE id = $1")
                .bind(id)
                .execute(&mut *db)
                .await
                .map_err(DomainError::from_sqlx)?;
            sqlx::query("DELETE FROM chat_reactions WHERE message_id = $1")
                .bind(id)
                .execute(&mut *db)
                .await
                .map_err(DomainError::from_sqlx)?;
        }
        ChatCommand::React { emoji, .. } => change_reaction(db, user, id, emoji, ADD_REACTION).await?,
        ChatCommand::Unreact { emoji, .. } => change_reaction(db, user, id, emoji, REMOVE_REACTION).await?,
    }
    let message = load(db, id).await?;
    Ok(Applied::one(ChatEvent::of(&command, user.as_str(), message)))
}

/// A channel's messages with their reactions, newest first: at most `limit`, older
/// than message `before`, and not created before `since`.
pub(crate) async fn load_messages(
    db: &mut PgConnection,
    channel: &ScopeKey,
    limit: i64,
    before: Option<Uuid>,
    since: Option<DateTime<Utc>>,
) -> Result<Vec<Message>, DomainError> {
    let rows: Vec<MessageRow> = sqlx::query_as(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM chat_messages WHERE channel = $1
           AND ($2::uuid IS NULL OR (created_at, id) < (SELECT created_at, id FROM chat_messages WHERE id = $2))
           AND ($4::timestamptz IS NULL OR created_at >= $4)
         ORDER BY created_at DESC, id DESC LIMIT $3"
    ))
    .bind(channel.as_str())
    .bind(before)
    .bind(limit)
    .bind(since)
    .fetch_all(&mut *db)
    .await
    .map_err(DomainError::from_sqlx)?;
    with_reactions(db, rows).await
}

/// Writes messages' full states (from the cache's outbox) unless PostgreSQL already
/// has the same or a newer version; reactions are replaced with the state's.
pub(crate) async fn persist_states(db: &mut PgConnection, states: &[Message]) -> Result<usize, DomainError> {
    // A batch is a handful of statements, whatever its size: an outbox batch is
    // written a few milliseconds after its writes, so a statement per message was
    // most of PostgreSQL's work. One row per message (the newest state given): an
    // upsert may not touch a row twice.
    let mut newest: HashMap<Uuid, &Message> = HashMap::with_capacity(states.len());
    for message in states {
        let entry = newest.entry(message.id).or_insert(message);
        if message.version >= entry.version {
            *entry = message;
        }
    }
    if newest.is_empty() {
        return Ok(0);
    }
    // In id order: concurrent writers of overlapping batches lock rows in one order.
    let mut messages: Vec<&Message> = newest.into_values().collect();
    messages.sort_by_key(|m| m.id);
    let column = |f: fn(&Message) -> String| messages.iter().map(|m| f(m)).collect::<Vec<String>>();
    let ids: Vec<Uuid> = messages.iter().map(|m| m.id).collect();
    let applied: HashSet<Uuid> = sqlx::query_scalar::<_, Uuid>(
        "INSERT INTO chat_messages (id, channel, author, text, created_at, edited_at, deleted, version)
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::timestamptz[],
                              $6::timestamptz[], $7::bool[], $8::int8[])
         ON CONFLICT (id) DO UPDATE SET text = EXCLUDED.text, edited_at = EXCLUDED.edited_at,
             deleted = EXCLUDED.deleted, version = EXCLUDED.version
         WHERE chat_messages.version < EXCLUDED.version
             AND chat_messages.channel = EXCLUDED.channel AND chat_messages.author = EXCLUDED.author
         RETURNING id",
    )
    .bind(&ids)
    .bind(column(|m| m.channel.clone()))
    .bind(column(|m| m.author.clone()))
    .bind(column(|m| m.text.clone()))
    .bind(messages.iter().map(|m| m.created_at).collect::<Vec<_>>())
    .bind(messages.iter().map(|m| m.edited_at).collect::<Vec<_>>())
    .bind(messages.iter().map(|m| m.deleted).collect::<Vec<_>>())
    .bind(messages.iter().map(|m| m.version as i64).collect::<Vec<_>>())
    .fetch_all(&mut *db)
    .await
    .map_err(DomainError::from_sqlx)?
    .into_iter()
    .collect();
    if applied.is_empty() {
        return Ok(0);
    }
    // The written states' reactions replace what PostgreSQL had.
    let written: Vec<Uuid> = messages.iter().map(|m| m.id).filter(|id| applied.contains(id)).collect();
    sqlx::query("DELETE FROM chat_reactions WHERE message_id = ANY($1)")
        .bind(&written)
        .execute(&mut *db)
        .await
        .map_err(DomainError::from_sqlx)?;
    let (mut of, mut users, mut emojis, mut positions) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for message in messages.iter().filter(|m| applied.contains(&m.id)) {
        for (position, reaction) in message.reactions.iter().enumerate() {
            of.push(message.id);
            users.push(reaction.user.clone());
            emojis.push(reaction.emoji.clone());
            positions.push(position as f64);
        }
    }
    if !of.is_empty() {
        // Reactions keep their order through increasing timestamps.
        sqlx::query(
            "INSERT INTO chat_reactions (message_id, user_id, emoji, created_at)
             SELECT message_id, user_id, emoji, now() + make_interval(secs => position / 1000000.0)
             FROM unnest($1::uuid[], $2::text[], $3::text[], $4::float8[]) AS r(message_id, user_id, emoji, position)
             ON CONFLICT DO NOTHING",
        )
        .bind(&of)
        .bind(&users)
        .bind(&emojis)
        .bind(&positions)
        .execute(&mut *db)
        .await
        .map_err(DomainError::from_sqlx)?;
    }
    Ok(applied.len())
}

#[async_trait]
impl PostgresBinding for Chat {
    async fn page(db: &mut PgConnection, channel: &ScopeKey, page: Page) -> Result<Vec<Message>, DomainError> {
        let before = match page.before.as_deref() {
            Some(cursor) => Some(Uuid::parse_str(cursor).map_err(|_| {
                DomainError::bad_request("invalid_cursor", format!("before={cursor:?} is not a message id"))
            })?),
            None => None,
        };
        load_messages(db, channel, i64::from(page.limit), before, None).await
    }

    async fn apply_in(
        tx: &mut PgConnection,
        settings: &ChatSettings,
        channel: &ScopeKey,
        actor: &ActingUser,
        command: ChatCommand,
    ) -> Result<Applied<ChatEvent>, DomainError> {
        apply_command(tx, settings, channel, &actor.user, command).await
    }

    /// Messages and their reactions (which cascade).
    async fn purge(tx: &mut PgConnection, scope: &ScopeKey) -> Result<u64, DomainError> {
        let deleted = sqlx::query("DELETE FROM chat_messages WHERE channel = $1")
            .bind(scope.as_str())
            .execute(&mut *tx)
            .await
            .map_err(DomainError::from_sqlx)?;
        Ok(deleted.rows_affected())
    }

    async fn stored(db: &mut PgConnection, ids: &[String]) -> Result<Vec<Message>, DomainError> {
        load_some(db, boardsync_core::pg_adapter::uuids(ids)).await
    }
    fn changed_outside(message: Message, new: bool) -> ChatEvent {
        match (new, message.deleted) {
            (_, true) => ChatEvent::Deleted { message },
            (true, false) => ChatEvent::Sent { message },
            (false, false) => ChatEvent::Edited { message },
        }
    }
}
