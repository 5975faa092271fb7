//! Shards: several SpacetimeDB servers, each caching some of a domain's scopes. A
//! scope's shard is chosen when the scope is created and stored with it (the
//! `scopes.shard` column), so adding a shard never moves a scope silently; an
//! operator moves one explicitly. PostgreSQL stays the one source of truth.

/// One domain's module on one shard: what names its outbox lease, its locks and its
/// metrics.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Shard {
    pub name: String,
    /// The first shard: scopes with no stored shard (created before there were
    /// more) live on it.
    pub first: bool,
    /// `<domain>` on the first shard, `<domain>/<shard>` on the others: the key of
    /// this domain's outbox lease, warm-up gate and running lock on this shard. A
    /// single-shard deployment keeps the keys it always had.
    pub unit: String,
}

impl Shard {
    pub fn new(domain: &str, name: &str, first: bool) -> Self {
        let unit = if first { domain.to_string() } else { format!("{domain}/{name}") };
        Self { name: name.to_string(), first, unit }
    }

    /// Whether a scope stored with `stored` as its shard lives here.
    pub fn holds(&self, stored: Option<&str>) -> bool {
        match stored {
            Some(name) => name == self.name,
            None => self.first,
        }
    }
}

/// The shard a new scope goes to: rendezvous hashing of the scope over the shard
/// names, so the choice is stable across nodes and restarts, and spreads scopes
/// evenly. Only consulted at creation: the choice is stored.
pub fn place<'s>(domain: &str, scope: &str, shards: &'s [String]) -> Option<&'s str> {
    shards
        .iter()
        .max_by_key(|shard| stable_hash(&[shard.as_bytes(), domain.as_bytes(), scope.as_bytes()]))
        .map(String::as_str)
}

/// FNV-1a over the parts, each followed by a 0 byte, then MurmurHash3's finalizer:
/// fixed across builds and platforms (the standard library's hasher promises neither).
fn stable_hash(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.iter().chain(std::iter::once(&0u8)) {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    // FNV's last bytes barely reach its high bits: without a final mix, scopes whose
    // keys differ only at the end would all rank the shards alike.
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^ (hash >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_is_stable_and_spreads_scopes() {
        let shards = vec!["main".to_string(), "b".to_string()];
        let on_b = (0..1000).filter(|i| place("chat", &format!("s{i}"), &shards) == Some("b")).count();
        assert!((400..600).contains(&on_b), "{on_b} of 1000 on b");
        assert_eq!(place("chat", "general", &shards), place("chat", "general", &shards));
        assert_eq!(place("chat", "general", &[]), None);
    }

    #[test]
    fn adding_a_shard_takes_scopes_only_to_the_new_one() {
        let two = vec!["main".to_string(), "b".to_string()];
        let three = vec!["main".to_string(), "b".to_string(), "c".to_string()];
        for i in 0..1000 {
            let scope = format!("s{i}");
            let after = place("chat", &scope, &three).unwrap();
            assert!(after == "c" || Some(after) == place("chat", &scope, &two), "{scope}");
        }
    }

    #[test]
    fn a_scope_without_a_stored_shard_lives_on_the_first() {
        assert!(Shard::new("chat", "main", true).holds(None));
        assert!(!Shard::new("chat", "b", false).holds(None));
        assert!(Shard::new("chat", "b", false).holds(Some("b")));
        assert_eq!(Shard::new("chat", "b", false).unit, "chat/b");
        assert_eq!(Shard::new("chat", "main", true).unit, "chat");
    }
}
