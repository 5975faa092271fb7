//! Fractional ordering keys: a position between any two others without renumbering
//! siblings. Keys are strings over `0-9A-Za-z` compared bytewise; a key never ends in
//! '0', so there is always room between two different keys.
//!
//! This file has no dependencies: SpacetimeDB modules include it too (`#[path]`), so
//! the cache and PostgreSQL place items identically. Concurrent moves converge because
//! every position is computed where writes are serialised (one PostgreSQL transaction
//! or one reducer) and stored; equal keys are ordered by id.

const DIGITS: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const BASE: usize = DIGITS.len();

fn digit(byte: u8) -> usize {
    DIGITS.iter().position(|d| *d == byte).unwrap_or(0)
}

/// A key strictly between `low` and `high` (`None`: the start or the end of the list).
/// When `low >= high`, the result is just after `low`.
pub fn key_between(low: Option<&str>, high: Option<&str>) -> String {
    let low = low.unwrap_or("").as_bytes();
    let high = match high {
        Some(h) if h.as_bytes() > low => Some(h.as_bytes()),
        _ => None,
    };
    let mut key = Vec::new();
    let mut i = 0;
    loop {
        let lo = low.get(i).map_or(0, |b| digit(*b));
        // Past a differing position the upper bound no longer constrains this digit.
        let hi = match high {
            Some(h) if h[..i.min(h.len())] == key[..] => h.get(i).map_or(BASE, |b| digit(*b)),
            _ => BASE,
        };
        if hi > lo + 1 {
            key.push(DIGITS[(lo + hi) / 2]);
            return String::from_utf8(key).expect("key digits are ASCII");
        }
        key.push(DIGITS[lo]);
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::key_between;

    #[test]
    fn keys_fall_strictly_between_their_bounds() {
        let cases =
            [(None, None), (None, Some("V")), (Some("V"), None), (Some("a"), Some("b")), (Some("a0V"), Some("a1"))];
        for (low, high) in cases {
            let key = key_between(low, high);
            assert!(low.is_none_or(|l| key.as_str() > l), "{key} > {low:?}");
            assert!(high.is_none_or(|h| key.as_str() < h), "{key} < {high:?}");
            assert!(!key.ends_with('0'));
        }
    }

    #[test]
    fn repeated_inserts_at_one_place_stay_ordered_without_renumbering() {
        // Always insert right after the first key: keys get longer, order holds.
        let first = key_between(None, None);
        let mut next = key_between(Some(&first), None);
        let mut keys = vec![first.clone(), next.clone()];
        for _ in 0..200 {
            next = key_between(Some(&first), Some(&next));
            keys.push(next.clone());
        }
        let mut sorted = keys.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), keys.len(), "all keys distinct");
        // Appending at the end and prepending at the start keep working too.
        let mut last = key_between(None, None);
        for _ in 0..200 {
            let after = key_between(Some(&last), None);
            assert!(after > last);
            last = after;
        }
        let mut head = key_between(None, None);
        for _ in 0..200 {
            let before = key_between(None, Some(&head));
            assert!(before < head);
            head = before;
        }
    }
}
