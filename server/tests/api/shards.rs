//! Scopes spread over two SpacetimeDB servers (shards), served by two boardsync nodes
//! on one PostgreSQL: each scope lives on the shard chosen when it was created; a
//! shard that is down takes only its own scopes down; an operator moves a scope from
//! one shard to the other under load, losing no acknowledged write.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use uuid::Uuid;

use boardsync::settings::ShardSettings;
use boardsync_testkit::private::PrivateSpacetime;
use boardsync_testkit::{sql, TestPostgres, TestSpacetime};

use crate::helpers::{spawn_app_in, use_spacetimedb, TestApp, DOMAINS};
use crate::process::Process;

/// Two shards: "main" on the shared test server, "b" on a private one (so that a
/// test may kill it), the same modules published on both under one prefix.
struct TwoShards {
    main: TestSpacetime,
    b: PrivateSpacetime,
    database_url: String,
}

impl TwoShards {
    async fn start() -> Self {
        let main = TestSpacetime::publish_all(DOMAINS).await;
        let b = PrivateSpacetime::start().await;
        for domain in DOMAINS {
            b.publish(&main.prefix, domain, false).await;
        }
        let (_, database_url) = TestPostgres::create_empty().await;
        Self { main, b, database_url }
    }

    /// A node on both shards, in this process.
    async fn node(&self) -> TestApp {
        let app = spawn_app_in(self.database_url.clone(), |settings| {
            use_spacetimedb(settings, &self.main.url, &self.main.token, &self.main.prefix);
            let b = ShardSettings { url: self.b.url(), token: self.b.token.clone().into() };
            settings.spacetimedb.shards.insert("b".into(), b);
        })
        .await;
        app.wait_for_cache().await;
        app
    }

    /// Another node on both shards: a `boardsync serve` process of its own.
    async fn process(&self, name: &str) -> (Process, TestApp) {
        let stdb = (self.main.url.as_str(), self.main.token.as_str(), self.main.prefix.as_str());
        let b_url = self.b.url();
        let env = [
            ("BOARDSYNC__SERVER__NODE_NAME", name),
            ("BOARDSYNC__SPACETIMEDB__SHARDS__B__URL", b_url.as_str()),
            ("BOARDSYNC__SPACETIMEDB__SHARDS__B__TOKEN", self.b.token.as_str()),
        ];
        let (process, app) = Process::start(&self.database_url, stdb, &env).await;
        app.wait_for_cache().await;
        (process, app)
    }

    /// The chat messages of `scope` cached on shard `shard` (SpacetimeDB's SQL, as
    /// the backend's identity: the tables are private).
    async fn cached(&self, shard: &str, scope: &str) -> usize {
        let (url, token) = match shard {
            "main" => (self.main.url.clone(), self.main.token.clone()),
            _ => (self.b.url(), self.b.token.clone()),
        };
        let database = format!("{}-chat", self.main.prefix);
        let query = format!("SELECT * FROM message WHERE channel = '{scope}'");
        let (status, body) = sql(&url, &token, &database, &query).await;
        assert_eq!(status, 200, "{body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        body[0]["rows"].as_array().map_or(0, Vec::len)
    }
}

/// Waits until `app`'s chat shard b is connected (or not); `/health` then.
async fn shard_b_connected(app: &TestApp, connected: bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let health: Value = app.get("/health").await.json().await.unwrap();
        if health["domains"]["chat"]["shards"][1]["cache_connected"] == connected {
            return health;
        }
        assert!(Instant::now() < deadline, "shard b connected is not {connected}: {health}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An operator's move of a chat scope through `app`, tried again (as an operator
/// would) while it is called off with a 503 (nothing moved: a busy machine's pool
/// timeout, say); its answer (200 asserted).
async fn move_to(app: &TestApp, scope: &str, to: &str) -> Value {
    for _ in 0..10 {
        let response = app
            .http
            .post(format!("{}/api/admin/scopes/chat/{scope}/move", app.address))
            .bearer_auth(app.admin_token())
            .json(&json!({ "to": to }))
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        if status == 503 {
            eprintln!("move called off, trying again: {body}");
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        assert_eq!(status, 200, "{body}");
        return body;
    }
    panic!("the move was called off ten times");
}

async fn shard_of(app: &TestApp, scope: &str) -> String {
    let stored: Value = app.get_as_admin(&format!("/api/admin/scopes/chat/{scope}")).await.json().await.unwrap();
    stored["shard"].as_str().expect("a scope on the cache has a shard").to_string()
}

/// Sends a message, retrying (as a client does) while the scope warms or moves;
/// the id and the final status.
async fn send(app: &TestApp, scope: &str, text: &str) -> (Uuid, u16) {
    let id = Uuid::new_v4();
    let command = json!({ "type": "send", "id": id, "text": text });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = app.command("alice", "chat", scope, command.clone()).await;
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        let retry = status == 503 && (body.contains("scope_warming") || body.contains("scope_moving"));
        if !retry || Instant::now() >= deadline {
            return (id, status);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Each scope lives on the shard it was given at creation, and is served from
/// there by every node; with one shard down, only its scopes answer 503.
#[actix_web::test]
async fn scopes_live_on_their_shard_and_a_shard_down_takes_only_its_own() {
    let shards = TwoShards::start().await;
    let a = shards.node().await;
    let (_b, b) = shards.process("node-b").await;
    let scopes: Vec<String> = (0..12).map(|i| format!("room-{i}")).collect();
    for scope in &scopes {
        a.create_scope("chat", scope).await;
    }
    let mut on: std::collections::HashMap<String, Vec<String>> = Default::default();
    for scope in &scopes {
        on.entry(shard_of(&a, scope).await).or_default().push(scope.clone());
    }
    let (on_main, on_b) = (on["main"].clone(), on["b"].clone());
    assert!(!on_main.is_empty() && !on_b.is_empty(), "12 scopes, all on one shard: {on:?}");

    // Written through one node, read through the other; cached on its own shard only.
    for scope in &scopes {
        assert_eq!(send(&b, scope, "hello").await.1, 200, "{scope}");
    }
    for scope in &scopes {
        let items = a.all_pages("alice", "chat", scope, 50).await;
        assert_eq!(items.len(), 1, "{scope}");
        let home = shard_of(&a, scope).await;
        let other = if home == "main" { "b" } else { "main" };
        assert_eq!(shards.cached(&home, scope).await, 1, "{scope} not cached on {home}");
        assert_eq!(shards.cached(other, scope).await, 0, "{scope} cached on {other} too");
    }
    a.wait_for_count("SELECT count(*) FROM chat_messages", scopes.len() as i64).await;

    // Shard b goes down: its scopes answer 503, the others keep working.
    shards.b.kill();
    let health = shard_b_connected(&a, false).await;
    assert_eq!(health["domains"]["chat"]["shards"][0]["cache_connected"], true, "{health}");
    // The node stays in the load balancer: it serves every scope but shard b's.
    assert_eq!(a.get("/health").await.status(), 200, "{health}");
    for scope in &on_main {
        for node in [&a, &b] {
            assert_eq!(send(node, scope, "still here").await.1, 200, "{scope} on main");
            let response = node.get_as("alice", &format!("/api/chat/{scope}")).await;
            assert_eq!(response.status(), 200, "{scope} on main");
        }
    }
    for scope in &on_b {
        let response =
            a.command("alice", "chat", scope, json!({ "type": "send", "id": Uuid::new_v4(), "text": "x" })).await;
        assert_eq!(response.status(), 503, "{scope} on the dead shard");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "cache_unavailable", "{body}");
    }

    // Back up: its scopes serve again, everything written is there.
    shards.b.start_again().await;
    shard_b_connected(&a, true).await;
    shard_b_connected(&b, true).await;
    for scope in &on_b {
        assert_eq!(send(&b, scope, "back").await.1, 200, "{scope} after shard b came back");
        assert_eq!(a.all_pages("alice", "chat", scope, 50).await.len(), 2, "{scope}");
    }
}

/// An operator moves a scope to the other shard while two nodes write to it: every
/// acknowledged write is in PostgreSQL and in the scope's snapshot on both nodes,
/// the scope is cached only on its new shard, and its live subscribers resync.
#[actix_web::test]
async fn a_scope_moves_between_shards_under_load_and_loses_nothing() {
    let shards = TwoShards::start().await;
    let a = shards.node().await;
    let (_b, b) = shards.process("node-b").await;
    a.create_scope("chat", "busy").await;
    let from = shard_of(&a, "busy").await;
    let to = if from == "main" { "b" } else { "main" };
    let mut live = b.live("bob", "chat", "busy").await;

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = [a.handle(), b.handle()]
        .into_iter()
        .enumerate()
        .map(|(n, node)| {
            let stop = stop.clone();
            actix_web::rt::spawn(async move {
                let mut acknowledged = Vec::new();
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let (id, status) = send(&node, "busy", &format!("writer {n} message {i}")).await;
                    assert_eq!(status, 200, "a write was refused for good during the move");
                    acknowledged.push(id);
                    i += 1;
                }
                acknowledged
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let moved = move_to(&a, "busy", to).await;
    assert_eq!(moved["from"], from.as_str(), "{moved}");
    assert_eq!(moved["cleared_on_source"], true, "{moved}");
    eprintln!("moved under load: {moved}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut acknowledged: Vec<Uuid> = Vec::new();
    for writer in writers {
        acknowledged.extend(writer.await.unwrap());
    }
    assert!(acknowledged.len() > 20, "too little load: {}", acknowledged.len());
    assert_eq!(shard_of(&b, "busy").await, to);

    // The subscriber on the other node was told to resync when the scope moved.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "no resync reached the live subscriber");
        if live.next_non_event().await["kind"] == "resync" {
            break;
        }
    }

    // Every acknowledged write reached PostgreSQL once, and both nodes serve all of it.
    let count = acknowledged.len() as i64;
    a.wait_for_count("SELECT count(*) FROM chat_messages WHERE channel = 'busy'", count).await;
    let expected: HashSet<String> = acknowledged.iter().map(Uuid::to_string).collect();
    for node in [&a, &b] {
        let served: Vec<String> = node.all_pages("alice", "chat", "busy", 100).await;
        assert_eq!(served.len(), expected.len(), "duplicates or losses in the snapshot");
        assert_eq!(served.into_iter().collect::<HashSet<_>>(), expected);
    }
    assert_eq!(shards.cached(&from, "busy").await, 0, "rows left on the old shard");
    assert!(shards.cached(to, "busy").await > 0, "nothing cached on the new shard");

    // And back: the old shard takes it again (its mark of the move is lifted).
    assert_eq!(move_to(&a, "busy", &from).await["to"], from.as_str());
    assert_eq!(send(&b, "busy", "home again").await.1, 200);
    // A move to where it lives thaws it (a move that stopped half-way): nothing else.
    let stay = move_to(&a, "busy", &from).await;
    assert_eq!(stay["thawed"], true, "{stay}");
    assert_eq!(send(&b, "busy", "still home").await.1, 200);
    // (Written through the other node: it reaches this one through the cache.)
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.all_pages("alice", "chat", "busy", 100).await.len() != expected.len() + 2 {
        assert!(Instant::now() < deadline, "the writes after moving back are not served");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Moved away again, purged, and created anew: it takes writes wherever it lands
    // (nothing of its moves or of its old rows is left on either shard).
    assert_eq!(move_to(&a, "busy", to).await["to"], to);
    let purged = a
        .http
        .delete(format!("{}/api/admin/scopes/chat/busy?purge=true", a.address))
        .bearer_auth(a.admin_token())
        .send()
        .await
        .unwrap();
    assert_eq!(purged.status(), 200, "{}", purged.text().await.unwrap_or_default());
    a.create_scope("chat", "busy").await;
    assert_eq!(send(&b, "busy", "born again").await.1, 200);
    assert_eq!(a.all_pages("alice", "chat", "busy", 100).await.len(), 1);
    assert_eq!(shards.cached("main", "busy").await + shards.cached("b", "busy").await, 1);
}
