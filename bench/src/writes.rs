//! Workload 2, sustained writes: chat messages over many scopes at a fixed rate
//! (open loop: a write is sent on schedule whether or not earlier ones were
//! answered), through WebSockets or HTTP, one rate after another. For each rate:
//! the rate reached, command latency, and on the cache adapter the outbox lag
//! (cache commit to PostgreSQL commit) of exactly these writes, read back from the
//! server's `/metrics` histogram, and how long PostgreSQL took to catch up after.
//!
//! Hocuspocus runs the same schedule over WebSockets: a write is a Yjs update, its
//! answer the sync status the server sends once it applied it (in memory), and
//! "in PostgreSQL" is when its id shows up in the document Hocuspocus stored (read
//! back every `STORED_POLL`: the lag is good to that much).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::{mpsc, Semaphore};
use tokio_tungstenite::tungstenite::Message;

use crate::procs::{CpuMeter, CpuUse, Watched};
use crate::stats::{bucket_quantile, histogram_buckets, histogram_delta, Spread};
use crate::target::{Answer, Target};

/// Requests in flight at most over HTTP; a write that finds none free is counted
/// as not sent (the server is not keeping up).
const HTTP_IN_FLIGHT: usize = 1024;
/// Waiting for replies ends when none came for this long.
const REPLIES_STALL: Duration = Duration::from_secs(5);
/// How long PostgreSQL may take to catch up after a rate's last write.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(30);
/// A rate is sustained when the writes were acknowledged at this share of it (and
/// this share of those sent were)...
const SUSTAINED_SHARE: f64 = 0.95;
/// ...and PostgreSQL caught up within this after the last one (a peer that stores
/// after a delay of its own gets that delay on top).
const SUSTAINED_CATCH_UP: Duration = Duration::from_secs(2);
/// How often a peer's stored documents are read back.
const STORED_POLL: Duration = Duration::from_millis(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    Ws,
    Http,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RateStep {
    pub target_per_sec: f64,
    pub sent: u64,
    pub acknowledged: u64,
    pub refused: u64,
    pub achieved_per_sec: f64,
    /// Command sent -> its reply (ms).
    pub command: Spread,
    /// Cache commit -> PostgreSQL commit of these writes (ms), cache adapter only.
    pub lag_p50_ms: Option<f64>,
    pub lag_p99_ms: Option<f64>,
    /// Last write acknowledged -> every one of them in PostgreSQL (ms).
    pub catch_up_ms: Option<f64>,
    /// What `catch_up_ms` may be for the rate to count as sustained.
    #[serde(default = "sustained_catch_up_ms")]
    pub catch_up_allowed_ms: f64,
    pub cpu: Vec<CpuUse>,
}

fn sustained_catch_up_ms() -> f64 {
    SUSTAINED_CATCH_UP.as_secs_f64() * 1000.0
}

impl RateStep {
    /// Kept up with: acknowledged at (nearly) the rate asked, and PostgreSQL had them
    /// all soon after the last (where there is an outbox).
    pub fn is_sustained(&self) -> bool {
        self.achieved_per_sec >= SUSTAINED_SHARE * self.target_per_sec
            && self.acknowledged as f64 >= SUSTAINED_SHARE * self.sent as f64
            && (self.lag_p99_ms.is_none() || self.catch_up_ms.is_some_and(|ms| ms <= self.catch_up_allowed_ms))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WritesResult {
    pub target: String,
    pub via: Via,
    pub scopes: usize,
    pub seconds: f64,
    pub steps: Vec<RateStep>,
}

impl WritesResult {
    /// The highest rate sustained, each lower one having been sustained too.
    pub fn sustained_per_sec(&self) -> Option<f64> {
        self.steps.iter().take_while(|step| step.is_sustained()).map(|step| step.target_per_sec).last()
    }
}

/// What a rate's writers report back.
struct Tally {
    started: Instant,
    acknowledged: AtomicU64,
    refused: AtomicU64,
    latencies_ms: Mutex<Vec<f64>>,
    /// When the schedule began and when the last acknowledgement came, in
    /// nanoseconds after `started`.
    schedule_ns: AtomicU64,
    last_ack_ns: AtomicU64,
    /// Acknowledged writes not yet seen stored, per room index: the id and when it
    /// was acknowledged (kept only where the stored documents are watched).
    unstored: Option<Mutex<Unstored>>,
}

/// Per room index: the acknowledged writes not yet seen stored (id, acknowledged at).
type Unstored = HashMap<usize, Vec<(String, Instant)>>;

impl Tally {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            acknowledged: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            latencies_ms: Mutex::new(Vec::new()),
            schedule_ns: AtomicU64::new(0),
            last_ack_ns: AtomicU64::new(0),
            unstored: None,
        }
    }

    fn watching_stored() -> Self {
        Self { unstored: Some(Mutex::default()), ..Self::new() }
    }

    /// Marks the start of the schedule; returns it.
    fn begin(&self) -> tokio::time::Instant {
        self.schedule_ns.store(self.started.elapsed().as_nanos() as u64, Ordering::SeqCst);
        tokio::time::Instant::now()
    }

    fn acknowledge(&self, sent: Instant, room: usize, id: String) {
        if let Some(unstored) = &self.unstored {
            unstored.lock().unwrap().entry(room).or_default().push((id, Instant::now()));
        }
        self.acknowledged.fetch_add(1, Ordering::Relaxed);
        self.latencies_ms.lock().unwrap().push(sent.elapsed().as_secs_f64() * 1000.0);
        self.last_ack_ns.fetch_max(self.started.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }
}

/// Where a peer's writes land in PostgreSQL: Hocuspocus' documents table, and how
/// long after a change it stores (its debounce), allowed on top when judging a rate.
pub struct PeerStore {
    pub pool: sqlx::PgPool,
    pub delay: Duration,
}

pub async fn run(
    target: &Target,
    via: Via,
    rates: &[f64],
    scopes: usize,
    seconds: f64,
    watched: &[Watched],
    peer_store: Option<&PeerStore>,
) -> anyhow::Result<WritesResult> {
    let http = reqwest::Client::new();
    let (url, admin_token) = match target {
        Target::Boardsync { url, admin_token, .. } => (url.as_str(), admin_token.as_str()),
        Target::Hocuspocus { .. } => {
            anyhow::ensure!(via == Via::Ws, "Hocuspocus is written to over WebSockets");
            anyhow::ensure!(peer_store.is_some(), "Hocuspocus' writes are watched in its PostgreSQL (--database-url)");
            ("", "")
        }
        // Zero answers a write once it committed it in PostgreSQL: nothing to watch.
        Target::Zero { .. } => {
            anyhow::ensure!(via == Via::Ws, "Zero is written to over WebSockets");
            ("", "")
        }
    };
    let prefix = format!("writes-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let rooms_of = |step: usize| -> Vec<String> {
        match target {
            // boardsync's scopes serve every rate.
            Target::Boardsync { .. } => (0..scopes).map(|i| format!("{prefix}-{i}")).collect(),
            // Each rate starts on fresh documents: the pre-made updates of a document
            // follow on from each other, from the first.
            // Zero: each rate's writers are new clients (a client group that connects
            // again with an empty cookie was never answered here).
            Target::Hocuspocus { .. } | Target::Zero { .. } => {
                (0..scopes).map(|i| format!("{prefix}-{step}-{i}")).collect()
            }
        }
    };
    for room in rooms_of(0) {
        target.prepare_room(&http, &room).await?;
    }
    let mut result = WritesResult { target: target.name().into(), via, scopes, seconds, steps: Vec::new() };
    for (step, &rate) in rates.iter().enumerate() {
        let rooms = rooms_of(step);
        let before = match target {
            Target::Boardsync { .. } => Some(outbox_state(&http, url, admin_token).await?),
            Target::Hocuspocus { .. } | Target::Zero { .. } => None,
        };
        let meter = CpuMeter::start(watched);
        let tally = Arc::new(if peer_store.is_some() { Tally::watching_stored() } else { Tally::new() });
        let stored = peer_store.map(|store| {
            StoredWatch::start(store.pool.clone(), rooms.clone(), tally.clone(), CATCH_UP_LIMIT + store.delay)
        });
        let (sent, writers) = match via {
            Via::Ws => write_ws(target, &rooms, rate, seconds, &tally).await?,
            Via::Http => (write_http(target, &http, &rooms, rate, seconds, &tally).await, Writers(Vec::new())),
        };
        // Over the schedule, or until the last acknowledgement if that came later.
        let last_ack =
            tally.last_ack_ns.load(Ordering::SeqCst).saturating_sub(tally.schedule_ns.load(Ordering::SeqCst));
        let elapsed = (last_ack as f64 / 1e9).max(seconds);
        let acknowledged = tally.acknowledged.load(Ordering::SeqCst);
        // From the last acknowledgement (the replies were waited for first, polling
        // every few milliseconds: an upper bound by that much).
        let acked_at = tally.started + Duration::from_nanos(tally.last_ack_ns.load(Ordering::SeqCst));
        let mut catch_up_ms = None;
        let (lag_p50_ms, lag_p99_ms, catch_up_allowed_ms) = if let Some(before) = before {
            // PostgreSQL has caught up once the outbox counted as many more writes as
            // were acknowledged (the PostgreSQL adapter has no outbox: nothing to wait for).
            let mut after = outbox_state(&http, url, admin_token).await?;
            if before.cache {
                while after.lag_count - before.lag_count < acknowledged && acked_at.elapsed() < CATCH_UP_LIMIT {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    after = outbox_state(&http, url, admin_token).await?;
                }
                if after.lag_count - before.lag_count >= acknowledged {
                    catch_up_ms = Some(acked_at.elapsed().as_secs_f64() * 1000.0);
                }
            }
            let lag = histogram_delta(&before.lag_buckets, &after.lag_buckets);
            let quantiles = if before.cache {
                (Some(bucket_quantile(&lag, 0.5) * 1000.0), Some(bucket_quantile(&lag, 0.99) * 1000.0))
            } else {
                (None, None)
            };
            (quantiles.0, quantiles.1, sustained_catch_up_ms())
        } else if let (Some(store), Some(watch)) = (peer_store, stored) {
            let seen = watch.finish(CATCH_UP_LIMIT + store.delay).await?;
            if seen.unstored == 0 {
                catch_up_ms = Some(seen.last_seen.saturating_duration_since(acked_at).as_secs_f64() * 1000.0);
            } else {
                eprintln!("  {} acknowledged writes never showed up in PostgreSQL", seen.unstored);
            }
            let lag = Spread::of(&seen.lags_ms);
            (Some(lag.p50), Some(lag.p99), sustained_catch_up_ms() + store.delay.as_secs_f64() * 1000.0)
        } else {
            (None, None, sustained_catch_up_ms())
        };
        let cpu = meter.stop();
        drop(writers);
        let latencies = std::mem::take(&mut *tally.latencies_ms.lock().unwrap());
        let step = RateStep {
            target_per_sec: rate,
            sent,
            acknowledged,
            refused: tally.refused.load(Ordering::SeqCst),
            achieved_per_sec: acknowledged as f64 / elapsed,
            command: Spread::of(&latencies),
            lag_p50_ms,
            lag_p99_ms,
            catch_up_ms,
            catch_up_allowed_ms,
            cpu,
        };
        let sustained = step.is_sustained();
        eprintln!(
            "  {rate:>6.0}/s via {via:?}: {:.0}/s acknowledged, command p99 {:.1} ms, lag p99 {:?} ms, caught up in {:?} ms{}",
            step.achieved_per_sec,
            step.command.p99,
            step.lag_p99_ms.map(|v| v.round()),
            step.catch_up_ms.map(|v| v.round()),
            if sustained { "" } else { " (not sustained)" }
        );
        result.steps.push(step);
        if !sustained {
            break;
        }
    }
    Ok(result)
}

/// Reads a peer's stored documents back while a rate runs, and times when each
/// acknowledged write shows up in them.
struct StoredWatch {
    task: tokio::task::JoinHandle<anyhow::Result<Seen>>,
    writes_done: Arc<AtomicBool>,
}

struct Seen {
    /// Acknowledged -> seen stored, per write (ms).
    lags_ms: Vec<f64>,
    last_seen: Instant,
    /// Acknowledged writes never seen stored.
    unstored: usize,
}

impl StoredWatch {
    /// Watches `rooms`' documents until the writes are done and all are seen stored, or
    /// `limit` after the writes are done.
    fn start(pool: sqlx::PgPool, rooms: Vec<String>, tally: Arc<Tally>, limit: Duration) -> Self {
        let writes_done = Arc::new(AtomicBool::new(false));
        let done = writes_done.clone();
        let task = tokio::spawn(async move {
            let index: HashMap<String, usize> = rooms.iter().cloned().enumerate().map(|(i, r)| (r, i)).collect();
            // Each document's last stored state, and the time it was stored at (so that
            // only a document stored again is read again).
            let mut latest: HashMap<usize, (String, Vec<u8>)> = HashMap::new();
            let mut lags_ms = Vec::new();
            let mut last_seen = Instant::now();
            let mut deadline: Option<Instant> = None;
            // Acknowledged writes not seen stored yet, per room.
            let mut waiting: Unstored = HashMap::new();
            loop {
                let stamps: Vec<(String, String)> =
                    sqlx::query_as("SELECT name, updated_at::text FROM hocuspocus_documents WHERE name = ANY($1)")
                        .bind(&rooms)
                        .fetch_all(&pool)
                        .await?;
                let changed: Vec<String> = stamps
                    .into_iter()
                    .filter(|(name, stamp)| latest.get(&index[name]).is_none_or(|(seen, _)| seen != stamp))
                    .map(|(name, _)| name)
                    .collect();
                let mut stored_again = Vec::with_capacity(changed.len());
                if !changed.is_empty() {
                    let rows: Vec<(String, String, Vec<u8>)> = sqlx::query_as(
                        "SELECT name, updated_at::text, data FROM hocuspocus_documents WHERE name = ANY($1)",
                    )
                    .bind(&changed)
                    .fetch_all(&pool)
                    .await?;
                    for (name, stamp, data) in rows {
                        stored_again.push(index[&name]);
                        latest.insert(index[&name], (stamp, data));
                    }
                }
                // The writes acknowledged since the last turn (taken out of the lock the
                // writers need), against what their documents last stored; those
                // waiting longer only against a document stored again.
                let now = Instant::now();
                let fresh = std::mem::take(&mut *tally.unstored.as_ref().expect("watching").lock().unwrap());
                let mut seen = |data: &[u8], id: &str, acked: Instant| {
                    let found = memchr::memmem::find(data, id.as_bytes()).is_some();
                    if found {
                        lags_ms.push(now.saturating_duration_since(acked).as_secs_f64() * 1000.0);
                        last_seen = now;
                    }
                    found
                };
                for room in stored_again {
                    let (Some(list), Some((_, data))) = (waiting.get_mut(&room), latest.get(&room)) else { continue };
                    list.retain(|(id, acked)| !seen(data, id, *acked));
                }
                for (room, list) in fresh {
                    let data = latest.get(&room).map(|(_, data)| data.as_slice());
                    let unseen = list.into_iter().filter(|(id, acked)| data.is_none_or(|data| !seen(data, id, *acked)));
                    waiting.entry(room).or_default().extend(unseen);
                }
                let left: usize = waiting.values().map(Vec::len).sum();
                if done.load(Ordering::SeqCst) {
                    let limit = *deadline.get_or_insert(now + limit);
                    if left == 0 || now > limit {
                        return Ok(Seen { lags_ms, last_seen, unstored: left });
                    }
                }
                tokio::time::sleep(STORED_POLL).await;
            }
        });
        Self { task, writes_done }
    }

    /// Once the writes are answered: waits until every acknowledged one is stored, or
    /// the watch's limit has passed.
    async fn finish(self, limit: Duration) -> anyhow::Result<Seen> {
        self.writes_done.store(true, Ordering::SeqCst);
        tokio::time::timeout(limit + Duration::from_secs(5), self.task)
            .await
            .context("watching the stored documents hung")??
    }
}

struct OutboxState {
    cache: bool,
    lag_count: u64,
    lag_buckets: Vec<(f64, f64)>,
}

async fn outbox_state(http: &reqwest::Client, url: &str, admin_token: &str) -> anyhow::Result<OutboxState> {
    let outbox: Value = http
        .get(format!("{url}/api/admin/outbox"))
        .bearer_auth(admin_token)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let chat = outbox["domains"]
        .as_array()
        .and_then(|domains| domains.iter().find(|d| d["domain"] == "chat"))
        .context("no chat domain in /api/admin/outbox")?;
    let metrics = http.get(format!("{url}/metrics")).send().await?.text().await?;
    // Every shard's outbox: `chat` on the first, `chat/<shard>` on the others.
    let shards = chat["shards"].as_array().cloned().unwrap_or_default();
    let units: Vec<String> = std::iter::once("chat".to_string())
        .chain(shards.iter().skip(1).filter_map(|shard| shard["shard"].as_str().map(|name| format!("chat/{name}"))))
        .collect();
    let mut lag_buckets: Vec<(f64, f64)> = Vec::new();
    for unit in &units {
        let label = format!("domain=\"{unit}\"");
        for (bound, count) in histogram_buckets(&metrics, "boardsync_outbox_lag_seconds", &label) {
            match lag_buckets.iter_mut().find(|(b, _)| *b == bound) {
                Some(bucket) => bucket.1 += count,
                None => lag_buckets.push((bound, count)),
            }
        }
    }
    lag_buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    // The +Inf bucket counts every observation.
    let lag_count = lag_buckets.last().map_or(0, |(_, count)| *count as u64);
    Ok(OutboxState { cache: chat["adapter"] == "spacetimedb", lag_count, lag_buckets })
}

/// The time write `index` is due, for `rate` per second.
fn due(started: tokio::time::Instant, index: u64, rate: f64) -> tokio::time::Instant {
    started + Duration::from_secs_f64(index as f64 / rate)
}

/// One socket per scope; the schedule hands write k to socket k % scopes. A socket's
/// replies come back in the order its commands were sent.
async fn write_ws(
    target: &Target,
    rooms: &[String],
    rate: f64,
    seconds: f64,
    tally: &Arc<Tally>,
) -> anyhow::Result<(u64, Writers)> {
    let mut queues = Vec::new();
    let mut tasks = Vec::new();
    for (room_index, room) in rooms.iter().enumerate() {
        let (sink, mut stream) = target.writer(room).await?.split();
        let (queue, mut due_writes) = mpsc::unbounded_channel::<(Instant, String, Message)>();
        queues.push(queue);
        let pending: Arc<Mutex<VecDeque<(Instant, String)>>> = Arc::default();
        let sending = pending.clone();
        let tally = tally.clone();
        let answers = target.clone();
        // Only Zero counts (by mutation id), and its rooms are new at each rate.
        let mut answered = 0;
        tasks.push(tokio::spawn(async move {
            let mut sink = sink;
            while let Some((due, id, message)) = due_writes.recv().await {
                // Latency counts from when the write was due, so time it waited in
                // the generator is not hidden (coordinated omission).
                sending.lock().unwrap().push_back((due, id));
                if sink.send(message).await.is_err() {
                    break;
                }
            }
        }));
        tasks.push(tokio::spawn(async move {
            // Failed edits not yet acknowledged (Zero acknowledges them after its error).
            let mut failed: u64 = 0;
            while let Some(Ok(frame)) = stream.next().await {
                let (count, taken) = match answers.answer(&frame, answered) {
                    None => continue,
                    Some(Answer::Failed) => {
                        failed += 1;
                        continue;
                    }
                    Some(Answer::Taken(count)) => (count, true),
                    Some(Answer::Refused(count)) => (count, false),
                };
                answered += count;
                for _ in 0..count {
                    let Some((sent, id)) = pending.lock().unwrap().pop_front() else { break };
                    if taken && failed == 0 {
                        tally.acknowledge(sent, room_index, id);
                    } else {
                        failed = failed.saturating_sub(1);
                        tally.refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    let total = (rate * seconds) as u64;
    let started = tally.begin();
    for index in 0..total {
        let due_at = due(started, index, rate);
        tokio::time::sleep_until(due_at).await;
        let room = index as usize % queues.len();
        let (id, message) = target.edit(&rooms[room], index as usize, "sustained")?;
        let _ = queues[room].send((due_at.into_std(), id, message));
    }
    drop(queues);
    // Replies still on their way: until all are in, or none came for a while.
    let (mut last, mut progressed) = (u64::MAX, Instant::now());
    loop {
        let answered = tally.acknowledged.load(Ordering::SeqCst) + tally.refused.load(Ordering::SeqCst);
        if answered >= total {
            break;
        }
        if answered != last {
            (last, progressed) = (answered, Instant::now());
        } else if progressed.elapsed() > REPLIES_STALL {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok((total, Writers(tasks)))
}

/// The writers' sockets (their tasks), closed when dropped: kept open until
/// PostgreSQL has caught up, since Hocuspocus stores a document at once when its
/// last connection closes, which would cut its store debounce short.
struct Writers(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Writers {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

async fn write_http(
    target: &Target,
    http: &reqwest::Client,
    rooms: &[String],
    rate: f64,
    seconds: f64,
    tally: &Arc<Tally>,
) -> u64 {
    let Target::Boardsync { url, token, .. } = target else { unreachable!("checked by run") };
    let permits = Arc::new(Semaphore::new(HTTP_IN_FLIGHT));
    let total = (rate * seconds) as u64;
    let mut sent = 0;
    let started = tally.begin();
    let mut tasks = Vec::with_capacity(total as usize);
    for index in 0..total {
        let due_at = due(started, index, rate);
        tokio::time::sleep_until(due_at).await;
        let Ok(permit) = permits.clone().try_acquire_owned() else { continue };
        sent += 1;
        let room = index as usize % rooms.len();
        let request = http
            .post(format!("{url}/api/chat/{}", rooms[room]))
            .bearer_auth(token)
            .json(&json!({ "type": "send", "id": uuid::Uuid::new_v4(), "text": "sustained" }));
        let tally = tally.clone();
        tasks.push(tokio::spawn(async move {
            let began = due_at.into_std();
            let ok = request.send().await.is_ok_and(|response| response.status().is_success());
            drop(permit);
            if ok {
                tally.acknowledge(began, room, String::new());
            } else {
                tally.refused.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    sent
}
