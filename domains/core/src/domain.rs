//! What a collaborative domain is, as far as the framework cares.

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::DomainError;

/// Counts what is written to it.
struct ByteCounter(usize);

impl std::io::Write for ByteCounter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0 += bytes.len();
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// An end user, as authenticated at the API (the `sub` of their token).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(pub String);

impl UserId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Who a command acts for: the user, and whether they own its scope. The domains'
/// rules give owners (and admins) what they keep from other members, such as
/// deleting another user's card or moving a locked element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActingUser {
    pub user: UserId,
    pub owns_scope: bool,
}

impl ActingUser {
    /// A member who does not own the scope.
    pub fn member(user: impl Into<String>) -> Self {
        Self { user: UserId(user.into()), owns_scope: false }
    }

    /// An owner of the scope.
    pub fn owner(user: impl Into<String>) -> Self {
        Self { user: UserId(user.into()), owns_scope: true }
    }
}

/// A collaborative domain: chat, Kanban, whiteboard, ... Implementing this (plus
/// [`crate::DomainAdapters`]) is all it takes to get the generic API, the actors and
/// the warm-up/outbox machinery.
pub trait Domain: Send + Sync + Sized + 'static {
    /// The domain's name in URLs and settings: `/api/<NAME>/...`, `[domains.<NAME>]`.
    const NAME: &'static str;
    /// What one scope of this domain is called in messages: "channel", "board".
    const SCOPE: &'static str;
    /// How a snapshot lists the items, for the API document: their order, and what
    /// becomes of deleted ones.
    const SNAPSHOT: &'static str;

    /// One entry of a scope's snapshot (a chat message with its reactions).
    /// (`PartialEq`: two writes at one version must hold the same state.)
    type Item: Serialize + DeserializeOwned + JsonSchema + Clone + PartialEq + Send + Sync + 'static;
    /// A client's request, a JSON object tagged by `type`. The cache adapter hands it
    /// to the module as the same JSON.
    type Command: Serialize + DeserializeOwned + JsonSchema + Send + Sync + 'static;
    /// What a command did; returned to the caller and pushed to live subscribers.
    /// It carries the item's full new state, so applying it twice is harmless.
    type Event: Serialize + DeserializeOwned + JsonSchema + Clone + Send + Sync + 'static;
    /// The domain's own settings, from `[domains.<NAME>]`. The cache adapter hands them
    /// to the module (`configure`), so both adapters apply the same limits.
    type Settings: Serialize + DeserializeOwned + Clone + Send + Sync + 'static;
    /// The domain's own part of a scope's `config` column.
    type ScopeConfig: DeserializeOwned + Serialize + JsonSchema + Default + Send + Sync + 'static;

    /// Checks what can be checked without data (shape, sizes, limits), before either
    /// adapter sees the command. Rules that need data are the adapters'.
    fn validate(command: &Self::Command, settings: &Self::Settings) -> Result<(), DomainError>;

    /// The pagination cursor of an item, its id: a snapshot `before` it lists older
    /// items.
    fn cursor(item: &Self::Item) -> String;

    /// About how many bytes an item takes on the wire (its JSON size by default, an
    /// overestimate of SpacetimeDB's binary form): warm-up batches are bounded by it,
    /// so no batch nears SpacetimeDB's message limit.
    fn weight(item: &Self::Item) -> usize {
        let mut counter = ByteCounter(0);
        let _ = serde_json::to_writer(&mut counter, item);
        counter.0
    }
}
