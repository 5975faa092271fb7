//! `AdapterActor<D>`: the one actor per domain between the connection and live
//! clients. Its state is the live fan-out: per scope, one feed from the connection
//! and the subscribers it is copied to. Each event becomes its whole socket frame
//! once per scope, and every subscriber gets the same shared bytes straight into its
//! socket's queue (a reference count, no copy, no actor in between). (Commands and
//! snapshots need no actor: the API calls the shared connection directly, from its
//! own worker threads.)

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use boardsync_core::{Connection, Delivery, Domain, DomainError, ScopeKey};
use bytestring::ByteString;
use futures::StreamExt;

use crate::frame_queue::{self, TrySendError};
use crate::frames::ServerFrame;

/// A frame for one live subscriber.
#[derive(Clone, Debug)]
pub enum Live {
    /// An event's whole frame, `{"kind":"event","event":{...}}`, made once for all
    /// the scope's subscribers (cloning it shares the bytes).
    Event(ByteString),
    /// Events were dropped for this subscriber: it should refetch the snapshot.
    Resync,
}

/// Where a subscriber's frames go: its socket's bounded queue. A full queue means
/// the socket is behind; events are then dropped for it and it owes a resync.
pub type LiveSender = frame_queue::Sender<Live>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SubscriberId(u64);

#[derive(Message)]
#[rtype(result = "Result<SubscriberId, DomainError>")]
pub struct Subscribe {
    pub scope: ScopeKey,
    pub subscriber: LiveSender,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Unsubscribe {
    pub scope: ScopeKey,
    pub id: SubscriberId,
}

/// Reopens a scope's feed after it ended (the connection dropped it).
#[derive(Message)]
#[rtype(result = "()")]
struct Reopen(ScopeKey);

/// How long to wait before reopening a feed that ended.
const REOPEN_DELAY: Duration = Duration::from_millis(200);

/// A live subscriber, and whether it owes a resync: its queue was full, so events
/// were dropped for it. It gets one resync once it has room again (the gap's events
/// are not queued: a client that stops reading costs the server a bounded queue).
struct Subscriber {
    sender: LiveSender,
    owes_resync: bool,
    /// A resync is the last frame queued for it. Its queue being full then means the
    /// resync is still unread, so the client refetches after any event dropped now:
    /// that drop owes no second resync.
    resync_is_last: bool,
}

impl Subscriber {
    /// Sends `frame` (or the resync it owes first); false once it is gone.
    fn deliver(&mut self, frame: &Live) -> bool {
        if self.owes_resync {
            if !self.send_resync() {
                return false;
            }
            if self.owes_resync || matches!(frame, Live::Resync) {
                return true; // still behind (this event is dropped too), or covered
            }
        }
        match self.sender.try_send(frame.clone()) {
            Ok(()) => {
                self.resync_is_last = matches!(frame, Live::Resync);
                true
            }
            Err(TrySendError::Full(_)) => {
                self.owes_resync = !self.resync_is_last;
                true
            }
            Err(TrySendError::Closed(_)) => false,
        }
    }

    /// Sends the resync it owes, if it has room now; false once it is gone.
    fn catch_up(&mut self) -> bool {
        !self.owes_resync || self.send_resync()
    }

    /// Tries to queue the owed resync; false once the subscriber is gone.
    fn send_resync(&mut self) -> bool {
        match self.sender.try_send(Live::Resync) {
            Ok(()) => {
                self.owes_resync = false;
                self.resync_is_last = true;
                true
            }
            Err(TrySendError::Full(_)) => true,
            Err(TrySendError::Closed(_)) => false,
        }
    }
}

/// How often subscribers that owe a resync are tried again (when no event comes).
const CATCH_UP_INTERVAL: Duration = Duration::from_millis(200);

struct Feed {
    subscribers: HashMap<SubscriberId, Subscriber>,
    handle: Option<SpawnHandle>,
}

pub struct AdapterActor<D: Domain> {
    connection: Arc<dyn Connection<D>>,
    feeds: HashMap<ScopeKey, Feed>,
    next_id: u64,
}

impl<D: Domain> AdapterActor<D> {
    pub fn new(connection: Arc<dyn Connection<D>>) -> Self {
        Self { connection, feeds: HashMap::new(), next_id: 0 }
    }

    fn open(&mut self, scope: ScopeKey, ctx: &mut Context<Self>) {
        let connection = self.connection.clone();
        let key = scope.clone();
        // Spawned, not waited for: opening a feed may wait on the cache (a scope's
        // subscription), and the other scopes' events must not wait behind it.
        ctx.spawn(async move { connection.subscribe(&key).await }.into_actor(self).map(move |opened, actor, ctx| {
            match opened {
                Ok(stream) => {
                    // Gone meanwhile, or opened by another open that finished first.
                    let Some(feed) = actor.feeds.get_mut(&scope).filter(|feed| feed.handle.is_none()) else { return };
                    let tagged = stream.map(Some).chain(futures::stream::once(async { None })).map({
                        let scope = scope.clone();
                        move |delivery| (scope.clone(), delivery)
                    });
                    feed.handle = Some(ctx.add_stream(tagged));
                }
                Err(error) => {
                    tracing::warn!(domain = D::NAME, scope = %scope, %error, "cannot open live feed; retrying");
                    ctx.notify_later(Reopen(scope), REOPEN_DELAY);
                }
            }
        }));
    }
}

impl<D: Domain> Actor for AdapterActor<D> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(CATCH_UP_INTERVAL, |actor, _| {
            for feed in actor.feeds.values_mut() {
                feed.subscribers.retain(|_, subscriber| subscriber.catch_up());
            }
        });
    }
}

impl<D: Domain> Supervised for AdapterActor<D> {
    /// After a restart every feed is reopened; subscribers stay registered.
    fn restarting(&mut self, ctx: &mut Context<Self>) {
        tracing::warn!(domain = D::NAME, "adapter actor restarting; reopening live feeds");
        let scopes: Vec<ScopeKey> = self.feeds.keys().cloned().collect();
        for scope in scopes {
            if let Some(feed) = self.feeds.get_mut(&scope) {
                feed.handle = None;
            }
            self.open(scope, ctx);
        }
    }
}

impl<D: Domain> Handler<Subscribe> for AdapterActor<D> {
    type Result = Result<SubscriberId, DomainError>;

    fn handle(&mut self, msg: Subscribe, ctx: &mut Context<Self>) -> Self::Result {
        self.next_id += 1;
        let id = SubscriberId(self.next_id);
        let is_new = !self.feeds.contains_key(&msg.scope);
        self.feeds
            .entry(msg.scope.clone())
            .or_insert_with(|| Feed { subscribers: HashMap::new(), handle: None })
            .subscribers
            .insert(id, Subscriber { sender: msg.subscriber, owes_resync: false, resync_is_last: false });
        if is_new {
            self.open(msg.scope, ctx);
        }
        Ok(id)
    }
}

impl<D: Domain> Handler<Unsubscribe> for AdapterActor<D> {
    type Result = ();

    fn handle(&mut self, msg: Unsubscribe, ctx: &mut Context<Self>) {
        let Some(feed) = self.feeds.get_mut(&msg.scope) else {
            return;
        };
        feed.subscribers.remove(&msg.id);
        if feed.subscribers.is_empty() {
            if let Some(handle) = feed.handle.take() {
                ctx.cancel_future(handle);
            }
            self.feeds.remove(&msg.scope);
        }
    }
}

impl<D: Domain> Handler<Reopen> for AdapterActor<D> {
    type Result = ();

    fn handle(&mut self, Reopen(scope): Reopen, ctx: &mut Context<Self>) {
        if self.feeds.get(&scope).is_some_and(|feed| feed.handle.is_none()) {
            self.open(scope, ctx);
        }
    }
}

impl<D: Domain> StreamHandler<(ScopeKey, Option<Delivery<D::Event>>)> for AdapterActor<D> {
    fn handle(&mut self, (scope, delivery): (ScopeKey, Option<Delivery<D::Event>>), ctx: &mut Context<Self>) {
        let Some(feed) = self.feeds.get_mut(&scope) else {
            return;
        };
        let frame = match delivery {
            Some(Delivery::Event(event)) => match serde_json::to_string(&ServerFrame::Event { event: &event }) {
                Ok(json) => Live::Event(json.into()),
                Err(error) => {
                    tracing::error!(domain = D::NAME, %error, "cannot serialise an event");
                    return;
                }
            },
            Some(Delivery::Lagged) => Live::Resync,
            None => {
                // The connection ended this feed: reopen it, and tell subscribers that
                // they may have missed events meanwhile.
                feed.handle = None;
                ctx.notify_later(Reopen(scope.clone()), REOPEN_DELAY);
                Live::Resync
            }
        };
        feed.subscribers.retain(|_, subscriber| subscriber.deliver(&frame));
    }

    /// Feeds end individually (see above); the actor itself keeps running.
    fn finished(&mut self, _: &mut Context<Self>) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_queue_owes_one_resync_delivered_once_there_is_room() {
        let (sender, mut queue) = frame_queue::bounded(2);
        let mut subscriber = Subscriber { sender, owes_resync: false, resync_is_last: false };
        let event = Live::Event(ByteString::from_static(r#"{"kind":"event","event":{}}"#));
        for _ in 0..5 {
            assert!(subscriber.deliver(&event));
        }
        assert!(subscriber.owes_resync);
        assert!(matches!(queue.recv().await, Some(Live::Event(_))));
        assert!(matches!(queue.recv().await, Some(Live::Event(_))));
        assert!(subscriber.catch_up());
        assert!(matches!(queue.try_recv(), Ok(Live::Resync)));
        assert!(queue.try_recv().is_err(), "one resync per gap");
        drop(queue);
        assert!(!subscriber.deliver(&event), "a closed queue ends the subscriber");
    }
}
