//! Workload 2, sustained writes: chat messages over many scopes at a fixed rate
//! (open loop: a write is sent on schedule whether or not earlier ones were
//! answered), through WebSockets or HTTP, one rate after another. For each rate:
//! the rate reached, command latency, and on the cache adapter the outbox lag
//! (cache commit to PostgreSQL commit) of exactly these writes, read back from the
//! server's `/metrics` histogram, and how long PostgreSQL took to catch up after.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
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
use crate::target::Target;

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
/// ...and PostgreSQL caught up within this after the last one.
const SUSTAINED_CATCH_UP: Duration = Duration::from_secs(2);

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
    pub cpu: Vec<CpuUse>,
}

impl RateStep {
    /// Kept up with: acknowledged at (nearly) the rate asked, and PostgreSQL had them
    /// all soon after the last (where there is an outbox).
    pub fn is_sustained(&self) -> bool {
        self.achieved_per_sec >= SUSTAINED_SHARE * self.target_per_sec
            && self.acknowledged as f64 >= SUSTAINED_SHARE * self.sent as f64
            && (self.lag_p99_ms.is_none()
                || self.catch_up_ms.is_some_and(|ms| ms <= SUSTAINED_CATCH_UP.as_secs_f64() * 1000.0))
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
}

impl Tally {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            acknowledged: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            latencies_ms: Mutex::new(Vec::new()),
            schedule_ns: AtomicU64::new(0),
            last_ack_ns: AtomicU64::new(0),
        }
    }

    /// Marks the start of the schedule; returns it.
    fn begin(&self) -> tokio::time::Instant {
        self.schedule_ns.store(self.started.elapsed().as_nanos() as u64, Ordering::SeqCst);
        tokio::time::Instant::now()
    }

    fn acknowledge(&self, sent: Instant) {
        self.acknowledged.fetch_add(1, Ordering::Relaxed);
        self.latencies_ms.lock().unwrap().push(sent.elapsed().as_secs_f64() * 1000.0);
        self.last_ack_ns.fetch_max(self.started.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }
}

pub async fn run(
    target: &Target,
    via: Via,
    rates: &[f64],
    scopes: usize,
    seconds: f64,
    watched: &[Watched],
) -> anyhow::Result<WritesResult> {
    let Target::Boardsync { url, admin_token, .. } = target else {
        anyhow::bail!("the write workload drives boardsync");
    };
    let http = reqwest::Client::new();
    let prefix = format!("writes-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let rooms: Vec<String> = (0..scopes).map(|i| format!("{prefix}-{i}")).collect();
    for room in &rooms {
        target.prepare_room(&http, room).await?;
    }
    let mut result = WritesResult { target: target.name().into(), via, scopes, seconds, steps: Vec::new() };
    for &rate in rates {
        let before = outbox_state(&http, url, admin_token).await?;
        let meter = CpuMeter::start(watched);
        let tally = Arc::new(Tally::new());
        let sent = match via {
            Via::Ws => write_ws(target, &rooms, rate, seconds, &tally).await?,
            Via::Http => write_http(target, &http, &rooms, rate, seconds, &tally).await,
        };
        // Over the schedule, or until the last acknowledgement if that came later.
        let last_ack =
            tally.last_ack_ns.load(Ordering::SeqCst).saturating_sub(tally.schedule_ns.load(Ordering::SeqCst));
        let elapsed = (last_ack as f64 / 1e9).max(seconds);
        let acknowledged = tally.acknowledged.load(Ordering::SeqCst);
        // PostgreSQL has caught up once the outbox counted as many more writes as
        // were acknowledged (the PostgreSQL adapter has no outbox: nothing to wait for).
        // From the last acknowledgement (the replies were waited for first, polling
        // every few milliseconds: an upper bound by that much).
        let acked_at = tally.started + Duration::from_nanos(tally.last_ack_ns.load(Ordering::SeqCst));
        let mut after = outbox_state(&http, url, admin_token).await?;
        let mut catch_up_ms = None;
        if before.cache {
            while after.lag_count - before.lag_count < acknowledged && acked_at.elapsed() < CATCH_UP_LIMIT {
                tokio::time::sleep(Duration::from_millis(10)).await;
                after = outbox_state(&http, url, admin_token).await?;
            }
            if after.lag_count - before.lag_count >= acknowledged {
                catch_up_ms = Some(acked_at.elapsed().as_secs_f64() * 1000.0);
            }
        }
        let cpu = meter.stop();
        let lag = histogram_delta(&before.lag_buckets, &after.lag_buckets);
        let (lag_p50_ms, lag_p99_ms) = if before.cache {
            (Some(bucket_quantile(&lag, 0.5) * 1000.0), Some(bucket_quantile(&lag, 0.99) * 1000.0))
        } else {
            (None, None)
        };
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
    Ok(OutboxState {
        cache: chat["adapter"] == "spacetimedb",
        lag_count: chat["lag_count"].as_u64().unwrap_or(0),
        lag_buckets: histogram_buckets(&metrics, "boardsync_outbox_lag_seconds", r#"domain="chat""#),
    })
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
) -> anyhow::Result<u64> {
    let mut queues = Vec::new();
    let mut tasks = Vec::new();
    for room in rooms {
        let (sink, mut stream) = target.subscribe(room).await?.split();
        let (queue, mut due_writes) = mpsc::unbounded_channel::<(Instant, Message)>();
        queues.push(queue);
        let pending: Arc<Mutex<VecDeque<Instant>>> = Arc::default();
        let sending = pending.clone();
        let tally = tally.clone();
        tasks.push(tokio::spawn(async move {
            let mut sink = sink;
            while let Some((due, message)) = due_writes.recv().await {
                // Latency counts from when the write was due, so time it waited in
                // the generator is not hidden (coordinated omission).
                sending.lock().unwrap().push_back(due);
                if sink.send(message).await.is_err() {
                    break;
                }
            }
        }));
        tasks.push(tokio::spawn(async move {
            while let Some(Ok(frame)) = stream.next().await {
                let Message::Text(text) = frame else { continue };
                if !text.starts_with(r#"{"kind":"reply""#) {
                    continue;
                }
                let Some(sent) = pending.lock().unwrap().pop_front() else { continue };
                if text.contains(r#""ok":true"#) {
                    tally.acknowledge(sent);
                } else {
                    tally.refused.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let total = (rate * seconds) as u64;
    let started = tally.begin();
    for index in 0..total {
        let due_at = due(started, index, rate);
        tokio::time::sleep_until(due_at).await;
        let (_, message) = target.edit("", index as usize, "sustained")?;
        let _ = queues[index as usize % queues.len()].send((due_at.into_std(), message));
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
    for task in tasks {
        task.abort();
    }
    Ok(total)
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
        let request = http
            .post(format!("{url}/api/chat/{}", rooms[index as usize % rooms.len()]))
            .bearer_auth(token)
            .json(&json!({ "type": "send", "id": uuid::Uuid::new_v4(), "text": "sustained" }));
        let tally = tally.clone();
        tasks.push(tokio::spawn(async move {
            let began = due_at.into_std();
            let ok = request.send().await.is_ok_and(|response| response.status().is_success());
            drop(permit);
            if ok {
                tally.acknowledge(began);
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
