//! Warm-up tuning, layered: a domain's defaults from `[domains.<name>.warmup]`, then
//! the scope's own overrides from its `config.warmup`.

use serde::{Deserialize, Serialize};

/// A domain's warm-up defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarmupSettings {
    /// Whether scopes are loaded into the cache at all.
    pub enabled: bool,
    /// Load at most the newest N items of a scope (none: no limit).
    pub max_items: Option<u32>,
    /// Load only items younger than this many seconds (none: no limit).
    pub max_age_secs: Option<u64>,
    /// Rows per warm-up reducer call.
    pub batch_size: u32,
    /// At most about this many bytes per warm-up reducer call, whatever `batch_size`
    /// says (SpacetimeDB drops a connection over a message past 32 MiB).
    #[serde(default = "default_batch_bytes")]
    pub batch_bytes: usize,
    /// Higher warms earlier.
    pub priority: i32,
}

fn default_batch_bytes() -> usize {
    4 << 20
}

/// A scope's overrides; each field left out keeps the domain default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WarmupOverrides {
    pub enabled: Option<bool>,
    pub max_items: Option<u32>,
    pub max_age_secs: Option<u64>,
    pub batch_size: Option<u32>,
    pub priority: Option<i32>,
}

impl WarmupSettings {
    /// The oldest creation time the window admits (`max_age_secs` ago), if bounded.
    pub fn since(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        // An age past what time can subtract (about 292 billion years) is no bound.
        let secs = i64::try_from(self.max_age_secs?).ok()?;
        chrono::Utc::now().checked_sub_signed(chrono::TimeDelta::try_seconds(secs)?)
    }

    /// The most items the window admits.
    pub fn limit(&self) -> i64 {
        self.max_items.map_or(i64::MAX, i64::from)
    }

    /// The domain defaults with a scope's overrides applied.
    pub fn with(&self, overrides: &WarmupOverrides) -> WarmupSettings {
        WarmupSettings {
            enabled: overrides.enabled.unwrap_or(self.enabled),
            max_items: overrides.max_items.or(self.max_items),
            max_age_secs: overrides.max_age_secs.or(self.max_age_secs),
            batch_size: overrides.batch_size.unwrap_or(self.batch_size).max(1),
            batch_bytes: self.batch_bytes.max(1),
            priority: overrides.priority.unwrap_or(self.priority),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_overrides_win_field_by_field() {
        let defaults = WarmupSettings {
            enabled: true,
            max_items: Some(500),
            max_age_secs: None,
            batch_size: 1000,
            batch_bytes: 1 << 20,
            priority: 0,
        };
        let overrides = WarmupOverrides { max_items: Some(50), priority: Some(9), ..Default::default() };
        let merged = defaults.with(&overrides);
        assert_eq!(merged.max_items, Some(50));
        assert_eq!(merged.priority, 9);
        assert_eq!(merged.batch_size, 1000);
        assert!(merged.enabled);
    }

    #[test]
    fn any_max_age_gives_a_window_or_none_without_panicking() {
        let window = |secs| WarmupSettings {
            enabled: true,
            max_items: None,
            max_age_secs: Some(secs),
            batch_size: 1,
            batch_bytes: 1,
            priority: 0,
        };
        let hour_ago = window(3600).since().unwrap();
        assert!((chrono::Utc::now() - hour_ago).num_seconds() >= 3600);
        for huge in [10_000_000_000_000, i64::MAX as u64, u64::MAX] {
            assert_eq!(window(huge).since(), None, "{huge}: older than time itself bounds nothing");
        }
    }
}
