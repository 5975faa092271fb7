//! Poll's commands, settings and the rules that need no data, written once: the
//! backend uses this module and `modules/poll` includes this file (`#[path]`), so
//! both adapters parse the same commands and refuse the same labels.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::refusal::{check_text_chars, Refusal};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
// For the API document; the wasm module that includes this file builds without it.
#[cfg_attr(not(target_family = "wasm"), derive(schemars::JsonSchema))]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum PollCommand {
    AddOption { id: Uuid, label: String },
    Vote { id: Uuid },
    Unvote { id: Uuid },
    RemoveOption { id: Uuid },
}

impl PollCommand {
    pub fn option_id(&self) -> Uuid {
        match self {
            Self::AddOption { id, .. } | Self::Vote { id } | Self::Unvote { id } | Self::RemoveOption { id } => *id,
        }
    }
}

/// `[domains.poll]`, less the framework's keys.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollSettings {
    /// Longest option label, in characters.
    pub max_label_chars: u32,
    /// Live options one poll holds.
    pub max_options_per_poll: u32,
}

/// Refuses a new option in a poll that holds `live` options already.
pub fn check_room_for_option(live: usize, settings: &PollSettings) -> Result<(), Refusal> {
    if live < settings.max_options_per_poll as usize {
        return Ok(());
    }
    let message = format!("a poll holds at most {} options", settings.max_options_per_poll);
    Err(Refusal::new("invalid", "too_many_options", message))
}

/// Refuses an empty label or one past the configured limit.
pub fn check(command: &PollCommand, settings: &PollSettings) -> Result<(), Refusal> {
    let PollCommand::AddOption { label, .. } = command else { return Ok(()) };
    if label.trim().is_empty() {
        return Err(Refusal::new("invalid", "label_empty", "the label must not be empty"));
    }
    check_text_chars("the label", label)?;
    if label.chars().count() > settings.max_label_chars as usize {
        let message = format!("the label is longer than {} characters", settings.max_label_chars);
        return Err(Refusal::new("invalid", "label_too_long", message));
    }
    Ok(())
}

pub fn option_not_found(id: &str) -> Refusal {
    Refusal::new("not_found", "option_not_found", format!("option {id} not found"))
}

pub fn id_conflict(id: &str) -> Refusal {
    Refusal::new("conflict", "id_conflict", format!("option id {id} is already used"))
}

pub fn not_author() -> Refusal {
    Refusal::new("forbidden", "not_author", "only the option's author may remove it")
}

/// A stored option as the retry rules see it; each adapter builds one from its own
/// row, so both decide alike.
pub struct OptionView<'a> {
    pub poll: &'a str,
    pub author: &'a str,
    pub label: &'a str,
    pub removed: bool,
    pub voters: &'a [String],
}

/// Whether an `add_option` of `label` by `user` in `poll` is the add that created
/// `option`: a retry, answered with the option as it is. Any other add with its id is
/// an [`id_conflict`], an add of a removed option too.
pub fn is_same_add(option: &OptionView, poll: &str, user: &str, label: &str) -> bool {
    !option.removed && option.poll == poll && option.author == user && option.label == label
}

/// Whether `command` by `user` leaves `option` as it is: a second vote, an unvote
/// without a vote, a removal of a removed option. Such a command writes nothing,
/// raises no version and tells no subscriber; it answers with the option as it is.
/// (An add never changes an option: see [`is_same_add`].)
pub fn changes_nothing(command: &PollCommand, option: &OptionView, user: &str) -> bool {
    let voted = option.voters.iter().any(|voter| voter == user);
    match command {
        PollCommand::AddOption { .. } => false,
        PollCommand::Vote { .. } => voted,
        PollCommand::Unvote { .. } => !voted,
        PollCommand::RemoveOption { .. } => option.removed,
    }
}
