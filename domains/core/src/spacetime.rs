//! Machinery every SpacetimeDB adapter shares, independent of any module's bindings:
//! matching reducer outcomes to calls, waiting for durability, and the reconnect loop.
//!
//! The SDK does not reconnect by itself, and building a connection on an actix
//! thread panics (it needs a multi-threaded runtime or none). So each adapter's
//! connection lives on a plain thread of its own, driven by
//! `advance_one_message_blocking`, and rebuilt with backoff when it drops.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use dashmap::DashMap;
use tokio::sync::{broadcast, oneshot};

use crate::cache::CacheSignal;
use crate::factory::SpacetimeTarget;
use crate::DomainError;

/// A SpacetimeDB timestamp as the domains' time (`None` past chrono's range).
pub fn time(timestamp: spacetimedb_sdk::Timestamp) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp_micros(timestamp.to_micros_since_unix_epoch())
}

/// A domain's time as a SpacetimeDB timestamp.
pub fn timestamp(time: chrono::DateTime<chrono::Utc>) -> spacetimedb_sdk::Timestamp {
    spacetimedb_sdk::Timestamp::from_micros_since_unix_epoch(time.timestamp_micros())
}

/// Reducer calls in flight, by the request id passed as the reducer's first argument.
pub struct PendingCalls<T> {
    calls: DashMap<String, oneshot::Sender<Result<T, DomainError>>>,
}

/// A fresh id for a reducer call: its outcome is matched to the call by it.
fn new_request_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

impl<T> Default for PendingCalls<T> {
    fn default() -> Self {
        Self { calls: DashMap::new() }
    }
}

impl<T> PendingCalls<T> {
    /// A fresh request id and the receiver of its outcome.
    pub fn register(&self) -> (String, oneshot::Receiver<Result<T, DomainError>>) {
        let id = new_request_id();
        let (sender, receiver) = oneshot::channel();
        self.calls.insert(id.clone(), sender);
        (id, receiver)
    }

    /// Delivers a call's outcome; outcomes of calls nobody waits for are dropped.
    pub fn resolve(&self, request_id: &str, outcome: Result<T, DomainError>) {
        if let Some((_, sender)) = self.calls.remove(request_id) {
            let _ = sender.send(outcome);
        }
    }

    pub fn forget(&self, request_id: &str) {
        self.calls.remove(request_id);
    }

    /// Fails every call in flight (the connection dropped: their outcome is unknown).
    pub fn fail_all(&self, error: &DomainError) {
        let ids: Vec<String> = self.calls.iter().map(|e| e.key().clone()).collect();
        for id in ids {
            self.resolve(&id, Err(error.clone()));
        }
    }
}

/// Waits for a registered call's outcome, at most `timeout`.
pub async fn outcome<T>(
    calls: &PendingCalls<T>,
    request_id: &str,
    receiver: oneshot::Receiver<Result<T, DomainError>>,
    timeout: Duration,
) -> Result<T, DomainError> {
    match tokio::time::timeout(timeout, receiver).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(_)) => Err(cache_unavailable()),
        Err(_) => {
            calls.forget(request_id);
            Err(DomainError::unavailable(
                "cache_timeout",
                format!("SpacetimeDB did not answer within {} ms", timeout.as_millis()),
            ))
        }
    }
}

/// A reducer's outcome as the error every adapter returns.
pub fn reducer_outcome(status: &spacetimedb_sdk::Status) -> Result<(), DomainError> {
    match status {
        spacetimedb_sdk::Status::Committed => Ok(()),
        spacetimedb_sdk::Status::Failed(message) => Err(DomainError::from_reducer_error(message)),
        spacetimedb_sdk::Status::OutOfEnergy => {
            Err(DomainError::unavailable("cache_out_of_energy", "SpacetimeDB ran out of energy"))
        }
    }
}

pub fn cache_unavailable() -> DomainError {
    DomainError::unavailable("cache_unavailable", "SpacetimeDB is not connected; retry shortly")
}

/// Writers waiting until their write is committed in PostgreSQL, by request id.
///
/// One command can write several outbox entries (a whiteboard move, a Kanban column
/// deleted with its cards), and a batch can end between them: a writer is released
/// only once every entry its command wrote ([`DurableWaiters::expect`]) is in
/// PostgreSQL ([`DurableWaiters::persisted`]), in whichever order the two arrive.
#[derive(Default)]
pub struct DurableWaiters {
    waiters: DashMap<String, DurableWaiter>,
}

struct DurableWaiter {
    /// The outbox entries the command wrote, once its outcome is known.
    expected: Option<Vec<u64>>,
    /// Its entries this node's drainer committed in PostgreSQL.
    done: Vec<u64>,
    /// Its entries another node acknowledged away: committed in PostgreSQL, unless
    /// that node set them aside (a dead letter) or dropped them (a purged scope).
    acked_elsewhere: Vec<u64>,
    sender: Option<oneshot::Sender<Released>>,
}

/// Why a durable writer was released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Released {
    /// This node committed every entry in PostgreSQL.
    Committed,
    /// Some entries were acknowledged by another node: PostgreSQL must be read to
    /// know whether it holds them.
    AckedElsewhere,
}

impl DurableWaiter {
    fn release_if_done(&mut self) -> bool {
        let done = self.expected.as_ref().is_some_and(|expected| {
            expected.iter().all(|seq| self.done.contains(seq) || self.acked_elsewhere.contains(seq))
        });
        if done {
            let released = match self.expected.as_ref() {
                Some(expected) if expected.iter().all(|seq| self.done.contains(seq)) => Released::Committed,
                _ => Released::AckedElsewhere,
            };
            if let Some(sender) = self.sender.take() {
                let _ = sender.send(released);
            }
        }
        done
    }
}

impl DurableWaiters {
    pub fn register(&self, request_id: &str) -> oneshot::Receiver<Released> {
        let (sender, receiver) = oneshot::channel();
        let waiter =
            DurableWaiter { expected: None, done: Vec::new(), acked_elsewhere: Vec::new(), sender: Some(sender) };
        self.waiters.insert(request_id.to_string(), waiter);
        receiver
    }

    /// The command `request_id` committed in the cache, writing the entries `seqs`.
    pub fn expect(&self, request_id: &str, seqs: Vec<u64>) {
        let done = self.waiters.get_mut(request_id).is_some_and(|mut waiter| {
            waiter.expected = Some(seqs);
            waiter.release_if_done()
        });
        if done {
            self.waiters.remove(request_id);
        }
    }

    /// Entry `seq` of command `request_id` is committed in PostgreSQL.
    pub fn persisted(&self, request_id: &str, seq: u64) {
        let done = self.waiters.get_mut(request_id).is_some_and(|mut waiter| {
            waiter.done.push(seq);
            waiter.release_if_done()
        });
        if done {
            self.waiters.remove(request_id);
        }
    }

    /// Entry `seq` of command `request_id` left the cache by an acknowledgement this
    /// node's drainer did not make (see [`Released::AckedElsewhere`]).
    pub fn acked_elsewhere(&self, request_id: &str, seq: u64) {
        let done = self.waiters.get_mut(request_id).is_some_and(|mut waiter| {
            if !waiter.done.contains(&seq) {
                waiter.acked_elsewhere.push(seq);
            }
            waiter.release_if_done()
        });
        if done {
            self.waiters.remove(request_id);
        }
    }

    pub fn forget(&self, request_id: &str) {
        self.waiters.remove(request_id);
    }

    /// Waits at most `timeout`; on timeout the write is in the cache but not yet
    /// known to be in PostgreSQL, which the error says.
    pub async fn wait(
        &self,
        request_id: &str,
        receiver: oneshot::Receiver<Released>,
        timeout: Duration,
    ) -> Result<Released, DomainError> {
        match tokio::time::timeout(timeout, receiver).await {
            Ok(Ok(released)) => Ok(released),
            _ => {
                self.waiters.remove(request_id);
                Err(not_yet_durable(timeout))
            }
        }
    }
}

/// A durable write that PostgreSQL did not confirm within `timeout`: it is in the
/// cache, and retrying it is safe.
pub fn not_yet_durable(timeout: Duration) -> DomainError {
    DomainError::unavailable(
        "not_yet_durable",
        format!(
            "the write is in the cache but not confirmed in PostgreSQL within {} ms; retrying it is safe",
            timeout.as_millis()
        ),
    )
}

/// A durable answer the cache gave from a state PostgreSQL has since superseded.
pub fn stale_in_cache() -> DomainError {
    DomainError::unavailable(
        "stale_in_cache",
        "PostgreSQL holds a newer state of this item than the cache answered from; the cache has it now, \
         so retrying applies the command to it",
    )
}

/// Exponential backoff between reconnect attempts.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self { initial, max, next: initial }
    }

    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

/// Keeps a connection alive on a thread of its own: `session` connects and then
/// blocks until the connection drops (returning `Ok` when it had connected, `Err`
/// when it could not); the loop waits with backoff and tries again, until the
/// returned guard is dropped.
pub fn keep_connected(
    name: String,
    backoff: Backoff,
    mut session: impl FnMut() -> Result<(), spacetimedb_sdk::Error> + Send + 'static,
) -> ConnectionLoop {
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    std::thread::Builder::new()
        .name(format!("stdb-{name}"))
        .spawn(move || {
            let mut backoff = backoff;
            while !stopped.load(Ordering::Relaxed) {
                match session() {
                    Ok(()) => {
                        tracing::warn!(connection = %name, "SpacetimeDB connection lost; reconnecting");
                        backoff.reset();
                    }
                    Err(error) => tracing::warn!(connection = %name, %error, "cannot connect to SpacetimeDB"),
                }
                if stopped.load(Ordering::Relaxed) {
                    break;
                }
                std::thread::sleep(backoff.next_delay());
            }
        })
        .expect("spawning a thread");
    ConnectionLoop { stop }
}

/// Stops the reconnect loop when dropped (after the current session ends).
pub struct ConnectionLoop {
    stop: Arc<AtomicBool>,
}

impl Drop for ConnectionLoop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One domain's link to its SpacetimeDB module: the live connection (of the module's
/// generated `DbConnection` type `C`), the cache incarnation it is on, owner calls in
/// flight, durable-write waiters and the cache's signals. The generic cache adapter
/// ([`crate::cache_adapter`]) keeps one and drives the session with
/// [`Link::run_session`].
pub struct Link<C> {
    pub target: SpacetimeTarget,
    connection: RwLock<Option<Arc<C>>>,
    epoch: RwLock<Option<u64>>,
    /// Counts subscriptions and recreations: what the cache held before a change of
    /// generation may be gone (a restart loses the unsynced tail of its log).
    generation: std::sync::atomic::AtomicU64,
    /// Owner reducers in flight (configure, warm-up, ack).
    pub owner_calls: PendingCalls<()>,
    pub durable: DurableWaiters,
    signals: broadcast::Sender<CacheSignal>,
}

/// How long the session thread waits for calls in flight to let go of a dropped
/// connection before giving up on freeing it.
const RELEASE_WAIT: Duration = Duration::from_secs(5);

/// Drops a finished connection on the calling (plain) thread. The SDK's connection
/// owns a tokio runtime, and dropping one on an async thread panics; others clone the
/// connection only for an instant, so wait until this is the last reference. If it
/// is still shared after [`RELEASE_WAIT`], leak it rather than risk the panic.
fn release<C>(connection: Arc<C>) {
    let deadline = std::time::Instant::now() + RELEASE_WAIT;
    while Arc::strong_count(&connection) > 1 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    if Arc::strong_count(&connection) > 1 {
        tracing::error!("a dropped SpacetimeDB connection is still in use; leaking it instead of freeing it");
        std::mem::forget(connection);
    }
}

/// Generations are unique across every link of the process, so that a scope warm in
/// one shard's generation is never taken as warm in another's (after a move).
fn next_generation() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::SeqCst)
}

/// How many cache signals a slow listener may miss (it drains anyway when it lags).
const SIGNAL_CAPACITY: usize = 1024;

impl<C: Send + Sync + 'static> Link<C> {
    pub fn new(target: SpacetimeTarget) -> Self {
        Self {
            target,
            connection: RwLock::new(None),
            epoch: RwLock::new(None),
            generation: std::sync::atomic::AtomicU64::new(0),
            owner_calls: PendingCalls::default(),
            durable: DurableWaiters::default(),
            signals: broadcast::channel(SIGNAL_CAPACITY).0,
        }
    }

    /// The connection, once subscribed; 503 `cache_unavailable` otherwise.
    pub fn connection(&self) -> Result<Arc<C>, DomainError> {
        let ready = self.epoch.read().expect("epoch lock").is_some();
        match (ready, self.connection.read().expect("connection lock").as_ref()) {
            (true, Some(connection)) => Ok(connection.clone()),
            _ => Err(cache_unavailable()),
        }
    }

    /// The connection as soon as it is built, before it is subscribed (for the
    /// subscription's own callback).
    pub fn connected(&self) -> Result<Arc<C>, DomainError> {
        self.connection.read().expect("connection lock").clone().ok_or_else(cache_unavailable)
    }

    pub fn epoch(&self) -> Option<u64> {
        *self.epoch.read().expect("epoch lock")
    }

    /// The generation of the connected cache, if connected (see [`Cache::generation`]).
    ///
    /// [`Cache::generation`]: crate::cache::Cache::generation
    pub fn generation(&self) -> Option<u64> {
        let epoch = self.epoch.read().expect("epoch lock");
        epoch.map(|_| self.generation.load(Ordering::SeqCst))
    }

    pub fn signals(&self) -> broadcast::Receiver<CacheSignal> {
        self.signals.subscribe()
    }

    pub fn signal(&self, signal: CacheSignal) {
        let _ = self.signals.send(signal);
    }

    /// The subscription is applied on cache incarnation `epoch`: calls may go out.
    pub fn ready(&self, epoch: Option<u64>) {
        let mut current = self.epoch.write().expect("epoch lock");
        self.generation.store(next_generation(), Ordering::SeqCst);
        *current = epoch;
        drop(current);
        tracing::info!(database = %self.target.database, ?epoch, "cache connected");
        if let Some(epoch) = epoch {
            self.signal(CacheSignal::Ready { epoch });
        }
    }

    /// The cache stops taking calls until [`Link::ready`] (e.g. while a recreated
    /// database gets its settings).
    pub fn unready(&self) {
        *self.epoch.write().expect("epoch lock") = None;
        self.generation.store(next_generation(), Ordering::SeqCst);
    }

    /// One connection's life on the calling (plain) thread: `build` connects and
    /// subscribes (its subscription's `on_applied` calls [`Link::ready`]), `advance`
    /// processes one message and fails once the connection is gone. When it is gone,
    /// every owner call in flight fails and `Lost` is signalled; `lost` lets the
    /// adapter clean up its own state (fail client calls, tell live subscribers to
    /// resync).
    pub fn run_session<E: std::fmt::Display>(
        &self,
        build: impl FnOnce() -> Result<C, spacetimedb_sdk::Error>,
        advance: impl Fn(&C) -> Result<(), E>,
        lost: impl FnOnce(),
    ) -> Result<(), spacetimedb_sdk::Error> {
        let connection = Arc::new(build()?);
        *self.connection.write().expect("connection lock") = Some(connection.clone());
        // The SDK panics (rather than failing) when a call is queued just as the
        // socket dies; that must end this session like any lost connection, not the
        // reconnect loop.
        let ended = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| loop {
            if let Err(error) = advance(&connection) {
                break error.to_string();
            }
        }))
        .unwrap_or_else(|panic| {
            let message = panic.downcast_ref::<String>().map(String::as_str).or(panic.downcast_ref::<&str>().copied());
            format!("the SpacetimeDB SDK panicked: {}", message.unwrap_or("no message"))
        });
        tracing::warn!(database = %self.target.database, error = %ended, "cache connection ended");
        *self.connection.write().expect("connection lock") = None;
        release(connection);
        *self.epoch.write().expect("epoch lock") = None;
        self.generation.store(next_generation(), Ordering::SeqCst);
        self.owner_calls.fail_all(&cache_unavailable());
        lost();
        self.signal(CacheSignal::Lost);
        Ok(())
    }

    /// Calls an owner reducer through `call` (given the connection and a fresh request
    /// id) and waits for the outcome that the module's callback resolves.
    pub async fn owner_call<E>(&self, call: impl FnOnce(&C, String) -> Result<(), E>) -> Result<(), DomainError> {
        let (request_id, receiver) = self.owner_calls.register();
        // The connection is not held across the await (see `release`).
        let sent = self.connection().map(|connection| call(&connection, request_id.clone()).is_ok());
        if sent != Ok(true) {
            self.owner_calls.forget(&request_id);
            return Err(cache_unavailable());
        }
        outcome(&self.owner_calls, &request_id, receiver, self.target.reducer_timeout).await
    }

    /// Sends an owner call whose outcome never comes back (a reducer called with
    /// `NoSuccessNotify`, whose failure SpacetimeDB does not report either): a later
    /// call must check its effect.
    pub fn owner_send<E>(&self, call: impl FnOnce(&C, String) -> Result<(), E>) -> Result<(), DomainError> {
        let request_id = new_request_id();
        match self.connection().map(|connection| call(&connection, request_id).is_ok()) {
            Ok(true) => Ok(()),
            _ => Err(cache_unavailable()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let delays: Vec<u128> = (0..4).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 350, 350]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_millis(100));
    }

    fn target() -> SpacetimeTarget {
        SpacetimeTarget {
            shard: crate::shards::Shard::new("unit", "main", true),
            url: "http://127.0.0.1:9".into(),
            token: String::new(),
            database: "unit".into(),
            reducer_timeout: Duration::from_secs(1),
            durable_timeout: Duration::from_secs(1),
            backoff: Backoff::new(Duration::from_millis(1), Duration::from_millis(1)),
            compression: false,
        }
    }

    #[tokio::test]
    async fn an_sdk_panic_ends_the_session_like_a_lost_connection() {
        let link: Link<u8> = Link::new(target());
        let mut signals = link.signals();
        let (request_id, call) = link.owner_calls.register();
        let mut lost = false;
        let ended = link.run_session(
            || Ok(7u8),
            |_| -> Result<(), String> { panic!("Unable to send reducer call message") },
            || lost = true,
        );
        assert!(ended.is_ok(), "the session ends normally, so the loop reconnects");
        assert!(lost);
        assert_eq!(call.await.unwrap().unwrap_err().code, "cache_unavailable", "calls in flight fail");
        assert_eq!(signals.recv().await.unwrap(), CacheSignal::Lost);
        assert!(link.connection().is_err());
        let _ = request_id;
    }

    #[tokio::test]
    async fn a_durable_writer_waits_for_every_entry_its_command_wrote() {
        let waiters = DurableWaiters::default();
        let mut released = waiters.register("r");
        waiters.persisted("r", 7);
        waiters.expect("r", vec![7, 8]);
        assert!(released.try_recv().is_err(), "entry 8 is not in PostgreSQL yet");
        waiters.persisted("r", 8);
        assert!(released.try_recv().is_ok());
        let mut early = waiters.register("e");
        waiters.persisted("e", 1);
        assert!(early.try_recv().is_err(), "nothing is released before the outcome says what was written");
    }

    #[tokio::test]
    async fn outcomes_reach_their_call_and_a_drop_fails_the_rest() {
        let calls = PendingCalls::<u32>::default();
        let (a, a_rx) = calls.register();
        let (_b, b_rx) = calls.register();
        calls.resolve(&a, Ok(7));
        assert_eq!(outcome(&calls, &a, a_rx, Duration::from_secs(1)).await, Ok(7));
        calls.fail_all(&cache_unavailable());
        assert_eq!(b_rx.await.unwrap().unwrap_err().code, "cache_unavailable");
    }
}
