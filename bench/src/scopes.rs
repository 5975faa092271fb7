//! Workload 7, a node's memory with many scopes and few in use: a server started
//! over `scopes` chat channels already in PostgreSQL, every one warmed into the
//! cache; its resident memory once all are warm, then once `active` of them have
//! been read (a snapshot each), with the node subscribing only to the scopes in use
//! (`cache_subscriptions = "active"`) or to all of them (`"all"`).

use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::procs::rss_bytes;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScopesResult {
    pub scopes: usize,
    pub rows: u64,
    pub active: usize,
    /// The node's `framework.cache_subscriptions`.
    pub subscriptions: String,
    /// The node's resident memory once every scope is warm (KiB).
    pub rss_warm_kib: u64,
    /// ... and once `active` scopes have been read.
    pub rss_active_kib: u64,
    /// Scopes whose rows the node holds then (`/health`; none reported: all).
    pub subscribed_scopes: Option<u64>,
}

/// How long the node is left to settle before its memory is read.
const SETTLE: Duration = Duration::from_secs(3);

pub async fn run(
    url: &str,
    admin: &str,
    scopes: usize,
    active: usize,
    subscriptions: &str,
    server_pid: u32,
) -> anyhow::Result<ScopesResult> {
    let http = reqwest::Client::new();
    let board = crate::warmup::until_warm(&http, url, admin, scopes, 1).await?;
    tokio::time::sleep(SETTLE).await;
    let rss = || rss_bytes(server_pid).map(|bytes| bytes / 1024).context("the server's memory cannot be read");
    let rss_warm_kib = rss()?;
    eprintln!("  {scopes} scopes warm ({} rows): {} MiB resident", board.rows, rss_warm_kib / 1024);
    for n in 1..=active {
        http.get(format!("{url}/api/chat/c{n}?limit=50")).bearer_auth(admin).send().await?.error_for_status()?;
    }
    tokio::time::sleep(SETTLE).await;
    let rss_active_kib = rss()?;
    let health: Value = http.get(format!("{url}/health")).send().await?.json().await?;
    let subscribed_scopes = health["domains"]["chat"]["shards"][0]["subscribed_scopes"].as_u64();
    eprintln!("  {active} of them read: {} MiB resident, {subscribed_scopes:?} subscribed", rss_active_kib / 1024);
    Ok(ScopesResult {
        scopes,
        rows: board.rows,
        active,
        subscriptions: subscriptions.to_string(),
        rss_warm_kib,
        rss_active_kib,
        subscribed_scopes,
    })
}
