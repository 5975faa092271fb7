//! What the server writes on a live socket, as types: the socket serializes these,
//! and the API document describes the same definitions, so the two cannot drift.

use boardsync_core::ErrorDetail;

use crate::presence::Peer;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One JSON object per text frame, told apart by `kind`. `E` is the domain's event.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[schemars(rename = "{E}Frame")]
pub enum ServerFrame<E> {
    /// The subscription is live: every event from here on arrives.
    Ready,
    /// Something changed in the scope (the item's full new state).
    Event { event: E },
    /// The answer to a command this socket sent.
    Reply(Reply<E>),
    /// Events were dropped (the client read too slowly) or the scope was loaded into
    /// the cache again: fetch the snapshot again. Sent once per gap.
    Resync,
    /// Right after `ready`, and again if presence frames for this socket were
    /// dropped: who else is connected to the scope (on this server). It replaces the
    /// client's list.
    PresenceSnapshot { present: Vec<Peer> },
    /// A connection joined the scope, or set its state.
    Presence(Peer),
    /// A connection left: closed, timed out, or lost access.
    PresenceLeft { connection: String, user: String },
}

/// What a client sends on a live socket besides commands.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientSignal {
    /// Sets this connection's presence state (a cursor, a selection, "typing"; null
    /// clears it). Passed on to the others at most `presence.updates_per_sec` times a
    /// second, the latest winning; never stored.
    Presence { state: Value },
}

/// See [`ServerFrame::Reply`]: `ok` with the event, or not with the error.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[schemars(rename = "{E}Reply")]
pub struct Reply<E> {
    /// The command's `ref`, echoed; null when it had none (or was not JSON).
    #[serde(rename = "ref")]
    pub reference: Value,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<E>,
    /// The HTTP status the same error would have had.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
}
