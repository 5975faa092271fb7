//! Machinery the PostgreSQL adapters share: the live-event log.
//!
//! A write appends its event to `domain_events` in the write's own transaction and
//! notifies `boardsync_events`; [`PgEventLog`] listens, reads every event past the
//! last sequence it saw, and fans them out per scope. A poll at a fixed interval
//! catches up whatever a lost notification (or a lost listener connection) missed.
//!
//! Sequence numbers are taken under a per-domain advisory lock held until commit, so
//! they commit in order and "past the last sequence seen" never skips one.

use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use sqlx::postgres::PgListener;
use sqlx::{PgConnection, PgPool};
use tokio::task::JoinHandle;

use crate::live::ScopedBroadcast;

/// How a backend connects to PostgreSQL: like any client, but marked
/// (`boardsync.origin = backend`) so the domain tables' triggers tell its writes from
/// an outside writer's (which must reach the cache).
pub fn backend_connect_options(url: &str) -> Result<sqlx::postgres::PgConnectOptions, sqlx::Error> {
    let options: sqlx::postgres::PgConnectOptions = url.parse()?;
    // PostgreSQL's own keepalives end the session of a client that vanished (power
    // loss, a cut network) within about 25 s, and with it the locks it held (a
    // scope's warm-up lock, say), instead of after the kernel's two hours.
    Ok(options.options([
        ("boardsync.origin", "backend"),
        ("tcp_keepalives_idle", "10"),
        ("tcp_keepalives_interval", "5"),
        ("tcp_keepalives_count", "3"),
    ]))
}
use crate::{DomainError, EventStream, ScopeKey};

const CHANNEL: &str = "boardsync_events";
const FETCH_LIMIT: i64 = 500;

#[derive(Debug, Clone)]
pub struct EventLogSettings {
    /// The safety-net poll, for notifications that never arrived.
    pub poll_interval: Duration,
    /// How long events stay in `domain_events` for late listeners.
    pub retention: Duration,
    /// How far a subscriber may fall behind before it is told to resync.
    pub subscriber_capacity: usize,
}

pub struct PgEventLog<E> {
    domain: &'static str,
    live: Arc<ScopedBroadcast<E>>,
    listener: JoinHandle<()>,
}

impl<E> Drop for PgEventLog<E> {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl<E> PgEventLog<E>
where
    E: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// Starts listening for `domain`'s events written from now on.
    pub async fn start(pool: PgPool, domain: &'static str, settings: EventLogSettings) -> Result<Self, DomainError> {
        let last_seq: i64 = sqlx::query_scalar("SELECT COALESCE(max(seq), 0) FROM domain_events WHERE domain = $1")
            .bind(domain)
            .fetch_one(&pool)
            .await
            .map_err(DomainError::from_sqlx)?;
        let live = Arc::new(ScopedBroadcast::new(settings.subscriber_capacity));
        let follower = Follower { pool, domain, settings, live: live.clone(), last_seq };
        let listener = tokio::spawn(follower.run());
        Ok(Self { domain, live, listener })
    }

    /// Appends `event` inside the caller's transaction; it goes live on commit.
    pub async fn append(&self, tx: &mut PgConnection, scope: &ScopeKey, event: &E) -> Result<(), DomainError> {
        let payload = serde_json::to_value(event)
            .map_err(|e| DomainError::internal("an event cannot be encoded").caused_by(e))?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('boardsync_events:' || $1))")
            .bind(self.domain)
            .execute(&mut *tx)
            .await
            .map_err(DomainError::from_sqlx)?;
        sqlx::query("INSERT INTO domain_events (domain, scope, payload) VALUES ($1, $2, $3)")
            .bind(self.domain)
            .bind(scope.as_str())
            .bind(payload)
            .execute(&mut *tx)
            .await
            .map_err(DomainError::from_sqlx)?;
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(self.domain)
            .execute(&mut *tx)
            .await
            .map_err(DomainError::from_sqlx)?;
        Ok(())
    }

    pub fn subscribe(&self, scope: &ScopeKey) -> EventStream<E> {
        self.live.subscribe(scope)
    }

    /// The live fan-out, for events that are not in the log (outside changes).
    pub fn live(&self) -> &Arc<ScopedBroadcast<E>> {
        &self.live
    }
}

struct Follower<E> {
    pool: PgPool,
    domain: &'static str,
    settings: EventLogSettings,
    live: Arc<ScopedBroadcast<E>>,
    last_seq: i64,
}

impl<E> Follower<E>
where
    E: DeserializeOwned + Clone + Send + Sync + 'static,
{
    async fn run(mut self) {
        let mut listener: Option<PgListener> = None;
        let mut since_prune = Duration::ZERO;
        loop {
            if listener.is_none() {
                listener = self.listen().await;
            }
            let waited = tokio::time::Instant::now();
            match listener.as_mut() {
                Some(active) => tokio::select! {
                    notification = active.recv() => {
                        match notification {
                            // Another domain's write: nothing for this log.
                            Ok(n) if n.payload() != self.domain => continue,
                            Ok(_) => {}
                            Err(error) => {
                                tracing::warn!(domain = self.domain, %error, "event listener lost; polling until it is back");
                                listener = None;
                            }
                        }
                    }
                    _ = tokio::time::sleep(self.settings.poll_interval) => {}
                },
                None => tokio::time::sleep(self.settings.poll_interval).await,
            }
            self.catch_up().await;
            since_prune += waited.elapsed();
            if since_prune >= self.settings.retention.min(Duration::from_secs(60)) {
                since_prune = Duration::ZERO;
                self.prune().await;
            }
        }
    }

    async fn listen(&self) -> Option<PgListener> {
        let mut listener = match PgListener::connect_with(&self.pool).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(domain = self.domain, %error, "cannot open the event listener");
                return None;
            }
        };
        match listener.listen(CHANNEL).await {
            Ok(()) => Some(listener),
            Err(error) => {
                tracing::warn!(domain = self.domain, %error, "cannot LISTEN for events");
                None
            }
        }
    }

    async fn catch_up(&mut self) {
        loop {
            let rows: Vec<(i64, String, serde_json::Value)> = match sqlx::query_as(
                "SELECT seq, scope, payload FROM domain_events WHERE domain = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            )
            .bind(self.domain)
            .bind(self.last_seq)
            .bind(FETCH_LIMIT)
            .fetch_all(&self.pool)
            .await
            {
                Ok(rows) => rows,
                Err(error) => {
                    tracing::warn!(domain = self.domain, %error, "cannot read new events");
                    return;
                }
            };
            let fetched = rows.len();
            for (seq, scope, payload) in rows {
                self.last_seq = seq;
                match (ScopeKey::parse(&scope), serde_json::from_value::<E>(payload)) {
                    (Ok(scope), Ok(event)) => self.live.publish(&scope, event),
                    (scope, event) => tracing::error!(
                        domain = self.domain,
                        seq,
                        scope_ok = scope.is_ok(),
                        event_error = event.err().map(|e| e.to_string()),
                        "skipping an unreadable event"
                    ),
                }
            }
            if (fetched as i64) < FETCH_LIMIT {
                return;
            }
        }
    }

    async fn prune(&self) {
        let result = sqlx::query("DELETE FROM domain_events WHERE domain = $1 AND created_at < now() - $2::interval")
            .bind(self.domain)
            .bind(format!("{} seconds", self.settings.retention.as_secs()))
            .execute(&self.pool)
            .await;
        if let Err(error) = result {
            tracing::warn!(domain = self.domain, %error, "cannot prune old events");
        }
    }
}
