//! Which nodes run each domain on the cache now, so that the first node to start
//! after none ran knows it is first.
//!
//! While some node runs a domain on the cache, the cache follows PostgreSQL: that
//! node takes in changes made outside boardsync. When none runs, PostgreSQL may
//! change unseen (plain SQL, a spell on the PostgreSQL adapter), and the cache's
//! record of which scopes are warm must not be trusted. So each node, when its cache
//! first connects, decides per domain, one node at a time (a transaction-level
//! advisory lock): if no other node runs the domain, it has the cache forget every
//! warm-up record before any node can trust one; then it counts itself as running
//! (a shared advisory lock per domain, held on a connection of its own for the
//! process's life, so that a node that dies stops counting at once).

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{Connection, PgPool};
use tokio::sync::Mutex;

use boardsync_core::DomainError;

/// The first key of the locks a running node holds (shared; the second is the
/// domain's hash).
pub const RUNNING_LOCKS: i32 = 0x6273_6e72; // "bsnr"
/// The first key of the lock one deciding node holds at a time (per domain).
pub const DECIDING_LOCKS: i32 = 0x6273_6e64; // "bsnd"

/// How often the connection holding the running locks is checked, and taken again
/// (with its locks) if it was lost: a node that keeps following PostgreSQL must not
/// stop counting as running because PostgreSQL restarted.
const KEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// How this process counts as running, per domain.
pub struct Liveness {
    node: String,
    /// The connection holding this node's running locks, once it holds one, and the
    /// domains it holds them for.
    held: Mutex<(Option<PgConnection>, Vec<String>)>,
    keeping: std::sync::Once,
}

impl Liveness {
    pub fn new(node: &str) -> Self {
        Self { node: node.to_owned(), held: Mutex::new((None, Vec::new())), keeping: std::sync::Once::new() }
    }

    fn options(&self, pool: &PgPool) -> PgConnectOptions {
        (*pool.connect_options()).clone().application_name(&format!("boardsync node {}", self.node)).options([
            ("idle_session_timeout", "0"),
            ("tcp_keepalives_idle", "5"),
            ("tcp_keepalives_interval", "2"),
            ("tcp_keepalives_count", "3"),
        ])
    }

    /// Checks the running locks' connection now and then; one that was lost is
    /// opened again and takes the locks again (no new decision: this node kept
    /// following PostgreSQL all along).
    fn keep(self: &std::sync::Arc<Self>, pool: &PgPool) {
        let (liveness, pool) = (std::sync::Arc::downgrade(self), pool.clone());
        self.keeping.call_once(|| {
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(KEEP_EVERY).await;
                    let Some(liveness) = liveness.upgrade() else { return };
                    let mut held = liveness.held.lock().await;
                    let alive = match held.0.as_mut() {
                        Some(connection) => {
                            tokio::time::timeout(KEEP_EVERY, connection.ping()).await.is_ok_and(|pinged| pinged.is_ok())
                        }
                        None => false,
                    };
                    if alive || held.1.is_empty() {
                        continue;
                    }
                    held.0 = None;
                    let options = liveness.options(&pool);
                    let connecting = PgConnection::connect_with(&options);
                    let Ok(Ok(mut connection)) = tokio::time::timeout(KEEP_EVERY, connecting).await else { continue };
                    let mut taken = true;
                    for domain in held.1.clone() {
                        taken &= sqlx::query("SELECT pg_advisory_lock_shared($1, hashtext($2))")
                            .bind(RUNNING_LOCKS)
                            .bind(domain)
                            .execute(&mut connection)
                            .await
                            .is_ok();
                    }
                    if taken {
                        tracing::info!("this node counts as running again (its lock connection was lost)");
                        held.0 = Some(connection);
                    }
                }
            });
        });
    }

    /// Decides whether this node is the first to run `domain` on the cache (no
    /// other node runs it now), calling `first` if so, and then counts this node as
    /// running it. Returns whether it was first.
    pub async fn join<F, Fut>(
        self: &std::sync::Arc<Self>,
        pool: &PgPool,
        domain: &str,
        first: F,
    ) -> Result<bool, DomainError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(), DomainError>>,
    {
        self.keep(pool);
        let mut held = self.held.lock().await;
        if held.0.is_none() {
            held.0 = Some(PgConnection::connect_with(&self.options(pool)).await.map_err(DomainError::from_sqlx)?);
        }
        let connection = held.0.as_mut().expect("connected above");
        let own: i32 = match sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&mut *connection).await {
            Ok(pid) => pid,
            Err(error) => {
                held.0 = None;
                return Err(DomainError::from_sqlx(error));
            }
        };
        let mut deciding = pool.begin().await.map_err(DomainError::from_sqlx)?;
        sqlx::query("SET LOCAL lock_timeout = '30s'").execute(&mut *deciding).await.map_err(DomainError::from_sqlx)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
            .bind(DECIDING_LOCKS)
            .bind(domain)
            .execute(&mut *deciding)
            .await
            .map_err(DomainError::from_sqlx)?;
        let others = others_running(&mut deciding, domain, own).await?;
        let is_first = others == 0;
        if is_first {
            first().await?;
        }
        let running = sqlx::query("SELECT pg_advisory_lock_shared($1, hashtext($2))")
            .bind(RUNNING_LOCKS)
            .bind(domain)
            .execute(&mut *connection)
            .await;
        if let Err(error) = running {
            held.0 = None;
            return Err(DomainError::from_sqlx(error));
        }
        held.1.push(domain.to_owned());
        deciding.commit().await.map_err(DomainError::from_sqlx)?;
        Ok(is_first)
    }

    /// Whether another node runs `domain` on the cache now (one that will take over
    /// its outbox when this one stops).
    pub async fn others_run(&self, pool: &PgPool, domain: &str) -> Result<bool, DomainError> {
        let mut held = self.held.lock().await;
        let own: i32 = match held.0.as_mut() {
            Some(connection) => sqlx::query_scalar("SELECT pg_backend_pid()")
                .fetch_one(connection)
                .await
                .map_err(DomainError::from_sqlx)?,
            None => 0,
        };
        drop(held);
        let mut connection = pool.acquire().await.map_err(DomainError::from_sqlx)?;
        Ok(others_running(&mut connection, domain, own).await? > 0)
    }
}

/// How many sessions other than `own` hold `domain`'s running lock.
async fn others_running(connection: &mut PgConnection, domain: &str, own: i32) -> Result<i64, DomainError> {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks
         WHERE locktype = 'advisory' AND granted AND objsubid = 2
           AND classid = $1::int4::oid AND objid = hashtext($2)::oid AND pid <> $3
           AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .bind(RUNNING_LOCKS)
    .bind(domain)
    .bind(own)
    .fetch_one(connection)
    .await
    .map_err(DomainError::from_sqlx)
}
