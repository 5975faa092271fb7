//! A cache of what was read from PostgreSQL that forgets an entry when it changes,
//! without ever keeping a read that raced the change: the scopes and their members,
//! which every request checks, and which change in PostgreSQL (through this backend,
//! another one, or plain SQL).

use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;

/// What [`Forgetful::keep`] needs to know whether a read is still current.
pub struct Ticket {
    epoch: u64,
    version: u64,
}

pub struct Forgetful<K: Eq + Hash + Clone, V: Clone> {
    known: DashMap<K, V>,
    /// Bumped by every change of an entry: a read that began before it is not kept.
    versions: DashMap<K, u64>,
    /// Bumped when everything is forgotten (notifications may have been missed).
    epoch: AtomicU64,
}

impl<K: Eq + Hash + Clone, V: Clone> Default for Forgetful<K, V> {
    fn default() -> Self {
        Self { known: DashMap::new(), versions: DashMap::new(), epoch: AtomicU64::new(0) }
    }
}

impl<K: Eq + Hash + Clone, V: Clone> Forgetful<K, V> {
    pub fn get(&self, key: &K) -> Option<V> {
        self.known.get(key).map(|value| value.clone())
    }

    /// Taken before reading `key` from PostgreSQL.
    pub fn ticket(&self, key: &K) -> Ticket {
        let epoch = self.epoch.load(Ordering::SeqCst);
        Ticket { epoch, version: self.versions.get(key).map_or(0, |v| *v) }
    }

    /// Keeps what was read under `ticket`, unless `key` changed (or everything was
    /// forgotten) since.
    pub fn keep(&self, key: K, value: V, ticket: Ticket) {
        // Held while inserting: a change bumps the version under the same lock.
        let current = self.versions.entry(key.clone()).or_insert(0);
        if *current == ticket.version {
            self.known.insert(key.clone(), value);
        }
        drop(current);
        // Everything was forgotten meanwhile: this read may predate a missed change.
        if self.epoch.load(Ordering::SeqCst) != ticket.epoch {
            self.known.remove(&key);
        }
    }

    /// `key` changed: what was kept of it, and any read of it in flight, is dropped.
    pub fn forget(&self, key: &K) {
        *self.versions.entry(key.clone()).or_insert(0) += 1;
        self.known.remove(key);
    }

    /// Everything may have changed.
    pub fn forget_all(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.known.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_that_raced_a_change_or_a_forget_all_is_not_kept() {
        let cache: Forgetful<&str, u32> = Forgetful::default();
        let stale = cache.ticket(&"a");
        cache.forget(&"a"); // changed while the read was in flight
        cache.keep("a", 1, stale);
        assert_eq!(cache.get(&"a"), None);

        let stale = cache.ticket(&"b");
        cache.forget_all();
        cache.keep("b", 2, stale);
        assert_eq!(cache.get(&"b"), None);

        let fresh = cache.ticket(&"a");
        cache.keep("a", 3, fresh);
        assert_eq!(cache.get(&"a"), Some(3));
        cache.forget(&"a");
        assert_eq!(cache.get(&"a"), None);
    }
}
