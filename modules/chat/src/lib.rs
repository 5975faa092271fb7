//! SpacetimeDB module for the chat domain: the warm cache in front of PostgreSQL. The
//! contract with the backend (owner, epoch, settings, outbox, warm-up, acks) is
//! `modules/contract.rs`; the commands and limits are the domain's own `rules.rs`.
//!
//! `message` holds one row per chat message, reactions embedded, so every change to a
//! message is one row update and one outbox entry. Every write bumps its `version`.

#[macro_use]
#[path = "../../contract.rs"]
mod contract;
#[path = "../../../domains/chat/src/rules.rs"]
mod rules;

use contract::{pending, refusal, Rules, Write};
use rules::{check, check_reaction_room, id_conflict, message_not_found, not_author, ChatCommand, ChatSettings};
use spacetimedb::{table, ReducerContext, SpacetimeType, Table, Timestamp};

#[derive(SpacetimeType, Clone, PartialEq, Eq, Debug)]
pub struct Reaction {
    pub user: String,
    pub emoji: String,
}

#[table(name = message)]
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

pub type Row = Message;

pub struct Module;

/// A live (not deleted) message of the command's channel.
fn live(w: &Write<'_>, id: &str) -> Result<Message, refusal::Refusal> {
    match w.ctx.db.message().id().find(id.to_string()) {
        Some(m) if !m.deleted && m.channel == w.scope => Ok(m),
        _ => Err(message_not_found(id)),
    }
}

/// A live message the caller wrote.
fn own(w: &Write<'_>, id: &str) -> Result<Message, refusal::Refusal> {
    let m = live(w, id)?;
    if m.author != w.user {
        return Err(not_author());
    }
    Ok(m)
}

impl Rules for Module {
    type Command = ChatCommand;
    type Settings = ChatSettings;

    fn apply(w: &Write<'_>, settings: &ChatSettings, command: ChatCommand) -> Result<(), String> {
        check(&command, settings)?;
        let id = command.message_id().to_string();
        let mut m = match command {
            ChatCommand::Send { text, .. } => match w.ctx.db.message().id().find(&id) {
                // A retried send is idempotent; any other reuse of the id is a conflict.
                Some(m) if m.channel == w.scope && m.author == w.user && m.text == text && !m.deleted => {
                    w.record_unchanged(id, m);
                    return Ok(());
                }
                Some(_) => return Err(id_conflict(&id).into()),
                None => Message {
                    id,
                    channel: w.scope.to_string(),
                    author: w.user.to_string(),
                    text,
                    created_at: w.ctx.timestamp,
                    edited_at: None,
                    deleted: false,
                    reactions: Vec::new(),
                    version: 0,
                },
            },
            ChatCommand::Edit { text, .. } => {
                let mut m = own(w, &id)?;
                m.text = text;
                m.edited_at = Some(w.ctx.timestamp);
                m
            }
            ChatCommand::Delete { .. } => {
                let mut m = own(w, &id)?;
                m.deleted = true;
                m.text = String::new();
                m.reactions.clear();
                m.edited_at = Some(w.ctx.timestamp);
                m
            }
            ChatCommand::React { emoji, .. } => {
                let mut m = live(w, &id)?;
                let reaction = Reaction { user: w.user.to_string(), emoji };
                check_reaction_room(m.reactions.len(), m.reactions.contains(&reaction), settings)?;
                if !m.reactions.contains(&reaction) {
                    m.reactions.push(reaction);
                }
                m
            }
            ChatCommand::Unreact { emoji, .. } => {
                let mut m = live(w, &id)?;
                m.reactions.retain(|r| !(r.user == w.user && r.emoji == emoji));
                m
            }
        };
        m.version += 1;
        w.record(m);
        Ok(())
    }

    rows_in!(message);

    /// Keeps a channel's newest `keep` messages; messages with pending writes stay.
    fn trim(ctx: &ReducerContext, channel: &str, keep: u32) {
        let mut rows: Vec<Message> = ctx.db.message().channel().filter(channel).collect();
        rows.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| b.id.cmp(&a.id)));
        for row in rows.into_iter().skip(keep as usize) {
            if !pending(ctx, &row.id) {
                ctx.db.message().id().delete(row.id);
            }
        }
    }
}
