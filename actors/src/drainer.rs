//! One drainer per outbox across every node: the right to drain a domain's outbox is
//! a PostgreSQL session advisory lock held on a connection of its own, and every
//! batch runs on that connection. A node that dies (or loses PostgreSQL) drops the
//! connection and with it the lock; another node takes it at its next poll. A
//! stale holder cannot go on draining: its batches run on the connection that
//! held the lock, and fail with it.
//!
//! Exactly-once does not depend on this (batches serialize on the outbox's progress
//! row, and PostgreSQL takes a state only over an older version); the lease keeps
//! the other nodes from doing the same work, and tells operators who drains.

use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{Connection, PgPool};

/// The first key of every drainer lock ("bsdr"); the second is the domain's hash.
/// Two-key locks of their own namespace never meet the purge's scope locks.
pub const DRAINER_LOCKS: i32 = 0x6273_6472;

/// How the lock's connection names itself (`application_name`), before the node.
pub const APPLICATION_PREFIX: &str = "boardsync drainer ";

/// How often a holder checks that its lock connection is still there while it has
/// nothing to drain (a batch checks it anyway).
const HOLDER_CHECK: Duration = Duration::from_secs(5);

pub struct DrainerLease {
    /// The outbox's unit (`<domain>` or `<domain>/<shard>`).
    domain: String,
    options: PgConnectOptions,
    /// The connection holding the lock, while this node drains.
    held: Option<PgConnection>,
    checked: Instant,
    /// A node without the lease tries for it at most this often (every new outbox
    /// entry wakes the poller: it must not open a connection each time).
    retry: Duration,
    tried: Option<Instant>,
    /// The connection a node without the lease tries for it on, kept between tries
    /// (a connection per try would cost PostgreSQL a backend each time).
    candidate: Option<PgConnection>,
}

impl DrainerLease {
    /// A lease for `domain`'s outbox, connecting as the pool does; `node` names this
    /// process to operators (`application_name` of the lock's connection).
    pub fn new(domain: String, pool: &PgPool, node: &str, retry: Duration) -> Self {
        // PostgreSQL ends the lock's session (and so the lease) when its holder goes
        // quiet: a frozen process or a half-open connection must not hold the outbox
        // for hours. The holder pings well within the idle limit.
        let idle = (retry.max(HOLDER_CHECK) * 3).as_millis().to_string();
        let options =
            (*pool.connect_options()).clone().application_name(&format!("{APPLICATION_PREFIX}{node}")).options([
                ("idle_session_timeout", idle.as_str()),
                ("idle_in_transaction_session_timeout", idle.as_str()),
                ("tcp_keepalives_idle", "5"),
                ("tcp_keepalives_interval", "2"),
                ("tcp_keepalives_count", "3"),
            ]);
        Self { domain, options, held: None, checked: Instant::now(), retry, tried: None, candidate: None }
    }

    pub fn is_held(&self) -> bool {
        self.held.is_some()
    }

    /// The connection to drain on, if this node holds the lease (taking it if it is
    /// free); `None` while another node holds it or PostgreSQL cannot be reached.
    pub async fn connection(&mut self) -> Option<&mut PgConnection> {
        if self.held.is_some() && self.checked.elapsed() >= HOLDER_CHECK {
            let ping = self.held.as_mut().expect("held").ping();
            let alive = tokio::time::timeout(HOLDER_CHECK, ping).await.is_ok_and(|pinged| pinged.is_ok());
            self.checked = Instant::now();
            if !alive {
                tracing::warn!(domain = %self.domain, "lost the outbox drainer's connection: no longer draining");
                self.held = None;
            }
        }
        if self.held.is_none() {
            if self.tried.is_some_and(|tried| tried.elapsed() < self.retry) {
                return None;
            }
            self.tried = Some(Instant::now());
            self.held = self.acquire().await;
            self.checked = Instant::now();
            if self.held.is_some() {
                tracing::info!(domain = %self.domain, "this node drains the outbox now");
            }
        }
        self.held.as_mut()
    }

    /// A batch failed on the lease's connection: it may be gone; the next drain
    /// checks (and takes the lease again if it is free).
    pub fn suspect(&mut self) {
        self.checked = Instant::now() - HOLDER_CHECK;
    }

    /// Gives the lease up (a graceful stop): another node takes it at once.
    pub async fn release(&mut self) {
        if let Some(connection) = self.held.take() {
            let _ = connection.close().await;
        }
    }

    async fn acquire(&mut self) -> Option<PgConnection> {
        let mut connection = match self.candidate.take() {
            Some(connection) => connection,
            None => {
                let connecting = tokio::time::timeout(HOLDER_CHECK, PgConnection::connect_with(&self.options));
                match connecting.await.unwrap_or(Err(sqlx::Error::PoolTimedOut)) {
                    Ok(connection) => connection,
                    Err(error) => {
                        tracing::debug!(domain = %self.domain, %error, "cannot reach PostgreSQL for the drainer lease");
                        return None;
                    }
                }
            }
        };
        let trying = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, hashtext($2))")
            .bind(DRAINER_LOCKS)
            .bind(&self.domain)
            .fetch_one(&mut connection);
        let taken: Result<bool, sqlx::Error> =
            tokio::time::timeout(HOLDER_CHECK, trying).await.unwrap_or(Err(sqlx::Error::PoolTimedOut));
        match taken {
            Ok(true) => Some(connection),
            Ok(false) => {
                // Held elsewhere: this connection tries again next time.
                self.candidate = Some(connection);
                None
            }
            Err(error) => {
                tracing::debug!(domain = %self.domain, %error, "cannot take the drainer lease");
                None
            }
        }
    }
}

/// Who holds each outbox's drainer lease now, by the `application_name` of the
/// connection holding it (`boardsync drainer <node>`): unit (`<domain>` or
/// `<domain>/<shard>`) -> node.
pub async fn holders(pool: &PgPool, units: &[String]) -> Result<Vec<(String, Option<String>)>, sqlx::Error> {
    let rows: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT d.domain, (SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                           WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
                             AND l.classid = $1::int4::oid AND l.objid = hashtext(d.domain)::oid
                             AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                           LIMIT 1)
         FROM unnest($2::text[]) AS d(domain)",
    )
    .bind(DRAINER_LOCKS)
    .bind(units)
    .fetch_all(pool)
    .await?;
    Ok(units
        .iter()
        .map(|unit| {
            let holder = rows
                .iter()
                .find(|(name, _)| name == unit)
                .and_then(|(_, application)| application.as_deref())
                .map(|application| application.trim_start_matches(APPLICATION_PREFIX).to_string());
            (unit.clone(), holder)
        })
        .collect())
}
