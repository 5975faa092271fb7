//! Workload 1, live fan-out: one writer, N subscribers on one scope (document).
//!
//! Latency: edits one at a time; for each, from the edit leaving the writer to the
//! first, the median and the last subscriber finding its id in a frame.
//! Throughput: a burst of edits from several writers; every subscriber counts the
//! frames carrying the burst's tag, until all have all of them. CPU per delivered
//! message comes from this phase (server CPU seconds over N x edits).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::stream::{SelectAll, SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;

use crate::procs::{cpu_of, CpuMeter, CpuUse, Watched};
use crate::stats::Spread;
use crate::target::{Socket, Target};

/// Sockets read by one task: a task per socket would make the generator's own
/// scheduling part of what is measured.
const SOCKETS_PER_TASK: usize = 250;
/// An edit not seen by every subscriber within this is counted as timed out.
const EDIT_TIMEOUT: Duration = Duration::from_secs(10);
/// A burst ends when no subscriber got anything for this long.
const BURST_STALL: Duration = Duration::from_secs(10);
/// Writers of a burst on boardsync, which applies one socket's commands in order
/// (Hocuspocus takes one socket's updates pipelined, so it gets one writer).
const BOARDSYNC_BURST_WRITERS: usize = 8;
/// The pause between two latency edits, so each is measured on an idle system.
const LATENCY_GAP: Duration = Duration::from_millis(5);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FanoutResult {
    pub target: String,
    pub subscribers: usize,
    pub connect_seconds: f64,
    /// Edit sent -> last subscriber has it, per edit (ms).
    pub last: Spread,
    /// Edit sent -> median subscriber has it (ms).
    pub median: Spread,
    /// Edit sent -> first subscriber has it (ms).
    pub first: Spread,
    pub edits_timed_out: usize,
    pub latency_cpu: Vec<CpuUse>,
    pub burst: Burst,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Burst {
    pub edits: usize,
    pub seconds: f64,
    pub delivered: u64,
    /// Edits the writers' own sockets received (counted in the CPU per delivery).
    #[serde(default)]
    pub writer_deliveries: u64,
    /// Frames that carried them: fewer than `delivered` where the server merges
    /// edits queued for a socket into one frame (Hocuspocus does).
    #[serde(default)]
    pub frames: u64,
    pub expected: u64,
    pub resyncs: u64,
    /// Edits per second each subscriber received.
    pub per_subscriber_per_sec: f64,
    pub deliveries_per_sec: f64,
    pub cpu: Vec<CpuUse>,
    /// Server CPU per delivered message, microseconds.
    pub server_us_per_delivery: f64,
    /// The generator's own CPU per delivered message, microseconds.
    pub bench_us_per_delivery: f64,
}

/// What subscribers look for, and what they found.
struct Watch {
    clock: Instant,
    /// Bumped whenever `marker` changes, so readers refresh their copy.
    generation: AtomicU64,
    marker: RwLock<Vec<u8>>,
    hits: AtomicU64,
    /// Edits the writers' own sockets received.
    writer_hits: AtomicU64,
    frames: AtomicU64,
    expected: AtomicU64,
    last_arrival_ns: AtomicU64,
    last_any_ns: AtomicU64,
    record_each: AtomicBool,
    arrivals: Mutex<Vec<u64>>,
    resyncs: AtomicU64,
    done: Notify,
}

impl Watch {
    /// Waits until `expected` hits (a permit left by an earlier, timed-out look may
    /// wake it early: the count decides).
    async fn all_found(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if self.hits.load(Ordering::Acquire) >= self.expected.load(Ordering::Acquire) {
                return true;
            }
            if tokio::time::timeout_at(deadline, self.done.notified()).await.is_err() {
                return false;
            }
        }
    }

    fn now_ns(&self) -> u64 {
        self.clock.elapsed().as_nanos() as u64
    }

    fn look_for(&self, marker: &[u8], expected: u64, record_each: bool) {
        *self.marker.write().unwrap() = marker.to_vec();
        self.hits.store(0, Ordering::SeqCst);
        self.writer_hits.store(0, Ordering::SeqCst);
        self.frames.store(0, Ordering::SeqCst);
        self.expected.store(expected, Ordering::SeqCst);
        self.last_arrival_ns.store(0, Ordering::SeqCst);
        self.record_each.store(record_each, Ordering::SeqCst);
        self.arrivals.lock().unwrap().clear();
        self.generation.fetch_add(1, Ordering::SeqCst);
    }
}

/// A reader's copy of what the watch looks for, refreshed when the marker changes.
struct Looking {
    generation: u64,
    finder: memchr::memmem::Finder<'static>,
}

impl Looking {
    fn new() -> Self {
        Self { generation: u64::MAX, finder: memchr::memmem::Finder::new(b"").into_owned() }
    }

    /// How many times the current marker is in `bytes` (a frame may carry several
    /// edits: Hocuspocus merges the updates queued for a socket).
    fn count(&mut self, watch: &Watch, bytes: &[u8]) -> u64 {
        let current = watch.generation.load(Ordering::Acquire);
        if current != self.generation {
            self.generation = current;
            self.finder = memchr::memmem::Finder::new(&*watch.marker.read().unwrap()).into_owned();
        }
        if self.finder.needle().is_empty() {
            0
        } else {
            self.finder.find_iter(bytes).count() as u64
        }
    }
}

/// The bytes of a text or binary frame.
fn payload(frame: &Message) -> Option<&[u8]> {
    match frame {
        Message::Text(text) => Some(text.as_bytes()),
        Message::Binary(bytes) => Some(bytes),
        _ => None,
    }
}

async fn read_group(target: Target, readers: Vec<SplitStream<Socket>>, watch: Arc<Watch>) {
    let mut all: SelectAll<SplitStream<Socket>> = futures::stream::select_all(readers);
    let mut looking = Looking::new();
    while let Some(frame) = all.next().await {
        let Ok(frame) = frame else { continue };
        let Some(bytes) = payload(&frame) else { continue };
        let now = watch.now_ns();
        watch.last_any_ns.fetch_max(now, Ordering::Relaxed);
        let found = looking.count(&watch, bytes);
        if found > 0 {
            watch.frames.fetch_add(1, Ordering::Relaxed);
            watch.last_arrival_ns.fetch_max(now, Ordering::Relaxed);
            if watch.record_each.load(Ordering::Relaxed) {
                watch.arrivals.lock().unwrap().push(now);
            }
            let before = watch.hits.fetch_add(found, Ordering::AcqRel);
            let expected = watch.expected.load(Ordering::Acquire);
            if before < expected && before + found >= expected {
                watch.done.notify_one();
            }
        } else if target.is_resync(bytes) {
            watch.resyncs.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Opens `count` sockets on `room`, [`Target::connecting_at_once`] at a time.
pub async fn open_sockets(target: &Target, room: &str, count: usize) -> anyhow::Result<Vec<Socket>> {
    let opened: Vec<anyhow::Result<Socket>> = futures::stream::iter(0..count)
        .map(|_| target.subscribe(room))
        .buffer_unordered(target.connecting_at_once())
        .collect()
        .await;
    opened.into_iter().collect()
}

/// A writer's socket, whose incoming frames (replies, its own events) are read and
/// dropped so that it never backs up.
struct Writer {
    sink: SplitSink<Socket, Message>,
    _reader: tokio::task::JoinHandle<()>,
}

impl Writer {
    /// A writer's socket is a subscriber too (boardsync's live socket is where its
    /// commands go): the edits it receives are counted apart, as deliveries the
    /// server made that no subscriber measures.
    async fn open(target: &Target, room: &str, watch: Arc<Watch>) -> anyhow::Result<Self> {
        let (sink, mut stream) = target.writer(room).await?.split();
        let reader = tokio::spawn(async move {
            let mut looking = Looking::new();
            while let Some(frame) = stream.next().await {
                let Ok(frame) = frame else { continue };
                let Some(bytes) = payload(&frame) else { continue };
                watch.writer_hits.fetch_add(looking.count(&watch, bytes), Ordering::Relaxed);
            }
        });
        Ok(Self { sink, _reader: reader })
    }
}

pub async fn run(
    target: &Target,
    subscribers: usize,
    edits: usize,
    burst_edits: usize,
    watched: &[Watched],
) -> anyhow::Result<FanoutResult> {
    let http = reqwest::Client::new();
    let room = format!("fanout-{subscribers}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    target.prepare_room(&http, &room).await?;
    let started = Instant::now();
    let sockets = open_sockets(target, &room, subscribers).await.context("opening the subscribers")?;
    let connect_seconds = started.elapsed().as_secs_f64();
    let watch = Arc::new(Watch {
        clock: Instant::now(),
        generation: AtomicU64::new(0),
        marker: RwLock::new(Vec::new()),
        hits: AtomicU64::new(0),
        writer_hits: AtomicU64::new(0),
        frames: AtomicU64::new(0),
        expected: AtomicU64::new(u64::MAX),
        last_arrival_ns: AtomicU64::new(0),
        last_any_ns: AtomicU64::new(0),
        record_each: AtomicBool::new(false),
        arrivals: Mutex::new(Vec::new()),
        resyncs: AtomicU64::new(0),
        done: Notify::new(),
    });
    // Write halves are kept so the sockets stay open; nothing is sent on them.
    let mut sinks = Vec::with_capacity(subscribers);
    let mut readers = Vec::with_capacity(subscribers);
    for socket in sockets {
        let (sink, stream) = socket.split();
        sinks.push(sink);
        readers.push(stream);
    }
    let mut groups = Vec::new();
    while !readers.is_empty() {
        let group: Vec<_> = readers.drain(..readers.len().min(SOCKETS_PER_TASK)).collect();
        groups.push(tokio::spawn(read_group(target.clone(), group, watch.clone())));
    }

    let mut writer = Writer::open(target, &room, watch.clone()).await?;
    let (mut last, mut median, mut first) = (Vec::new(), Vec::new(), Vec::new());
    let mut edits_timed_out = 0;
    let meter = CpuMeter::start(watched);
    for index in 0..edits {
        let (id, message) = target.edit(&room, index, "lat")?;
        watch.look_for(id.as_bytes(), subscribers as u64, true);
        let sent = watch.now_ns();
        writer.sink.send(message).await?;
        let mut arrivals = match watch.all_found(EDIT_TIMEOUT).await {
            true => std::mem::take(&mut *watch.arrivals.lock().unwrap()),
            false => Vec::new(),
        };
        if arrivals.len() < subscribers {
            edits_timed_out += 1;
            continue;
        }
        arrivals.sort_unstable();
        let ms = |ns: u64| ns.saturating_sub(sent) as f64 / 1e6;
        first.push(ms(arrivals[0]));
        median.push(ms(arrivals[arrivals.len() / 2]));
        last.push(ms(*arrivals.last().expect("all arrived")));
        tokio::time::sleep(LATENCY_GAP).await;
    }
    let latency_cpu = meter.stop();

    let burst = burst(target, &room, &watch, subscribers, edits, burst_edits, watched, &mut writer).await?;
    drop(sinks);
    for group in groups {
        group.abort();
    }
    Ok(FanoutResult {
        target: target.name().into(),
        subscribers,
        connect_seconds,
        last: Spread::of(&last),
        median: Spread::of(&median),
        first: Spread::of(&first),
        edits_timed_out,
        latency_cpu,
        burst,
    })
}

#[allow(clippy::too_many_arguments)]
async fn burst(
    target: &Target,
    room: &str,
    watch: &Arc<Watch>,
    subscribers: usize,
    first_index: usize,
    edits: usize,
    watched: &[Watched],
    writer: &mut Writer,
) -> anyhow::Result<Burst> {
    let expected = (subscribers * edits) as u64;
    watch.resyncs.store(0, Ordering::SeqCst);
    watch.look_for(b"tput", expected, false);
    let mut writers = Vec::new();
    let writer_count = if matches!(target, Target::Boardsync { .. }) { BOARDSYNC_BURST_WRITERS } else { 0 };
    for _ in 0..writer_count {
        writers.push(Writer::open(target, room, watch.clone()).await?);
    }
    let meter = CpuMeter::start(watched);
    let sent = watch.now_ns();
    let mut messages = Vec::with_capacity(edits);
    for index in first_index..first_index + edits {
        messages.push(target.edit(room, index, "tput")?.1);
    }
    if writers.is_empty() {
        for message in messages {
            writer.sink.feed(message).await?;
        }
        writer.sink.flush().await?;
    } else {
        let mut shares: Vec<Vec<Message>> = vec![Vec::new(); writers.len()];
        for (i, message) in messages.into_iter().enumerate() {
            shares[i % writers.len()].push(message);
        }
        let sends = writers.iter_mut().zip(shares).map(|(writer, share)| async move {
            for message in share {
                writer.sink.feed(message).await?;
            }
            writer.sink.flush().await
        });
        futures::future::try_join_all(sends).await?;
    }
    // Until every subscriber has every edit, or nothing arrives for a while (a
    // subscriber that fell behind gets a resync instead of the events it missed).
    loop {
        match watch.all_found(Duration::from_millis(200)).await {
            true => break,
            false => {
                let idle = watch.now_ns().saturating_sub(watch.last_any_ns.load(Ordering::Relaxed).max(sent));
                if idle > BURST_STALL.as_nanos() as u64 {
                    break;
                }
            }
        }
    }
    let cpu = meter.stop();
    let delivered = watch.hits.load(Ordering::SeqCst);
    let writer_deliveries = watch.writer_hits.load(Ordering::SeqCst);
    let seconds = (watch.last_arrival_ns.load(Ordering::SeqCst).saturating_sub(sent) as f64 / 1e9).max(1e-9);
    // CPU over every delivery the server made, the writers' sockets' too.
    let per_delivery = |name: &str| cpu_of(&cpu, name) / (delivered + writer_deliveries).max(1) as f64 * 1e6;
    Ok(Burst {
        edits,
        seconds,
        delivered,
        writer_deliveries,
        frames: watch.frames.load(Ordering::SeqCst),
        expected,
        resyncs: watch.resyncs.load(Ordering::SeqCst),
        per_subscriber_per_sec: delivered as f64 / subscribers as f64 / seconds,
        deliveries_per_sec: delivered as f64 / seconds,
        server_us_per_delivery: per_delivery("server"),
        bench_us_per_delivery: per_delivery("bench"),
        cpu,
    })
}
