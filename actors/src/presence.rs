//! Who is connected to a scope, each with a small state of their own (a cursor, a
//! selection, "typing"): ephemeral, never stored, and fanned out over the scope's
//! live sockets. It lives above the adapters, so both give the same messages.
//!
//! Each live socket holds a [`Presence`]; dropping it (the socket closed, timed out,
//! was refused further access, or its task ended any other way) removes the
//! connection and tells the others. Connections on other nodes are seen through the
//! [`relay`](crate::presence_relay), which hands their joins, states and leaves in
//! as [`Change`]s and takes this node's out; without a relay the view is this
//! process's alone.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use boardsync_core::ScopeKey;
use dashmap::DashMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::frame_queue;
use crate::frames::ServerFrame;

/// One connection in a scope, as others see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Peer {
    /// Tells two connections of one user (two tabs) apart; unique across nodes.
    pub connection: String,
    pub user: String,
    /// What the client last set (null until it sets something).
    pub state: Value,
}

struct Member {
    peer: Peer,
    /// Frames for this connection's socket. A frame that does not fit is dropped, and
    /// the connection is marked: its socket then sends a fresh snapshot, so a lost
    /// `presence_left` leaves no ghost.
    frames: frame_queue::Sender<Arc<str>>,
    lost: Arc<AtomicBool>,
}

/// A scope's connections: this node's, and those other nodes reported (by node).
#[derive(Default)]
struct Scope {
    local: HashMap<u64, Member>,
    remote: HashMap<String, (NodeId, Peer)>,
}

impl Scope {
    fn is_empty(&self) -> bool {
        self.local.is_empty() && self.remote.is_empty()
    }

    /// Removes another node's connection, if `node`'s (any node's when `None`); this
    /// node's members hear it leave. Whether it was here.
    fn leave_remote(&mut self, connection: &str, node: Option<NodeId>) -> bool {
        match self.remote.get(connection) {
            Some((owner, _)) if node.is_none_or(|node| *owner == node) => {}
            _ => return false,
        }
        let Some((_, Peer { connection, user, .. })) = self.remote.remove(connection) else { return false };
        broadcast(self, u64::MAX, &ServerFrame::<Value>::PresenceLeft { connection, user });
        true
    }

    /// Everyone here but local connection `except`.
    fn peers_but(&self, except: u64) -> Vec<Peer> {
        let local = self.local.iter().filter(|(id, _)| **id != except).map(|(_, m)| m.peer.clone());
        local.chain(self.remote.values().map(|(_, peer)| peer.clone())).collect()
    }
}

/// A scope, by domain.
pub type ScopeId = (&'static str, ScopeKey);

/// A node's identity on the relay: random per process, so a restarted node is a new
/// one and its previous life's connections time out rather than linger.
pub type NodeId = u64;

/// A change to a scope's presence, as nodes tell each other.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub domain: String,
    pub scope: String,
    pub peer: Peer,
    /// The connection left (`peer.state` is then null).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub left: bool,
}

/// Every scope's connections, this node's and (through the relay) other nodes'.
pub struct PresenceHub {
    scopes: DashMap<ScopeId, Scope>,
    next_connection: AtomicU64,
    node: NodeId,
    /// The relay's inbox for this node's changes, once a relay runs.
    outgoing: OnceLock<mpsc::Sender<Change>>,
    /// A change did not fit in the relay's inbox: it owes the others all of this
    /// node's connections.
    overflowed: AtomicBool,
    /// The domains this node runs, by name (a change from another node names its
    /// domain as text).
    domains: HashMap<String, &'static str>,
}

impl PresenceHub {
    /// A hub for the scopes of `domains`.
    pub fn new(domains: impl IntoIterator<Item = &'static str>) -> Self {
        let node = std::collections::hash_map::RandomState::new().build_hasher().finish();
        Self {
            scopes: DashMap::new(),
            next_connection: AtomicU64::new(0),
            node,
            outgoing: OnceLock::new(),
            overflowed: AtomicBool::new(false),
            domains: domains.into_iter().map(|name| (name.to_owned(), name)).collect(),
        }
    }

    /// Adds a connection to `scope` and tells the others; returns its handle and who
    /// was there before it.
    pub fn join(
        self: &Arc<Self>,
        domain: &'static str,
        scope: &ScopeKey,
        user: &str,
        frames: frame_queue::Sender<Arc<str>>,
    ) -> (Presence, Vec<Peer>) {
        let id = self.next_connection.fetch_add(1, Ordering::Relaxed);
        // The node's id in it keeps connections of different nodes apart.
        let connection = format!("{:016x}.{id}", self.node);
        let peer = Peer { connection, user: user.to_owned(), state: Value::Null };
        let key = (domain, scope.clone());
        let lost = Arc::new(AtomicBool::new(false));
        let mut members = self.scopes.entry(key.clone()).or_default();
        let before = members.peers_but(id);
        broadcast(&members, id, &ServerFrame::<Value>::Presence(peer.clone()));
        self.tell_others(&key, &peer, false);
        members.local.insert(id, Member { peer, frames, lost: lost.clone() });
        drop(members);
        (Presence { hub: self.clone(), key, id, lost }, before)
    }

    /// This node's id on the relay.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// Starts passing this node's changes to `relay`; returns false if one already
    /// takes them.
    pub fn relay_to(&self, relay: mpsc::Sender<Change>) -> bool {
        self.outgoing.set(relay).is_ok()
    }

    /// Whether a change was dropped since the last call (the relay then sends all
    /// of this node's connections).
    pub fn take_overflow(&self) -> bool {
        self.overflowed.swap(false, Ordering::Relaxed)
    }

    /// Passes a change of this node's to the relay (under the scope's lock, so the
    /// relay gets a scope's changes in the order its members saw them).
    fn tell_others(&self, key: &ScopeId, peer: &Peer, left: bool) {
        if let Some(relay) = self.outgoing.get() {
            let change = Change { domain: key.0.to_owned(), scope: key.1.to_string(), peer: peer.clone(), left };
            if relay.try_send(change).is_err() {
                self.overflowed.store(true, Ordering::Relaxed);
            }
        }
    }

    /// Every connection of this node, as joins (for a node that asks who is here).
    pub fn local_changes(&self) -> Vec<Change> {
        let mut all = Vec::new();
        for scope in self.scopes.iter() {
            let (domain, key) = scope.key();
            for member in scope.local.values() {
                let (domain, scope) = (domain.to_string(), key.to_string());
                all.push(Change { domain, scope, peer: member.peer.clone(), left: false });
            }
        }
        all
    }

    /// The scope a change from another node is about, if this node runs its domain
    /// (a domain it does not run has no members here to tell).
    pub fn scope_of(&self, change: &Change) -> Option<ScopeId> {
        let domain = self.domains.get(&change.domain).copied()?;
        Some((domain, ScopeKey::parse(&change.scope).ok()?))
    }

    /// Applies a change another node reported: its members here hear of it. A change
    /// of a domain this node does not run, or to a state already known, is dropped.
    pub fn apply_remote(&self, node: NodeId, change: Change) {
        let Some(key) = self.scope_of(&change) else { return };
        let mut members = self.scopes.entry(key.clone()).or_default();
        let connection = change.peer.connection.clone();
        if change.left {
            members.leave_remote(&connection, None);
        } else if members.remote.get(&connection).is_none_or(|(_, known)| *known != change.peer) {
            broadcast(&members, u64::MAX, &ServerFrame::<Value>::Presence(change.peer.clone()));
            members.remote.insert(connection, (node, change.peer));
        }
        drop(members);
        self.drop_if_empty(&key);
    }

    /// Forgets `key`'s entry if nobody is in it (checked again under its lock:
    /// someone may have joined meanwhile).
    fn drop_if_empty(&self, key: &ScopeId) {
        self.scopes.remove_if(key, |_, members| members.is_empty());
    }

    /// Removes every connection of `node` (it stopped, or was not heard from within
    /// the relay's timeout), or of every other node when `None` (the relay lost its
    /// connection, so what it knew may be stale); their scopes' members hear them
    /// leave. Returns how many were removed.
    pub fn forget_nodes(&self, node: Option<NodeId>) -> usize {
        let mut removed = 0;
        for mut scope in self.scopes.iter_mut() {
            let gone: Vec<String> = scope
                .remote
                .iter()
                .filter(|(_, (owner, _))| node.is_none_or(|node| *owner == node))
                .map(|(connection, _)| connection.clone())
                .collect();
            for connection in gone {
                removed += usize::from(scope.leave_remote(&connection, None));
            }
        }
        self.scopes.retain(|_, scope| !scope.is_empty());
        removed
    }

    /// Every connection `node` has here, to be confirmed by a full list from it.
    pub fn connections_of(&self, node: NodeId) -> HashSet<(ScopeId, String)> {
        let mut all = HashSet::new();
        for scope in self.scopes.iter() {
            let of_node = scope.remote.iter().filter(|(_, (owner, _))| *owner == node);
            all.extend(of_node.map(|(connection, _)| (scope.key().clone(), connection.clone())));
        }
        all
    }

    /// Removes these connections of `node` (its full list did not name them); their
    /// scopes' members hear them leave.
    pub fn forget_connections(&self, node: NodeId, gone: HashSet<(ScopeId, String)>) {
        for (key, connection) in gone {
            let Some(mut scope) = self.scopes.get_mut(&key) else { continue };
            scope.leave_remote(&connection, Some(node));
            drop(scope);
            self.drop_if_empty(&key);
        }
    }
}

/// Sends `frame` to every connection of this node in a scope but `except`.
fn broadcast(members: &Scope, except: u64, frame: &ServerFrame<Value>) {
    let text: Arc<str> = serde_json::to_string(frame).expect("presence frames serialize").into();
    for (id, member) in &members.local {
        if *id != except && member.frames.try_send(text.clone()).is_err() {
            member.lost.store(true, Ordering::Relaxed);
        }
    }
}

/// A connection's place in its scope's presence; leaves it when dropped.
pub struct Presence {
    hub: Arc<PresenceHub>,
    key: ScopeId,
    id: u64,
    lost: Arc<AtomicBool>,
}

impl Presence {
    /// If a frame for this connection was dropped since the last call: who is here
    /// now (but itself), to send as a fresh snapshot. The frames still `queued` for
    /// this connection are older than it and are discarded, under the scope's lock,
    /// which every broadcast takes too: whatever arrives after is newer.
    pub fn resnapshot_if_lost(&self, queued: &mut frame_queue::Receiver<Arc<str>>) -> Option<Vec<Peer>> {
        if !self.lost.load(Ordering::Relaxed) {
            return None;
        }
        let members = self.hub.scopes.get(&self.key)?;
        self.lost.store(false, Ordering::Relaxed);
        while queued.try_recv().is_ok() {}
        Some(members.peers_but(self.id))
    }

    /// Sets this connection's state and tells the others.
    pub fn update(&self, state: Value) {
        if let Some(mut members) = self.hub.scopes.get_mut(&self.key) {
            let Some(member) = members.local.get_mut(&self.id) else { return };
            member.peer.state = state;
            let peer = member.peer.clone();
            broadcast(&members, self.id, &ServerFrame::<Value>::Presence(peer.clone()));
            self.hub.tell_others(&self.key, &peer, false);
        }
    }
}

impl Drop for Presence {
    fn drop(&mut self) {
        let Some(mut members) = self.hub.scopes.get_mut(&self.key) else { return };
        if let Some(left) = members.local.remove(&self.id) {
            let peer = Peer { state: Value::Null, ..left.peer };
            self.hub.tell_others(&self.key, &peer, true);
            let Peer { connection, user, .. } = peer;
            broadcast(&members, self.id, &ServerFrame::<Value>::PresenceLeft { connection, user });
        }
        drop(members);
        self.hub.drop_if_empty(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames() -> (frame_queue::Sender<Arc<str>>, frame_queue::Receiver<Arc<str>>) {
        frame_queue::bounded(8)
    }

    fn next(frames: &mut frame_queue::Receiver<Arc<str>>) -> Value {
        serde_json::from_str(&frames.try_recv().expect("a frame")).unwrap()
    }

    #[test]
    fn joins_updates_and_leaves_reach_the_others_only() {
        let hub = Arc::new(PresenceHub::new(["whiteboard"]));
        let scope = ScopeKey::parse("board").unwrap();
        let (alice_out, mut alice_in) = frames();
        let (alice, before) = hub.join("whiteboard", &scope, "alice", alice_out);
        assert!(before.is_empty());
        let (bob_out, mut bob_in) = frames();
        let (bob, before) = hub.join("whiteboard", &scope, "bob", bob_out);
        assert_eq!(before[0].user, "alice");
        assert_eq!(next(&mut alice_in)["user"], "bob", "alice hears bob join");

        alice.update(serde_json::json!({ "x": 1 }));
        let seen = next(&mut bob_in);
        assert_eq!((seen["kind"].as_str(), &seen["state"]), (Some("presence"), &serde_json::json!({ "x": 1 })));
        assert!(alice_in.try_recv().is_err(), "nobody hears their own update");

        let other = ScopeKey::parse("other").unwrap();
        let (carol_out, mut carol_in) = frames();
        let (_carol, before) = hub.join("whiteboard", &other, "carol", carol_out);
        assert!(before.is_empty(), "scopes do not mix");
        drop(alice);
        assert_eq!(next(&mut bob_in)["kind"], "presence_left");
        assert!(carol_in.try_recv().is_err());
        drop(bob);
        assert!(!hub.scopes.contains_key(&("whiteboard", scope.clone())), "an empty scope is forgotten");
    }

    #[test]
    fn a_connection_that_missed_frames_gets_a_fresh_snapshot() {
        let hub = Arc::new(PresenceHub::new(["whiteboard"]));
        let scope = ScopeKey::parse("board").unwrap();
        let (slow_out, mut slow_in) = frame_queue::bounded(1);
        let (slow, _) = hub.join("whiteboard", &scope, "slow", slow_out);
        assert_eq!(slow.resnapshot_if_lost(&mut slow_in), None);
        let (a_out, _a_in) = frames();
        let (_a, _) = hub.join("whiteboard", &scope, "a", a_out);
        let (b_out, _b_in) = frames();
        let (b, _) = hub.join("whiteboard", &scope, "b", b_out);
        drop(b); // its leave does not fit in slow's full buffer
        let now = slow.resnapshot_if_lost(&mut slow_in).expect("slow missed a frame");
        assert_eq!(now.iter().map(|p| p.user.as_str()).collect::<Vec<_>>(), ["a"], "b is gone from the snapshot");
        assert!(slow_in.try_recv().is_err(), "the older queued join of a is discarded, not delivered after");
        assert_eq!(slow.resnapshot_if_lost(&mut slow_in), None, "once per loss");
    }
}
