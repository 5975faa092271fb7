//! Several boardsync nodes on one PostgreSQL (and one cache): each a real process,
//! the way they run behind a load balancer. One of them drains each outbox; when it
//! dies another takes over, and every acknowledged write reaches PostgreSQL once.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{spawn_app, spawn_app_on_spacetimedb, spawn_app_on_spacetimedb_with, TestApp};
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

#[actix_web::test]
async fn one_node_drains_the_outbox_and_another_takes_over_when_it_dies() {
    // The first app only sets up and watches: it drains by a 60 s poll alone, so it
    // never asks for the lease within this test.
    let first = spawn_app_on_spacetimedb_with(|settings| {
        settings.framework["outbox_push"] = json!(false);
        settings.framework["outbox_poll_interval_ms"] = json!(60_000);
    })
    .await;
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
        let node_b = TestApp {
            address: node_b.address.clone(),
            port: node_b.port,
            pool: node_b.pool.clone(),
            http: reqwest::Client::new(),
            settings: node_b.settings.clone(),
        };
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
    assert_eq!(send(&first, "lobby", "cache").await.1, 200);
    assert_eq!(send(&other, "lobby", "cache").await.1, 200);
    let mut socket = first.live("alice", "chat", "lobby").await;
    let (id, status) = send(&other, "lobby", "cache").await;
    assert_eq!(status, 200);
    // The event itself (with the message's state), not a resync to refetch.
    let frame = socket.next().await;
    assert_eq!(frame["kind"], "event", "{frame}");
    assert_eq!(frame["event"]["message"]["id"], json!(id));
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
