//! `boardsync-bench`: the load generator of `scripts/bench report`, and the report.
//!
//! Each workload runs against a server someone else started (the script starts
//! boardsync on either adapter, and the peers), with minimal clients, many sockets
//! per task, and writes its figures as JSON; `report` turns a folder of them into
//! `docs/benchmarks.md` and its plots. CPU time is read for every watched process
//! (`--watch name=pid,...`) and for the generator itself, next to every figure.

mod connections;
mod failover;
mod fanout;
mod plot;
mod procs;
mod raw;
mod report;
mod scopes;
mod stats;
mod target;
mod warmup;
mod writes;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use serde::{Deserialize, Serialize};

use crate::target::Target;

#[derive(Parser)]
#[command(name = "boardsync-bench", about = "Load generator and report for boardsync's benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Common {
    /// What the report calls this system and configuration.
    #[arg(long)]
    label: String,
    /// Append the result to this JSON-lines file.
    #[arg(long)]
    out: PathBuf,
    /// Processes whose CPU time is reported: `server=PID,spacetimedb=PID,...`
    /// (`server` is the system under test).
    #[arg(long, default_value = "")]
    watch: String,
}

#[derive(Args)]
struct TargetArgs {
    /// `boardsync`, `hocuspocus` or `zero`.
    #[arg(long, default_value = "boardsync")]
    system: String,
    /// boardsync: `http://host:port`; Hocuspocus and Zero: `ws://host:port`.
    #[arg(long)]
    url: String,
    /// boardsync: a user token, and an admin token (to create scopes).
    #[arg(long, env = "BENCH_TOKEN", default_value = "")]
    token: String,
    #[arg(long, env = "BENCH_ADMIN_TOKEN", default_value = "")]
    admin_token: String,
    /// boardsync: subscribers join the scope's presence.
    #[arg(long)]
    presence: bool,
    /// boardsync: another node the writers write through (`http://host:port`), for
    /// live events across nodes.
    #[arg(long)]
    writer_url: Option<String>,
    /// Hocuspocus: the pre-made Yjs updates (`updates.mjs`).
    #[arg(long)]
    updates: Option<String>,
}

impl TargetArgs {
    fn target(&self) -> anyhow::Result<Target> {
        match self.system.as_str() {
            "boardsync" => Ok(Target::Boardsync {
                url: self.url.clone(),
                token: self.token.clone(),
                admin_token: self.admin_token.clone(),
                presence: self.presence,
                writer_url: self.writer_url.clone(),
            }),
            "hocuspocus" => {
                let path = self.updates.as_deref().context("--updates is needed for Hocuspocus")?;
                Ok(Target::Hocuspocus { url: self.url.clone(), updates: Arc::new(target::read_updates(path)?) })
            }
            "zero" => Ok(Target::Zero { url: self.url.clone(), mutations: Arc::default() }),
            other => anyhow::bail!("unknown system {other} (boardsync, hocuspocus or zero)"),
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// One writer, N subscribers on one scope.
    Fanout {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        target: TargetArgs,
        /// Subscriber counts.
        #[arg(long, value_delimiter = ',', default_value = "1,100,1000,10000")]
        subscribers: Vec<usize>,
        /// Edits measured one at a time, per subscriber count.
        #[arg(long, default_value_t = 200)]
        edits: usize,
        /// Deliveries in the throughput burst (edits = this / N, within 20..=2000).
        #[arg(long, default_value_t = 1_000_000)]
        burst_deliveries: usize,
    },
    /// Idle sockets held, and the server's memory per socket.
    Connections {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        target: TargetArgs,
        #[arg(long, value_delimiter = ',', default_value = "1000,5000,10000,15000")]
        steps: Vec<usize>,
        /// The server's process id (its memory is read).
        #[arg(long)]
        server_pid: u32,
    },
    /// Sustained writes over many scopes, rate after rate.
    Writes {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        target: TargetArgs,
        #[arg(long, value_enum, default_value = "ws")]
        via: writes::Via,
        #[arg(long, value_delimiter = ',', default_value = "250,500,1000,2000,4000,8000")]
        rates: Vec<f64>,
        #[arg(long, default_value_t = 100)]
        scopes: usize,
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// Hocuspocus: the PostgreSQL database its server stores documents in (writes
        /// are timed until they show up there).
        #[arg(long)]
        database_url: Option<String>,
        /// Hocuspocus: its store debounce (ms), allowed on top when judging whether
        /// PostgreSQL kept up.
        #[arg(long, default_value_t = 0)]
        store_delay_ms: u64,
    },
    /// Cold start and re-warm of a server started over existing chat history.
    Warmup {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        url: String,
        #[arg(long, env = "BENCH_ADMIN_TOKEN")]
        admin_token: String,
        #[arg(long)]
        scopes: usize,
        /// When the server process was started (Unix milliseconds).
        #[arg(long)]
        started_unix_ms: u64,
    },
    /// The chat module's reducers called directly, pipelined: the ceilings.
    Raw {
        #[command(flatten)]
        common: Common,
        /// SpacetimeDB's address, a database with the chat module and no boardsync on it,
        /// and its owner's token.
        #[arg(long)]
        spacetimedb_url: String,
        #[arg(long)]
        database: String,
        #[arg(long, env = "BENCH_SPACETIMEDB_TOKEN")]
        spacetimedb_token: String,
        #[arg(long, default_value_t = 20_000)]
        calls: usize,
        #[arg(long, default_value_t = 100_000)]
        warm_rows: usize,
        /// Rows per `warm` call (boardsync's warm-up batch size).
        #[arg(long, default_value_t = 1000)]
        warm_batch: usize,
    },
    /// A node's memory with many scopes warm and a few of them in use.
    Scopes {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        url: String,
        #[arg(long, env = "BENCH_ADMIN_TOKEN")]
        admin_token: String,
        /// Channels `c1`..`c<scopes>` in PostgreSQL, all warmed at start.
        #[arg(long)]
        scopes: usize,
        /// How many of them to read (`c1`..`c<active>`).
        #[arg(long)]
        active: usize,
        /// The node's `framework.cache_subscriptions`, for the report.
        #[arg(long)]
        subscriptions: String,
        #[arg(long)]
        server_pid: u32,
    },
    /// The drainer was killed: the time until the surviving node drains every outbox.
    Failover {
        #[command(flatten)]
        common: Common,
        /// The surviving node (`http://host:port`).
        #[arg(long)]
        url: String,
        /// When the drainer was killed (Unix milliseconds).
        #[arg(long)]
        killed_unix_ms: u64,
    },
    /// Writes docs/benchmarks.md and its plots from a folder of results.
    Report {
        /// The results (JSON lines) and `meta.json`.
        #[arg(long)]
        results: PathBuf,
        /// The report; plots go beside it, in `<stem>/`.
        #[arg(long)]
        out: PathBuf,
    },
}

/// One line of a results file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub label: String,
    pub workload: Workload,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", content = "result", rename_all = "snake_case")]
pub enum Workload {
    Fanout(fanout::FanoutResult),
    Connections(connections::ConnectionsResult),
    Writes(writes::WritesResult),
    Warmup(warmup::WarmupResult),
    Raw(raw::RawResult),
    Failover(failover::FailoverResult),
    Scopes(scopes::ScopesResult),
}

fn append(common: &Common, workload: Workload) -> anyhow::Result<()> {
    use std::io::Write;
    let record = Record { label: common.label.clone(), workload };
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&common.out)?;
    writeln!(file, "{}", serde_json::to_string(&record)?)?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        match cli.command {
            Command::Fanout { common, target, subscribers, edits, burst_deliveries } => {
                let watched = procs::parse_watched(&common.watch)?;
                let target = target.target()?;
                for n in subscribers {
                    let burst = (burst_deliveries / n).clamp(20, 2000);
                    eprintln!("fan-out, {}: {n} subscribers", common.label);
                    let result = fanout::run(&target, n, edits, burst, &watched).await?;
                    eprintln!(
                        "  last subscriber p50 {:.2} ms p99 {:.2} ms max {:.2} ms; burst {:.0} deliveries/s, server {:.1} µs CPU each{}",
                        result.last.p50,
                        result.last.p99,
                        result.last.max,
                        result.burst.deliveries_per_sec,
                        result.burst.server_us_per_delivery,
                        if result.burst.delivered < result.burst.expected {
                            format!(" ({} of {} delivered, {} resyncs)", result.burst.delivered, result.burst.expected, result.burst.resyncs)
                        } else {
                            String::new()
                        }
                    );
                    append(&common, Workload::Fanout(result))?;
                }
            }
            Command::Connections { common, target, steps, server_pid } => {
                eprintln!("connections, {}", common.label);
                let result = connections::run(&target.target()?, &steps, server_pid).await?;
                append(&common, Workload::Connections(result))?;
            }
            Command::Writes { common, target, via, rates, scopes, seconds, database_url, store_delay_ms } => {
                eprintln!("sustained writes, {}", common.label);
                anyhow::ensure!(
                    database_url.is_none() || target.system == "hocuspocus",
                    "--database-url is for Hocuspocus (its stored documents are watched)"
                );
                let peer_store = match database_url {
                    Some(url) => Some(writes::PeerStore {
                        pool: sqlx::postgres::PgPoolOptions::new().max_connections(2).connect(&url).await?,
                        delay: std::time::Duration::from_millis(store_delay_ms),
                    }),
                    None => None,
                };
                let watched = procs::parse_watched(&common.watch)?;
                let result = writes::run(&target.target()?, via, &rates, scopes, seconds, &watched, peer_store.as_ref()).await?;
                append(&common, Workload::Writes(result))?;
            }
            Command::Warmup { common, url, admin_token, scopes, started_unix_ms } => {
                eprintln!("warm-up, {}", common.label);
                let watched = procs::parse_watched(&common.watch)?;
                let result = warmup::run(&url, &admin_token, scopes, started_unix_ms, &watched).await?;
                append(&common, Workload::Warmup(result))?;
            }
            Command::Scopes { common, url, admin_token, scopes, active, subscriptions, server_pid } => {
                eprintln!("memory with {active} of {scopes} scopes in use, {}", common.label);
                let result = scopes::run(&url, &admin_token, scopes, active, &subscriptions, server_pid).await?;
                append(&common, Workload::Scopes(result))?;
            }
            Command::Failover { common, url, killed_unix_ms } => {
                let result = failover::run(&url, killed_unix_ms).await?;
                eprintln!("drainer failover, {}: {:.0} ms", common.label, result.takeover_ms);
                append(&common, Workload::Failover(result))?;
            }
            Command::Raw { common, spacetimedb_url, database, spacetimedb_token, calls, warm_rows, warm_batch } => {
                eprintln!("raw reducer ceilings, {}", common.label);
                let watched = procs::parse_watched(&common.watch)?;
                let result = tokio::task::spawn_blocking(move || {
                    raw::run(&spacetimedb_url, &database, &spacetimedb_token, calls, warm_rows, warm_batch, &watched)
                })
                .await??;
                append(&common, Workload::Raw(result))?;
            }
            Command::Report { results, out } => report::write(&results, &out)?,
        }
        Ok(())
    })
}
