//! `scripts/bench`: the figures the issues ask for, measured against real services
//! on this machine. Prints a report; asserts nothing about timings.
//!
//! 1. Live-update latency between two WebSocket clients, per adapter: the time from
//!    one client sending a message to the other receiving the event (1,000 messages,
//!    one at a time).
//! 2. Warm-up of 100,000 messages over 100 channels into SpacetimeDB.
//! 3. Outbox lag (cache commit -> PostgreSQL commit) at 1,000 writes/s, with push
//!    (boardsync's default) and with the seed's configuration (poll every 1 s).
//! 4. Outside writes: a row updated with plain SQL by a connection that is not a
//!    backend's, until a live client has the event, per adapter (200 updates).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use boardsync::auth::issue_token;
use boardsync::settings::{Environment, Settings};
use boardsync::startup::Application;
use boardsync_actors::metrics::histogram_quantile;
use boardsync_testkit::{TestPostgres, TestSpacetime};
use futures::{SinkExt, StreamExt};
use secrecy::SecretString;
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio_tungstenite::tungstenite::Message as Frame;
use uuid::Uuid;

struct App {
    address: String,
    port: u16,
    pool: PgPool,
    settings: Settings,
    http: reqwest::Client,
}

async fn spawn(spacetimedb: bool, configure: impl FnOnce(&mut Settings)) -> App {
    let (_, url) = TestPostgres::create_empty().await;
    let mut settings = Settings::load_from(&Settings::source_dir(), Environment::Test, HashMap::new()).unwrap();
    settings.log.filter = "error".into();
    settings.database.url = SecretString::from(url.clone());
    if spacetimedb {
        // Every domain's module, as a deployment has them (a missing one would leave
        // its domain reconnecting in the background).
        let stdb = TestSpacetime::publish_all(&["chat", "kanban", "poll", "whiteboard"]).await;
        settings.spacetimedb.url = stdb.url;
        settings.spacetimedb.token = SecretString::from(stdb.token);
        settings.spacetimedb.database_prefix = stdb.prefix;
    }
    configure(&mut settings);
    let app = Application::build(settings.clone()).await.unwrap();
    let port = app.port();
    actix_web::rt::spawn(app.run_until_stopped());
    let app = App {
        address: format!("http://127.0.0.1:{port}"),
        port,
        pool: PgPool::connect_with(boardsync_core::postgres::backend_connect_options(&url).unwrap()).await.unwrap(),
        settings,
        http: reqwest::Client::new(),
    };
    if spacetimedb {
        for _ in 0..400 {
            let health: Value =
                app.http.get(format!("{}/health", app.address)).send().await.unwrap().json().await.unwrap();
            if health["domains"].as_object().unwrap().values().all(|d| d["cache_connected"] == true) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
    app
}

impl App {
    fn admin(&self) -> String {
        issue_token(&self.settings.auth, "bench-admin", true).expect("the bench signs tokens")
    }

    async fn create_scope(&self, key: &str) {
        let response = self
            .http
            .put(format!("{}/api/admin/scopes/chat/{key}", self.address))
            .bearer_auth(self.admin())
            .json(&json!({ "name": key, "config": { "access": { "authenticated": "write" } } }))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
    }

    async fn metrics(&self) -> String {
        self.http.get(format!("{}/metrics", self.address)).send().await.unwrap().text().await.unwrap()
    }
}

/// The `q` quantile of sorted samples.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// The `q` quantile of a Prometheus histogram in the text exposition, as the server
/// estimates its own ([`histogram_quantile`]).
fn histogram_quantile_of(metrics: &str, name: &str, q: f64) -> f64 {
    let mut total = 0;
    let mut buckets: Vec<(f64, u64)> = Vec::new();
    for line in metrics.lines().filter(|line| line.starts_with(&format!("{name}_bucket{{"))) {
        let Some(le) = line.split("le=\"").nth(1).and_then(|rest| rest.split('"').next()) else { continue };
        let Some(count) = line.rsplit(' ').next().and_then(|count| count.parse().ok()) else { continue };
        match le {
            "+Inf" => total = count,
            bound => buckets.extend(bound.parse().ok().map(|bound| (bound, count))),
        }
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    histogram_quantile(q, &buckets, total).unwrap_or(f64::NAN)
}

async fn live_latency(spacetimedb: bool) -> (f64, f64) {
    let app = spawn(spacetimedb, |_| {}).await;
    app.create_scope("bench").await;
    let connect = |user: &str| {
        let url = format!(
            "ws://127.0.0.1:{}/api/chat/bench/live?token={}",
            app.port,
            issue_token(&app.settings.auth, user, false).expect("the bench signs tokens")
        );
        async move {
            let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
            let ready = socket.next().await.unwrap().unwrap();
            assert!(ready.to_text().unwrap().contains("ready"));
            socket
        }
    };
    let mut alice = connect("alice").await;
    let mut bob = connect("bob").await;
    let mut samples = Vec::new();
    for i in 0..1050 {
        let id = Uuid::new_v4();
        let started = Instant::now();
        let command = json!({ "ref": i, "type": "send", "id": id, "text": format!("message {i}") });
        alice.send(Frame::text(command.to_string())).await.unwrap();
        loop {
            let frame = bob.next().await.unwrap().unwrap();
            let Ok(text) = frame.to_text() else { continue };
            if text.contains(&id.to_string()) {
                break;
            }
        }
        let elapsed = started.elapsed().as_secs_f64() * 1000.0;
        if i >= 50 {
            samples.push(elapsed); // the first 50 warm connections and caches up
        }
        // Alice's own reply and echo: drain them so her socket does not back up.
        while let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_micros(1), alice.next()).await {}
    }
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (quantile(&samples, 0.5), quantile(&samples, 0.99))
}

async fn warmup(channels: usize, per_channel: usize) -> (f64, u64) {
    let app = spawn(true, |settings| {
        let warmup = &mut settings.domains.get_mut("chat").unwrap()["warmup"];
        warmup["max_items"] = json!(per_channel);
        warmup["batch_size"] = json!(1000);
        if let Some(limit) = std::env::var("BENCH_WARMUP_CONCURRENCY").ok().and_then(|v| v.parse().ok()) {
            settings.warmup.max_concurrent_scopes = limit;
        }
    })
    .await;
    // Channels and their history written straight to PostgreSQL, as an existing
    // deployment would have them; then one re-warm of the whole domain.
    sqlx::query(
        "INSERT INTO scopes (domain, key, name) SELECT 'chat', 'c' || n, 'c' || n FROM generate_series(1, $1) n",
    )
    .bind(channels as i64)
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO chat_messages (id, channel, author, text, created_at, version)
         SELECT gen_random_uuid(), 'c' || (n % $1 + 1), 'user' || (n % 17), 'history message ' || n,
                now() - make_interval(secs => n), 1
         FROM generate_series(1, $2) n",
    )
    .bind(channels as i64)
    .bind((channels * per_channel) as i64)
    .execute(&app.pool)
    .await
    .unwrap();
    let started = Instant::now();
    let response =
        app.http.post(format!("{}/api/admin/warmup/chat", app.address)).bearer_auth(app.admin()).send().await.unwrap();
    assert!(response.status().is_success());
    loop {
        let board: Value = app
            .http
            .get(format!("{}/api/admin/warmup", app.address))
            .bearer_auth(app.admin())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let scopes = board["scopes"].as_array().unwrap();
        let warm: Vec<&Value> =
            scopes.iter().filter(|s| s["state"] == "warm" && s["runs"].as_u64() >= Some(1)).collect();
        if warm.len() == channels {
            let rows = warm.iter().map(|s| s["rows_loaded"].as_u64().unwrap()).sum();
            let sum = |key: &str| warm.iter().map(|s| s[key].as_u64().unwrap_or(0)).sum::<u64>();
            println!(
                "   per scope, summed: reading PostgreSQL {} ms, loading SpacetimeDB {} ms",
                sum("load_ms"),
                sum("cache_ms")
            );
            return (started.elapsed().as_secs_f64(), rows);
        }
        assert!(started.elapsed() < Duration::from_secs(300), "warm-up did not finish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct LagReport {
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    write_p50_ms: f64,
    write_p99_ms: f64,
}

async fn outbox_lag(push: bool, writes_per_second: u64, seconds: u64) -> LagReport {
    let app = spawn(true, |settings| {
        settings.domains.get_mut("chat").unwrap()["outbox_push"] = json!(push);
    })
    .await;
    app.create_scope("load").await;
    let token = issue_token(&app.settings.auth, "writer", false).expect("the bench signs tokens");
    let total = writes_per_second * seconds;
    let started = Instant::now();
    let mut tasks = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / writes_per_second));
    for i in 0..total {
        tick.tick().await;
        let (http, url, token) = (app.http.clone(), format!("{}/api/chat/load", app.address), token.clone());
        tasks.push(actix_web::rt::spawn(async move {
            let sent = Instant::now();
            let response = http
                .post(url)
                .bearer_auth(token)
                .json(&json!({ "type": "send", "id": Uuid::new_v4(), "text": format!("load {i}") }))
                .send()
                .await
                .unwrap();
            assert!(response.status().is_success());
            sent.elapsed().as_secs_f64() * 1000.0
        }));
    }
    let mut write_ms = Vec::new();
    for task in tasks {
        write_ms.push(task.await.unwrap());
    }
    let rate = total as f64 / started.elapsed().as_secs_f64();
    loop {
        let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM chat_messages").fetch_one(&app.pool).await.unwrap();
        if stored as u64 == total {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let metrics = app.metrics().await;
    write_ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    LagReport {
        rate,
        p50_ms: histogram_quantile_of(&metrics, "boardsync_outbox_lag_seconds", 0.5) * 1000.0,
        p99_ms: histogram_quantile_of(&metrics, "boardsync_outbox_lag_seconds", 0.99) * 1000.0,
        write_p50_ms: quantile(&write_ms, 0.5),
        write_p99_ms: quantile(&write_ms, 0.99),
    }
}

/// Runs every section, or only those named on the command line (`live`, `warmup`, `lag`).
async fn outside_latency(spacetimedb: bool) -> (f64, f64) {
    let app = spawn(spacetimedb, |_| {}).await;
    app.create_scope("bench").await;
    let id = Uuid::new_v4();
    let token = issue_token(&app.settings.auth, "alice", false).expect("the bench signs tokens");
    let send = json!({ "type": "send", "id": id, "text": "v0", "durability": "durable" });
    let response = app.http.post(format!("{}/api/chat/bench", app.address)).bearer_auth(&token).json(&send).send();
    assert!(response.await.unwrap().status().is_success());
    let url = format!("ws://127.0.0.1:{}/api/chat/bench/live?token={token}", app.port);
    let (mut bob, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let ready = bob.next().await.unwrap().unwrap();
    assert!(ready.to_text().unwrap().contains("ready"));
    // An operator's connection: not marked as a backend's.
    let operator = PgPool::connect(secrecy::ExposeSecret::expose_secret(&app.settings.database.url)).await.unwrap();
    let mut samples = Vec::new();
    for i in 0..220 {
        let text = format!("outside {i}");
        let started = Instant::now();
        sqlx::query("UPDATE chat_messages SET text = $2 WHERE id = $1")
            .bind(id)
            .bind(&text)
            .execute(&operator)
            .await
            .unwrap();
        loop {
            let frame = bob.next().await.unwrap().unwrap();
            let Ok(frame) = frame.to_text() else { continue };
            if frame.contains(&text) {
                break;
            }
        }
        if i >= 20 {
            samples.push(started.elapsed().as_secs_f64() * 1000.0);
        }
    }
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (quantile(&samples, 0.5), quantile(&samples, 0.99))
}

fn main() {
    let only: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let run = |section: &str| only.is_empty() || only.iter().any(|o| o == section);
    actix_web::rt::System::new().block_on(async {
        println!("boardsync benchmark ({} cores)", std::thread::available_parallelism().map_or(0, |n| n.get()));

        if run("live") {
        println!("\n1. Live-update latency, client A sends -> client B receives (1,000 messages, one at a time)");
        for (name, spacetimedb) in [("postgres", false), ("spacetimedb", true)] {
            let (p50, p99) = live_latency(spacetimedb).await;
            println!("   {name:<12} p50 {p50:6.2} ms   p99 {p99:6.2} ms");
        }

        }

        if run("warmup") {
            println!("\n2. Warm-up: 100,000 messages over 100 channels, PostgreSQL -> SpacetimeDB");
            let (seconds, rows) = warmup(100, 1000).await;
            println!("   {rows} rows in {seconds:.3} s = {:.0} rows/s", rows as f64 / seconds);
        }

        if run("lag") {
        println!("\n3. Outbox lag, cache commit -> PostgreSQL commit, at 1,000 writes/s for 10 s");
        for (name, push) in [("push + 1 s poll (boardsync)", true), ("1 s poll only (seed)", false)] {
            let r = outbox_lag(push, 1000, 10).await;
            println!(
                "   {name:<28} {:5.0} writes/s   lag p50 {:7.1} ms  p99 {:7.1} ms   (HTTP write p50 {:.2} ms, p99 {:.2} ms)",
                r.rate, r.p50_ms, r.p99_ms, r.write_p50_ms, r.write_p99_ms
            );
        }
        }

        if run("outside") {
            println!("\n4. Outside writes: plain SQL UPDATE -> a live client has the event (200 updates, one at a time)");
            for (name, spacetimedb) in [("postgres", false), ("spacetimedb", true)] {
                let (p50, p99) = outside_latency(spacetimedb).await;
                println!("   {name:<12} p50 {p50:6.2} ms   p99 {p99:6.2} ms");
            }
        }
    });
}
