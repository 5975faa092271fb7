//! Who is connected to a scope, each with a small state of their own (a cursor, a
//! selection, "typing"): ephemeral, never stored, and fanned out over the scope's
//! live sockets. It lives above the adapters, so both give the same messages.
//!
//! Each live socket holds a [`Presence`]; dropping it (the socket closed, timed out,
//! was refused further access, or its task ended any other way) removes the
//! connection and tells the others. The view is this process's: sockets on other
//! nodes are not seen.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use boardsync_core::ScopeKey;
use dashmap::DashMap;
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::frames::ServerFrame;

/// One connection in a scope, as others see it.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Peer {
    /// Tells two connections of one user (two tabs) apart.
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
    frames: mpsc::Sender<Arc<str>>,
    lost: Arc<AtomicBool>,
}

type ScopeId = (&'static str, ScopeKey);

/// Every scope's connections, in this process.
#[derive(Default)]
pub struct PresenceHub {
    scopes: DashMap<ScopeId, HashMap<u64, Member>>,
    next_connection: AtomicU64,
}

impl PresenceHub {
    /// Adds a connection to `scope` and tells the others; returns its handle and who
    /// was there before it.
    pub fn join(
        self: &Arc<Self>,
        domain: &'static str,
        scope: &ScopeKey,
        user: &str,
        frames: mpsc::Sender<Arc<str>>,
    ) -> (Presence, Vec<Peer>) {
        let id = self.next_connection.fetch_add(1, Ordering::Relaxed);
        let peer = Peer { connection: format!("c{id}"), user: user.to_owned(), state: Value::Null };
        let key = (domain, scope.clone());
        let lost = Arc::new(AtomicBool::new(false));
        let mut members = self.scopes.entry(key.clone()).or_default();
        let before: Vec<Peer> = members.values().map(|m| m.peer.clone()).collect();
        broadcast(&members, id, &ServerFrame::<Value>::Presence(peer.clone()));
        members.insert(id, Member { peer, frames, lost: lost.clone() });
        drop(members);
        (Presence { hub: self.clone(), key, id, lost }, before)
    }
}

/// Sends `frame` to every connection of a scope but `except`.
fn broadcast(members: &HashMap<u64, Member>, except: u64, frame: &ServerFrame<Value>) {
    let text: Arc<str> = serde_json::to_string(frame).expect("presence frames serialize").into();
    for (id, member) in members {
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
    pub fn resnapshot_if_lost(&self, queued: &mut mpsc::Receiver<Arc<str>>) -> Option<Vec<Peer>> {
        if !self.lost.load(Ordering::Relaxed) {
            return None;
        }
        let members = self.hub.scopes.get(&self.key)?;
        self.lost.store(false, Ordering::Relaxed);
        while queued.try_recv().is_ok() {}
        Some(members.iter().filter(|(id, _)| **id != self.id).map(|(_, m)| m.peer.clone()).collect())
    }

    /// Sets this connection's state and tells the others.
    pub fn update(&self, state: Value) {
        if let Some(mut members) = self.hub.scopes.get_mut(&self.key) {
            let Some(member) = members.get_mut(&self.id) else { return };
            member.peer.state = state;
            let frame = ServerFrame::<Value>::Presence(member.peer.clone());
            broadcast(&members, self.id, &frame);
        }
    }
}

impl Drop for Presence {
    fn drop(&mut self) {
        let Some(mut members) = self.hub.scopes.get_mut(&self.key) else { return };
        if let Some(left) = members.remove(&self.id) {
            let Peer { connection, user, .. } = left.peer;
            broadcast(&members, self.id, &ServerFrame::<Value>::PresenceLeft { connection, user });
        }
        let empty = members.is_empty();
        drop(members);
        if empty {
            // Only if still empty: another connection may have joined meanwhile.
            self.hub.scopes.remove_if(&self.key, |_, members| members.is_empty());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames() -> (mpsc::Sender<Arc<str>>, mpsc::Receiver<Arc<str>>) {
        mpsc::channel(8)
    }

    fn next(frames: &mut mpsc::Receiver<Arc<str>>) -> Value {
        serde_json::from_str(&frames.try_recv().expect("a frame")).unwrap()
    }

    #[test]
    fn joins_updates_and_leaves_reach_the_others_only() {
        let hub = Arc::new(PresenceHub::default());
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
        let hub = Arc::new(PresenceHub::default());
        let scope = ScopeKey::parse("board").unwrap();
        let (slow_out, mut slow_in) = mpsc::channel(1);
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
