//! Drainer failover across nodes: the node draining every outbox is killed
//! (`kill -9`, by the script, which passes when); the time until a surviving node
//! drains every outbox, as its `/health` says.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::bail;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How long a takeover may take before the run gives up.
const TAKEOVER_LIMIT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(10);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailoverResult {
    /// The drainer was killed -> the survivor drains every outbox (ms).
    pub takeover_ms: f64,
    pub domains: usize,
}

/// Whether `url`'s node drains every outbox of the cache adapter, and how many.
async fn drains(http: &reqwest::Client, url: &str) -> anyhow::Result<(bool, usize)> {
    let health: Value = http.get(format!("{url}/health")).send().await?.json().await?;
    let domains: Vec<Value> = health["domains"].as_object().map(|d| d.values().cloned().collect()).unwrap_or_default();
    let cached: Vec<&Value> = domains.iter().filter(|d| d["drains_outbox"].is_boolean()).collect();
    Ok((!cached.is_empty() && cached.iter().all(|d| d["drains_outbox"] == true), cached.len()))
}

/// Waits until the node at `survivor` drains every outbox; `killed_unix_ms` is when
/// the drainer was killed.
pub async fn run(survivor: &str, killed_unix_ms: u64) -> anyhow::Result<FailoverResult> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?;
    let started = Instant::now();
    loop {
        if let Ok((true, domains)) = drains(&http, survivor).await {
            let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64;
            return Ok(FailoverResult { takeover_ms: now.saturating_sub(killed_unix_ms) as f64, domains });
        }
        if started.elapsed() > TAKEOVER_LIMIT {
            bail!("{survivor} took no drainer lease within {TAKEOVER_LIMIT:?} of the kill");
        }
        tokio::time::sleep(POLL).await;
    }
}
