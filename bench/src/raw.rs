//! The ceilings the cache adapter is compared with, measured on the same SpacetimeDB
//! server in the same run, through the chat module's own bindings and with the
//! backend's identity (its owner), on a database of its own with no boardsync on it:
//! - `apply` called pipelined on one connection: the rate sustained writes could
//!   reach if boardsync added nothing;
//! - `warm_batch` with batches of rows, pipelined, as boardsync sends them (each
//!   batch one channel's rows, claimed by `warm_begin` first, no outcome echoed, a
//!   `warm_check` barrier per channel behind them): what one connection's warm-up
//!   reaches.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use boardsync_chat::module_bindings::*;
use serde::{Deserialize, Serialize};
use spacetimedb_sdk::__codegen::__ws::CallReducerFlags;
use spacetimedb_sdk::{DbContext, Status, Timestamp};

use crate::procs::{CpuMeter, CpuUse, Watched};

/// What the chat module needs before it takes commands (as the backend configures it).
const SETTINGS: &str = r#"{"max_text_chars":4000,"shortcodes":[],"max_reactions_per_message":200}"#;
const OUTCOME_LIMIT: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RawResult {
    pub calls: usize,
    pub failed: usize,
    pub calls_per_sec: f64,
    pub calls_cpu: Vec<CpuUse>,
    pub warm_rows: usize,
    pub warm_batch: usize,
    pub warm_rows_per_sec: f64,
    pub warm_cpu: Vec<CpuUse>,
    /// The same batches sent again, every row held already (as a re-warm after a
    /// cache restart that kept its data finds them): an exact duplicate is a no-op.
    #[serde(default)]
    pub rewarm_rows_per_sec: f64,
}

fn outcomes(received: &mpsc::Receiver<bool>, count: usize) -> anyhow::Result<usize> {
    let deadline = Instant::now() + OUTCOME_LIMIT;
    let mut failed = 0;
    for _ in 0..count {
        let left = deadline.saturating_duration_since(Instant::now());
        if !received.recv_timeout(left).context("reducer outcomes stopped coming")? {
            failed += 1;
        }
    }
    Ok(failed)
}

pub fn run(
    url: &str,
    database: &str,
    token: &str,
    calls: usize,
    warm_rows: usize,
    warm_batch: usize,
    watched: &[Watched],
) -> anyhow::Result<RawResult> {
    let conn = DbConnection::builder()
        .with_uri(url)
        .with_module_name(database)
        .with_token(Some(token.to_string()))
        .build()
        .context("connecting to SpacetimeDB")?;
    let (applied_tx, applied) = mpsc::channel();
    let configured_tx = applied_tx.clone();
    conn.reducers.on_configure(move |ctx, _, _| {
        let _ = configured_tx.send(matches!(ctx.event.status, Status::Committed));
    });
    conn.reducers.on_apply(move |ctx, _, _, _, _, _| {
        let _ = applied_tx.send(matches!(ctx.event.status, Status::Committed));
    });
    // As boardsync warms: each channel claimed first, batches without any outcome
    // echoed back (a batch is large), and a `warm_check` barrier per channel behind
    // them, whose success says all of its batches loaded.
    conn.set_reducer_flags().warm_batch(CallReducerFlags::NoSuccessNotify);
    let (claimed_tx, claimed) = mpsc::channel();
    conn.reducers.on_warm_begin(move |ctx, _, _, _, _| {
        let _ = claimed_tx.send(matches!(ctx.event.status, Status::Committed));
    });
    let (warmed_tx, warmed) = mpsc::channel();
    conn.reducers.on_warm_check(move |ctx, _, _, _, _| {
        let _ = warmed_tx.send(matches!(ctx.event.status, Status::Committed));
    });
    conn.run_threaded();
    conn.reducers.configure("raw-configure".into(), SETTINGS.into())?;
    if outcomes(&applied, 1)? != 0 {
        bail!("the chat module refused its settings");
    }

    // Made before the clock starts: what is measured is SpacetimeDB's side.
    let commands: Vec<(String, String, String)> = (0..calls)
        .map(|i| {
            let id = uuid::Uuid::new_v4();
            let command = serde_json::json!({ "type": "send", "id": id, "text": "sustained" }).to_string();
            (format!("raw-{i}"), format!("raw-{}", i % 100), command)
        })
        .collect();
    let meter = CpuMeter::start(watched);
    let started = Instant::now();
    for (request_id, scope, command) in commands {
        conn.reducers.apply(request_id, scope, "raw-user".into(), false, command)?;
    }
    let failed = outcomes(&applied, calls)?;
    let calls_per_sec = calls as f64 / started.elapsed().as_secs_f64();
    let calls_cpu = meter.stop();
    eprintln!("  apply, pipelined: {calls_per_sec:.0} calls/s ({failed} failed)");

    let now = Timestamp::now();
    let batches: Vec<Vec<Message>> = (0..warm_rows)
        .map(|i| Message {
            id: uuid::Uuid::new_v4().to_string(),
            // One channel per batch, 100 channels in turn (boardsync warms a scope's
            // rows together).
            channel: format!("warm-{}", (i / warm_batch) % 100),
            author: format!("user{}", i % 17),
            text: format!("history message {i}"),
            created_at: now,
            edited_at: None,
            deleted: false,
            reactions: Vec::new(),
            version: 1,
        })
        .collect::<Vec<_>>()
        .chunks(warm_batch)
        .map(<[Message]>::to_vec)
        .collect();
    let count = batches.len();
    // Each channel's batches, as its check counts them.
    let mut channels: std::collections::BTreeMap<String, u32> = Default::default();
    for rows in &batches {
        *channels.entry(rows[0].channel.clone()).or_default() += 1;
    }
    for channel in channels.keys() {
        conn.reducers.warm_begin(format!("raw-claim-{channel}"), channel.clone(), true, format!("claim-{channel}"))?;
    }
    if outcomes(&claimed, channels.len())? != 0 {
        bail!("the chat module refused to begin a warm-up");
    }
    // The second pass's copy, made before the clock starts: what is measured is
    // SpacetimeDB's side.
    let again = batches.clone();
    let meter = CpuMeter::start(watched);
    // Each pass's batches and checks; the counts go on across passes (one claim).
    let pass = |round: u32, batches: Vec<Vec<Message>>| -> anyhow::Result<f64> {
        let started = Instant::now();
        for (i, rows) in batches.into_iter().enumerate() {
            let channel = rows[0].channel.clone();
            let (request_id, claim) = (format!("raw-warm-{round}-{i}"), format!("claim-{channel}"));
            conn.reducers.warm_batch(request_id, channel, claim, rows)?;
        }
        for (channel, sent) in &channels {
            let (request_id, claim) = (format!("raw-check-{round}-{channel}"), format!("claim-{channel}"));
            conn.reducers.warm_check(request_id, channel.clone(), claim, sent * round)?;
        }
        if outcomes(&warmed, channels.len())? != 0 {
            bail!("the chat module did not load every warm-up batch ({count} sent)");
        }
        Ok(warm_rows as f64 / started.elapsed().as_secs_f64())
    };
    let warm_rows_per_sec = pass(1, batches)?;
    let warm_cpu = meter.stop();
    let rewarm_rows_per_sec = pass(2, again)?;
    eprintln!(
        "  warm, {warm_batch} rows a call, pipelined: {warm_rows_per_sec:.0} rows/s new, {rewarm_rows_per_sec:.0} rows/s held already"
    );
    let _ = conn.disconnect();
    Ok(RawResult {
        calls,
        failed,
        calls_per_sec,
        calls_cpu,
        warm_rows,
        warm_batch,
        warm_rows_per_sec,
        warm_cpu,
        rewarm_rows_per_sec,
    })
}
