//! Per-scope indexes of cached rows. The SpacetimeDB client cache has no non-unique
//! indexes, so each SpacetimeDB adapter keeps the keys of each scope's rows here (from
//! its row callbacks) and serves snapshots from them.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

pub struct ScopeIndex<K> {
    scopes: Mutex<HashMap<String, BTreeSet<K>>>,
}

impl<K: Ord + Clone> Default for ScopeIndex<K> {
    fn default() -> Self {
        Self { scopes: Mutex::new(HashMap::new()) }
    }
}

impl<K: Ord + Clone> ScopeIndex<K> {
    pub fn insert(&self, scope: &str, key: K) {
        self.scopes.lock().expect("index lock").entry(scope.to_string()).or_default().insert(key);
    }

    pub fn remove(&self, scope: &str, key: &K) {
        if let Some(keys) = self.scopes.lock().expect("index lock").get_mut(scope) {
            keys.remove(key);
        }
    }

    /// Forgets everything (a new connection refills the index from its subscription).
    pub fn clear(&self) {
        self.scopes.lock().expect("index lock").clear();
    }

    pub fn len(&self, scope: &str) -> usize {
        self.scopes.lock().expect("index lock").get(scope).map_or(0, BTreeSet::len)
    }

    pub fn is_empty(&self, scope: &str) -> bool {
        self.len(scope) == 0
    }

    /// Every key of `scope`, in order.
    pub fn keys(&self, scope: &str) -> Vec<K> {
        self.scopes
            .lock()
            .expect("index lock")
            .get(scope)
            .map(|keys| keys.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// At most `limit` keys of `scope` below `before` (all when none), highest first:
    /// "newest first, older than the cursor" when keys start with a timestamp.
    pub fn newest(&self, scope: &str, before: Option<&K>, limit: usize) -> Vec<K> {
        let scopes = self.scopes.lock().expect("index lock");
        let Some(keys) = scopes.get(scope) else { return Vec::new() };
        match before {
            Some(before) => keys.range(..before.clone()).rev().take(limit).cloned().collect(),
            None => keys.iter().rev().take(limit).cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ScopeIndex;

    #[test]
    fn pages_newest_first_per_scope() {
        let index = ScopeIndex::default();
        for key in [3, 1, 2, 5] {
            index.insert("a", key);
        }
        index.insert("b", 9);
        index.remove("a", &5);
        assert_eq!(index.newest("a", None, 2), [3, 2]);
        assert_eq!(index.newest("a", Some(&2), 10), [1]);
        assert_eq!(index.keys("a"), [1, 2, 3]);
        assert_eq!((index.len("a"), index.len("b"), index.len("c")), (3, 1, 0));
        index.clear();
        assert!(index.is_empty("a"));
    }
}
