//! Chat's types and rules: what a message is, what clients may ask, what they see.

use crate::rules::check;
pub use crate::rules::{ChatCommand, ChatSettings};
use boardsync_core::{Domain, DomainError};
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The chat domain.
pub struct Chat;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Reaction {
    pub user: String,
    pub emoji: String,
}

/// A message with its reactions (oldest first). A deleted message stays as a
/// tombstone: `deleted` set, text and reactions emptied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Message {
    pub id: Uuid,
    pub channel: String,
    pub author: String,
    pub text: String,
    pub created_at: DateTime<Utc>,
    pub edited_at: Option<DateTime<Utc>>,
    pub deleted: bool,
    pub reactions: Vec<Reaction>,
    /// Bumped by every write.
    pub version: u64,
}

/// What happened, with the message's full state after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ChatEvent {
    Sent { message: Message },
    Edited { message: Message },
    Deleted { message: Message },
    Reacted { message: Message, user: String, emoji: String },
    Unreacted { message: Message, user: String, emoji: String },
}

impl ChatEvent {
    pub fn message(&self) -> &Message {
        match self {
            Self::Sent { message }
            | Self::Edited { message }
            | Self::Deleted { message }
            | Self::Reacted { message, .. }
            | Self::Unreacted { message, .. } => message,
        }
    }

    /// The event `command` by `user` produced, given the message's state after it.
    pub fn of(command: &ChatCommand, user: &str, message: Message) -> Self {
        let user = user.to_string();
        match command {
            ChatCommand::Send { .. } => Self::Sent { message },
            ChatCommand::Edit { .. } => Self::Edited { message },
            ChatCommand::Delete { .. } => Self::Deleted { message },
            ChatCommand::React { emoji, .. } => Self::Reacted { message, user, emoji: emoji.clone() },
            ChatCommand::Unreact { emoji, .. } => Self::Unreacted { message, user, emoji: emoji.clone() },
        }
    }
}

/// A channel's own settings: none yet, and unknown keys are refused.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {}

impl Domain for Chat {
    const NAME: &'static str = "chat";
    const SCOPE: &'static str = "channel";
    const SNAPSHOT: &'static str = "Messages newest first (`before` pages to older ones). A deleted message stays as a tombstone: `deleted` is true and its text and reactions are empty, so a client can take it off the screen.";
    type Item = Message;
    type Command = ChatCommand;
    type Event = ChatEvent;
    type Settings = ChatSettings;
    type ScopeConfig = ChannelConfig;

    fn validate(command: &ChatCommand, settings: &ChatSettings) -> Result<(), DomainError> {
        check(command, settings).map_err(DomainError::from)
    }

    fn cursor(message: &Message) -> String {
        message.id.to_string()
    }

    /// Cheaper than the JSON size warm-up would otherwise measure per message.
    fn weight(message: &Message) -> usize {
        let reactions: usize = message.reactions.iter().map(|r| r.user.len() + r.emoji.len() + 32).sum();
        200 + message.text.len() + message.channel.len() + message.author.len() + reactions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> ChatSettings {
        ChatSettings { max_text_chars: 10, shortcodes: vec![":thumbsup:".into()], max_reactions_per_message: 200 }
    }

    fn id() -> Uuid {
        Uuid::nil()
    }

    #[test]
    fn text_must_be_present_and_within_the_limit() {
        let send = |text: &str| Chat::validate(&ChatCommand::Send { id: id(), text: text.into() }, &settings());
        assert!(send("hello").is_ok());
        assert!(send("ééééééééé!").is_ok(), "the limit counts characters, not bytes");
        assert_eq!(send("  \n").unwrap_err().code, "text_empty");
        assert_eq!(send("01234567890").unwrap_err().code, "text_too_long");
    }

    #[test]
    fn reactions_are_single_emoji_or_known_shortcodes() {
        let react = |emoji: &str| Chat::validate(&ChatCommand::React { id: id(), emoji: emoji.into() }, &settings());
        for ok in ["👍", "❤️", "👨‍👩‍👧", "🇳🇴", ":thumbsup:"] {
            assert!(react(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a", "👍👍", ":unknown:", "ab", " ", "é"] {
            assert_eq!(react(bad).unwrap_err().code, "invalid_emoji", "{bad:?}");
        }
    }

    #[test]
    fn commands_are_tagged_by_type_and_refuse_unknown_fields() {
        let json = r#"{"type":"send","id":"00000000-0000-0000-0000-000000000000","text":"hi"}"#;
        assert_eq!(
            serde_json::from_str::<ChatCommand>(json).unwrap(),
            ChatCommand::Send { id: id(), text: "hi".into() }
        );
        assert!(serde_json::from_str::<ChatCommand>(r#"{"type":"shout","text":"hi"}"#).is_err());
        assert!(serde_json::from_str::<ChatCommand>(
            r#"{"type":"delete","id":"00000000-0000-0000-0000-000000000000","extra":1}"#
        )
        .is_err());
    }
}
