//! Several boardsync nodes on one PostgreSQL (and one cache): each a real process,
//! the way they run behind a load balancer. One of them drains each outbox; when it
//! dies another takes over, and every acknowledged write reaches PostgreSQL once.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use uuid::Uuid;

use boardsync_testkit::private::PrivateSpacetime;
use boardsync_testkit::{TestPostgres, TestSpacetime};

use crate::helpers::{
    spawn_app, spawn_app_on_spacetimedb, spawn_app_on_spacetimedb_with, spawn_app_with, use_spacetimedb, TestApp,
    DOMAINS,
};
use crate::process::Process;

/// The database and cache a first app made, for more nodes to join.
fn shared(first: &TestApp) -> (String, String, String, String) {
    (
        secrecy::ExposeSecret::expose_secret(&first.settings.database.url).to_string(),
        first.settings.spacetimedb.url.clone(),
        secrecy::ExposeSecret::expose_secret(&first.settings.spacetimedb.token).to_string(),
        first.settings.spacetimedb.database_prefix.clone(),
    )
}

async fn node(first: &TestApp, name: &str) -> (Process, TestApp) {
    let (database, url, token, prefix) = shared(first);
    let (process, app) =
        Process::start(&database, (&url, &token, &prefix), &[("BOARDSYNC__SERVER__NODE_NAME", name)]).await;
    if !url.is_empty() {
        app.wait_for_cache().await;
    }
    (process, app)
}

async fn drains(app: &TestApp) -> bool {
    let health: Value = app.get("/health").await.json().await.unwrap();
    health["domains"]["chat"]["drains_outbox"] == true
}

/// Waits (at most `limit`) until `app` drains the chat outbox; how long it took.
async fn until_it_drains(app: &TestApp, limit: Duration) -> Duration {
    let started = Instant::now();
    while !drains(app).await {
        assert!(started.elapsed() < limit, "{} did not take over the outbox within {limit:?}", app.address);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

async fn drainer(app: &TestApp) -> Value {
    let outbox: Value = app.get_as_admin("/api/admin/outbox").await.json().await.unwrap();
    outbox["domains"].as_array().unwrap().iter().find(|d| d["domain"] == "chat").unwrap()["drainer"].clone()
}

/// Sends a message through `app`, retrying as a client does while the node warms
/// the scope (each node warms a scope itself the first time it is used there).
async fn send(app: &TestApp, scope: &str, durability: &str) -> (Uuid, u16) {
    let id = Uuid::new_v4();
    let command = json!({ "type": "send", "id": id, "text": "through a node", "durability": durability });
    for _ in 0..20 {
        let response = app.command("alice", "chat", scope, command.clone()).await;
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        if status == 503 && body.contains("scope_warming") {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        if status != 200 {
            eprintln!("send through {}: {status} {body}", app.address);
        }
        return (id, status);
    }
    (id, 503)
}

/// A first app that only sets up and watches: it drains by a 60 s poll alone, so it
/// never asks for the lease within a test.
async fn watching_app() -> TestApp {
    spawn_app_on_spacetimedb_with(|settings| {
        settings.framework["outbox_push"] = json!(false);
        settings.framework["outbox_poll_interval_ms"] = json!(60_000);
    })
    .await
}

/// Writers sending to one scope through a node, one message after another each,
/// until stopped.
struct Traffic {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    writers: Vec<actix_web::rt::task::JoinHandle<Vec<Uuid>>>,
}

impl Traffic {
    fn start(app: &TestApp, scope: &'static str, writers: usize) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writers = (0..writers)
            .map(|_| {
                let (stop, app) = (stop.clone(), app.handle());
                actix_web::rt::spawn(async move {
                    let mut acknowledged = Vec::new();
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let (id, status) = send(&app, scope, "cache").await;
                        if status == 200 {
                            acknowledged.push(id);
                        }
                    }
                    acknowledged
                })
            })
            .collect();
        Self { stop, writers }
    }

    /// Stops the writers; the writes acknowledged.
    async fn stop(self) -> Vec<Uuid> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut acknowledged = Vec::new();
        for writer in self.writers {
            acknowledged.extend(writer.await.unwrap());
        }
        acknowledged
    }
}

#[actix_web::test]
async fn one_node_drains_the_outbox_and_another_takes_over_when_it_dies() {
    let first = watching_app().await;
    let (mut a, node_a) = node(&first, "node-a").await;
    first.create_scope("chat", "hall").await;
    // A takes the lease at its first drain; B, started after, does not get it.
    assert_eq!(send(&node_a, "hall", "cache").await.1, 200);
    until_it_drains(&node_a, Duration::from_secs(10)).await;
    let (_b, node_b) = node(&first, "node-b").await;
    assert_eq!(send(&node_b, "hall", "cache").await.1, 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!drains(&node_b).await, "two nodes drain one outbox");
    assert_eq!(drainer(&first).await, "node-a");
    assert_eq!(drainer(&node_b).await, "node-a", "every node's admin API names the drainer");

    // A durable write through B is in PostgreSQL once A has drained it, and B says so.
    let (durable, status) = send(&node_b, "hall", "durable").await;
    assert_eq!(status, 200, "a durable write through a node that does not drain");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM chat_messages WHERE id = $1")
        .bind(durable)
        .fetch_one(&first.pool)
        .await
        .unwrap();
    assert_eq!(stored, 1);

    // Writes through B go on while A is killed.
    let writer = {
        let node_b = node_b.handle();
        actix_web::rt::spawn(async move {
            let mut acknowledged = Vec::new();
            for _ in 0..120 {
                let (id, status) = send(&node_b, "hall", "cache").await;
                if status == 200 {
                    acknowledged.push(id);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            acknowledged
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.kill();
    let killed = Instant::now();
    let took_over = until_it_drains(&node_b, Duration::from_secs(30)).await;
    eprintln!("node-b took over the outbox {:?} after node-a was killed", killed.elapsed().max(took_over));
    let mut acknowledged = writer.await.unwrap();
    assert!(acknowledged.len() >= 100, "writes through B kept being acknowledged: {}", acknowledged.len());
    acknowledged.push(durable);
    let expected = acknowledged.len() as i64 + 2;
    first.wait_for_count("SELECT count(*) FROM chat_messages WHERE channel = 'hall'", expected).await;
    let stored: Vec<Uuid> =
        sqlx::query_scalar("SELECT id FROM chat_messages WHERE channel = 'hall'").fetch_all(&first.pool).await.unwrap();
    let stored: HashSet<Uuid> = stored.into_iter().collect();
    assert!(acknowledged.iter().all(|id| stored.contains(id)), "an acknowledged write is missing");
    assert_eq!(drainer(&first).await, "node-b");
    first
        .wait_for_count("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'boardsync drainer node-a'", 0)
        .await;
}

/// A client connected to one node gets the events of writes made through another.
async fn live_events_cross_nodes(first: TestApp) {
    let (_other, other) = node(&first, "node-other").await;
    first.create_scope("chat", "lobby").await;
    // Once the scope is warm on the first node (its warm-up ends with a resync to
    // the sockets open then), and the other has it too.
    let (earlier, status) = send(&first, "lobby", "cache").await;
    assert_eq!(status, 200);
    let (earlier_elsewhere, status) = send(&other, "lobby", "cache").await;
    assert_eq!(status, 200);
    let mut socket = first.live("alice", "chat", "lobby").await;
    let (id, status) = send(&other, "lobby", "cache").await;
    assert_eq!(status, 200);
    // The event itself (with the message's state), not a resync to refetch. (The
    // earlier writes' events may still be on their way across nodes.)
    loop {
        let frame = socket.next().await;
        assert_eq!(frame["kind"], "event", "{frame}");
        let seen = &frame["event"]["message"]["id"];
        if *seen == json!(id) {
            break;
        }
        assert!(*seen == json!(earlier) || *seen == json!(earlier_elsewhere), "{frame}");
    }
}

#[actix_web::test]
async fn live_events_cross_nodes_on_the_postgres_adapter() {
    live_events_cross_nodes(spawn_app().await).await;
}

#[actix_web::test]
async fn live_events_cross_nodes_on_the_spacetimedb_adapter() {
    live_events_cross_nodes(spawn_app_on_spacetimedb().await).await;
}

/// An outbox entry PostgreSQL refuses is set aside and acknowledged away like the
/// rest: its durable writer must not hear "in PostgreSQL" from that acknowledgement.
#[actix_web::test]
async fn a_durable_write_postgres_refused_is_not_answered_durable() {
    let app = spawn_app_on_spacetimedb_with(|settings| settings.spacetimedb.durable_timeout_ms = 2000).await;
    app.create_scope("chat", "general").await;
    sqlx::query("ALTER TABLE chat_messages ADD CONSTRAINT no_poison CHECK (text <> 'poison')")
        .execute(&app.pool)
        .await
        .unwrap();
    let command = json!({ "type": "send", "id": Uuid::new_v4(), "text": "poison", "durability": "durable" });
    let response = app.command("alice", "chat", "general", command).await;
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("not_yet_durable")), "{body}");
    app.wait_for_count("SELECT count(*) FROM outbox_dead_letters WHERE domain = 'chat'", 1).await;
}

/// Waits until `app`'s presence relay hears `nodes` other nodes.
async fn until_it_hears(app: &TestApp, nodes: u64) {
    let started = Instant::now();
    loop {
        let health: Value = app.get("/health").await.json().await.unwrap();
        if health["presence"]["relay_listening"] == true && health["presence"]["other_nodes"] == nodes {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{} hears no other node: {health}", app.address);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Presence crosses nodes: a connection on one node sees those on another join, set
/// their state and leave; a node that dies takes its connections with it, and one
/// that starts later learns who is already here.
#[actix_web::test]
async fn presence_crosses_nodes_and_a_dead_nodes_connections_leave() {
    let first = spawn_app_with(|settings| {
        settings.presence.node_heartbeat_ms = 200;
        settings.presence.node_timeout_ms = 3000;
    })
    .await;
    first.create_scope("whiteboard", "room").await;
    let mut alice = first.live("alice", "whiteboard", "room").await;
    assert_eq!(alice.next_presence().await["present"], json!([]));
    alice.set_presence(json!({ "tool": "pen" })).await;

    // A node started after alice joined learns of her from the first node's answer
    // to its hello.
    let (mut other_process, other) = node(&first, "node-other").await;
    until_it_hears(&other, 1).await;
    until_it_hears(&first, 1).await;
    let mut bob = other.live("bob", "whiteboard", "room").await;
    let snapshot = bob.next_presence().await;
    assert_eq!(snapshot["kind"], "presence_snapshot");
    assert_eq!(snapshot["present"].as_array().map(Vec::len), Some(1), "{snapshot}");
    assert_eq!(snapshot["present"][0]["user"], "alice");
    assert_eq!(snapshot["present"][0]["state"], json!({ "tool": "pen" }));
    let alice_connection = snapshot["present"][0]["connection"].clone();

    let joined = alice.next_presence().await;
    assert_eq!((joined["kind"].as_str(), joined["user"].as_str()), (Some("presence"), Some("bob")), "{joined}");
    let bob_connection = joined["connection"].clone();
    assert_ne!(alice_connection, bob_connection, "connections of two nodes are told apart");

    let cursor = json!({ "cursor": { "x": 3, "y": 4 } });
    bob.set_presence(cursor.clone()).await;
    let seen = alice.next_presence().await;
    assert_eq!(seen, json!({ "kind": "presence", "connection": bob_connection, "user": "bob", "state": cursor }));
    alice.set_presence(json!({ "tool": "eraser" })).await;
    let seen = bob.next_presence().await;
    assert_eq!((seen["user"].as_str(), &seen["state"]), (Some("alice"), &json!({ "tool": "eraser" })), "{seen}");

    // Every relay's sending connection is cut: each node sends all its connections
    // again, which those who knew them see no change in (no leave and join again).
    let senders =
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'boardsync presence sender'";
    sqlx::query(senders).execute(&first.pool).await.unwrap();
    assert_eq!(alice.presence_within(Duration::from_secs(2)).await, None, "a full list made bob flicker");
    until_it_hears(&first, 1).await;
    until_it_hears(&other, 1).await;
    bob.set_presence(json!({ "cursor": { "x": 5, "y": 6 } })).await;
    let seen = alice.next_presence().await;
    assert_eq!((seen["user"].as_str(), &seen["state"]["cursor"]["x"]), (Some("bob"), &json!(5)), "{seen}");

    // A connection that closes on one node leaves on the other.
    let carol = other.live("carol", "whiteboard", "room").await;
    assert_eq!(alice.next_presence().await["user"], "carol");
    carol.close().await;
    let left = alice.next_presence().await;
    assert_eq!((left["kind"].as_str(), left["user"].as_str()), (Some("presence_left"), Some("carol")), "{left}");

    // Killed, the other node says nothing more: its connections time out.
    let _ = bob.next_presence().await; // carol's join, as bob saw it
    other_process.kill();
    let killed = Instant::now();
    let left = alice.next_presence().await;
    assert_eq!(left, json!({ "kind": "presence_left", "connection": bob_connection, "user": "bob" }));
    eprintln!("bob left alice's presence {:?} after his node was killed", killed.elapsed());
    until_it_hears(&first, 0).await;
}

/// `app`'s warm-up status of chat scope `scope` once it has run at least `runs` times
/// and is warm.
async fn warm_after(app: &TestApp, scope: &str, runs: u64) -> Value {
    let started = Instant::now();
    loop {
        let board: Value = app.get_as_admin("/api/admin/warmup?domain=chat").await.json().await.unwrap();
        let status = board["scopes"].as_array().unwrap().iter().find(|s| s["scope"] == scope).cloned();
        if let Some(status) = status.filter(|s| s["state"] == "warm" && s["runs"].as_u64() >= Some(runs)) {
            return status;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{scope} not warm on {}: {board}", app.address);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Warm-up is coordinated through the cache: a node that starts while a scope is
/// warm there does not load it again; once the cache restarts (a restart may lose
/// the tail of what it held) the scope is loaded again, by one node only.
#[actix_web::test]
async fn a_scope_warm_in_the_cache_is_loaded_by_one_node_only() {
    let stdb = PrivateSpacetime::start().await;
    for domain in DOMAINS {
        stdb.publish("warm", domain, false).await;
    }
    let first = spawn_app_with(|settings| use_spacetimedb(settings, &stdb.url(), &stdb.token, "warm")).await;
    first.wait_for_cache().await;
    first.create_scope("chat", "hall").await;
    let mut sent = Vec::new();
    for _ in 0..30 {
        let (id, status) = send(&first, "hall", "cache").await;
        assert_eq!(status, 200);
        sent.push(id);
    }
    first.wait_for_count("SELECT count(*) FROM chat_messages WHERE channel = 'hall'", 30).await;
    // (It may have run twice: created, then first used; the second found it warm.)
    let before = warm_after(&first, "hall", 1).await;

    // A node that starts now finds the scope warm in the cache, and serves it.
    let (_b, node_b) = node(&first, "node-b").await;
    let status = warm_after(&node_b, "hall", 1).await;
    assert_eq!(status["already_warm"], true, "node-b loaded a scope the cache held warm: {status}");
    let snapshot = node_b.snapshot("alice", "chat", "hall").await;
    let items = snapshot["items"].as_array().expect("items");
    assert_eq!(items.len(), 30, "{snapshot}");

    // The cache restarts: both nodes reconnect and warm every scope, and one of them
    // loads it (the other waits for its lock, then finds it warm).
    stdb.kill();
    stdb.start_again().await;
    let runs = |status: &Value| status["runs"].as_u64().unwrap();
    let (a, b) = (warm_after(&first, "hall", runs(&before) + 1).await, warm_after(&node_b, "hall", 2).await);
    let loaded: Vec<&Value> = [&a, &b].into_iter().filter(|s| s["already_warm"] == false).collect();
    assert_eq!(loaded.len(), 1, "not exactly one node loaded the scope after the restart: {a} {b}");
    assert_eq!(loaded[0]["rows_loaded"], 30, "{}", loaded[0]);
    assert_eq!(node_b.snapshot("alice", "chat", "hall").await["items"].as_array().map(Vec::len), Some(30));
}

/// A node that drains stops cleanly while writes go on through another node: it
/// drains until its outbox is empty, writes back what it keeps, and leaves the other
/// node's newest entries to the node that drains next, which takes them. (Counted
/// as "not in PostgreSQL at exit", they would make its exit a failure.)
#[actix_web::test]
async fn a_draining_node_stops_cleanly_under_other_nodes_traffic() {
    let first = watching_app().await;
    let (mut a, node_a) = node(&first, "node-a").await;
    first.create_scope("chat", "hall").await;
    let mut mine = Vec::new();
    for _ in 0..20 {
        let (id, status) = send(&node_a, "hall", "cache").await;
        assert_eq!(status, 200);
        mine.push(id);
    }
    until_it_drains(&node_a, Duration::from_secs(10)).await;
    let (_b, node_b) = node(&first, "node-b").await;
    // Several writers, so that node-b's writes keep arriving while node-a writes
    // back what it keeps and counts what is left.
    let traffic = Traffic::start(&node_b, "hall", 8);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(a.terminate().await, "node-a, the drainer, exits 0 under node-b's traffic");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM chat_messages WHERE id = ANY($1)")
        .bind(&mine)
        .fetch_one(&first.pool)
        .await
        .unwrap();
    assert_eq!(stored, 20, "node-a's writes are in PostgreSQL once it has exited");
    // node-b takes the outbox over, and what it acknowledged meanwhile reaches
    // PostgreSQL.
    until_it_drains(&node_b, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let acknowledged = traffic.stop().await;
    assert!(!acknowledged.is_empty(), "node-b took writes");
    let query = format!("SELECT count(*) FROM chat_messages WHERE id IN ('{}')", {
        let ids: Vec<String> = acknowledged.iter().map(Uuid::to_string).collect();
        ids.join("','")
    });
    first.wait_for_count(&query, acknowledged.len() as i64).await;
}

/// A node that does not drain stops at once and cleanly while writes go on through
/// another node: it leaves the outbox to the drainer, and what it keeps of the newest
/// writes (its own among them) is in PostgreSQL when it has exited.
#[actix_web::test]
async fn a_node_that_does_not_drain_stops_at_once_under_other_nodes_traffic() {
    let first = spawn_app_on_spacetimedb().await;
    first.create_scope("chat", "hall").await;
    assert_eq!(send(&first, "hall", "cache").await.1, 200);
    until_it_drains(&first, Duration::from_secs(10)).await;
    let (mut b, node_b) = node(&first, "node-b").await;
    let mut mine = Vec::new();
    for _ in 0..20 {
        let (id, status) = send(&node_b, "hall", "cache").await;
        assert_eq!(status, 200);
        mine.push(id);
    }
    // Traffic through the first node the whole time node-b stops.
    let traffic = Traffic::start(&first, "hall", 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopping = Instant::now();
    assert!(b.terminate().await, "node-b exits 0: nothing it acknowledged is left out of PostgreSQL");
    eprintln!("node-b stopped {:?} after SIGTERM", stopping.elapsed());
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM chat_messages WHERE id = ANY($1)")
        .bind(&mine)
        .fetch_one(&first.pool)
        .await
        .unwrap();
    assert_eq!(stored, 20, "node-b's writes are in PostgreSQL once it has exited");
    traffic.stop().await;
    assert!(drains(&first).await, "the first node drains on");
}

/// PostgreSQL changed while no node ran (plain SQL here; a spell on the PostgreSQL
/// adapter is the same): the cache still holds the scope warm, but the first node to
/// start has the cache forget that, so every scope loads from PostgreSQL again.
#[actix_web::test]
async fn the_first_node_up_loads_what_postgresql_changed_while_none_ran() {
    let stdb = TestSpacetime::publish_all(DOMAINS).await;
    let (_, database) = TestPostgres::create_empty().await;
    let cache = (stdb.url.as_str(), stdb.token.as_str(), stdb.prefix.as_str());
    let (mut a, node_a) = Process::start(&database, cache, &[("BOARDSYNC__SERVER__NODE_NAME", "node-a")]).await;
    node_a.wait_for_cache().await;
    node_a.create_scope("chat", "hall").await;
    let (id, status) = send(&node_a, "hall", "durable").await;
    assert_eq!(status, 200);
    warm_after(&node_a, "hall", 1).await;
    a.kill();

    let operator = sqlx::PgPool::connect(&database).await.unwrap();
    sqlx::query("UPDATE chat_messages SET text = 'changed while no node ran' WHERE id = $1")
        .bind(id)
        .execute(&operator)
        .await
        .unwrap();
    // Two nodes start at about the same time: whichever decides first has the cache
    // forget what it held warm, and neither serves the old text.
    let ((_b, node_b), (_c, node_c)) = tokio::join!(
        Process::start(&database, cache, &[("BOARDSYNC__SERVER__NODE_NAME", "node-b")]),
        Process::start(&database, cache, &[("BOARDSYNC__SERVER__NODE_NAME", "node-c")]),
    );
    for node in [&node_b, &node_c] {
        node.wait_for_cache().await;
        warm_after(node, "hall", 1).await;
        let snapshot = node.snapshot("alice", "chat", "hall").await;
        assert_eq!(snapshot["items"][0]["text"], "changed while no node ran", "{}: {snapshot}", node.address);
    }
    let (b, c) = (warm_after(&node_b, "hall", 1).await, warm_after(&node_c, "hall", 1).await);
    assert!(b["already_warm"] == false || c["already_warm"] == false, "neither node loaded the scope: {b} {c}");
}

/// Where a scope's whole history in the cache begins is shared: when one node trims
/// the cache's window of a scope (its window was made smaller), another node that
/// serves the scope pages on through PostgreSQL past the trimmed rows.
#[actix_web::test]
async fn a_trim_by_one_node_moves_where_the_others_page_through_postgres() {
    let first = spawn_app_on_spacetimedb().await;
    first.create_scope("chat", "long").await;
    for _ in 0..12 {
        assert_eq!(send(&first, "long", "cache").await.1, 200);
    }
    first.wait_for_count("SELECT count(*) FROM chat_messages WHERE channel = 'long'", 12).await;
    let (_b, node_b) = node(&first, "node-b").await;
    let status = warm_after(&node_b, "long", 1).await;
    assert_eq!(status["already_warm"], true, "{status}");

    // The first node re-warms the scope with a window of 5: the cache drops the rest.
    let runs = warm_after(&first, "long", 1).await["runs"].as_u64().unwrap();
    let config = json!({ "warmup": { "max_items": 5 }, "access": { "authenticated": "write" } });
    assert_eq!(first.put_scope("chat", "long", json!({ "name": "long", "config": config })).await.status(), 200);
    warm_after(&first, "long", runs + 1).await;

    let stored: Vec<String> = sqlx::query_scalar(
        "SELECT id::text FROM chat_messages WHERE channel = 'long' ORDER BY created_at DESC, id DESC",
    )
    .fetch_all(&first.pool)
    .await
    .unwrap();
    let seen = node_b.all_pages("bob", "chat", "long", 4).await;
    assert_eq!(seen, stored, "node-b pages every message once, the cache's and PostgreSQL's joined");
}
