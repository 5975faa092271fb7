//! Who may see and change a scope. A scope's members each have a [`Role`], stored in
//! PostgreSQL (`scope_members`); its config may also open it to every authenticated
//! user (`"access": {"authenticated": "read" | "write"}`). Both adapters are behind
//! the same check, so they refuse the same requests with the same errors, and a scope
//! a user may not see answers 404 as if it did not exist: its name does not leak.

use std::collections::HashMap;
use std::sync::Arc;

use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tokio::sync::broadcast;

use crate::forgetful::Forgetful;
use crate::{DomainError, ScopeKey, UserId};

/// A member's role in a scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads the scope and its live events.
    Viewer,
    /// Reads and writes.
    Editor,
    /// Reads, writes, and manages the members.
    Owner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Editor => "editor",
            Self::Owner => "owner",
        }
    }

    fn parse(role: &str) -> Option<Self> {
        match role {
            "viewer" => Some(Self::Viewer),
            "editor" => Some(Self::Editor),
            "owner" => Some(Self::Owner),
            _ => None,
        }
    }
}

/// What a scope's config grants every authenticated user.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OpenAccess {
    /// Members only (the default).
    #[default]
    None,
    Read,
    Write,
}

/// The `access` part of a scope's config.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccessConfig {
    #[serde(default)]
    pub authenticated: OpenAccess,
}

/// What a request needs of the scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Read,
    Write,
    /// Managing the members.
    Manage,
}

/// Who is asking: a user, and whether their token carries the admin claim (admins
/// may do anything anywhere).
#[derive(Debug, Clone)]
pub struct Caller<'a> {
    pub user: &'a UserId,
    pub admin: bool,
}

/// A member of a scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Member {
    pub user: String,
    pub role: Role,
}

/// Something changed in who may see a scope (a member added, changed or removed, or
/// its config): live sockets of that scope check their user again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessChanged {
    pub domain: String,
    pub scope: ScopeKey,
}

/// A scope, as the caches key it.
type Key = (String, ScopeKey);

/// The members of every scope seen, kept in memory (each request checks them) and
/// forgotten when they change, here or (through `boardsync_access` notifications)
/// anywhere else.
pub struct Members {
    pool: PgPool,
    /// A removal racing a load never leaves the old members kept.
    known: Forgetful<Key, Arc<HashMap<String, Role>>>,
    /// One load per scope at a time: a change that sends every live socket of a
    /// scope to check again costs one query, not one per socket.
    loading: DashMap<Key, Arc<tokio::sync::Mutex<()>>>,
    changes: broadcast::Sender<AccessChanged>,
}

/// How many access changes a slow live socket may miss before it checks anyway.
const CHANGES_CAPACITY: usize = 1024;

/// The PostgreSQL channel access changes are announced on (see the migration).
pub const ACCESS_CHANNEL: &str = "boardsync_access";

impl Members {
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            known: Forgetful::default(),
            loading: DashMap::new(),
            changes: broadcast::channel(CHANGES_CAPACITY).0,
        }
    }

    /// Access changes from now on.
    pub fn changes(&self) -> broadcast::Receiver<AccessChanged> {
        self.changes.subscribe()
    }

    async fn of(&self, domain: &str, scope: &ScopeKey) -> Result<Arc<HashMap<String, Role>>, DomainError> {
        let key = (domain.to_string(), scope.clone());
        if let Some(members) = self.known.get(&key) {
            return Ok(members);
        }
        let gate = self.loading.entry(key.clone()).or_default().clone();
        let _loading = gate.lock().await;
        if let Some(members) = self.known.get(&key) {
            return Ok(members);
        }
        let ticket = self.known.ticket(&key);
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT user_id, role FROM scope_members WHERE domain = $1 AND scope = $2")
                .bind(domain)
                .bind(scope.as_str())
                .fetch_all(&self.pool)
                .await
                .map_err(DomainError::from_sqlx)?;
        let members: HashMap<String, Role> =
            rows.into_iter().filter_map(|(user, role)| Some((user, Role::parse(&role)?))).collect();
        let members = Arc::new(members);
        self.known.keep(key, members.clone(), ticket);
        Ok(members)
    }

    /// The caller's role in the scope, if they are a member.
    pub async fn role(&self, domain: &str, scope: &ScopeKey, user: &UserId) -> Result<Option<Role>, DomainError> {
        Ok(self.of(domain, scope).await?.get(user.as_str()).copied())
    }

    /// Every member, by user id.
    pub async fn list(&self, domain: &str, scope: &ScopeKey) -> Result<Vec<Member>, DomainError> {
        let members = self.of(domain, scope).await?;
        let mut list: Vec<Member> =
            members.iter().map(|(user, role)| Member { user: user.clone(), role: *role }).collect();
        list.sort_by(|a, b| a.user.cmp(&b.user));
        Ok(list)
    }

    /// Adds `user` to the scope with `role`, or changes their role.
    pub async fn set(&self, domain: &str, scope: &ScopeKey, user: &str, role: Role) -> Result<(), DomainError> {
        sqlx::query(
            "INSERT INTO scope_members (domain, scope, user_id, role) VALUES ($1, $2, $3, $4)
             ON CONFLICT (domain, scope, user_id) DO UPDATE SET role = EXCLUDED.role",
        )
        .bind(domain)
        .bind(scope.as_str())
        .bind(user)
        .bind(role.as_str())
        .execute(&self.pool)
        .await
        .map_err(DomainError::from_sqlx)?;
        self.changed(domain, scope);
        Ok(())
    }

    /// Removes `user` from the scope; whether they were a member.
    pub async fn remove(&self, domain: &str, scope: &ScopeKey, user: &str) -> Result<bool, DomainError> {
        let removed = sqlx::query("DELETE FROM scope_members WHERE domain = $1 AND scope = $2 AND user_id = $3")
            .bind(domain)
            .bind(scope.as_str())
            .bind(user)
            .execute(&self.pool)
            .await
            .map_err(DomainError::from_sqlx)?
            .rows_affected()
            > 0;
        self.changed(domain, scope);
        Ok(removed)
    }

    /// Forgets what was kept of the scope's members and tells live sockets to check
    /// again (the trigger's notification does the same on every other backend).
    pub fn changed(&self, domain: &str, scope: &ScopeKey) {
        self.known.forget(&(domain.to_string(), scope.clone()));
        let _ = self.changes.send(AccessChanged { domain: domain.to_string(), scope: scope.clone() });
    }

    /// Forgets every scope's members (notifications may have been missed).
    pub fn forget_all(&self) {
        self.known.forget_all();
    }
}

/// Whether `caller` may do what `need` asks in a scope with config `access`, given
/// their role; the error they get otherwise. Cannot see: 404 as for a missing scope.
pub fn decide(
    caller: &Caller<'_>,
    role: Option<Role>,
    access: AccessConfig,
    need: Need,
    not_found: impl FnOnce() -> DomainError,
) -> Result<(), DomainError> {
    if caller.admin {
        return Ok(());
    }
    let (reads, writes) = match (role, access.authenticated) {
        (Some(_), _) | (None, OpenAccess::Read | OpenAccess::Write) => {
            let writes = matches!(role, Some(Role::Editor | Role::Owner)) || access.authenticated == OpenAccess::Write;
            (true, writes)
        }
        (None, OpenAccess::None) => (false, false),
    };
    if !reads {
        return Err(not_found());
    }
    match need {
        Need::Read => Ok(()),
        Need::Write if writes => Ok(()),
        Need::Write => Err(DomainError::forbidden("read_only", "you may read this scope but not change it")),
        Need::Manage if role == Some(Role::Owner) => Ok(()),
        Need::Manage => Err(DomainError::forbidden("owner_required", "only the scope's owners manage its members")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(role: Option<Role>, open: OpenAccess, need: Need) -> Result<(), String> {
        let user = UserId("u".into());
        let caller = Caller { user: &user, admin: false };
        let not_found = || DomainError::not_found("scope_not_found", "missing");
        decide(&caller, role, AccessConfig { authenticated: open }, need, not_found).map_err(|e| e.code.to_string())
    }

    #[test]
    fn roles_grant_what_they_say() {
        use Need::*;
        assert_eq!(check(None, OpenAccess::None, Read), Err("scope_not_found".into()));
        assert_eq!(check(None, OpenAccess::None, Write), Err("scope_not_found".into()));
        assert_eq!(check(Some(Role::Viewer), OpenAccess::None, Read), Ok(()));
        assert_eq!(check(Some(Role::Viewer), OpenAccess::None, Write), Err("read_only".into()));
        assert_eq!(check(Some(Role::Editor), OpenAccess::None, Write), Ok(()));
        assert_eq!(check(Some(Role::Editor), OpenAccess::None, Manage), Err("owner_required".into()));
        assert_eq!(check(Some(Role::Owner), OpenAccess::None, Manage), Ok(()));
        assert_eq!(check(None, OpenAccess::Read, Read), Ok(()));
        assert_eq!(check(None, OpenAccess::Read, Write), Err("read_only".into()));
        assert_eq!(check(None, OpenAccess::Write, Write), Ok(()));
        assert_eq!(check(Some(Role::Viewer), OpenAccess::Write, Write), Ok(()));
        assert_eq!(check(None, OpenAccess::Write, Manage), Err("owner_required".into()));
    }
}
