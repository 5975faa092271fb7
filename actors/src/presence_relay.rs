//! Presence across nodes, through PostgreSQL's LISTEN/NOTIFY: every node already
//! talks to the one PostgreSQL, on either adapter, and presence is as ephemeral as a
//! notification. Nothing is stored.
//!
//! - Each node sends its own connections' changes (join, state, leave) on
//!   [`CHANNEL`], in order, on one connection of its own, and listens on another.
//! - A node that starts, or whose listening connection was lost (it may have missed
//!   changes), forgets what it knew of the others and says hello: every node answers
//!   with all of its connections. Such a full list starts with `reset` and ends with
//!   `complete`: the receivers then drop those of the sender's connections it did
//!   not name (so a sender whose own connection was lost, and whose changes the
//!   others may have missed, sends one too; connections it names again do not
//!   flicker).
//! - Each node sends a heartbeat; a node not heard from within the timeout (killed,
//!   cut off) is forgotten, and its connections leave.
//!
//! A notification carries at most [`MAX_PAYLOAD`] bytes, so a list is sent in parts.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgListener, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;

use crate::presence::{Change, NodeId, PresenceHub, ScopeId};

/// The notification channel every node sends and listens on.
pub const CHANNEL: &str = "boardsync_presence";

/// How the relay's connections name themselves to PostgreSQL (`application_name`).
pub const SENDER_NAME: &str = "boardsync presence sender";
pub const LISTENER_NAME: &str = "boardsync presence listener";

/// PostgreSQL refuses a notification payload of 8,000 bytes or more.
pub const MAX_PAYLOAD: usize = 7_900;

/// How often a node says it is alive, how long the others wait before they forget
/// its connections, and how long changes gather before they go out together.
#[derive(Debug, Clone, Copy)]
pub struct RelaySettings {
    pub heartbeat: Duration,
    pub node_timeout: Duration,
    pub gather: Duration,
}

/// The longest a connect or a notification may take before the connection is given
/// up (a half-open connection would hold the relay for the kernel's retries).
const PATIENCE: Duration = Duration::from_secs(5);

/// Changes waiting for the relay, at most: past it they are dropped, and the relay
/// sends all of this node's connections instead (so memory stays bounded while
/// PostgreSQL is slow or away).
pub const BACKLOG: usize = 4096;

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
    /// The sender asks for the others' connections: every node's, or only `to`'s.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    hello: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    to: Option<NodeId>,
    /// The last part of a full list.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    complete: bool,
    /// A full list begins: the changes in this and the next messages, up to the one
    /// marked `complete`, are all of the sender's connections.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    reset: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    changes: Vec<Change>,
}

impl Message {
    fn empty(node: NodeId) -> Self {
        Self { node, hello: false, to: None, complete: false, reset: false, changes: Vec::new() }
    }
}

/// Starts relaying `hub`'s presence to and from the other nodes on `pool`'s
/// PostgreSQL; runs until the process ends. It opens two connections of its own
/// (one listens, one sends), outside `pool`, whose connections serve requests.
pub fn start(hub: Arc<PresenceHub>, pool: &PgPool, settings: RelaySettings) -> Arc<RelayStatus> {
    let (outgoing, changes) = mpsc::channel(BACKLOG);
    let status = Arc::new(RelayStatus::default());
    if hub.relay_to(outgoing) {
        let options = (*pool.connect_options()).clone().application_name(SENDER_NAME);
        let relay = Relay {
            hub,
            options,
            settings,
            status: status.clone(),
            heard: HashMap::new(),
            swept: HashSet::new(),
            asking: None,
            replacing: HashMap::new(),
            unheard_since: None,
            restart_listener: Arc::new(Notify::new()),
        };
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
    /// Nodes forgotten for silence: one heard again is asked for its connections.
    swept: HashSet<NodeId>,
    /// The one node a hello asks, if not every node.
    asking: Option<NodeId>,
    /// Per node sending a full list: the connections it had here before, not yet
    /// named again (those left when the list is complete are gone).
    replacing: HashMap<NodeId, HashSet<(ScopeId, String)>>,
    /// While listening: since when this node has sent messages (successfully) without
    /// hearing one of its own. A listener that stays so for the timeout is deaf (a
    /// half-open connection) and is opened again; a node that cannot send is not.
    unheard_since: Option<Instant>,
    restart_listener: Arc<Notify>,
}

/// What the relay owes the others after taking in what it heard.
#[derive(Default)]
struct Owed {
    /// All of this node's connections.
    announce: bool,
    /// And a request for theirs.
    ask: bool,
}

impl Relay {
    async fn run(mut self, mut changes: mpsc::Receiver<Change>) {
        let (heard_tx, mut heard) = mpsc::unbounded_channel();
        // Its own task, so that no wait for a notification is ever cancelled halfway.
        let restart = self.restart_listener.clone();
        tokio::spawn(listen(self.options.clone(), self.settings.heartbeat, heard_tx, restart));
        let mut sender: Option<PgConnection> = None;
        let mut next_connect = Instant::now();
        // At start, and after a lost connection of either kind, the others get all of
        // this node's connections.
        let mut owed = Owed { announce: true, ask: false };
        let mut beat = tokio::time::interval(self.settings.heartbeat);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let mut batch = Vec::new();
            tokio::select! {
                Some(change) = changes.recv() => {
                    // Changes gather for a moment and go out together, a connection's
                    // latest state only.
                    tokio::time::sleep(self.settings.gather).await;
                    batch.push(change);
                    while let Ok(change) = changes.try_recv() {
                        batch.push(change);
                    }
                }
                Some(event) = heard.recv() => self.take(event, &mut owed),
                _ = beat.tick() => {
                    // What was heard meanwhile first: a stalled loop must not forget
                    // nodes whose heartbeats are waiting here.
                    while let Ok(event) = heard.try_recv() {
                        self.take(event, &mut owed);
                    }
                    self.sweep();
                    self.check_hearing_itself();
                    if sender.is_some() && !owed.announce {
                        let beat = Message::empty(self.hub.node());
                        match send(&mut sender, &beat).await {
                            Ok(()) => self.sent(),
                            Err(()) => owed.announce = true,
                        }
                    }
                }
            }
            if self.hub.take_overflow() {
                owed.announce = true;
            }
            if sender.is_none() {
                if Instant::now() < next_connect {
                    owed.announce = true;
                    continue;
                }
                let connecting = tokio::time::timeout(PATIENCE, PgConnection::connect_with(&self.options)).await;
                sender = connecting.ok().and_then(Result::ok);
                if sender.is_none() {
                    // PostgreSQL is away: the full list goes out once it is back.
                    next_connect = Instant::now() + self.settings.heartbeat;
                    owed.announce = true;
                    continue;
                }
            }
            if owed.announce {
                // All connections, which covers whatever changes were waiting.
                while changes.try_recv().is_ok() {}
                let all = self.hub.local_changes();
                if self.send_changes(&mut sender, all, true, owed.ask).await {
                    owed = Owed::default();
                }
            } else if !batch.is_empty() && !self.send_changes(&mut sender, latest_only(batch), false, false).await {
                owed.announce = true;
            }
        }
    }

    /// Takes in what the listener heard.
    fn take(&mut self, event: Heard, owed: &mut Owed) {
        match event {
            Heard::Listening => {
                self.status.listening.store(true, Ordering::Relaxed);
                self.asking = None;
                self.unheard_since = None;
                self.forget_everyone();
                *owed = Owed { announce: true, ask: true };
            }
            Heard::Lost => {
                self.status.listening.store(false, Ordering::Relaxed);
                self.unheard_since = None;
                self.forget_everyone();
            }
            Heard::Payload(payload) => self.apply(&payload, owed),
        }
    }

    /// Sends `changes` in as many messages as it takes; the first resets the others'
    /// view of this node when `reset`, and asks for theirs when `hello`. Whether all
    /// went out.
    async fn send_changes(
        &mut self,
        sender: &mut Option<PgConnection>,
        changes: Vec<Change>,
        reset: bool,
        hello: bool,
    ) -> bool {
        let node = self.hub.node();
        let to = if hello { self.asking.take() } else { None };
        let mut message = Message { hello, to, reset, ..Message::empty(node) };
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
                self.sent();
                message = Message::empty(node);
                size = 0;
            }
            size += weight;
            message.changes.push(change);
        }
        message.complete = reset;
        if message.changes.is_empty() && !message.reset && !message.hello && !message.complete {
            return true;
        }
        let sent = send(sender, &message).await.is_ok();
        if sent {
            self.sent();
        }
        sent
    }

    /// Applies a message from another node.
    fn apply(&mut self, payload: &str, owed: &mut Owed) {
        let message: Message = match serde_json::from_str(payload) {
            Ok(message) => message,
            Err(error) => {
                tracing::warn!(%error, "an unreadable presence notification");
                return;
            }
        };
        if message.node == self.hub.node() {
            self.unheard_since = None;
            return;
        }
        self.heard.insert(message.node, Instant::now());
        self.status.nodes.store(self.heard.len(), Ordering::Relaxed);
        // A node forgotten for silence, heard again: its connections are asked for
        // (unless this is them).
        if self.swept.remove(&message.node) && !message.reset {
            if !owed.ask {
                self.asking = Some(message.node);
            }
            *owed = Owed { announce: true, ask: true };
        }
        if message.reset {
            self.replacing.insert(message.node, self.hub.connections_of(message.node));
        }
        for change in message.changes {
            if let (Some(known), Some(scope)) = (self.replacing.get_mut(&message.node), self.hub.scope_of(&change)) {
                known.remove(&(scope, change.peer.connection.clone()));
            }
            self.hub.apply_remote(message.node, change);
        }
        if message.complete {
            if let Some(known) = self.replacing.remove(&message.node) {
                self.hub.forget_connections(message.node, known);
            }
        }
        if message.hello && message.to.is_none_or(|to| to == self.hub.node()) {
            owed.announce = true;
        }
    }

    /// Opens the listener again if it has not heard this node's own messages for
    /// the timeout: its connection is deaf, though not closed.
    fn check_hearing_itself(&mut self) {
        if self.unheard_since.is_some_and(|since| since.elapsed() > self.settings.node_timeout) {
            tracing::warn!("the presence listener hears nothing, not even this node: opening it again");
            // Not listening from here on, until the new listener says it is.
            self.status.listening.store(false, Ordering::Relaxed);
            self.unheard_since = None;
            self.restart_listener.notify_one();
        }
    }

    /// A message of this node's went out: it should hear it back.
    fn sent(&mut self) {
        if self.status.listening() && self.unheard_since.is_none() {
            self.unheard_since = Some(Instant::now());
        }
    }

    /// Forgets the nodes not heard from within the timeout.
    fn sweep(&mut self) {
        let timeout = self.settings.node_timeout;
        let silent: Vec<NodeId> =
            self.heard.iter().filter(|(_, at)| at.elapsed() > timeout).map(|(node, _)| *node).collect();
        for node in silent {
            self.heard.remove(&node);
            self.replacing.remove(&node);
            self.swept.insert(node);
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
        self.swept.clear();
        self.replacing.clear();
        self.status.nodes.store(0, Ordering::Relaxed);
        self.hub.forget_nodes(None);
    }
}

async fn send(sender: &mut Option<PgConnection>, message: &Message) -> Result<(), ()> {
    let Some(connection) = sender.as_mut() else { return Err(()) };
    let payload = serde_json::to_string(message).expect("presence messages serialize");
    let notify = sqlx::query("SELECT pg_notify($1, $2)").bind(CHANNEL).bind(payload).execute(&mut *connection);
    match tokio::time::timeout(PATIENCE, notify).await {
        Ok(Ok(_)) => Ok(()),
        outcome => {
            let error = outcome
                .map_or_else(|_| "timed out".to_string(), |sent| sent.err().map(|e| e.to_string()).unwrap_or_default());
            tracing::warn!(%error, "cannot send presence to the other nodes; reconnecting");
            *sender = None;
            Err(())
        }
    }
}

/// Of each connection's changes in `batch`, the last (each is its whole state).
fn latest_only(batch: Vec<Change>) -> Vec<Change> {
    let mut at: HashMap<(String, String, String), usize> = HashMap::new();
    let mut latest: Vec<Change> = Vec::with_capacity(batch.len());
    for change in batch {
        let key = (change.domain.clone(), change.scope.clone(), change.peer.connection.clone());
        match at.get(&key) {
            Some(&i) => latest[i] = change,
            None => {
                at.insert(key, latest.len());
                latest.push(change);
            }
        }
    }
    latest
}

/// Listens on [`CHANNEL`] for the process's life, (re)connecting as needed, and
/// opening the connection again when the relay finds it deaf.
async fn listen(
    options: sqlx::postgres::PgConnectOptions,
    retry: Duration,
    heard: mpsc::UnboundedSender<Heard>,
    restart: Arc<Notify>,
) {
    loop {
        // A pool of one, which the listener takes its connection from: closed with
        // it, so that a deaf connection is never handed out again.
        let listening = options.clone().application_name(LISTENER_NAME);
        let pool = PgPoolOptions::new().max_connections(1).connect_lazy_with(listening);
        let connecting = tokio::time::timeout(PATIENCE, PgListener::connect_with(&pool)).await;
        let mut listener = match connecting {
            Ok(Ok(listener)) => listener,
            failed => {
                tracing::debug!(error = ?failed.map(|f| f.err()), "cannot open the presence listener; retrying");
                tokio::time::sleep(retry).await;
                continue;
            }
        };
        if !matches!(tokio::time::timeout(PATIENCE, listener.listen(CHANNEL)).await, Ok(Ok(()))) {
            tracing::warn!("cannot LISTEN for presence; retrying");
            tokio::time::sleep(retry).await;
            continue;
        }
        if heard.send(Heard::Listening).is_err() {
            return;
        }
        loop {
            tokio::select! {
                // `None` or an error: the connection was lost, and notifications meanwhile.
                received = listener.try_recv() => match received {
                    Ok(Some(notification)) => {
                        if heard.send(Heard::Payload(notification.payload().to_owned())).is_err() {
                            return;
                        }
                    }
                    Ok(None) | Err(_) => break,
                },
                // The listener is dropped whole: a wait cut short here loses nothing
                // that a new connection would not have lost anyway.
                _ = restart.notified() => break,
            }
        }
        tracing::warn!("presence listener lost; reconnecting");
        if heard.send(Heard::Lost).is_err() {
            return;
        }
        // Dropping a listener sends UNLISTEN on its connection, which may be deaf: the
        // close is not waited for beyond a moment, on a task of its own.
        tokio::spawn(async move {
            drop(listener);
            let _ = tokio::time::timeout(PATIENCE, pool.close()).await;
        });
        tokio::time::sleep(retry).await;
    }
}
