//! Per-scope fan-out inside an adapter: one broadcast channel per scope that has
//! subscribers, so an event costs nothing for scopes nobody watches.
//!
//! A broadcast channel allocates its whole ring when it is made, one slot per event
//! a subscriber may fall behind. The ring holds each event behind an `Arc`, so a
//! slot costs about 40 bytes whatever the domain's event (with chat's events inline
//! it was about 230 bytes: 230 KiB per watched scope at the default capacity of
//! 1,024), and a scope's channel goes when its last subscriber does.

use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};

use dashmap::DashMap;
use futures::{Stream, StreamExt};
use tokio::sync::broadcast;
use tokio_stream::wrappers::{errors::BroadcastStreamRecvError, BroadcastStream};

use crate::{Delivery, EventStream, ScopeKey};

type Senders<E> = DashMap<ScopeKey, broadcast::Sender<Delivery<Arc<E>>>>;

pub struct ScopedBroadcast<E> {
    capacity: usize,
    senders: Arc<Senders<E>>,
}

impl<E: Clone + Send + Sync + 'static> ScopedBroadcast<E> {
    /// `capacity`: how many events a slow subscriber may fall behind before it is
    /// told to resync ([`Delivery::Lagged`]).
    pub fn new(capacity: usize) -> Self {
        Self { capacity, senders: Arc::new(DashMap::new()) }
    }

    pub fn publish(&self, scope: &ScopeKey, event: E) {
        let orphaned = match self.senders.get(scope) {
            Some(sender) => sender.send(Delivery::Event(Arc::new(event))).is_err(),
            None => false,
        };
        if orphaned {
            self.senders.remove_if(scope, |_, sender| sender.receiver_count() == 0);
        }
    }

    pub fn subscribe(&self, scope: &ScopeKey) -> EventStream<E> {
        let receiver =
            self.senders.entry(scope.clone()).or_insert_with(|| broadcast::channel(self.capacity).0).subscribe();
        let deliveries = BroadcastStream::new(receiver).map(|item| match item {
            // A scope's subscriber is usually alone on its channel (the adapter
            // actor's feed), which then takes the event without a copy.
            Ok(Delivery::Event(event)) => Delivery::Event(Arc::unwrap_or_clone(event)),
            Ok(Delivery::Lagged) => Delivery::Lagged,
            Err(BroadcastStreamRecvError::Lagged(_)) => Delivery::Lagged,
        });
        let unwatch = Unwatch { senders: Arc::downgrade(&self.senders), scope: scope.clone() };
        Box::pin(Feed { deliveries, _unwatch: unwatch })
    }

    /// Tells every subscriber of every scope to resync (events may have been missed,
    /// e.g. while the adapter reconnected).
    pub fn resync_all(&self) {
        for sender in self.senders.iter() {
            let _ = sender.send(Delivery::Lagged);
        }
    }

    /// Tells `scope`'s subscribers to resync (they may have missed an event).
    pub fn resync(&self, scope: &ScopeKey) {
        if let Some(sender) = self.senders.get(scope) {
            let _ = sender.send(Delivery::Lagged);
        }
    }

    /// Whether anyone listens to `scope` (adapters may skip building events otherwise).
    pub fn is_watched(&self, scope: &ScopeKey) -> bool {
        self.senders.get(scope).is_some_and(|s| s.receiver_count() > 0)
    }

    /// Every scope with a subscriber now.
    pub fn watched(&self) -> Vec<ScopeKey> {
        self.senders.iter().filter(|entry| entry.receiver_count() > 0).map(|entry| entry.key().clone()).collect()
    }
}

/// A subscriber's stream. Its receiver is dropped before its `Unwatch` (fields drop
/// in order), so the last one out finds no receiver left and drops the channel.
struct Feed<S, E> {
    deliveries: S,
    _unwatch: Unwatch<E>,
}

impl<S: Stream + Unpin, E> Stream for Feed<S, E> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        self.deliveries.poll_next_unpin(cx)
    }
}

/// Drops a scope's channel (and its ring) when its last subscriber goes; a scope
/// watched once is not held for the process's life. (A subscriber arriving at the
/// same time either keeps the channel, or makes a new one: the map's entry is
/// locked by both.)
struct Unwatch<E> {
    senders: Weak<Senders<E>>,
    scope: ScopeKey,
}

impl<E> Drop for Unwatch<E> {
    fn drop(&mut self) {
        if let Some(senders) = self.senders.upgrade() {
            senders.remove_if(&self.scope, |_, sender| sender.receiver_count() == 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> ScopeKey {
        ScopeKey::parse(s).unwrap()
    }

    #[tokio::test]
    async fn events_reach_only_their_scope() {
        let live = ScopedBroadcast::new(8);
        let mut a = live.subscribe(&key("a"));
        let mut b = live.subscribe(&key("b"));
        live.publish(&key("a"), 1);
        live.publish(&key("b"), 2);
        assert_eq!(a.next().await, Some(Delivery::Event(1)));
        assert_eq!(b.next().await, Some(Delivery::Event(2)));
    }

    #[tokio::test]
    async fn a_slow_subscriber_is_told_to_resync() {
        let live = ScopedBroadcast::new(2);
        let mut a = live.subscribe(&key("a"));
        for i in 0..5 {
            live.publish(&key("a"), i);
        }
        assert_eq!(a.next().await, Some(Delivery::Lagged));
        assert_eq!(a.next().await, Some(Delivery::Event(3)));
    }

    #[tokio::test]
    async fn a_scope_channel_goes_with_its_last_subscriber() {
        let live = ScopedBroadcast::new(8);
        let a = live.subscribe(&key("a"));
        let mut b = live.subscribe(&key("a"));
        drop(a);
        assert!(live.is_watched(&key("a")), "one subscriber is left");
        live.publish(&key("a"), 1);
        assert_eq!(b.next().await, Some(Delivery::Event(1)));
        drop(b);
        assert!(live.senders.is_empty(), "the scope's channel and its ring are gone");
        // Watching it again makes a new channel, which delivers.
        let mut c = live.subscribe(&key("a"));
        live.publish(&key("a"), 2);
        assert_eq!(c.next().await, Some(Delivery::Event(2)));
    }
}
