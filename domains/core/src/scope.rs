//! Scopes: the units of collaboration (a chat channel, a board). They are rows in
//! PostgreSQL (`scopes`), created and updated through the admin API, each with a
//! `config` JSON object: the generic `warmup` overrides plus the domain's own part.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;

use crate::access::{decide, AccessConfig, Caller, Members, Need, ACCESS_CHANNEL};
use crate::domain::Domain;
use crate::forgetful::Forgetful;
use crate::warmup::WarmupOverrides;
use crate::DomainError;

const MAX_KEY_LEN: usize = 64;

/// How long to wait before listening again for access changes after a failure.
const LISTEN_RETRY: Duration = Duration::from_secs(1);

/// A scope's key in URLs: 1-64 of `a-z 0-9 _ -`, starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, schemars::JsonSchema)]
#[serde(transparent)]
pub struct ScopeKey(String);

impl ScopeKey {
    pub fn parse(key: &str) -> Result<Self, DomainError> {
        let valid = !key.is_empty()
            && key.len() <= MAX_KEY_LEN
            && key.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
            && key.as_bytes()[0].is_ascii_alphanumeric();
        if valid {
            Ok(Self(key.to_string()))
        } else {
            Err(DomainError::bad_request(
                "invalid_scope_key",
                format!("scope key {key:?} must be 1-{MAX_KEY_LEN} of a-z, 0-9, '_' and '-', starting with a letter or digit"),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ScopeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, schemars::JsonSchema)]
pub struct Scope {
    pub domain: String,
    pub key: ScopeKey,
    pub name: String,
    pub config: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The cache shard it lives on (none: the first); see [`crate::shards`].
    #[serde(skip)]
    #[schemars(skip)]
    pub shard: Option<String>,
    /// When it was placed on that shard (its creation, or its last move).
    #[serde(skip)]
    #[schemars(skip)]
    pub placed_at: DateTime<Utc>,
}

impl Scope {
    /// The scope's warm-up overrides (validated when the config was stored).
    pub fn warmup_overrides(&self) -> WarmupOverrides {
        self.config.get("warmup").and_then(|w| serde_json::from_value(w.clone()).ok()).unwrap_or_default()
    }

    /// What the scope grants every authenticated user (validated when stored).
    pub fn access(&self) -> AccessConfig {
        self.config.get("access").and_then(|a| serde_json::from_value(a.clone()).ok()).unwrap_or_default()
    }
}

/// A scope's `config`, parsed: the generic warm-up overrides and access, and the
/// domain's own keys beside them (its schema, for the API document, says so).
#[derive(Debug, schemars::JsonSchema)]
#[schemars(rename = "{C}Scope")]
pub struct ScopeConfig<C> {
    /// Overrides of the domain's warm-up window for this scope.
    #[schemars(default)]
    pub warmup: WarmupOverrides,
    /// Opens the scope to every signed-in user (`read` or `write`); members only when absent.
    #[schemars(default)]
    pub access: AccessConfig,
    #[schemars(flatten)]
    pub domain: C,
}

/// Validates a scope's `config` object for domain `D`; errors name the offending key.
pub fn parse_config<D: Domain>(config: &serde_json::Value) -> Result<ScopeConfig<D::ScopeConfig>, DomainError> {
    let invalid = |key: &str, error: serde_json::Error| {
        DomainError::invalid("invalid_scope_config", format!("config{key}: {error}"))
    };
    let serde_json::Value::Object(map) = config else {
        return Err(DomainError::invalid("invalid_scope_config", "config must be a JSON object"));
    };
    let mut rest = map.clone();
    let warmup = match rest.remove("warmup") {
        Some(value) => serde_json::from_value(value).map_err(|e| invalid(".warmup", e))?,
        None => WarmupOverrides::default(),
    };
    let access = match rest.remove("access") {
        Some(value) => serde_json::from_value(value).map_err(|e| invalid(".access", e))?,
        None => AccessConfig::default(),
    };
    let domain = serde_json::from_value(serde_json::Value::Object(rest)).map_err(|e| invalid("", e))?;
    Ok(ScopeConfig { warmup, access, domain })
}

pub fn missing(domain: &str, noun: &str, key: &ScopeKey) -> DomainError {
    DomainError::not_found("scope_not_found", format!("{domain} {noun} {key} does not exist"))
}

#[derive(sqlx::FromRow)]
struct ScopeRow {
    domain: String,
    key: String,
    name: String,
    config: serde_json::Value,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    shard: Option<String>,
    placed_at: DateTime<Utc>,
}

impl From<ScopeRow> for Scope {
    fn from(row: ScopeRow) -> Self {
        Self {
            domain: row.domain,
            key: ScopeKey(row.key),
            name: row.name,
            config: row.config,
            created_at: row.created_at,
            updated_at: row.updated_at,
            shard: row.shard,
            placed_at: row.placed_at,
        }
    }
}

/// The scopes table, with the scopes already seen kept in memory: every command
/// checks its scope exists, and that must not cost a query.
pub struct ScopeStore {
    pool: PgPool,
    known: Forgetful<(String, ScopeKey), Scope>,
    /// Who may see and change each scope.
    pub members: Members,
    changes: tokio::sync::broadcast::Sender<(String, ScopeKey)>,
    /// Whether changes are being heard now: until they are (and while the listener
    /// is lost) a scope is read from PostgreSQL every time, not from what is kept
    /// (a move, or a revoked access, would go unheard).
    listening: std::sync::atomic::AtomicBool,
}

/// How many scope changes a watcher may fall behind before it lags (and must take
/// every scope as changed).
const CHANGES_CAPACITY: usize = 1024;

impl ScopeStore {
    pub fn new(pool: PgPool) -> Self {
        let changes = tokio::sync::broadcast::channel(CHANGES_CAPACITY).0;
        Self {
            members: Members::new(pool.clone()),
            pool,
            known: Forgetful::default(),
            changes,
            listening: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Follows `boardsync_access` notifications (changes of scopes and members made
    /// by any backend or by plain SQL) until the store is dropped: each forgets what
    /// was kept of that scope and re-checks its live sockets. After a lost listener
    /// connection everything kept is forgotten, since notifications may have been
    /// missed.
    pub fn follow_changes(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let store = Arc::downgrade(self);
        let pool = self.pool.clone();
        tokio::spawn(async move {
            loop {
                let listener = async {
                    let mut listener = PgListener::connect_with(&pool).await?;
                    listener.listen(ACCESS_CHANNEL).await?;
                    Ok::<_, sqlx::Error>(listener)
                };
                let mut listener = match listener.await {
                    Ok(listener) => listener,
                    Err(error) => {
                        tracing::warn!(%error, "cannot listen for access changes; retrying");
                        tokio::time::sleep(LISTEN_RETRY).await;
                        continue;
                    }
                };
                let Some(live) = store.upgrade() else { return };
                live.forget_all();
                live.listening.store(true, std::sync::atomic::Ordering::SeqCst);
                drop(live);
                loop {
                    let notification = match listener.try_recv().await {
                        Ok(Some(notification)) => notification,
                        // The connection dropped and sqlx reconnects on the next call:
                        // what was sent meanwhile is lost.
                        // Listening again first, then forgetting (the outer loop), so no
                        // change falls between the two.
                        Ok(None) => {
                            tracing::warn!("access change listener lost its connection; listening again");
                            break;
                        }
                        Err(error) => {
                            tracing::warn!(%error, "access change listener lost; reconnecting");
                            break;
                        }
                    };
                    let Some(live) = store.upgrade() else { return };
                    let Some((domain, key)) = notification.payload().split_once('/') else { continue };
                    if let Ok(key) = ScopeKey::parse(key) {
                        live.changed(domain, &key);
                    }
                }
                // Lost: scopes are read from PostgreSQL until changes are heard again.
                if let Some(live) = store.upgrade() {
                    live.listening.store(false, std::sync::atomic::Ordering::SeqCst);
                }
            }
        })
    }

    /// A scope's row changed (or went): forget it, and its access, which its config
    /// decides; its live sockets check again, and so does whoever watches (a live
    /// feed of a scope that may have moved to another shard).
    pub fn changed(&self, domain: &str, key: &ScopeKey) {
        self.known.forget(&(domain.to_string(), key.clone()));
        self.members.changed(domain, key);
        let _ = self.changes.send((domain.to_string(), key.clone()));
    }

    /// Every scope change from now on (see [`ScopeStore::changed`]). An empty domain
    /// means every scope may have changed (notifications were missed), and so does a
    /// receiver's lag.
    pub fn watch(&self) -> tokio::sync::broadcast::Receiver<(String, ScopeKey)> {
        self.changes.subscribe()
    }

    /// The shard a scope lives on, read from PostgreSQL now (not from what this
    /// backend keeps): `None` when the scope does not exist; `Some(None)` for the
    /// first shard.
    pub async fn stored_shard(&self, domain: &str, key: &ScopeKey) -> Result<Option<Option<String>>, DomainError> {
        sqlx::query_scalar("SELECT shard FROM scopes WHERE domain = $1 AND key = $2")
            .bind(domain)
            .bind(key.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(DomainError::from_sqlx)
    }

    /// Moves a scope from cache shard `from` to `to` (the switch of an operator's
    /// move), only if it is still on `from`; whether it was.
    pub async fn set_shard(
        &self,
        domain: &str,
        key: &ScopeKey,
        from: Option<&str>,
        to: &str,
    ) -> Result<bool, DomainError> {
        let moved = sqlx::query(
            "UPDATE scopes SET shard = $4, placed_at = clock_timestamp()
             WHERE domain = $1 AND key = $2 AND shard IS NOT DISTINCT FROM $3",
        )
        .bind(domain)
        .bind(key.as_str())
        .bind(from)
        .bind(to)
        .execute(&self.pool)
        .await
        .map_err(DomainError::from_sqlx)?
        .rows_affected()
            == 1;
        self.changed(domain, key);
        Ok(moved)
    }

    fn forget_all(&self) {
        self.known.forget_all();
        self.members.forget_all();
        let _ = self.changes.send((String::new(), ScopeKey(String::new())));
    }

    pub async fn get(&self, domain: &str, key: &ScopeKey) -> Result<Option<Scope>, DomainError> {
        let entry = (domain.to_string(), key.clone());
        let listening = self.listening.load(std::sync::atomic::Ordering::SeqCst);
        if let Some(scope) = self.known.get(&entry).filter(|_| listening) {
            return Ok(Some(scope));
        }
        let ticket = self.known.ticket(&entry);
        let row: Option<ScopeRow> = sqlx::query_as(
            "SELECT domain, key, name, config, created_at, updated_at, shard, placed_at FROM scopes WHERE domain = $1 AND key = $2",
        )
        .bind(domain)
        .bind(key.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(DomainError::from_sqlx)?;
        let scope = row.map(Scope::from);
        if let (Some(scope), true) = (&scope, listening) {
            self.known.keep(entry, scope.clone(), ticket);
        }
        Ok(scope)
    }

    /// The scope, or a 404 naming what is missing (`noun` is "channel", "board", ...).
    pub async fn require(&self, domain: &str, noun: &str, key: &ScopeKey) -> Result<Scope, DomainError> {
        self.get(domain, key).await?.ok_or_else(|| missing(domain, noun, key))
    }

    /// Whether `caller` may do what `need` asks in the scope: 404 exactly as for a
    /// missing scope when they may not see it, 403 when they may see but not do it.
    /// Allowed: whether they own the scope (admins count as owners).
    pub async fn authorize(
        &self,
        domain: &str,
        noun: &str,
        key: &ScopeKey,
        caller: &Caller<'_>,
        need: Need,
    ) -> Result<bool, DomainError> {
        let scope = self.require(domain, noun, key).await?;
        let role = if caller.admin { None } else { self.members.role(domain, key, caller.user).await? };
        let not_found = || missing(domain, noun, key);
        decide(caller, role, scope.access(), need, not_found)?;
        Ok(caller.admin || role == Some(crate::access::Role::Owner))
    }

    /// Creates or updates a scope; `config` must already be validated. A new scope
    /// goes to cache shard `shard`; an existing one stays where it is.
    pub async fn upsert(
        &self,
        domain: &str,
        key: &ScopeKey,
        name: &str,
        config: &serde_json::Value,
        shard: Option<&str>,
    ) -> Result<Scope, DomainError> {
        let row: ScopeRow = sqlx::query_as(
            "INSERT INTO scopes (domain, key, name, config, shard) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (domain, key) DO UPDATE SET name = EXCLUDED.name, config = EXCLUDED.config, updated_at = now()
             RETURNING domain, key, name, config, created_at, updated_at, shard, placed_at",
        )
        .bind(domain)
        .bind(key.as_str())
        .bind(name)
        .bind(config)
        .bind(shard)
        .fetch_one(&self.pool)
        .await
        .map_err(DomainError::from_sqlx)?;
        let scope = Scope::from(row);
        self.changed(domain, key);
        Ok(scope)
    }

    /// Changes an existing scope: `change` gets the stored scope, read from PostgreSQL
    /// under a row lock, and returns its new name and config (validated). Concurrent
    /// changes apply one after the other, and a scope deleted meanwhile stays
    /// deleted (404), rather than an upsert bringing it back.
    pub async fn update(
        &self,
        domain: &str,
        noun: &str,
        key: &ScopeKey,
        change: impl FnOnce(Scope) -> Result<(String, serde_json::Value), DomainError>,
    ) -> Result<Scope, DomainError> {
        let mut tx = self.pool.begin().await.map_err(DomainError::from_sqlx)?;
        let current: Option<ScopeRow> = sqlx::query_as(
            "SELECT domain, key, name, config, created_at, updated_at, shard, placed_at FROM scopes
             WHERE domain = $1 AND key = $2 FOR UPDATE",
        )
        .bind(domain)
        .bind(key.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(DomainError::from_sqlx)?;
        let current = current.ok_or_else(|| missing(domain, noun, key))?;
        let (name, config) = change(Scope::from(current))?;
        let row: ScopeRow = sqlx::query_as(
            "UPDATE scopes SET name = $3, config = $4, updated_at = now() WHERE domain = $1 AND key = $2
             RETURNING domain, key, name, config, created_at, updated_at, shard, placed_at",
        )
        .bind(domain)
        .bind(key.as_str())
        .bind(&name)
        .bind(&config)
        .fetch_one(&mut *tx)
        .await
        .map_err(DomainError::from_sqlx)?;
        tx.commit().await.map_err(DomainError::from_sqlx)?;
        self.changed(domain, key);
        Ok(Scope::from(row))
    }

    /// The scopes of `domain` that `caller` may see, by key, after `after`, at most
    /// `limit`: each with the caller's role (none for an open scope they are not a
    /// member of).
    pub async fn visible(
        &self,
        domain: &str,
        caller: &Caller<'_>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<(Scope, Option<crate::access::Role>)>, DomainError> {
        #[derive(sqlx::FromRow)]
        struct Visible {
            #[sqlx(flatten)]
            scope: ScopeRow,
            role: Option<String>,
        }
        let rows: Vec<Visible> = sqlx::query_as(
            "SELECT s.domain, s.key, s.name, s.config, s.created_at, s.updated_at, s.shard, s.placed_at, m.role
             FROM scopes s
             LEFT JOIN scope_members m ON m.domain = s.domain AND m.scope = s.key AND m.user_id = $2
             WHERE s.domain = $1
               AND ($3 OR m.user_id IS NOT NULL OR COALESCE(s.config->'access'->>'authenticated', 'none') <> 'none')
               AND ($4::text IS NULL OR s.key > $4)
             ORDER BY s.key LIMIT $5",
        )
        .bind(domain)
        .bind(caller.user.as_str())
        .bind(caller.admin)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(DomainError::from_sqlx)?;
        Ok(rows
            .into_iter()
            .map(|row| {
                let role = row.role.as_deref().and_then(|r| serde_json::from_value(serde_json::json!(r)).ok());
                (Scope::from(row.scope), role)
            })
            .collect())
    }

    /// Deletes a scope (its members with it), or a 404 as [`ScopeStore::require`]
    /// gives. Its items stay in PostgreSQL: creating the scope again brings them back.
    pub async fn delete(&self, domain: &str, noun: &str, key: &ScopeKey) -> Result<(), DomainError> {
        let deleted = sqlx::query("DELETE FROM scopes WHERE domain = $1 AND key = $2")
            .bind(domain)
            .bind(key.as_str())
            .execute(&self.pool)
            .await
            .map_err(DomainError::from_sqlx)?
            .rows_affected()
            > 0;
        self.changed(domain, key);
        if deleted {
            Ok(())
        } else {
            Err(missing(domain, noun, key))
        }
    }

    /// Every scope, or every scope of one domain, ordered by domain and key.
    pub async fn list(&self, domain: Option<&str>) -> Result<Vec<Scope>, DomainError> {
        let rows: Vec<ScopeRow> = sqlx::query_as(
            "SELECT domain, key, name, config, created_at, updated_at, shard, placed_at FROM scopes
             WHERE $1::text IS NULL OR domain = $1 ORDER BY domain, key",
        )
        .bind(domain)
        .fetch_all(&self.pool)
        .await
        .map_err(DomainError::from_sqlx)?;
        Ok(rows.into_iter().map(Scope::from).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_keys_are_url_safe_slugs() {
        assert!(ScopeKey::parse("general").is_ok());
        assert!(ScopeKey::parse("team-7_ops").is_ok());
        for bad in ["", "General", "-x", "a b", "a/b", &"x".repeat(65)] {
            assert_eq!(ScopeKey::parse(bad).unwrap_err().code, "invalid_scope_key", "{bad:?}");
        }
    }
}
