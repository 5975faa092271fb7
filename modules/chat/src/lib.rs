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
use rules::{
    changes_nothing, check, check_reaction_room, id_conflict, is_same_send, message_not_found, not_author, ChatCommand,
    ChatSettings, MessageView,
};
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

/// A message of the command's channel, deleted or not.
fn in_channel(w: &Write<'_>, id: &str) -> Result<Message, refusal::Refusal> {
    match w.ctx.db.message().id().find(id.to_string()) {
        Some(m) if m.channel == w.scope => Ok(m),
        _ => Err(message_not_found(id)),
    }
}

/// A live (not deleted) message of the command's channel.
fn live(w: &Write<'_>, id: &str) -> Result<Message, refusal::Refusal> {
    match in_channel(w, id)? {
        m if m.deleted => Err(message_not_found(id)),
        m => Ok(m),
    }
}

/// A message the caller wrote, of the command's channel.
fn authored(w: &Write<'_>, m: Message) -> Result<Message, refusal::Refusal> {
    if m.author != w.user {
        return Err(not_author());
    }
    Ok(m)
}

/// A message as the shared retry rules see it.
fn view(m: &Message) -> MessageView<'_> {
    MessageView {
        channel: &m.channel,
        author: &m.author,
        text: &m.text,
        deleted: m.deleted,
        reactions: m.reactions.iter().map(|r| (r.user.as_str(), r.emoji.as_str())).collect(),
    }
}

impl Rules for Module {
    type Command = ChatCommand;
    type Settings = ChatSettings;

    fn apply(w: &Write<'_>, settings: &ChatSettings, command: ChatCommand) -> Result<(), String> {
        check(&command, settings)?;
        let id = command.message_id().to_string();
        let mut m = match &command {
            ChatCommand::Send { text, .. } => match w.ctx.db.message().id().find(&id) {
                // A retried send changes nothing; any other reuse of the id is a conflict.
                Some(m) if is_same_send(&view(&m), w.scope, w.user, text) => return Ok(()),
                Some(_) => return Err(id_conflict(&id).into()),
                None => Message {
                    id,
                    channel: w.scope.to_string(),
                    author: w.user.to_string(),
                    text: text.clone(),
                    created_at: w.ctx.timestamp,
                    edited_at: None,
                    deleted: false,
                    reactions: Vec::new(),
                    version: 0,
                },
            },
            ChatCommand::Edit { .. } => authored(w, live(w, &id)?)?,
            // A deleted message is found too: deleting it again changes nothing.
            ChatCommand::Delete { .. } => authored(w, in_channel(w, &id)?)?,
            ChatCommand::React { emoji, .. } => {
                let m = live(w, &id)?;
                let already = m.reactions.iter().any(|r| r.user == w.user && &r.emoji == emoji);
                check_reaction_room(m.reactions.len(), already, settings)?;
                m
            }
            ChatCommand::Unreact { .. } => live(w, &id)?,
        };
        if changes_nothing(&command, &view(&m), w.user) {
            return Ok(());
        }
        match command {
            // A new message is complete as built.
            ChatCommand::Send { .. } => {}
            ChatCommand::Edit { text, .. } => {
                m.text = text;
                m.edited_at = Some(w.ctx.timestamp);
            }
            ChatCommand::Delete { .. } => {
                m.deleted = true;
                m.text = String::new();
                m.reactions.clear();
                m.edited_at = Some(w.ctx.timestamp);
            }
            ChatCommand::React { emoji, .. } => m.reactions.push(Reaction { user: w.user.to_string(), emoji }),
            ChatCommand::Unreact { emoji, .. } => m.reactions.retain(|r| !(r.user == w.user && r.emoji == emoji)),
        }
        m.version += 1;
        w.record(m);
        Ok(())
    }

    rows_in!(message, channel);

    /// Keeps a channel's newest `keep` messages; messages with pending writes stay.
    fn trim(ctx: &ReducerContext, channel: &str, keep: u32, floor: &str) -> Option<String> {
        let mut rows: Vec<Message> = ctx.db.message().channel().filter(channel).collect();
        rows.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| b.id.cmp(&a.id)));
        // How many of the newest rows the cache holds whole: those from the floor up.
        let whole = match floor {
            "" => rows.len(),
            contract::NONE_CACHED => 0,
            entity => rows.iter().position(|row| row.id == entity).map_or(0, |at| at + 1),
        };
        let moved = if keep == 0 {
            Some(contract::NONE_CACHED.to_string())
        } else {
            ((keep as usize) < whole).then(|| rows[keep as usize - 1].id.clone())
        };
        for row in rows.into_iter().skip(keep as usize) {
            if !pending(ctx, &row.id) {
                ctx.db.message().id().delete(row.id);
            }
        }
        moved
    }
}
