//! Chat's commands, settings and the rules that need no data, written once: the
//! backend uses this module and `modules/chat` includes this file (`#[path]`), so
//! both adapters parse the same commands and refuse the same texts and emoji.

use serde::{Deserialize, Serialize};
use unicode_segmentation::UnicodeSegmentation;
use uuid::Uuid;

use crate::refusal::{check_text_chars, Refusal};

/// What a client may ask. The message id of `send` comes from the client, so a
/// retried send is idempotent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
// For the API document; the wasm module that includes this file builds without it.
#[cfg_attr(not(target_family = "wasm"), derive(schemars::JsonSchema))]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ChatCommand {
    Send { id: Uuid, text: String },
    Edit { id: Uuid, text: String },
    Delete { id: Uuid },
    React { id: Uuid, emoji: String },
    Unreact { id: Uuid, emoji: String },
}

impl ChatCommand {
    /// The message the command is about.
    pub fn message_id(&self) -> Uuid {
        match self {
            Self::Send { id, .. }
            | Self::Edit { id, .. }
            | Self::Delete { id }
            | Self::React { id, .. }
            | Self::Unreact { id, .. } => *id,
        }
    }
}

/// `[domains.chat]`, less the framework's keys.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatSettings {
    /// Longest message text, in characters.
    pub max_text_chars: u32,
    /// The `:shortcode:` reactions accepted besides single emoji.
    pub shortcodes: Vec<String>,
    /// Most reactions (user and emoji pairs) one message holds.
    pub max_reactions_per_message: u32,
}

/// Refuses a new reaction on a message that holds `held` of them already (a reaction
/// the message has is no new one: adding it again changes nothing).
pub fn check_reaction_room(held: usize, already: bool, settings: &ChatSettings) -> Result<(), Refusal> {
    if already || held < settings.max_reactions_per_message as usize {
        return Ok(());
    }
    let message = format!("a message holds at most {} reactions", settings.max_reactions_per_message);
    Err(Refusal::new("invalid", "too_many_reactions", message))
}

/// Refuses an empty or too long text, and a reaction that is not one emoji or a
/// configured `:shortcode:`.
pub fn check(command: &ChatCommand, settings: &ChatSettings) -> Result<(), Refusal> {
    match command {
        ChatCommand::Send { text, .. } | ChatCommand::Edit { text, .. } => check_text(text, settings),
        ChatCommand::React { emoji, .. } | ChatCommand::Unreact { emoji, .. } => check_emoji(emoji, settings),
        ChatCommand::Delete { .. } => Ok(()),
    }
}

fn check_text(text: &str, settings: &ChatSettings) -> Result<(), Refusal> {
    if text.trim().is_empty() {
        return Err(Refusal::new("invalid", "text_empty", "text must not be empty"));
    }
    check_text_chars("text", text)?;
    if text.chars().count() > settings.max_text_chars as usize {
        let message = format!("text is longer than {} characters", settings.max_text_chars);
        return Err(Refusal::new("invalid", "text_too_long", message));
    }
    Ok(())
}

/// One emoji (a single grapheme that is not a letter, digit, space or punctuation
/// mark), or one of the configured `:shortcodes:`.
fn check_emoji(emoji: &str, settings: &ChatSettings) -> Result<(), Refusal> {
    if settings.shortcodes.iter().any(|code| code == emoji) {
        return Ok(());
    }
    let mut graphemes = emoji.graphemes(true);
    let single = matches!((graphemes.next(), graphemes.next()), (Some(_), None));
    let first = emoji.chars().next();
    let pictographic = first.is_some_and(|c| !c.is_ascii() && !c.is_alphanumeric() && !c.is_whitespace());
    if single && pictographic {
        Ok(())
    } else {
        let message = format!("{emoji:?} is neither a single emoji nor a known :shortcode:");
        Err(Refusal::new("invalid", "invalid_emoji", message))
    }
}

pub fn message_not_found(id: &str) -> Refusal {
    Refusal::new("not_found", "message_not_found", format!("message {id} not found"))
}

pub fn id_conflict(id: &str) -> Refusal {
    Refusal::new("conflict", "id_conflict", format!("message id {id} is already used"))
}

pub fn not_author() -> Refusal {
    Refusal::new("forbidden", "not_author", "only the author may change this message")
}

/// A stored message as the retry rules see it; each adapter builds one from its own
/// row, so both decide alike.
pub struct MessageView<'a> {
    pub channel: &'a str,
    pub author: &'a str,
    pub text: &'a str,
    pub deleted: bool,
    /// Its reactions, as (user, emoji).
    pub reactions: Vec<(&'a str, &'a str)>,
}

/// Whether a `send` of `text` by `user` in `channel` is the send that created
/// `message`: a retry, answered with the message as it is. Any other send with its id
/// is an [`id_conflict`], a send onto a deleted message too (its text is gone, so
/// nothing shows it was the same).
pub fn is_same_send(message: &MessageView, channel: &str, user: &str, text: &str) -> bool {
    !message.deleted && message.channel == channel && message.author == user && message.text == text
}

/// Whether `command` by `user` leaves `message` as it is: an edit to the text it has,
/// a delete of a deleted message, a reaction it has, an unreact of one it lacks. Such
/// a command writes nothing, raises no version and tells no subscriber; it answers
/// with the message as it is. (A send never changes a message: see [`is_same_send`].)
pub fn changes_nothing(command: &ChatCommand, message: &MessageView, user: &str) -> bool {
    let has_reaction = |emoji: &str| message.reactions.iter().any(|&(by, e)| by == user && e == emoji);
    match command {
        ChatCommand::Send { .. } => false,
        ChatCommand::Edit { text, .. } => message.text == text,
        ChatCommand::Delete { .. } => message.deleted,
        ChatCommand::React { emoji, .. } => has_reaction(emoji),
        ChatCommand::Unreact { emoji, .. } => !has_reaction(emoji),
    }
}
