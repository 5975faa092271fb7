//! Polls: options (added by anyone, removed by their author) that people vote on.

use crate::rules::check;
pub use crate::rules::{PollCommand, PollSettings};
use boardsync_core::{Domain, DomainError};
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The poll domain.
pub struct Poll;

/// An option with its voters (in the order they voted). A removed option stays as a
/// tombstone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PollOption {
    pub id: Uuid,
    pub poll: String,
    pub label: String,
    /// Who added it (its creator; only they remove it), and who changed it last.
    pub author: String,
    pub updated_by: String,
    pub created_at: DateTime<Utc>,
    pub removed: bool,
    pub voters: Vec<String>,
    pub version: u64,
}

/// What happened, with the option's full state after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PollEvent {
    OptionAdded {
        option: PollOption,
    },
    Voted {
        option: PollOption,
        user: String,
    },
    Unvoted {
        option: PollOption,
        user: String,
    },
    OptionRemoved {
        option: PollOption,
    },
    /// The option was changed in PostgreSQL by an outside writer.
    OptionChanged {
        option: PollOption,
    },
}

impl PollEvent {
    pub fn option(&self) -> &PollOption {
        match self {
            Self::OptionAdded { option }
            | Self::Voted { option, .. }
            | Self::Unvoted { option, .. }
            | Self::OptionRemoved { option }
            | Self::OptionChanged { option } => option,
        }
    }

    /// The event `command` by `user` produced, given the option's new state.
    pub fn of(command: &PollCommand, user: &str, option: PollOption) -> Self {
        match command {
            PollCommand::AddOption { .. } => Self::OptionAdded { option },
            PollCommand::Vote { .. } => Self::Voted { option, user: user.to_string() },
            PollCommand::Unvote { .. } => Self::Unvoted { option, user: user.to_string() },
            PollCommand::RemoveOption { .. } => Self::OptionRemoved { option },
        }
    }
}

/// A poll's own settings: none yet, and unknown keys are refused.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PollConfig {}

impl Domain for Poll {
    const NAME: &'static str = "poll";
    const SCOPE: &'static str = "poll";
    const SNAPSHOT: &'static str = "Options newest first, each with its voters in the order they voted. A removed option stays as a tombstone: `removed` is true.";
    type Item = PollOption;
    type Command = PollCommand;
    type Event = PollEvent;
    type Settings = PollSettings;
    type ScopeConfig = PollConfig;

    fn validate(command: &PollCommand, settings: &PollSettings) -> Result<(), DomainError> {
        check(command, settings).map_err(DomainError::from)
    }

    fn cursor(option: &PollOption) -> String {
        option.id.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_must_be_present_and_within_the_limit() {
        let settings = PollSettings { max_label_chars: 5, max_options_per_poll: 100 };
        let add =
            |label: &str| Poll::validate(&PollCommand::AddOption { id: Uuid::nil(), label: label.into() }, &settings);
        assert!(add("pizza").is_ok());
        assert_eq!(add(" ").unwrap_err().code, "label_empty");
        assert_eq!(add("burgers").unwrap_err().code, "label_too_long");
    }
}
