//! Workloads 3 and 5, warm-up and cold start, on a server started over chat history
//! already in PostgreSQL: the time from the process' start until every scope is
//! warm (cold start), then a re-warm of the whole domain (rows per second).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::procs::{CpuMeter, CpuUse, Watched};

/// How long a warm-up may take before the run gives up.
const WARM_LIMIT: Duration = Duration::from_secs(1800);
const POLL: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WarmupResult {
    pub scopes: usize,
    pub rows: u64,
    /// Process start -> every scope warm.
    pub cold_start_seconds: f64,
    pub cold_start_cpu: Vec<CpuUse>,
    /// A re-warm of the whole domain: request -> every scope warm again.
    pub rewarm_seconds: f64,
    pub rewarm_rows_per_sec: f64,
    pub rewarm_cpu: Vec<CpuUse>,
    /// Per scope, summed: reading PostgreSQL and loading the cache (ms).
    pub read_postgres_ms: u64,
    pub load_cache_ms: u64,
}

pub(crate) struct Board {
    warm: usize,
    pub rows: u64,
    read_ms: u64,
    load_ms: u64,
}

async fn board(http: &reqwest::Client, url: &str, admin: &str, min_runs: u64) -> anyhow::Result<Board> {
    let board: Value = http
        .get(format!("{url}/api/admin/warmup?domain=chat"))
        .bearer_auth(admin)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let scopes = board["scopes"].as_array().context("no scopes in the warm-up board")?;
    let warm: Vec<&Value> =
        scopes.iter().filter(|s| s["state"] == "warm" && s["runs"].as_u64().unwrap_or(0) >= min_runs).collect();
    let sum = |key: &str| warm.iter().map(|s| s[key].as_u64().unwrap_or(0)).sum();
    Ok(Board { warm: warm.len(), rows: sum("rows_loaded"), read_ms: sum("load_ms"), load_ms: sum("cache_ms") })
}

pub(crate) async fn until_warm(
    http: &reqwest::Client,
    url: &str,
    admin: &str,
    scopes: usize,
    min_runs: u64,
) -> anyhow::Result<Board> {
    let started = Instant::now();
    loop {
        if let Ok(board) = board(http, url, admin, min_runs).await {
            if board.warm >= scopes {
                return Ok(board);
            }
        }
        if started.elapsed() > WARM_LIMIT {
            bail!("the scopes were not warm within {WARM_LIMIT:?}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// `started_unix_ms`: when the server process was started (by the caller).
pub async fn run(
    url: &str,
    admin: &str,
    scopes: usize,
    started_unix_ms: u64,
    watched: &[Watched],
) -> anyhow::Result<WarmupResult> {
    let http = reqwest::Client::new();
    let meter = CpuMeter::start(watched);
    until_warm(&http, url, admin, scopes, 1).await?;
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64;
    let cold_start_seconds = now_ms.saturating_sub(started_unix_ms) as f64 / 1000.0;
    let cold_start_cpu = meter.stop();
    eprintln!("  cold start: every one of {scopes} scopes warm {cold_start_seconds:.1} s after the process started");

    let meter = CpuMeter::start(watched);
    let started = Instant::now();
    http.post(format!("{url}/api/admin/warmup/chat")).bearer_auth(admin).send().await?.error_for_status()?;
    let board = until_warm(&http, url, admin, scopes, 2).await?;
    let rewarm_seconds = started.elapsed().as_secs_f64();
    let rewarm_cpu = meter.stop();
    eprintln!(
        "  re-warm: {} rows in {rewarm_seconds:.1} s = {:.0} rows/s",
        board.rows,
        board.rows as f64 / rewarm_seconds
    );
    Ok(WarmupResult {
        scopes,
        rows: board.rows,
        cold_start_seconds,
        cold_start_cpu,
        rewarm_seconds,
        rewarm_rows_per_sec: board.rows as f64 / rewarm_seconds,
        rewarm_cpu,
        read_postgres_ms: board.read_ms,
        load_cache_ms: board.load_ms,
    })
}
