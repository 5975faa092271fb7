//! `docs/benchmarks.md` from a folder of results: tables per workload, ratios to the
//! peers, the targets met or missed, and SVG plots beside the report.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

use anyhow::Context;
use serde_json::Value;

use crate::connections::ConnectionsResult;
use crate::failover::FailoverResult;
use crate::fanout::FanoutResult;
use crate::plot::{Chart, Series};
use crate::procs::CpuUse;
use crate::raw::RawResult;
use crate::scopes::ScopesResult;
use crate::warmup::WarmupResult;
use crate::writes::WritesResult;
use crate::{Record, Workload};

#[derive(Default)]
struct Results {
    fanout: Vec<(String, FanoutResult)>,
    connections: Vec<(String, ConnectionsResult)>,
    writes: Vec<(String, WritesResult)>,
    warmup: Vec<(String, WarmupResult)>,
    raw: Vec<(String, RawResult)>,
    failover: Vec<(String, FailoverResult)>,
    scopes: Vec<(String, ScopesResult)>,
}

fn read(folder: &Path) -> anyhow::Result<Results> {
    let mut results = Results::default();
    let mut files: Vec<_> = std::fs::read_dir(folder)?.flatten().map(|e| e.path()).collect();
    files.sort();
    for file in files.iter().filter(|f| f.extension().is_some_and(|e| e == "jsonl")) {
        for line in std::fs::read_to_string(file)?.lines().filter(|l| !l.trim().is_empty()) {
            let record: Record = serde_json::from_str(line).with_context(|| format!("reading {}", file.display()))?;
            match record.workload {
                Workload::Fanout(r) => results.fanout.push((record.label, r)),
                Workload::Connections(r) => results.connections.push((record.label, r)),
                Workload::Writes(r) => results.writes.push((record.label, r)),
                Workload::Warmup(r) => results.warmup.push((record.label, r)),
                Workload::Raw(r) => results.raw.push((record.label, r)),
                Workload::Failover(r) => results.failover.push((record.label, r)),
                Workload::Scopes(r) => results.scopes.push((record.label, r)),
            }
        }
    }
    Ok(results)
}

fn ms(value: f64) -> String {
    if !value.is_finite() {
        "–".into()
    } else if value < 10.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.1}")
    }
}

fn thousands(value: f64) -> String {
    let rounded = value.round() as i64;
    let digits = rounded.abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if rounded < 0 {
        format!("-{out}")
    } else {
        out
    }
}

fn cpu_summary(uses: &[CpuUse]) -> String {
    uses.iter().map(|u| format!("{} {:.2}", u.name, u.cores)).collect::<Vec<_>>().join(", ")
}

fn ratio(ours: f64, theirs: f64) -> String {
    if ours.is_finite() && theirs.is_finite() && theirs > 0.0 {
        let r = ours / theirs;
        // Two significant digits, however far apart the two are.
        let decimals = if r >= 1.0 { 2 } else { (1 - r.log10().floor() as i32).clamp(2, 6) as usize };
        format!("{r:.decimals$}x")
    } else {
        "–".into()
    }
}

fn is_peer(result_target: &str) -> bool {
    result_target != "boardsync"
}

pub fn write(folder: &Path, out: &Path) -> anyhow::Result<()> {
    let results = read(folder)?;
    let meta: Value = std::fs::read_to_string(folder.join("meta.json"))
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or(Value::Null);
    let stem = out.file_stem().and_then(|s| s.to_str()).unwrap_or("benchmarks").to_string();
    let plots = out.with_file_name(&stem);
    std::fs::create_dir_all(&plots)?;
    let mut md = String::new();
    let text = |key: &str| match &meta[key] {
        Value::String(text) => text.clone(),
        Value::Null => "unknown".into(),
        other => other.to_string(),
    };
    let _ = writeln!(md, "# Benchmarks\n");
    let _ = writeln!(
        md,
        "Written by `scripts/bench report` (do not edit by hand): every figure below comes from one run of that command, \
         on one machine, with the servers and the load generator (`bench/`, Rust) sharing its cores. \
         Ratios (boardsync / peer) are what the comparison rests on; they still depend on how the few cores are \
         shared between each server, its stores and the generator.\n"
    );
    let _ = writeln!(md, "- Run: {} at commit `{}`", text("date"), text("commit"));
    let _ = writeln!(md, "- Machine: {}, {} cores, {} GiB", text("cpu"), text("cores"), text("memory_gib"));
    if let Some(lines) = meta["configuration"].as_array() {
        for line in lines.iter().filter_map(Value::as_str) {
            let _ = writeln!(md, "- {line}");
        }
    }
    let _ = writeln!(
        md,
        "- CPU columns: cores busy on average while the figure was measured (CPU seconds / wall seconds) per process: \
         `server` is the system under test, `spacetimedb` and `postgres` its stores, `bench` the load generator.\n"
    );

    targets(&mut md, &results);
    fanout(&mut md, &results, &plots, &stem)?;
    writes(&mut md, &results, &plots, &stem)?;
    ceilings(&mut md, &results);
    warmup(&mut md, &results);
    connections(&mut md, &results, &plots, &stem)?;
    nodes(&mut md, &results);
    shards(&mut md, &results);
    if let Some(notes) = meta["notes"].as_array() {
        let _ = writeln!(md, "## Notes\n");
        for note in notes.iter().filter_map(Value::as_str) {
            let _ = writeln!(md, "- {note}");
        }
        md.push('\n');
    }
    std::fs::write(out, md)?;
    eprintln!("wrote {} and its plots in {}", out.display(), plots.display());
    Ok(())
}

/// The targets, each against the worst boardsync configuration measured.
fn targets(md: &mut String, results: &Results) {
    let _ = writeln!(md, "## Targets\n");
    let _ = writeln!(md, "| target | configuration | measured | met |\n|---|---|---|---|");
    let mut row = |name: &str, label: &str, measured: String, met: Option<bool>| {
        let met = match met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "not measured",
        };
        let _ = writeln!(md, "| {name} | {label} | {measured} | {met} |");
    };
    for (n, limit) in [(100, 5.0), (1000, 20.0)] {
        for (label, r) in results.fanout.iter().filter(|(_, r)| !is_peer(&r.target) && r.subscribers == n) {
            row(
                &format!("{n} subscribers: p99 ≤ {limit} ms"),
                label,
                format!("{} ms", ms(r.last.p99)),
                Some(r.last.p99 <= limit),
            );
        }
    }
    for (label, r) in results.writes.iter().filter(|(_, r)| !is_peer(&r.target)) {
        if let Some(step) = r.steps.iter().find(|s| s.target_per_sec == 1000.0) {
            if let Some(p99) = step.lag_p99_ms {
                row(
                    "outbox lag p99 ≤ 10 ms at 1,000 writes/s",
                    &format!("{label}, {:?}", r.via),
                    format!("{} ms", ms(p99)),
                    Some(p99 <= 10.0),
                );
            }
        }
    }
    let top = |suffix: &str| {
        results.writes.iter().find(|(label, _)| label.ends_with(suffix)).and_then(|(_, r)| r.sustained_per_sec())
    };
    if let (Some(one), Some(two)) = (top(ONE_SHARD), top(TWO_SHARDS)) {
        row(
            "sustained writes with two shards close to 2x one (≥ 1.8x)",
            "boardsync · SpacetimeDB adapter, both shards on this machine",
            format!("{} against {} /s = {:.2}x", thousands(two), thousands(one), two / one),
            Some(two / one >= 1.8),
        );
    }
    let raw = results.raw.first().map(|(_, r)| r);
    for (label, r) in results.writes.iter().filter(|(label, r)| r.target == "boardsync" && !is_shard_run(label)) {
        let (Some(raw), Some(sustained)) = (raw, r.sustained_per_sec()) else { continue };
        let share = sustained / raw.calls_per_sec;
        row(
            "sustained writes ≥ 60% of the raw reducer rate",
            &format!("{label}, {:?}", r.via),
            format!("{} of {} /s = {:.0}%", thousands(sustained), thousands(raw.calls_per_sec), share * 100.0),
            Some(share >= 0.6),
        );
    }
    for (label, r) in &results.warmup {
        // The re-warm finds its rows held already: held against the reducer's rate for
        // such rows (a report from before that figure, against that for new rows).
        let ceiling = raw.map_or(String::new(), |raw| {
            let (ceiling, rows) = if raw.rewarm_rows_per_sec > 0.0 {
                (raw.rewarm_rows_per_sec, "rows held already")
            } else {
                (raw.warm_rows_per_sec, "new rows")
            };
            format!(
                " ({:.0}% of the batched reducer's {} rows/s for {rows})",
                r.rewarm_rows_per_sec / ceiling * 100.0,
                thousands(ceiling)
            )
        });
        row(
            "warm-up ≥ 200,000 rows/s",
            label,
            format!("{} rows/s{ceiling}", thousands(r.rewarm_rows_per_sec)),
            Some(r.rewarm_rows_per_sec >= 200_000.0),
        );
    }
    for (label, r) in results.connections.iter().filter(|(_, r)| !is_peer(&r.target)) {
        if let Some(last) = r.steps.last() {
            let kib = last.bytes_per_socket / 1024.0;
            row(
                "≤ 4 KB server memory per idle socket, up to 15,000",
                label,
                format!("{kib:.1} KiB at {}", thousands(last.sockets as f64)),
                Some(last.bytes_per_socket <= 4096.0 && last.sockets >= 15_000),
            );
        }
    }
    for (label, r) in results.fanout.iter().filter(|(_, r)| !is_peer(&r.target) && r.subscribers >= 100) {
        let us = r.burst.server_us_per_delivery;
        row(
            &format!("≤ 5 µs server CPU per delivered message (N={})", r.subscribers),
            label,
            match fanout_only(results, label, r) {
                Some(only) => format!("{us:.1} µs ({only:.1} µs of it the fan-out)"),
                None => format!("{us:.1} µs"),
            },
            Some(us <= 5.0),
        );
    }
    md.push('\n');
}

fn fanout(md: &mut String, results: &Results, plots: &Path, stem: &str) -> anyhow::Result<()> {
    if results.fanout.is_empty() {
        return Ok(());
    }
    let _ = writeln!(md, "## 1. Live fan-out: one writer, N subscribers on one scope\n");
    let _ = writeln!(
        md,
        "Each edit is sent on its own (the next one after every subscriber has the last); latency runs from the edit \
         leaving the writer to a subscriber finding its id in a frame. Then a burst of edits (boardsync: 8 writers, as it \
         applies one socket's commands in order; Hocuspocus: 1 writer, pipelined), for throughput and CPU per delivered \
         message. Hocuspocus merges the updates queued for a socket into one frame (the \"edits per frame\" column), \
         boardsync sends one frame per event: compare the burst's CPU per delivery with that in mind. \
         boardsync's subscribers open with `presence=false` (a minimal client shows nobody; Hocuspocus' send no \
         awareness either). Hocuspocus stores a changed document in PostgreSQL 2 s after its last change (its \
         default debounce, at most every 10 s), so its PostgreSQL is idle here; boardsync writes every edit to \
         PostgreSQL (fsync on) as it goes. The CPU per delivery counts the writers' sockets' deliveries too. \"Of which \
         fan-out\": the server's CPU per delivery less the cost of the edits themselves (the N = 1 row's, spread \
         over N). Zero: each subscriber is a client group of its own (an independent user) with one query, the \
         room's messages; the writer is one client pushing CRUD inserts, pipelined; zero-cache commits each insert in \
         its upstream PostgreSQL (a cluster of its own with wal_level=logical, fsync on) and subscribers get it from \
         the replication stream (three frames per edit: poke start, part, end); it gets at most 50 latency edits and a \
         burst of 100,000 deliveries, as it syncs each client group apart.\n"
    );
    let _ = writeln!(
        md,
        "| system | N | last p50 ms | last p99 ms | last max ms | median p50 ms | timed out | burst msgs/s per subscriber | deliveries/s | edits per frame | server µs CPU / delivery | of which fan-out | bench µs CPU / delivery | CPU (cores) during the burst |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for (label, r) in &results.fanout {
        let b = &r.burst;
        let short = if b.delivered < b.expected {
            format!(" ({} of {}; {} resyncs)", thousands(b.delivered as f64), thousands(b.expected as f64), b.resyncs)
        } else {
            String::new()
        };
        let _ = writeln!(
            md,
            "| {label} | {} | {} | {} | {} | {} | {} | {}{short} | {} | {} | {:.1} | {} | {:.1} | {} |",
            thousands(r.subscribers as f64),
            ms(r.last.p50),
            ms(r.last.p99),
            ms(r.last.max),
            ms(r.median.p50),
            r.edits_timed_out,
            thousands(b.per_subscriber_per_sec),
            thousands(b.deliveries_per_sec),
            if b.frames > 0 { format!("{:.1}", b.delivered as f64 / b.frames as f64) } else { "–".into() },
            b.server_us_per_delivery,
            fanout_only(results, label, r).map_or("–".into(), |us| format!("{us:.1}")),
            b.bench_us_per_delivery,
            cpu_summary(&b.cpu)
        );
    }
    md.push('\n');
    // Ratios against each peer, per N.
    let ours: Vec<&(String, FanoutResult)> = results.fanout.iter().filter(|(_, r)| !is_peer(&r.target)).collect();
    let peers: Vec<&(String, FanoutResult)> = results.fanout.iter().filter(|(_, r)| is_peer(&r.target)).collect();
    if !peers.is_empty() {
        let _ = writeln!(
            md,
            "Ratios, boardsync / peer (below 1 is boardsync ahead for latency and CPU, above 1 for throughput):\n"
        );
        let _ = writeln!(md, "| boardsync | peer | N | last p50 | last p99 | deliveries/s | server CPU / delivery |\n|---|---|---|---|---|---|---|");
        for (label, r) in &ours {
            for (peer_label, p) in peers.iter().filter(|(_, p)| p.subscribers == r.subscribers) {
                let _ = writeln!(
                    md,
                    "| {label} | {peer_label} | {} | {} | {} | {} | {} |",
                    thousands(r.subscribers as f64),
                    ratio(r.last.p50, p.last.p50),
                    ratio(r.last.p99, p.last.p99),
                    ratio(r.burst.deliveries_per_sec, p.burst.deliveries_per_sec),
                    ratio(r.burst.server_us_per_delivery, p.burst.server_us_per_delivery)
                );
            }
        }
        md.push('\n');
    }
    let by_label = |value: &dyn Fn(&FanoutResult) -> f64| {
        let mut series: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
        for (label, r) in &results.fanout {
            series.entry(label).or_default().push((r.subscribers as f64, value(r)));
        }
        series.into_iter().map(|(name, points)| Series { name: name.to_string(), points }).collect::<Vec<_>>()
    };
    let latency = Chart {
        title: "Edit to last subscriber, p99",
        x_label: "subscribers (N)",
        y_label: "ms",
        log_x: true,
        log_y: true,
        series: by_label(&|r| r.last.p99),
    };
    std::fs::write(plots.join("fanout-latency.svg"), latency.svg())?;
    let cpu = Chart {
        title: "Server CPU per delivered message",
        x_label: "subscribers (N)",
        y_label: "µs",
        log_x: true,
        log_y: false,
        series: by_label(&|r| r.burst.server_us_per_delivery),
    };
    std::fs::write(plots.join("fanout-cpu.svg"), cpu.svg())?;
    let _ = writeln!(
        md,
        "![p99 latency against N]({stem}/fanout-latency.svg)\n![CPU per delivery against N]({stem}/fanout-cpu.svg)\n"
    );
    Ok(())
}

/// The server's CPU per delivery less what the edits themselves cost it: at N = 1
/// each delivery is one edit, so that row's figure is the cost of an edit (command,
/// cache, outbox) plus one delivery; spread over N deliveries it is taken off.
fn fanout_only(results: &Results, label: &str, r: &FanoutResult) -> Option<f64> {
    if r.subscribers <= 1 {
        return None;
    }
    let (_, single) = results.fanout.iter().find(|(l, f)| l == label && f.subscribers == 1)?;
    let per_edit = single.burst.server_us_per_delivery;
    Some((r.burst.server_us_per_delivery - per_edit / r.subscribers as f64).max(0.0))
}

fn writes(md: &mut String, results: &Results, plots: &Path, stem: &str) -> anyhow::Result<()> {
    if results.writes.is_empty() {
        return Ok(());
    }
    let _ = writeln!(md, "## 2. Sustained writes over many scopes\n");
    let _ = writeln!(
        md,
        "Chat messages sent on a fixed schedule (open loop) over the scopes, one socket per scope (WebSocket) or a pool \
         of connections (HTTP). Outbox lag is cache commit -> PostgreSQL commit of exactly these writes (the server's \
         histogram, read before and after). A rate is sustained when writes were acknowledged at 95% of it or more and \
         PostgreSQL had all of them within 2 s of the last. Hocuspocus gets the same schedule over its WebSockets, a \
         Yjs update per write into one document per scope: its acknowledgement is the sync status it answers once it \
         applied the update in memory, and its lag is acknowledgement -> the update's id seen in the document row it \
         stored (read back every 20 ms, so good to about that). Hocuspocus stores a document 2 s after its last change \
         and at least every 10 s while it keeps changing (its defaults): at these rates every document changes more \
         often than every 2 s, so its lag is mostly that 10 s, and its catch-up the 2 s (allowed on top of the 2 s). \
         boardsync's lag is timed in the server from the cache's commit, Hocuspocus' from the acknowledgement \
         reaching the generator (later by the reply's trip). \
         Zero: one client per scope pushing CRUD inserts; zero-cache acknowledges an insert once it committed it in \
         PostgreSQL, so there is no lag after the acknowledgement to measure (as for boardsync's PostgreSQL \
         adapter).\n"
    );
    let _ = writeln!(
        md,
        "| system | via | scopes | target /s | acknowledged /s | command p50 / p99 ms | lag p50 / p99 ms | caught up after ms | sustained | CPU (cores) |\n|---|---|---|---|---|---|---|---|---|---|"
    );
    // (The runs with one shard and two are section 7's.)
    for (label, r) in results.writes.iter().filter(|(label, _)| !is_shard_run(label)) {
        for s in &r.steps {
            let lag = match (s.lag_p50_ms, s.lag_p99_ms) {
                (Some(a), Some(b)) => format!("{} / {}", ms(a), ms(b)),
                _ => "none: in PostgreSQL when acknowledged".into(),
            };
            let _ = writeln!(
                md,
                "| {label} | {:?} | {} | {} | {} | {} / {} | {lag} | {} | {} | {} |",
                r.via,
                r.scopes,
                thousands(s.target_per_sec),
                thousands(s.achieved_per_sec),
                ms(s.command.p50),
                ms(s.command.p99),
                s.catch_up_ms.map_or("–".into(), thousands),
                if s.is_sustained() { "yes" } else { "no" },
                cpu_summary(&s.cpu)
            );
        }
    }
    md.push('\n');
    // boardsync against each peer, over the same transport.
    for (peer_label, peer) in results.writes.iter().filter(|(_, r)| is_peer(&r.target)) {
        let ours =
            results.writes.iter().filter(|(label, r)| !is_peer(&r.target) && r.via == peer.via && !is_shard_run(label));
        for (label, ours) in ours {
            let at_1000 =
                |r: &WritesResult| r.steps.iter().find(|s| s.target_per_sec == 1000.0).and_then(|s| s.lag_p99_ms);
            let sustained_of = |r: &WritesResult| {
                r.sustained_per_sec().map_or("none of the rates tried".to_string(), |v| format!("{} /s", thousands(v)))
            };
            let sustained = match (ours.sustained_per_sec(), peer.sustained_per_sec()) {
                (Some(a), Some(b)) => {
                    format!("sustained {} against {} /s ({})", thousands(a), thousands(b), ratio(a, b))
                }
                _ => format!("sustained {} against {}", sustained_of(ours), sustained_of(peer)),
            };
            let lag = match (at_1000(ours), at_1000(peer)) {
                (Some(a), Some(b)) => format!("lag p99 at 1,000/s {} against {} ms ({})", ms(a), ms(b), ratio(a, b)),
                (None, Some(_)) if ours.steps.iter().all(|s| s.lag_p99_ms.is_none()) => {
                    "lag: none for boardsync, in PostgreSQL when acknowledged".into()
                }
                _ => "lag at 1,000/s: not both measured".into(),
            };
            let _ = writeln!(md, "- {label} / {peer_label}, {:?}: {sustained}; {lag}", peer.via);
        }
    }
    md.push('\n');
    let mut lag_series = Vec::new();
    let mut command_series = Vec::new();
    for (label, r) in results.writes.iter().filter(|(label, _)| !is_shard_run(label)) {
        let name = format!("{label}, {:?}", r.via);
        let lag: Vec<(f64, f64)> =
            r.steps.iter().filter_map(|s| s.lag_p99_ms.map(|lag| (s.target_per_sec, lag))).collect();
        if !lag.is_empty() {
            lag_series.push(Series { name: name.clone(), points: lag });
        }
        command_series
            .push(Series { name, points: r.steps.iter().map(|s| (s.target_per_sec, s.command.p99)).collect() });
    }
    let chart = Chart {
        title: "Outbox lag p99 against write rate",
        x_label: "writes/s",
        y_label: "ms",
        log_x: true,
        log_y: true,
        series: lag_series,
    };
    std::fs::write(plots.join("writes-lag.svg"), chart.svg())?;
    let chart = Chart {
        title: "Command p99 against write rate",
        x_label: "writes/s",
        y_label: "ms",
        log_x: true,
        log_y: true,
        series: command_series,
    };
    std::fs::write(plots.join("writes-command.svg"), chart.svg())?;
    let _ = writeln!(
        md,
        "![lag against rate]({stem}/writes-lag.svg)\n![command latency against rate]({stem}/writes-command.svg)\n"
    );
    Ok(())
}

fn ceilings(md: &mut String, results: &Results) {
    if results.raw.is_empty() {
        return;
    }
    let _ = writeln!(md, "## Ceilings: the chat module's reducers called directly\n");
    let _ = writeln!(
        md,
        "On the same SpacetimeDB server, in the same run, on a database of its own: `apply` (what a chat `send` runs) \
         called pipelined on one connection by the module's owner, and `warm_batch` with batches of rows, each \
         channel's claimed first as boardsync's warm-up does: once with rows new to the cache, then the same rows \
         again, held already (an exact duplicate is a no-op insert). What boardsync's sustained writes and warm-up \
         are held against.\n"
    );
    let _ = writeln!(
        md,
        "| configuration | apply calls/s | warm rows/s, new rows (rows per call) | warm rows/s, rows held already | CPU during the apply calls (cores) |\n|---|---|---|---|---|"
    );
    for (label, r) in &results.raw {
        let again = if r.rewarm_rows_per_sec > 0.0 { thousands(r.rewarm_rows_per_sec) } else { "–".into() };
        let _ = writeln!(
            md,
            "| {label} | {} ({} failed) | {} ({}) | {again} | {} |",
            thousands(r.calls_per_sec),
            r.failed,
            thousands(r.warm_rows_per_sec),
            r.warm_batch,
            cpu_summary(&r.calls_cpu)
        );
    }
    md.push('\n');
}

fn warmup(md: &mut String, results: &Results) {
    if results.warmup.is_empty() {
        return;
    }
    let _ = writeln!(md, "## 3 and 5. Warm-up and cold start\n");
    let _ = writeln!(
        md,
        "Chat history written straight into PostgreSQL, then the server started: cold start is process start -> every \
         scope warm, every row new to the cache. Then one re-warm of the whole domain (rows/s): its rows are in the \
         cache already, as after a cache restart that kept its data, so each is a no-op insert; it is held against the \
         reducer's rate for such rows.\n"
    );
    let _ = writeln!(
        md,
        "| configuration | scopes | rows | cold start s | re-warm s | rows/s | reading PostgreSQL / loading the cache (ms, summed over scopes) | CPU during the re-warm (cores) |\n|---|---|---|---|---|---|---|---|"
    );
    for (label, r) in &results.warmup {
        let _ = writeln!(
            md,
            "| {label} | {} | {} | {:.1} | {:.1} | {} | {} / {} | {} |",
            thousands(r.scopes as f64),
            thousands(r.rows as f64),
            r.cold_start_seconds,
            r.rewarm_seconds,
            thousands(r.rewarm_rows_per_sec),
            thousands(r.read_postgres_ms as f64),
            thousands(r.load_cache_ms as f64),
            cpu_summary(&r.rewarm_cpu)
        );
    }
    md.push('\n');
}

/// Several nodes: live events across nodes (from the fan-out rows written through
/// another node) and drainer failover.
fn nodes(md: &mut String, results: &Results) {
    let across: Vec<&(String, FanoutResult)> =
        results.fanout.iter().filter(|(label, _)| label.contains(ACROSS_NODES)).collect();
    if across.is_empty() && results.failover.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "## 6. Several nodes
"
    );
    if !across.is_empty() {
        let _ = writeln!(
            md,
            "Live events across nodes: the writer's socket on one node, the N subscribers on another (both on one \
             PostgreSQL and one SpacetimeDB), beside the same workload on one node.\n"
        );
        let _ = writeln!(
            md,
            "| configuration | N | last subscriber p50 ms | p99 ms | same node p50 ms | same node p99 ms |\n|---|---|---|---|---|---|"
        );
        for (label, r) in across {
            let same_label = label.split(ACROSS_NODES).next().unwrap_or_default();
            let same = results.fanout.iter().find(|(l, s)| l == same_label && s.subscribers == r.subscribers);
            let (same_p50, same_p99) =
                same.map_or(("–".into(), "–".into()), |(_, s)| (ms(s.last.p50), ms(s.last.p99)));
            let _ = writeln!(
                md,
                "| {label} | {} | {} | {} | {same_p50} | {same_p99} |",
                thousands(r.subscribers as f64),
                ms(r.last.p50),
                ms(r.last.p99)
            );
        }
        md.push('\n');
    }
    let mut by_label: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for (label, r) in &results.failover {
        by_label.entry(label).or_default().push(r.takeover_ms);
    }
    if !by_label.is_empty() {
        let _ = writeln!(
            md,
            "Drainer failover: two nodes; the one draining every outbox is killed (`kill -9`); the time until the \
             other drains every outbox (`/health`), with the default 1 s poll.\n"
        );
        let _ = writeln!(md, "| configuration | kills | median ms | max ms |\n|---|---|---|---|");
        for (label, mut times) in by_label {
            times.sort_by(f64::total_cmp);
            let (median, max) = (crate::stats::quantile(&times, 0.5), times.last().copied().unwrap_or(f64::NAN));
            let _ = writeln!(md, "| {label} | {} | {} | {} |", times.len(), thousands(median), thousands(max));
        }
        md.push('\n');
    }
}

/// What the label of sustained writes with one SpacetimeDB server, and with two, ends with.
pub const ONE_SHARD: &str = ", 1 shard";
pub const TWO_SHARDS: &str = ", 2 shards";

fn is_shard_run(label: &str) -> bool {
    label.ends_with(ONE_SHARD) || label.ends_with(TWO_SHARDS)
}

fn shards(md: &mut String, results: &Results) {
    let sharded: Vec<&(String, WritesResult)> =
        results.writes.iter().filter(|(label, _)| is_shard_run(label)).collect();
    if sharded.is_empty() && results.scopes.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "## 7. Shards, and the scopes in use
"
    );
    if !sharded.is_empty() {
        let _ = writeln!(
            md,
            "Sustained writes (as in section 2, over WebSockets) with every scope on one SpacetimeDB server, and with \
             the scopes spread over two (each its own process on this same machine, so the two share its cores).\n"
        );
        let _ = writeln!(
            md,
            "| configuration | scopes | sustained /s | lag p99 at 1,000/s ms | CPU at the top sustained rate (cores) |\n|---|---|---|---|---|"
        );
        for (label, r) in &sharded {
            let top = r.sustained_per_sec();
            let at_1000 = r.steps.iter().find(|s| s.target_per_sec == 1000.0).and_then(|s| s.lag_p99_ms);
            let cpu = top
                .and_then(|top| r.steps.iter().find(|s| s.target_per_sec == top))
                .map_or("–".into(), |s| cpu_summary(&s.cpu));
            let _ = writeln!(
                md,
                "| {label} | {} | {} | {} | {cpu} |",
                r.scopes,
                top.map_or("none of the rates tried".into(), thousands),
                at_1000.map_or("–".into(), ms)
            );
        }
        let top = |suffix: &str| {
            sharded.iter().find(|(label, _)| label.ends_with(suffix)).and_then(|(_, r)| r.sustained_per_sec())
        };
        if let (Some(one), Some(two)) = (top(ONE_SHARD), top(TWO_SHARDS)) {
            let _ = writeln!(md, "\nTwo shards sustain {:.2}x what one does (the goal is close to 2x).", two / one);
        }
        md.push('\n');
    }
    if !results.scopes.is_empty() {
        let _ = writeln!(
            md,
            "A node's resident memory with many chat channels warm in the cache and few of them in use: once every \
             channel is warm, then once the first N of them have been read (a snapshot each). `active`: the node \
             holds only the rows of the scopes in use on it (the default); `all`: every scope's rows.\n"
        );
        let _ = writeln!(
            md,
            "| configuration | subscriptions | scopes | rows | all warm: MiB | N read | then: MiB | scopes held |\n|---|---|---|---|---|---|---|---|"
        );
        for (label, r) in &results.scopes {
            let _ = writeln!(
                md,
                "| {label} | {} | {} | {} | {:.1} | {} | {:.1} | {} |",
                r.subscriptions,
                thousands(r.scopes as f64),
                thousands(r.rows as f64),
                r.rss_warm_kib as f64 / 1024.0,
                thousands(r.active as f64),
                r.rss_active_kib as f64 / 1024.0,
                r.subscribed_scopes.map_or("all".into(), |n| thousands(n as f64))
            );
        }
        md.push('\n');
    }
}

/// What the label of a fan-out written through another node carries.
pub const ACROSS_NODES: &str = ", written through another node";

fn connections(md: &mut String, results: &Results, plots: &Path, stem: &str) -> anyhow::Result<()> {
    if results.connections.is_empty() {
        return Ok(());
    }
    let _ = writeln!(md, "## 4. Idle connections\n");
    let _ = writeln!(md, "Idle sockets over 100 scopes, opened in steps; server memory is its resident set after each step, less the resident set before the first socket. boardsync's sockets join their scope's presence, as the apps' do.\n");
    let _ =
        writeln!(md, "| system | sockets | server RSS MiB | KiB per socket | opening took s |\n|---|---|---|---|---|");
    let mut series = Vec::new();
    for (label, r) in &results.connections {
        for s in &r.steps {
            let _ = writeln!(
                md,
                "| {label} | {} | {:.1} | {:.2} | {:.1} |",
                thousands(s.sockets as f64),
                s.rss_bytes as f64 / 1048576.0,
                s.bytes_per_socket / 1024.0,
                s.open_seconds
            );
        }
        if let Some(stopped) = &r.stopped_by {
            let _ = writeln!(md, "| {label} | stopped | {stopped} | | |");
        }
        series.push(Series {
            name: label.clone(),
            points: r.steps.iter().map(|s| (s.sockets as f64, s.bytes_per_socket / 1024.0)).collect(),
        });
    }
    md.push('\n');
    let chart = Chart {
        title: "Server memory per idle socket",
        x_label: "sockets",
        y_label: "KiB",
        log_x: false,
        log_y: false,
        series,
    };
    std::fs::write(plots.join("connections-memory.svg"), chart.svg())?;
    let _ = writeln!(md, "![memory per socket against sockets]({stem}/connections-memory.svg)\n");
    Ok(())
}
