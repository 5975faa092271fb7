//! Workload 4, connections: idle live sockets held by one server, opened in steps
//! over many scopes, with the server's resident memory after each step.

use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::fanout::open_sockets;
use crate::procs::rss_bytes;
use crate::target::Target;

/// Scopes (documents) the sockets are spread over, as clients of many teams would be.
const ROOMS: usize = 100;
/// Settling time after a step before memory is read.
const SETTLE: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnectionStep {
    pub sockets: usize,
    pub rss_bytes: u64,
    /// (RSS now - RSS before any socket) / sockets.
    pub bytes_per_socket: f64,
    pub open_seconds: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnectionsResult {
    pub target: String,
    pub baseline_rss_bytes: u64,
    pub steps: Vec<ConnectionStep>,
    /// Set when a step could not be completed: the error.
    pub stopped_by: Option<String>,
}

pub async fn run(target: &Target, steps: &[usize], server_pid: u32) -> anyhow::Result<ConnectionsResult> {
    let http = reqwest::Client::new();
    let prefix = format!("idle-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let rooms: Vec<String> = (0..ROOMS).map(|i| format!("{prefix}-{i}")).collect();
    for room in &rooms {
        target.prepare_room(&http, room).await?;
    }
    tokio::time::sleep(SETTLE).await;
    let baseline = rss_bytes(server_pid).context("reading the server's memory")?;
    let mut held = 0;
    let mut readers = Vec::new();
    let mut result = ConnectionsResult {
        target: target.name().into(),
        baseline_rss_bytes: baseline,
        steps: Vec::new(),
        stopped_by: None,
    };
    for &step in steps {
        let started = Instant::now();
        let missing = step.saturating_sub(held);
        // Round-robin over the rooms, a room's share opened together.
        let mut opened = 0;
        for (i, room) in rooms.iter().enumerate() {
            let share = missing / ROOMS + usize::from(i < missing % ROOMS);
            match open_sockets(target, room, share).await {
                Ok(sockets) => {
                    opened += sockets.len();
                    held += sockets.len();
                    // Read (and so answer the server's pings), and hold.
                    readers.push(tokio::spawn(async move {
                        let mut all = futures::stream::select_all(sockets);
                        while all.next().await.is_some() {}
                    }));
                }
                Err(error) => {
                    result.stopped_by = Some(format!("after {} sockets: {error:#}", held));
                    break;
                }
            }
        }
        let open_seconds = started.elapsed().as_secs_f64();
        if result.stopped_by.is_some() || opened < missing {
            break;
        }
        tokio::time::sleep(SETTLE).await;
        let rss = rss_bytes(server_pid).context("reading the server's memory")?;
        result.steps.push(ConnectionStep {
            sockets: held,
            rss_bytes: rss,
            bytes_per_socket: rss.saturating_sub(baseline) as f64 / held as f64,
            open_seconds,
        });
        eprintln!("  {} sockets: {:.1} KiB each", held, rss.saturating_sub(baseline) as f64 / held as f64 / 1024.0);
    }
    for reader in readers {
        reader.abort();
    }
    Ok(result)
}
