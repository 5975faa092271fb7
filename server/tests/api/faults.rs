//! The fault suite: real processes crashed under a real load, then every write that
//! was answered 200 is looked for in PostgreSQL.
//!
//! Writers send chat messages over HTTP, half of them `durable`, and one more over
//! the live WebSocket; others create Kanban cards and add poll options; two more edit one
//! message each (cache and durable: versions climb through every fault), one moves a
//! whiteboard element, and a live client follows the edited messages, while each fault is
//! applied in turn to the real `boardsync` binary and its services: `kill -9` of
//! SpacetimeDB and a restart on the same data; `kill -9` of boardsync and a restart; a
//! simulated power loss of SpacetimeDB (`kill -9`, then the commit logs cut back to
//! their size a fsync interval earlier, then a restart); PostgreSQL stopped for a
//! while; and the power loss while PostgreSQL is down, when the cache holds the only
//! copy of the newest writes; and, with a second node draining every outbox while the
//! load goes through the first, `kill -9` of that drainer. The short form (one round of each) runs in `scripts/test`;
//! `BOARDSYNC_FAULT_ROUNDS` (set by `scripts/chaos`) runs more. Timings are printed,
//! never asserted.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use boardsync_testkit::private::{PrivatePostgres, PrivateSpacetime};
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{TestApp, DOMAINS};
use crate::process::Process;

/// SpacetimeDB 1.2 fsyncs its commit log every 500 ms and answers before: a power
/// loss takes what was written since the last fsync. Cut what the last 400 ms wrote.
const UNSYNCED: Duration = Duration::from_millis(400);
const WRITERS: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Fault {
    KillSpacetimedb,
    PowerLossSpacetimedb,
    StopPostgres,
    KillBoardsync,
    /// What a module's schema change forces, done the way `scripts/serve` does it, after
    /// the worst stop: `kill -9` of boardsync, `boardsync outbox drain`, the cache
    /// databases cleared and republished, boardsync started again.
    ResetCache,
    /// The hardest case: PostgreSQL is down, so the cache holds the only copy of the
    /// latest writes, when the cache loses power.
    PowerLossWhilePostgresDown,
    /// A second node drains every outbox while the load goes through the first; the
    /// second is killed (`kill -9`, mid-batch as it may be), and the first takes the
    /// drainer leases over.
    KillDrainer,
}

const FAULTS: [Fault; 7] = [
    Fault::KillSpacetimedb,
    Fault::PowerLossSpacetimedb,
    Fault::StopPostgres,
    Fault::KillBoardsync,
    Fault::ResetCache,
    Fault::PowerLossWhilePostgresDown,
    Fault::KillDrainer,
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Mode {
    Cache,
    Durable,
    /// Over the live WebSocket, both durabilities.
    WebSocket,
    /// Kanban cards, cache durability.
    KanbanCache,
    /// Poll options, durable.
    PollDurable,
}

const MODES: [Mode; 5] = [Mode::Cache, Mode::Durable, Mode::WebSocket, Mode::KanbanCache, Mode::PollDurable];

/// A write answered 200: which one, and during which fault's round.
struct Acked {
    id: Uuid,
    text: String,
    mode: Mode,
    fault: Fault,
}

struct Load {
    acked: Mutex<Vec<Acked>>,
    /// The editing writers' last acknowledged edit: (message, n of "edit n").
    edits: Mutex<Vec<(Uuid, u64)>>,
    /// The mover's last acknowledged position (x) of its whiteboard element.
    moved: Mutex<Option<(Uuid, f64)>>,
    fault: Mutex<Fault>,
    stop: AtomicBool,
}

/// Sends a command to `domain`'s `scope`; `None` when nothing answered.
async fn try_at(app: &TestApp, domain: &str, scope: &str, command: serde_json::Value) -> Option<u16> {
    let request =
        app.http.post(format!("{}/api/{domain}/{scope}", app.address)).bearer_auth(app.token("alice")).json(&command);
    let response = request.timeout(Duration::from_secs(20)).send().await.ok()?;
    let status = response.status().as_u16();
    // Faults make writes time out or answer 503; a 4xx means the load itself is
    // refused (a domain limit, say), and would silently stop testing that writer.
    if (400..500).contains(&status) {
        panic!("{domain}: the load's {command} was refused: {}", response.text().await.unwrap_or_default());
    }
    Some(status)
}

/// Sends chat messages over the live WebSocket (cache durability), reconnecting when
/// the server goes away; a write counts as acknowledged when its reply says `ok`.
async fn write_over_websocket(app: &TestApp, load: &Load) {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message as Frame;
    let url = format!("ws://127.0.0.1:{}/api/chat/faults/live?token={}", app.port, app.token("alice"));
    let mut n = 0u64;
    while !load.stop.load(Ordering::Relaxed) {
        let Ok(Ok((mut socket, _))) =
            tokio::time::timeout(Duration::from_secs(5), tokio_tungstenite::connect_async(&url)).await
        else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        'session: while !load.stop.load(Ordering::Relaxed) {
            n += 1;
            let (id, text) = (Uuid::new_v4(), format!("ws #{n}"));
            let fault = *load.fault.lock().unwrap();
            // Both durabilities over the socket too.
            let durability = if n % 2 == 0 { "durable" } else { "cache" };
            let command = json!({ "type": "send", "id": id, "text": text, "ref": n, "durability": durability });
            if socket.send(Frame::text(command.to_string())).await.is_err() {
                break 'session;
            }
            // Frames until this command's reply (events and resyncs pass by).
            loop {
                let frame = match tokio::time::timeout(Duration::from_secs(20), socket.next()).await {
                    Ok(Some(Ok(Frame::Text(text)))) => text,
                    Ok(Some(Ok(_))) => continue,
                    _ => break 'session,
                };
                let frame: serde_json::Value = serde_json::from_str(&frame).unwrap_or_default();
                if frame["kind"] == "reply" && frame["ref"] == json!(n) {
                    if frame["ok"] == true {
                        load.acked.lock().unwrap().push(Acked { id, text, mode: Mode::WebSocket, fault });
                    } else {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    break;
                }
            }
        }
    }
}

/// Creates Kanban cards (cache durability) in one column of board `faults`, or adds
/// poll options (durable) to poll `faults`: every domain takes writes through the faults.
async fn write_other_domain(app: &TestApp, load: &Load, mode: Mode) {
    let column = Uuid::new_v4();
    if mode == Mode::KanbanCache {
        let create = json!({ "type": "create_column", "id": column, "name": "faults" });
        while try_at(app, "kanban", "faults", create.clone()).await != Some(200) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let mut n = 0u64;
    while !load.stop.load(Ordering::Relaxed) {
        n += 1;
        let id = Uuid::new_v4();
        let text = format!("{mode:?} #{n}");
        let fault = *load.fault.lock().unwrap();
        let (domain, command) = match mode {
            Mode::KanbanCache => {
                ("kanban", json!({ "type": "create_card", "id": id, "column": column, "title": text }))
            }
            _ => ("poll", json!({ "type": "add_option", "id": id, "label": text, "durability": "durable" })),
        };
        match try_at(app, domain, "faults", command).await {
            Some(200) => load.acked.lock().unwrap().push(Acked { id, text, mode, fault }),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// What a live client of the `edits` channel believes each message is: `(text, version)`.
type Belief = Arc<Mutex<HashMap<Uuid, (String, i64)>>>;

/// Takes a message's state into `belief` unless it already holds a newer version.
fn believe(belief: &Belief, message: &serde_json::Value) {
    let (Some(id), Some(text), Some(version)) = (
        message["id"].as_str().and_then(|id| Uuid::parse_str(id).ok()),
        message["text"].as_str(),
        message["version"].as_i64(),
    ) else {
        return;
    };
    let mut belief = belief.lock().unwrap();
    if belief.get(&id).is_none_or(|(_, known)| version >= *known) {
        belief.insert(id, (text.to_string(), version));
    }
}

/// Refetches the `edits` snapshot into `belief`; false when the server did not answer.
async fn refetch(app: &TestApp, belief: &Belief) -> bool {
    let request = app.http.get(format!("{}/api/chat/edits", app.address)).bearer_auth(app.token("bob"));
    let Ok(response) = request.timeout(Duration::from_secs(10)).send().await else { return false };
    let Ok(page) = response.json::<serde_json::Value>().await else { return false };
    let Some(items) = page["items"].as_array() else { return false };
    items.iter().for_each(|message| believe(belief, message));
    true
}

/// A live client as an app would be one: events over the WebSocket, the snapshot again
/// after a reconnect or a `resync`, reconnecting whenever the server goes away.
async fn watch(app: &TestApp, belief: Belief) {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message as Frame;
    let url = format!("ws://127.0.0.1:{}/api/chat/edits/live?token={}", app.port, app.token("bob"));
    loop {
        let Ok(Ok((mut socket, _))) =
            tokio::time::timeout(Duration::from_secs(5), tokio_tungstenite::connect_async(&url)).await
        else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let mut stale = true;
        loop {
            if stale {
                stale = !refetch(app, &belief).await;
            }
            let frame = match tokio::time::timeout(Duration::from_millis(500), socket.next()).await {
                Ok(Some(Ok(Frame::Text(text)))) => text,
                Ok(Some(Ok(_))) | Err(_) => continue,
                Ok(Some(Err(_)) | None) => break,
            };
            let frame: serde_json::Value = serde_json::from_str(&frame).unwrap_or_default();
            match frame["kind"].as_str() {
                Some("event") => believe(&belief, &frame["event"]["message"]),
                Some("resync") => stale = true,
                _ => {}
            }
        }
    }
}

/// Edits one message over and over (its version climbs through every fault); the
/// last acknowledged edit, or a later one, must be what PostgreSQL and the cache hold.
async fn edit(app: &TestApp, load: &Load, durable: bool) {
    let id = Uuid::new_v4();
    while try_at(app, "chat", "edits", json!({ "type": "send", "id": id, "text": "edit 0" })).await != Some(200) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let slot = {
        let mut edits = load.edits.lock().unwrap();
        edits.push((id, 0));
        edits.len() - 1
    };
    let mut n = 0u64;
    while !load.stop.load(Ordering::Relaxed) {
        n += 1;
        let mut command = json!({ "type": "edit", "id": id, "text": format!("edit {n}") });
        if durable {
            command["durability"] = json!("durable");
        }
        match try_at(app, "chat", "edits", command).await {
            Some(200) => load.edits.lock().unwrap()[slot].1 = n,
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Moves one whiteboard element to x = 1, 2, 3, ... (absolute positions).
async fn mover(app: &TestApp, load: &Load) {
    let id = Uuid::new_v4();
    let add = json!({ "type": "add", "id": id, "kind": "rect", "x": 0, "y": 0 });
    while try_at(app, "whiteboard", "faults", add.clone()).await != Some(200) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    *load.moved.lock().unwrap() = Some((id, 0.0));
    let mut x = 0.0;
    while !load.stop.load(Ordering::Relaxed) {
        x += 1.0;
        let command = json!({ "type": "move", "to": [{ "id": id, "x": x, "y": 0 }] });
        match try_at(app, "whiteboard", "faults", command).await {
            Some(200) => *load.moved.lock().unwrap() = Some((id, x)),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Sends a command to the chat scope `faults`; `None` when nothing answered.
async fn try_command(app: &TestApp, command: serde_json::Value) -> Option<u16> {
    try_at(app, "chat", "faults", command).await
}

async fn write(app: &TestApp, load: &Load, writer: usize) {
    let mut i = 0u64;
    while !load.stop.load(Ordering::Relaxed) {
        i += 1;
        // Writers keep to one durability, so a durable writer waiting for PostgreSQL
        // does not hold back the cache writes.
        let (id, mode) = (Uuid::new_v4(), if writer % 2 == 0 { Mode::Cache } else { Mode::Durable });
        let text = format!("w{writer} #{i}");
        let mut command = json!({ "type": "send", "id": id, "text": text });
        if mode == Mode::Durable {
            command["durability"] = json!("durable");
        }
        let fault = *load.fault.lock().unwrap();
        match try_command(app, command).await {
            Some(200) => {
                load.acked.lock().unwrap().push(Acked { id, text, mode, fault });
            }
            // Refused or unanswered: not acknowledged, so not promised.
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// The commit-log segments of every database on the server, with their sizes.
fn segments(data: &Path) -> HashMap<PathBuf, u64> {
    let mut found = HashMap::new();
    let Ok(replicas) = std::fs::read_dir(data.join("replicas")) else { return found };
    for replica in replicas.flatten() {
        let Ok(logs) = std::fs::read_dir(replica.path().join("clog")) else { continue };
        for log in logs.flatten() {
            let path = log.path();
            if path.to_string_lossy().ends_with(".stdb.log") {
                if let Ok(meta) = log.metadata() {
                    found.insert(path, meta.len());
                }
            }
        }
    }
    found
}

/// `kill -9`, then every commit log cut back to its size `UNSYNCED` ago: what a power
/// loss leaves of writes SpacetimeDB had answered but not yet fsynced.
async fn power_loss(stdb: &PrivateSpacetime) -> u64 {
    let data = stdb.data_dir();
    let mut history: Vec<(Instant, HashMap<PathBuf, u64>)> = Vec::new();
    let sampling = Instant::now();
    while sampling.elapsed() < UNSYNCED + Duration::from_millis(200) {
        history.push((Instant::now(), segments(&data)));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stdb.kill();
    let cut_at = Instant::now() - UNSYNCED;
    let before = history.iter().rev().find(|(at, _)| *at <= cut_at).map(|(_, sizes)| sizes.clone()).unwrap_or_default();
    let mut cut = 0;
    for (path, now) in segments(&data) {
        let then = before.get(&path).copied().unwrap_or(0);
        if now > then {
            let file = std::fs::OpenOptions::new().write(true).open(&path).expect("open a commit log");
            file.set_len(then).expect("cut the commit log");
            cut += now - then;
        }
    }
    cut
}

/// Waits until a write goes through again; returns how long that took.
/// Whether `app` drains every domain's outbox (`/health`).
async fn drains_every_outbox(app: &TestApp) -> bool {
    let Ok(response) = app.http.get(format!("{}/health", app.address)).send().await else { return false };
    let health: serde_json::Value = response.json().await.unwrap_or_default();
    DOMAINS.iter().all(|domain| health["domains"][domain]["drains_outbox"] == true)
}

/// Waits until `app` drains every outbox; how long it took.
async fn until_it_drains_every_outbox(app: &TestApp) -> Duration {
    let started = Instant::now();
    while !drains_every_outbox(app).await {
        assert!(started.elapsed() < Duration::from_secs(30), "{} took no drainer lease within 30 s", app.address);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

async fn recovered(app: &TestApp) -> Duration {
    let started = Instant::now();
    for _ in 0..600 {
        let probe = json!({ "type": "send", "id": Uuid::new_v4(), "text": "probe" });
        if try_command(app, probe).await == Some(200) {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no write went through within 30 s of the fault");
}

#[actix_web::test]
async fn no_acknowledged_write_is_lost_to_crashes_power_loss_or_postgres_outages() {
    let rounds: usize = std::env::var("BOARDSYNC_FAULT_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(1);
    let postgres = PrivatePostgres::start();
    let stdb = PrivateSpacetime::start().await;
    for domain in DOMAINS {
        stdb.publish("faults", domain, false).await;
    }
    // The release of a deployment: the real binary, in a process of its own.
    let stdb_url = stdb.url();
    // Patient warm-up waits; and no domain limit on how many options or cards the
    // writers add (the suite tests durability, not limits).
    let patient = [
        ("BOARDSYNC__FRAMEWORK__WARM_WAIT_MS", "15000"),
        ("BOARDSYNC__DOMAINS__POLL__MAX_OPTIONS_PER_POLL", "100000000"),
        ("BOARDSYNC__DOMAINS__KANBAN__MAX_CARDS_PER_BOARD", "100000000"),
    ];
    let (mut boardsync, app) =
        Process::start(&postgres.url("postgres"), (&stdb_url, &stdb.token, "faults"), &patient).await;
    let app = Arc::new(app);
    app.wait_for_cache().await;
    app.create_scope("chat", "faults").await;
    app.create_scope("chat", "edits").await;
    app.create_scope("whiteboard", "faults").await;
    app.create_scope("kanban", "faults").await;
    app.create_scope("poll", "faults").await;
    let load = Arc::new(Load {
        acked: Mutex::new(Vec::new()),
        edits: Mutex::new(Vec::new()),
        moved: Mutex::new(None),
        fault: Mutex::new(Fault::KillSpacetimedb),
        stop: AtomicBool::new(false),
    });
    let mut writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let (app, load) = (app.clone(), load.clone());
            tokio::spawn(async move { write(&app, &load, writer).await })
        })
        .collect();
    for durable in [false, true] {
        let (app, load) = (app.clone(), load.clone());
        writers.push(tokio::spawn(async move { edit(&app, &load, durable).await }));
    }
    for mode in [Mode::KanbanCache, Mode::PollDurable] {
        let (app, load) = (app.clone(), load.clone());
        writers.push(tokio::spawn(async move { write_other_domain(&app, &load, mode).await }));
    }
    let belief: Belief = Arc::new(Mutex::new(HashMap::new()));
    let (watch_app, watch_belief) = (app.clone(), belief.clone());
    let watcher = tokio::spawn(async move { watch(&watch_app, watch_belief).await });
    let (socket_app, socket_load) = (app.clone(), load.clone());
    writers.push(tokio::spawn(async move { write_over_websocket(&socket_app, &socket_load).await }));
    let (mover_app, mover_load) = (app.clone(), load.clone());
    writers.push(tokio::spawn(async move { mover(&mover_app, &mover_load).await }));

    let mut recovery: HashMap<Fault, Vec<Duration>> = HashMap::new();
    for _ in 0..rounds {
        for fault in FAULTS {
            *load.fault.lock().unwrap() = fault;
            tokio::time::sleep(Duration::from_millis(800)).await;
            match fault {
                Fault::KillSpacetimedb => {
                    stdb.kill();
                    stdb.start_again().await;
                }
                Fault::PowerLossSpacetimedb => {
                    let cut = power_loss(&stdb).await;
                    eprintln!("power loss: cut {cut} bytes of commit log");
                    stdb.start_again().await;
                }
                Fault::StopPostgres => {
                    postgres.stop();
                    tokio::time::sleep(Duration::from_secs(if rounds > 1 { 10 } else { 3 })).await;
                    postgres.start_again();
                }
                Fault::KillBoardsync => {
                    boardsync.kill();
                    boardsync.start_again(&app).await;
                }
                Fault::ResetCache => {
                    boardsync.kill();
                    let drained = boardsync.run(&["outbox", "drain"]);
                    assert!(drained.status.success(), "{}", String::from_utf8_lossy(&drained.stderr));
                    for domain in DOMAINS {
                        stdb.publish("faults", domain, true).await;
                    }
                    boardsync.start_again(&app).await;
                }
                Fault::PowerLossWhilePostgresDown => {
                    postgres.stop();
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    let cut = power_loss(&stdb).await;
                    eprintln!("power loss with PostgreSQL down: cut {cut} bytes of commit log");
                    stdb.start_again().await;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    postgres.start_again();
                }
                Fault::KillDrainer => {
                    // The second node gets the leases while the first is down for a
                    // moment (a kill -9 of its own), then the load goes on through the
                    // first while the second drains, and the second is killed.
                    let env: Vec<(&str, &str)> =
                        patient.iter().copied().chain([("BOARDSYNC__SERVER__NODE_NAME", "drainer")]).collect();
                    let (mut drainer, drainer_app) =
                        Process::start(&postgres.url("postgres"), (&stdb_url, &stdb.token, "faults"), &env).await;
                    boardsync.kill();
                    until_it_drains_every_outbox(&drainer_app).await;
                    boardsync.start_again(&app).await;
                    tokio::time::sleep(Duration::from_millis(800)).await;
                    drainer.kill();
                    let took_over = until_it_drains_every_outbox(&app).await;
                    eprintln!("drainer killed: the other node drains every outbox {} ms later", took_over.as_millis());
                }
            }
            recovery.entry(fault).or_default().push(recovered(&app).await);
        }
    }
    load.stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.unwrap();
    }

    // Everything acknowledged must reach PostgreSQL, once, with its text.
    let acked = std::mem::take(&mut *load.acked.lock().unwrap());
    let ids: Vec<Uuid> = acked.iter().map(|a| a.id).collect();
    let mut stored: HashMap<Uuid, String> = HashMap::new();
    for _ in 0..600 {
        let rows: Vec<(Uuid, String)> = sqlx::query_as(
            "SELECT id, text FROM chat_messages WHERE id = ANY($1)
             UNION ALL SELECT id, title FROM kanban_cards WHERE id = ANY($1)
             UNION ALL SELECT id, label FROM poll_options WHERE id = ANY($1)",
        )
        .bind(&ids)
        .fetch_all(&app.pool)
        .await
        .unwrap_or_default();
        stored = rows.into_iter().collect();
        if stored.len() == ids.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut report: HashMap<(Fault, Mode), (usize, usize)> = HashMap::new();
    for write in &acked {
        let counts = report.entry((write.fault, write.mode)).or_default();
        counts.0 += 1;
        if stored.get(&write.id) != Some(&write.text) {
            counts.1 += 1;
        }
    }
    eprintln!("fault suite, {rounds} round(s) of each fault, {WRITERS} writers:");
    eprintln!("  {:<22} {:<8} {:>9} {:>6} {:>12}", "round of", "mode", "acked", "lost", "recovery ms");
    let mut lost = 0;
    for fault in FAULTS {
        let times = &recovery[&fault];
        let worst = times.iter().max().map_or(0, |t| t.as_millis());
        for mode in MODES {
            let (count, missing) = report.get(&(fault, mode)).copied().unwrap_or_default();
            lost += missing;
            eprintln!("  {:<22} {:<8} {count:>9} {missing:>6} {worst:>12}", format!("{fault:?}"), format!("{mode:?}"));
        }
    }
    let duplicated: i64 =
        sqlx::query_scalar("SELECT count(*) - count(DISTINCT text) FROM chat_messages WHERE text <> 'probe'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    eprintln!("  duplicated texts in PostgreSQL: {duplicated}");
    assert_eq!(lost, 0, "acknowledged writes missing from PostgreSQL");
    assert_eq!(duplicated, 0);

    // Entities written over and over: PostgreSQL holds the last acknowledged state or a
    // later one (a write whose answer was lost may have gone through), and the cache
    // holds the same as PostgreSQL.
    app.wait_for_count("SELECT count(*) FROM chat_messages WHERE version = 0", 0).await;
    let edits = load.edits.lock().unwrap().clone();
    for (id, last_acked) in edits {
        let mut agreed = None;
        for _ in 0..200 {
            let stored: (String, i64) = sqlx::query_as("SELECT text, version FROM chat_messages WHERE id = $1")
                .bind(id)
                .fetch_one(&app.pool)
                .await
                .expect("the edited message is in PostgreSQL");
            let cached = cached_message(&app, id).await;
            if cached.as_ref() == Some(&stored) {
                agreed = Some(stored);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (text, version) = agreed.clone().expect("the cache and PostgreSQL agree on the edited message");
        let mut believed = None;
        for _ in 0..200 {
            believed = belief.lock().unwrap().get(&id).cloned();
            if believed == agreed {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(believed, agreed, "the live client ends on what PostgreSQL and the cache hold");
        let n: u64 = text.trim_start_matches("edit ").parse().unwrap();
        eprintln!("  edited message: last acknowledged edit {last_acked}, stored edit {n} at version {version}");
        assert!(n >= last_acked, "an acknowledged edit was lost: stored {n}, acknowledged {last_acked}");
    }
    let (element, last_x) = load.moved.lock().unwrap().expect("the mover placed its element");
    let (mut stored_x, mut cached_x) = (0.0, None);
    for _ in 0..200 {
        stored_x = sqlx::query_scalar("SELECT x FROM whiteboard_elements WHERE id = $1")
            .bind(element)
            .fetch_one(&app.pool)
            .await
            .unwrap();
        let board: serde_json::Value = app.snapshot("alice", "whiteboard", "faults").await;
        cached_x =
            board["items"].as_array().unwrap().iter().find(|e| e["id"] == json!(element)).map(|e| e["x"].clone());
        if cached_x == Some(json!(stored_x)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    watcher.abort();

    // Every message the cache serves of the busiest channel is what PostgreSQL holds.
    let mut mismatched = Vec::new();
    for _ in 0..200 {
        let page = app.get_as("alice", "/api/chat/faults?limit=200").await.json::<serde_json::Value>().await.unwrap();
        let cached: Vec<(Uuid, String, i64)> = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                let id = Uuid::parse_str(m["id"].as_str().unwrap()).unwrap();
                (id, m["text"].as_str().unwrap().to_string(), m["version"].as_i64().unwrap())
            })
            .collect();
        let ids: Vec<Uuid> = cached.iter().map(|(id, _, _)| *id).collect();
        let stored: HashMap<Uuid, (String, i64)> =
            sqlx::query_as::<_, (Uuid, String, i64)>("SELECT id, text, version FROM chat_messages WHERE id = ANY($1)")
                .bind(&ids)
                .fetch_all(&app.pool)
                .await
                .unwrap()
                .into_iter()
                .map(|(id, text, version)| (id, (text, version)))
                .collect();
        mismatched = cached
            .into_iter()
            .filter(|(id, text, version)| stored.get(id) != Some(&(text.clone(), *version)))
            .collect();
        if mismatched.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("  newest 200 cached messages differing from PostgreSQL: {}", mismatched.len());
    assert!(mismatched.is_empty(), "the cache serves what PostgreSQL does not hold: {mismatched:?}");
    eprintln!("  moved element: last acknowledged x {last_x}, stored x {stored_x}");
    assert_eq!(cached_x, Some(json!(stored_x)), "the cache and PostgreSQL agree on the moved element");
    assert!(stored_x >= last_x, "an acknowledged move was lost: stored {stored_x}, acknowledged {last_x}");
}

/// A message's `(text, version)` as the cache serves it.
async fn cached_message(app: &TestApp, id: Uuid) -> Option<(String, i64)> {
    let page: serde_json::Value = app.snapshot("alice", "chat", "edits").await;
    page["items"]
        .as_array()?
        .iter()
        .find(|m| m["id"] == json!(id))
        .map(|m| (m["text"].as_str().unwrap_or_default().to_string(), m["version"].as_i64().unwrap_or_default()))
}
