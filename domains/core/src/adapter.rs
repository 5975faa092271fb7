//! The two adapters every domain implements, and how one is picked.

use serde::Serialize;

/// The adapter behind every domain's connection. Picked once at start-up; never
/// switched at run time (switching lost state and observers in the seed's lazy wrapper).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AdapterKind {
    /// SpacetimeDB as a warm cache in front of PostgreSQL.
    Spacetimedb,
    /// PostgreSQL directly: the fallback when no SpacetimeDB is configured.
    Postgres,
}

impl AdapterKind {
    /// SpacetimeDB when a URL is configured, PostgreSQL otherwise: removing the URL
    /// is the whole fallback procedure.
    pub fn select(spacetimedb_url: Option<&str>) -> Self {
        match spacetimedb_url {
            Some(url) if !url.trim().is_empty() => Self::Spacetimedb,
            _ => Self::Postgres,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Spacetimedb => "spacetimedb",
            Self::Postgres => "postgres",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configured_url_selects_spacetimedb() {
        assert_eq!(AdapterKind::select(Some("http://127.0.0.1:3000")), AdapterKind::Spacetimedb);
    }

    #[test]
    fn no_url_or_a_blank_one_selects_postgres() {
        assert_eq!(AdapterKind::select(None), AdapterKind::Postgres);
        assert_eq!(AdapterKind::select(Some("  ")), AdapterKind::Postgres);
    }
}
