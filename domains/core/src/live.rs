//! Per-scope fan-out inside an adapter: one broadcast channel per scope that has
//! subscribers, so an event costs nothing for scopes nobody watches.
//!
//! A broadcast channel allocates its whole ring when it is made, one slot per event
//! a subscriber may fall behind. The ring holds each event behind an `Arc`, so a
//! slot costs a pointer whatever the domain's event: with events inline, a watched
//! chat scope took about 230 KiB at the default capacity of 1,024.

use std::sync::Arc;

use dashmap::DashMap;
use futures::StreamExt;
use tokio::sync::broadcast;
use tokio_stream::wrappers::{errors::BroadcastStreamRecvError, BroadcastStream};

use crate::{Delivery, EventStream, ScopeKey};

pub struct ScopedBroadcast<E> {
    capacity: usize,
    senders: DashMap<ScopeKey, broadcast::Sender<Delivery<Arc<E>>>>,
}

impl<E: Clone + Send + Sync + 'static> ScopedBroadcast<E> {
    /// `capacity`: how many events a slow subscriber may fall behind before it is
    /// told to resync ([`Delivery::Lagged`]).
    pub fn new(capacity: usize) -> Self {
        Self { capacity, senders: DashMap::new() }
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
        Box::pin(BroadcastStream::new(receiver).map(|item| match item {
            // A scope's subscriber is usually alone on its channel (the adapter
            // actor's feed), which then takes the event without a copy.
            Ok(Delivery::Event(event)) => Delivery::Event(Arc::unwrap_or_clone(event)),
            Ok(Delivery::Lagged) => Delivery::Lagged,
            Err(BroadcastStreamRecvError::Lagged(_)) => Delivery::Lagged,
        }))
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
}
