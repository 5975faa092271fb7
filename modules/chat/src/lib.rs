//! SpacetimeDB module for the chat domain: the warm cache in front of PostgreSQL.
//!
//! - `message`: one row per chat message, reactions embedded, so every change to a
//!   message is one row update and one live event.
//! - `sync_outbox` (private): one entry per write, holding the entity's full state
//!   after the write. The backend's OutboxPoller drains it into PostgreSQL and acks.
//! - `owner` (private): the identity that published the module, i.e. the backend.
//!   Every data-changing reducer refuses any other caller.
//! - `cache_epoch`: set once in `init`; a new value tells the backend the database
//!   was recreated and must be warmed again.
//!
//! Every write bumps the message's `version`; PostgreSQL stores the version it has.
//! Warm-up never replaces a cached row with an older version, and never touches a
//! row with a pending outbox entry, so it cannot undo a write.
//!
//! Every reducer takes the caller's `request_id` first, so the backend can match the
//! outcome to the call. Reducer errors are `kind|code|message`, so the backend can
//! turn them into the same JSON error the PostgreSQL adapter gives.

use spacetimedb::{reducer, table, Identity, ReducerContext, SpacetimeType, Table, Timestamp};

#[table(name = owner)]
pub struct Owner {
    #[primary_key]
    pub id: u8,
    pub identity: Identity,
}

#[table(name = cache_epoch, public)]
pub struct CacheEpoch {
    #[primary_key]
    pub id: u8,
    /// Microseconds since the Unix epoch at `init`: unique per database incarnation.
    pub epoch: u64,
}

#[table(name = chat_limits)]
pub struct ChatLimits {
    #[primary_key]
    pub id: u8,
    pub max_text_chars: u32,
}

#[derive(SpacetimeType, Clone, PartialEq, Eq, Debug)]
pub struct Reaction {
    pub user: String,
    pub emoji: String,
}

#[table(name = message, public)]
#[derive(Clone)]
pub struct Message {
    #[primary_key]
    pub id: String,
    #[index(btree)]
    pub channel: String,
    pub author: String,
    pub text: String,
    pub created_at: Timestamp,
    pub edited_at: Option<Timestamp>,
    pub deleted: bool,
    pub reactions: Vec<Reaction>,
    /// Bumped by every write; PostgreSQL keeps the version it last applied.
    pub version: u64,
}

#[table(name = sync_outbox)]
pub struct SyncOutbox {
    #[primary_key]
    #[auto_inc]
    pub seq: u64,
    #[index(btree)]
    pub entity: String,
    pub kind: String,
    /// The entity's full state after this write, as JSON.
    pub payload: String,
    pub request_id: String,
    pub created_at: Timestamp,
}

const DEFAULT_MAX_TEXT_CHARS: u32 = 4_000;
/// Hard bound on an emoji or shortcode; the backend applies the real rule.
const MAX_EMOJI_BYTES: usize = 64;

fn err(kind: &str, code: &str, message: impl std::fmt::Display) -> String {
    format!("{kind}|{code}|{message}")
}

fn require_owner(ctx: &ReducerContext) -> Result<(), String> {
    match ctx.db.owner().id().find(0) {
        Some(owner) if owner.identity == ctx.sender => Ok(()),
        _ => Err(err("forbidden", "not_owner", "only the backend may call this reducer")),
    }
}

#[reducer(init)]
pub fn init(ctx: &ReducerContext) {
    ctx.db.owner().insert(Owner { id: 0, identity: ctx.sender });
    ctx.db.cache_epoch().insert(CacheEpoch { id: 0, epoch: ctx.timestamp.to_micros_since_unix_epoch() as u64 });
    ctx.db.chat_limits().insert(ChatLimits { id: 0, max_text_chars: DEFAULT_MAX_TEXT_CHARS });
}

#[reducer]
pub fn configure(ctx: &ReducerContext, request_id: String, max_text_chars: u32) -> Result<(), String> {
    // The id only travels back to the caller, to match the outcome to the call.
    let _ = request_id;
    require_owner(ctx)?;
    ctx.db.chat_limits().id().update(ChatLimits { id: 0, max_text_chars });
    Ok(())
}

fn check_text(ctx: &ReducerContext, text: &str) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err(err("invalid", "text_empty", "text must not be empty"));
    }
    let max = ctx.db.chat_limits().id().find(0).map_or(DEFAULT_MAX_TEXT_CHARS, |l| l.max_text_chars);
    if text.chars().count() > max as usize {
        return Err(err("too_large", "text_too_long", format!("text is longer than {max} characters")));
    }
    Ok(())
}

fn find_live(ctx: &ReducerContext, channel: &str, id: &str) -> Result<Message, String> {
    match ctx.db.message().id().find(id.to_string()) {
        Some(m) if !m.deleted && m.channel == channel => Ok(m),
        _ => Err(err("not_found", "message_not_found", format!("message {id} not found"))),
    }
}

fn require_author(message: &Message, user: &str) -> Result<(), String> {
    if message.author == user {
        Ok(())
    } else {
        Err(err("forbidden", "not_author", "only the author may change this message"))
    }
}

fn micros(t: Timestamp) -> i64 {
    t.to_micros_since_unix_epoch()
}

/// The message's full state as the outbox carries it to PostgreSQL.
fn message_state_json(m: &Message) -> String {
    let reactions: Vec<serde_json::Value> =
        m.reactions.iter().map(|r| serde_json::json!({ "user": r.user, "emoji": r.emoji })).collect();
    serde_json::json!({
        "id": m.id,
        "channel": m.channel,
        "author": m.author,
        "text": m.text,
        "created_at_micros": micros(m.created_at),
        "edited_at_micros": m.edited_at.map(micros),
        "deleted": m.deleted,
        "reactions": reactions,
        "version": m.version,
    })
    .to_string()
}

fn append_outbox(ctx: &ReducerContext, kind: &str, request_id: String, m: &Message) {
    ctx.db.sync_outbox().insert(SyncOutbox {
        seq: 0,
        entity: m.id.clone(),
        kind: kind.to_string(),
        payload: message_state_json(m),
        request_id,
        created_at: ctx.timestamp,
    });
}

fn write(ctx: &ReducerContext, kind: &str, request_id: String, mut m: Message) {
    m.version += 1;
    let m = if ctx.db.message().id().find(m.id.clone()).is_some() {
        ctx.db.message().id().update(m)
    } else {
        ctx.db.message().insert(m)
    };
    append_outbox(ctx, kind, request_id, &m);
}

#[reducer]
pub fn send(
    ctx: &ReducerContext,
    request_id: String,
    channel: String,
    id: String,
    author: String,
    text: String,
) -> Result<(), String> {
    require_owner(ctx)?;
    check_text(ctx, &text)?;
    if let Some(existing) = ctx.db.message().id().find(id.clone()) {
        // A retried send with the same id and content is idempotent; anything else is a conflict.
        if existing.channel == channel && existing.author == author && existing.text == text && !existing.deleted {
            // The retry still gets an outbox entry, so a durable write waits for it.
            append_outbox(ctx, "send", request_id, &existing);
            return Ok(());
        }
        return Err(err("conflict", "id_conflict", format!("message id {id} is already used")));
    }
    let m = Message {
        id,
        channel,
        author,
        text,
        created_at: ctx.timestamp,
        edited_at: None,
        deleted: false,
        reactions: Vec::new(),
        version: 0,
    };
    write(ctx, "send", request_id, m);
    Ok(())
}

#[reducer]
pub fn edit(
    ctx: &ReducerContext,
    request_id: String,
    channel: String,
    id: String,
    user: String,
    text: String,
) -> Result<(), String> {
    require_owner(ctx)?;
    check_text(ctx, &text)?;
    let mut m = find_live(ctx, &channel, &id)?;
    require_author(&m, &user)?;
    m.text = text;
    m.edited_at = Some(ctx.timestamp);
    write(ctx, "edit", request_id, m);
    Ok(())
}

#[reducer]
pub fn delete(
    ctx: &ReducerContext,
    request_id: String,
    channel: String,
    id: String,
    user: String,
) -> Result<(), String> {
    require_owner(ctx)?;
    let mut m = find_live(ctx, &channel, &id)?;
    require_author(&m, &user)?;
    m.deleted = true;
    m.text = String::new();
    m.reactions.clear();
    m.edited_at = Some(ctx.timestamp);
    write(ctx, "delete", request_id, m);
    Ok(())
}

fn check_emoji(emoji: &str) -> Result<(), String> {
    if emoji.is_empty() || emoji.len() > MAX_EMOJI_BYTES {
        return Err(err("invalid", "invalid_emoji", "emoji is empty or too long"));
    }
    Ok(())
}

/// Adds or removes a reaction on a live message with `change`.
fn change_reactions(
    ctx: &ReducerContext,
    kind: &str,
    request_id: String,
    channel: &str,
    id: &str,
    emoji: &str,
    change: impl FnOnce(&mut Vec<Reaction>),
) -> Result<(), String> {
    require_owner(ctx)?;
    check_emoji(emoji)?;
    let mut m = find_live(ctx, channel, id)?;
    change(&mut m.reactions);
    write(ctx, kind, request_id, m);
    Ok(())
}

#[reducer]
pub fn react(
    ctx: &ReducerContext,
    request_id: String,
    channel: String,
    id: String,
    user: String,
    emoji: String,
) -> Result<(), String> {
    let reaction = Reaction { user, emoji: emoji.clone() };
    change_reactions(ctx, "react", request_id, &channel, &id, &emoji, |reactions| {
        if !reactions.contains(&reaction) {
            reactions.push(reaction);
        }
    })
}

#[reducer]
pub fn unreact(
    ctx: &ReducerContext,
    request_id: String,
    channel: String,
    id: String,
    user: String,
    emoji: String,
) -> Result<(), String> {
    change_reactions(ctx, "unreact", request_id, &channel, &id, &emoji, |reactions| {
        reactions.retain(|r| !(r.user == user && r.emoji == emoji))
    })
}

/// Loads rows from PostgreSQL into the cache. A message with an entry still pending
/// in the outbox is newer in the cache than in PostgreSQL, and so is one whose cached
/// version is higher (its entry was acked after warm-up read PostgreSQL): both are
/// left alone, so a pending edit is not reverted, a pending delete not resurrected, a
/// pending reaction not dropped.
#[reducer]
pub fn warm_messages(ctx: &ReducerContext, request_id: String, rows: Vec<Message>) -> Result<(), String> {
    // The id only travels back to the caller, to match the outcome to the call.
    let _ = request_id;
    require_owner(ctx)?;
    for row in rows {
        if ctx.db.sync_outbox().entity().filter(&row.id).next().is_some() {
            continue;
        }
        match ctx.db.message().id().find(row.id.clone()) {
            Some(cached) if cached.version > row.version => {}
            Some(_) => {
                ctx.db.message().id().update(row);
            }
            None => {
                ctx.db.message().insert(row);
            }
        }
    }
    Ok(())
}

/// A barrier after `warm_messages`: reducers from one connection run in order, so its
/// success tells the backend the batch before it ran, without the batch's rows being
/// echoed back (the backend calls `warm_messages` without success notification).
#[reducer]
pub fn warm_done(ctx: &ReducerContext, request_id: String) -> Result<(), String> {
    // The id only travels back to the caller, to match the outcome to the call.
    let _ = request_id;
    require_owner(ctx)
}

/// Removes outbox entries whose effect is committed in PostgreSQL.
#[reducer]
pub fn ack_outbox(ctx: &ReducerContext, request_id: String, seqs: Vec<u64>) -> Result<(), String> {
    // The id only travels back to the caller, to match the outcome to the call.
    let _ = request_id;
    require_owner(ctx)?;
    for seq in seqs {
        ctx.db.sync_outbox().seq().delete(seq);
    }
    Ok(())
}

/// Keeps only a channel's newest `keep` messages in the cache (PostgreSQL keeps all).
/// Messages with pending outbox entries stay.
#[reducer]
pub fn trim_channel(ctx: &ReducerContext, request_id: String, channel: String, keep: u32) -> Result<(), String> {
    // The id only travels back to the caller, to match the outcome to the call.
    let _ = request_id;
    require_owner(ctx)?;
    let mut rows: Vec<Message> = ctx.db.message().channel().filter(&channel).collect();
    rows.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| b.id.cmp(&a.id)));
    for row in rows.into_iter().skip(keep as usize) {
        if ctx.db.sync_outbox().entity().filter(&row.id).next().is_none() {
            ctx.db.message().id().delete(row.id);
        }
    }
    Ok(())
}
