//! Presence across nodes, through PostgreSQL's LISTEN/NOTIFY: every node already
//! talks to the one PostgreSQL, on either adapter, and presence is as ephemeral as a
//! notification. Nothing is stored.
//!
//! - Each node sends its own connections' changes (join, state, leave) on
//!   [`CHANNEL`], in order, on one connection of its own, and listens on another.
//! - A node that starts, or whose listening connection was lost (it may have missed
//!   changes), forgets what it knew of the others and says hello: every node answers
//!   with all of its connections. Such a full list starts with `reset`, which drops
//!   what the receivers knew of the sender, so a sender whose own connection was
//!   lost (the others may have missed its changes) sends one too.
//! - Each node sends a heartbeat; a node not heard from within the timeout (killed,
//!   cut off) is forgotten, and its connections leave.
//!
//! A notification carries at most [`MAX_PAYLOAD`] bytes, so a list is sent in parts.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgListener, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::presence::{Change, NodeId, PresenceHub};

/// The notification channel every node sends and listens on.
pub const CHANNEL: &str = "boardsync_presence";

/// PostgreSQL refuses a notification payload of 8,000 bytes or more.
pub const MAX_PAYLOAD: usize = 7_900;

/// How often a node says it is alive, and how long the others wait before they
/// forget its connections.
#[derive(Debug, Clone, Copy)]
pub struct RelaySettings {
    pub heartbeat: Duration,
    pub node_timeout: Duration,
}

/// What `/health` shows of the relay.
#[derive(Debug, Default)]
pub struct RelayStatus {
    listening: AtomicBool,
    nodes: AtomicUsize,
}

impl RelayStatus {
    /// Whether this node hears the others now.
    pub fn listening(&self) -> bool {
        self.listening.load(Ordering::Relaxed)
    }

    /// Other nodes heard from within the timeout.
    pub fn nodes(&self) -> usize {
        self.nodes.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Message {
    node: NodeId,
    /// The sender asks every node for its connections.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    hello: bool,
    /// The receivers drop what they knew of the sender's connections first: the
    /// changes that follow (in this and the next messages) are all of them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    reset: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    changes: Vec<Change>,
}

/// Starts relaying `hub`'s presence to and from the other nodes on `pool`'s
/// PostgreSQL; runs until the process ends. It opens two connections of its own
/// (one listens, one sends), outside `pool`, whose connections serve requests.
pub fn start(hub: Arc<PresenceHub>, pool: &PgPool, settings: RelaySettings) -> Arc<RelayStatus> {
    let (outgoing, changes) = mpsc::unbounded_channel();
    let status = Arc::new(RelayStatus::default());
    if hub.relay_to(outgoing) {
        let options = (*pool.connect_options()).clone();
        let relay = Relay { hub, options, settings, status: status.clone(), heard: HashMap::new() };
        tokio::spawn(relay.run(changes));
    }
    status
}

/// What the listening task hands the relay.
enum Heard {
    Payload(String),
    /// The listening connection was (re)opened: whatever came before may be missing.
    Listening,
    Lost,
}

struct Relay {
    hub: Arc<PresenceHub>,
    options: sqlx::postgres::PgConnectOptions,
    settings: RelaySettings,
    status: Arc<RelayStatus>,
    /// When each other node was last heard from.
    heard: HashMap<NodeId, Instant>,
}

impl Relay {
    async fn run(mut self, mut changes: mpsc::UnboundedReceiver<Change>) {
        let (heard_tx, mut heard) = mpsc::unbounded_channel();
        // Its own task, so that no wait for a notification is ever cancelled halfway.
        // A pool of one, which the listener takes its connection from.
        let listening = PgPoolOptions::new().max_connections(1).connect_lazy_with(self.options.clone());
        tokio::spawn(listen(listening, self.settings.heartbeat, heard_tx));
        let mut sender: Option<PgConnection> = None;
        // Whether the others must get all of this node's connections (at start, after
        // a lost connection of either kind) and whether to ask for theirs.
        let (mut announce, mut ask) = (true, false);
        let mut beat = tokio::time::interval(self.settings.heartbeat);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let mut batch = Vec::new();
            tokio::select! {
                Some(change) = changes.recv() => {
                    batch.push(change);
                    while let Ok(change) = changes.try_recv() {
                        batch.push(change);
                    }
                }
                Some(event) = heard.recv() => match event {
                    Heard::Listening => {
                        self.status.listening.store(true, Ordering::Relaxed);
                        self.forget_everyone();
                        (announce, ask) = (true, true);
                    }
                    Heard::Lost => {
                        self.status.listening.store(false, Ordering::Relaxed);
                        self.forget_everyone();
                    }
                    Heard::Payload(payload) => {
                        if self.take(&payload) {
                            announce = true;
                        }
                    }
                },
                _ = beat.tick() => {
                    self.sweep();
                    if sender.is_some() && !announce {
                        let beat = Message { node: self.hub.node(), hello: false, reset: false, changes: Vec::new() };
                        if send(&mut sender, &beat).await.is_err() {
                            announce = true;
                        }
                    }
                }
            }
            if sender.is_none() {
                sender = PgConnection::connect_with(&self.options).await.ok();
                if sender.is_none() {
                    // PostgreSQL is away: the full list goes out once it is back.
                    announce = true;
                    continue;
                }
            }
            if announce {
                // All connections, which covers whatever changes were waiting.
                while changes.try_recv().is_ok() {}
                batch.clear();
                let all = self.hub.local_changes();
                if self.send_changes(&mut sender, all, true, ask).await {
                    (announce, ask) = (false, false);
                }
            } else if !batch.is_empty() && !self.send_changes(&mut sender, batch, false, false).await {
                announce = true;
            }
        }
    }

    /// Sends `changes` in as many messages as it takes; the first resets the others'
    /// view of this node when `reset`, and asks for theirs when `hello`. Whether all
    /// went out.
    async fn send_changes(
        &self,
        sender: &mut Option<PgConnection>,
        changes: Vec<Change>,
        reset: bool,
        hello: bool,
    ) -> bool {
        let node = self.hub.node();
        let mut message = Message { node, hello, reset, changes: Vec::new() };
        let mut size = 0;
        for change in changes {
            let weight = serde_json::to_string(&change).map_or(usize::MAX, |text| text.len() + 1);
            if weight > MAX_PAYLOAD - 100 {
                tracing::warn!(bytes = weight, "a presence change too large for a notification is not relayed");
                continue;
            }
            if size + weight > MAX_PAYLOAD - 100 {
                if send(sender, &message).await.is_err() {
                    return false;
                }
                message = Message { node, hello: false, reset: false, changes: Vec::new() };
                size = 0;
            }
            size += weight;
            message.changes.push(change);
        }
        if message.changes.is_empty() && !message.reset && !message.hello {
            return true;
        }
        send(sender, &message).await.is_ok()
    }

    /// Applies a message from another node; whether it asked for this node's list.
    fn take(&mut self, payload: &str) -> bool {
        let message: Message = match serde_json::from_str(payload) {
            Ok(message) => message,
            Err(error) => {
                tracing::warn!(%error, "an unreadable presence notification");
                return false;
            }
        };
        if message.node == self.hub.node() {
            return false;
        }
        self.heard.insert(message.node, Instant::now());
        self.status.nodes.store(self.heard.len(), Ordering::Relaxed);
        if message.reset {
            self.hub.forget_nodes(Some(message.node));
        }
        for change in message.changes {
            self.hub.apply_remote(message.node, change);
        }
        message.hello
    }

    /// Forgets the nodes not heard from within the timeout.
    fn sweep(&mut self) {
        let timeout = self.settings.node_timeout;
        let silent: Vec<NodeId> =
            self.heard.iter().filter(|(_, at)| at.elapsed() > timeout).map(|(node, _)| *node).collect();
        for node in silent {
            self.heard.remove(&node);
            let left = self.hub.forget_nodes(Some(node));
            tracing::info!(
                node = format!("{node:016x}"),
                connections = left,
                "a node went silent: its presence is gone"
            );
        }
        self.status.nodes.store(self.heard.len(), Ordering::Relaxed);
    }

    fn forget_everyone(&mut self) {
        self.heard.clear();
        self.status.nodes.store(0, Ordering::Relaxed);
        self.hub.forget_nodes(None);
    }
}

async fn send(sender: &mut Option<PgConnection>, message: &Message) -> Result<(), ()> {
    let Some(connection) = sender.as_mut() else { return Err(()) };
    let payload = serde_json::to_string(message).expect("presence messages serialize");
    let sent = sqlx::query("SELECT pg_notify($1, $2)").bind(CHANNEL).bind(payload).execute(&mut *connection).await;
    if let Err(error) = sent {
        tracing::warn!(%error, "cannot send presence to the other nodes; reconnecting");
        *sender = None;
        return Err(());
    }
    Ok(())
}

/// Listens on [`CHANNEL`] for the process's life, (re)connecting as needed.
async fn listen(pool: PgPool, retry: Duration, heard: mpsc::UnboundedSender<Heard>) {
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::debug!(%error, "cannot open the presence listener; retrying");
                tokio::time::sleep(retry).await;
                continue;
            }
        };
        if let Err(error) = listener.listen(CHANNEL).await {
            tracing::warn!(%error, "cannot LISTEN for presence; retrying");
            tokio::time::sleep(retry).await;
            continue;
        }
        if heard.send(Heard::Listening).is_err() {
            return;
        }
        // `None` or an error: the connection was lost, and notifications meanwhile.
        while let Ok(Some(notification)) = listener.try_recv().await {
            if heard.send(Heard::Payload(notification.payload().to_owned())).is_err() {
                return;
            }
        }
        tracing::warn!("presence listener lost; reconnecting");
        if heard.send(Heard::Lost).is_err() {
            return;
        }
        tokio::time::sleep(retry).await;
    }
}
