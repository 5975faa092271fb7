//! The SpacetimeDB adapter in the running app: warm-up windows, the outbox into
//! PostgreSQL, durability, and what happens when PostgreSQL or SpacetimeDB goes away.

use std::time::Duration;

use boardsync_testkit::private::{PrivatePostgres, PrivateSpacetime};
use boardsync_testkit::{sql, stranger_token, TestSpacetime};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{
    boardsync_cli, spawn_app_in, spawn_app_on_spacetimedb, spawn_app_on_spacetimedb_with, use_spacetimedb, TestApp,
    DOMAINS,
};

/// The outbox poller all but off: writes wait in the outbox, as under a burst.
const QUIET_OUTBOX: [(&str, &str); 2] =
    [("BOARDSYNC__FRAMEWORK__OUTBOX_PUSH", "false"), ("BOARDSYNC__FRAMEWORK__OUTBOX_POLL_INTERVAL_MS", "600000")];

async fn send(app: &TestApp, user: &str, scope: &str, text: &str) -> Uuid {
    let id = Uuid::new_v4();
    let response = app.command(user, "chat", scope, json!({ "type": "send", "id": id, "text": text })).await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    id
}

/// Rows of `chat_messages` as `(id, text, deleted, version)`, by id.
async fn stored_rows(app: &TestApp) -> Vec<(Uuid, String, bool, i64)> {
    sqlx::query_as("SELECT id, text, deleted, version FROM chat_messages ORDER BY id")
        .fetch_all(&app.pool)
        .await
        .unwrap()
}

#[actix_web::test]
async fn every_write_through_the_api_reaches_postgres_exactly_once() {
    let app = spawn_app_on_spacetimedb().await;
    app.create_scope("chat", "general").await;
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(send(&app, "alice", "general", &format!("m{i}")).await);
    }
    for id in &ids[..3] {
        app.command("alice", "chat", "general", json!({ "type": "edit", "id": id, "text": "edited" })).await;
    }
    app.command("alice", "chat", "general", json!({ "type": "delete", "id": ids[3] })).await;
    app.command("bob", "chat", "general", json!({ "type": "react", "id": ids[4], "emoji": "👍" })).await;

    app.wait_for_count("SELECT last_applied_seq FROM outbox_progress WHERE domain = 'chat'", 15).await;

    let snapshot = app.snapshot("carol", "chat", "general").await;
    let mut cached: Vec<(Uuid, String, bool, i64)> = snapshot["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let id = Uuid::parse_str(m["id"].as_str().unwrap()).unwrap();
            (
                id,
                m["text"].as_str().unwrap().to_string(),
                m["deleted"].as_bool().unwrap(),
                m["version"].as_i64().unwrap(),
            )
        })
        .collect();
    cached.sort();
    assert_eq!(stored_rows(&app).await, cached, "PostgreSQL matches the cache row by row");
    let reactions: Vec<(Uuid, String, String)> =
        sqlx::query_as("SELECT message_id, user_id, emoji FROM chat_reactions").fetch_all(&app.pool).await.unwrap();
    assert_eq!(reactions, vec![(ids[4], "bob".to_string(), "👍".to_string())]);
}

#[actix_web::test]
async fn a_durable_write_is_in_postgres_when_it_is_acknowledged() {
    let app = spawn_app_on_spacetimedb().await;
    app.create_scope("chat", "general").await;
    for i in 0..5 {
        let id = Uuid::new_v4();
        let command = json!({ "type": "send", "id": id, "text": format!("durable {i}"), "durability": "durable" });
        assert_eq!(app.command("alice", "chat", "general", command).await.status(), 200);
        let stored: Option<String> = sqlx::query_scalar("SELECT text FROM chat_messages WHERE id = $1")
            .bind(id)
            .fetch_optional(&app.pool)
            .await
            .unwrap();
        assert_eq!(stored.as_deref(), Some(format!("durable {i}").as_str()));
    }
}

/// Writes `count` messages straight into PostgreSQL, oldest first, a second apart.
async fn history(app: &TestApp, channel: &str, count: i64) {
    history_in(&app.pool, channel, count).await;
}

/// [`history`] as boardsync's own writes (`boardsync.origin = 'backend'`): no change
/// record, so the outside-change follower does not bring it in (and warm the scope
/// again, writing back what the cache keeps) while the test runs.
async fn history_unannounced(app: &TestApp, channel: &str, count: i64) {
    let mut tx = app.pool.begin().await.unwrap();
    sqlx::query("SET LOCAL boardsync.origin = 'backend'").execute(&mut *tx).await.unwrap();
    history_in(&mut *tx, channel, count).await;
    tx.commit().await.unwrap();
}

async fn history_in<'c>(db: impl sqlx::PgExecutor<'c>, channel: &str, count: i64) {
    sqlx::query(
        "INSERT INTO chat_messages (id, channel, author, text, created_at, version)
         SELECT gen_random_uuid(), $1, 'history', 'old ' || n, now() - make_interval(secs => $2 - n), 1
         FROM generate_series(1, $2) AS n",
    )
    .bind(channel)
    .bind(count)
    .execute(db)
    .await
    .unwrap();
}

async fn warmup_board(app: &TestApp) -> Value {
    app.get_as_admin("/api/admin/warmup?domain=chat").await.json().await.unwrap()
}

/// Waits until every scope named has finished at least `runs` warm-ups.
async fn wait_for_warmup(app: &TestApp, scopes: &[&str], runs: u64) -> Value {
    for _ in 0..400 {
        let board = warmup_board(app).await;
        let done = scopes.iter().all(|scope| {
            board["scopes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["scope"] == *scope && (s["runs"].as_u64().unwrap() >= runs || s["state"] == "disabled"))
        });
        if done {
            return board;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("warm-up of {scopes:?} did not finish: {}", warmup_board(app).await);
}

fn status<'a>(board: &'a Value, scope: &str) -> &'a Value {
    board["scopes"].as_array().unwrap().iter().find(|s| s["scope"] == scope).unwrap()
}

#[actix_web::test]
async fn warm_up_loads_each_channels_configured_window() {
    let app = spawn_app_on_spacetimedb_with(|settings| {
        settings.domains.get_mut("chat").unwrap()["warmup"]["max_items"] = json!(20);
    })
    .await;
    for channel in ["big", "small", "off", "recent"] {
        history(&app, channel, 30).await;
    }
    app.create_scope("chat", "big").await;
    for (channel, config) in [
        ("small", json!({ "warmup": { "max_items": 5 }, "access": { "authenticated": "write" } })),
        ("off", json!({ "warmup": { "enabled": false }, "access": { "authenticated": "write" } })),
        ("recent", json!({ "warmup": { "max_age_secs": 10 }, "access": { "authenticated": "write" } })),
    ] {
        assert_eq!(app.put_scope("chat", channel, json!({ "name": channel, "config": config })).await.status(), 200);
    }

    let board = wait_for_warmup(&app, &["big", "small", "off", "recent"], 1).await;

    assert_eq!(
        (status(&board, "big")["state"].as_str(), status(&board, "big")["rows_loaded"].as_u64()),
        (Some("warm"), Some(20))
    );
    assert_eq!(status(&board, "small")["rows_loaded"], 5, "the channel's config overrides the domain default");
    assert_eq!(status(&board, "off")["state"], "disabled");
    let texts = |snapshot: Value| -> Vec<String> {
        snapshot["items"].as_array().unwrap().iter().map(|m| m["text"].as_str().unwrap().to_string()).collect()
    };
    // Each channel's snapshot is whole: its window from the cache, older pages from
    // PostgreSQL, and a channel without warm-up from PostgreSQL.
    for channel in ["big", "small", "off"] {
        let all = texts(app.snapshot("alice", "chat", channel).await);
        assert_eq!(all.len(), 30, "{channel}");
        assert_eq!((all[0].as_str(), all[29].as_str()), ("old 30", "old 1"), "{channel}: newest first");
    }
    // The per-state gauges count each scope once, in its current state.
    let metrics = app.get("/metrics").await.text().await.unwrap();
    for (state, count) in [("warm", 3), ("disabled", 1), ("pending", 0), ("warming", 0)] {
        let line = format!("boardsync_warmup_scopes{{domain=\"chat\",state=\"{state}\"}} {count}");
        assert!(metrics.contains(&line), "{line} in {metrics}");
    }
    // History is a second apart, the newest now: a 10 s window holds about ten.
    let recent = status(&board, "recent")["rows_loaded"].as_u64().unwrap();
    assert!((9..=11).contains(&recent), "{recent}");
    assert_eq!(texts(app.snapshot("alice", "chat", "recent").await).len(), 30);

    // Re-warm from the command line: the binary talks to this server's admin API.
    history(&app, "small", 2).await;
    let output = boardsync_cli(&["warmup", "--domain", "chat", "--scope", "small", "--url", &app.address]).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("small") && stdout.contains("warm"), "{stdout}");
    assert_eq!(status(&warmup_board(&app).await, "small")["runs"], 2);
}

#[actix_web::test]
async fn writes_keep_working_while_postgres_is_down_and_nothing_is_lost() {
    let postgres = PrivatePostgres::start();
    let stdb = TestSpacetime::publish_all(DOMAINS).await;
    let app =
        spawn_app_in(postgres.url("postgres"), |s| use_spacetimedb(s, &stdb.url, &stdb.token, &stdb.prefix)).await;
    app.wait_for_cache().await;
    app.create_scope("chat", "general").await;
    send(&app, "alice", "general", "before").await;
    app.wait_for_count("SELECT count(*) FROM chat_messages", 1).await;

    postgres.stop();
    for i in 0..10 {
        send(&app, "alice", "general", &format!("while down {i}")).await;
    }
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("boardsync_outbox_pending{domain=\"chat\"}"), "{metrics}");
    postgres.start_again();

    app.wait_for_count("SELECT count(*) FROM chat_messages", 11).await;
    app.wait_for_count("SELECT count(*) FROM chat_messages WHERE text LIKE 'while down %'", 10).await;
}

#[actix_web::test]
async fn a_spacetimedb_restart_rewarms_keeps_pending_writes_and_live_clients_recover() {
    let postgres = PrivatePostgres::start();
    let stdb = PrivateSpacetime::start().await;
    for domain in DOMAINS {
        stdb.publish("restart", domain, false).await;
    }
    let app = spawn_app_in(postgres.url("postgres"), |s| {
        use_spacetimedb(s, &stdb.url(), &stdb.token, "restart");
        // Long enough for the warm-up retried after PostgreSQL is back.
        s.framework["warm_wait_ms"] = json!(15_000);
    })
    .await;
    app.wait_for_cache().await;
    app.create_scope("chat", "general").await;
    let mut bob = app.live("bob", "chat", "general").await;
    for i in 0..3 {
        let id = send(&app, "alice", "general", &format!("synced {i}")).await;
        // (A resync when the scope finished warming may come first: skipped.)
        assert_eq!(bob.next_event().await["message"]["id"], json!(id));
    }
    app.wait_for_count("SELECT count(*) FROM chat_messages", 3).await;

    // Two writes stay pending in the outbox (PostgreSQL is down) when SpacetimeDB dies.
    postgres.stop();
    for i in 0..2 {
        let id = send(&app, "alice", "general", &format!("pending {i}")).await;
        assert_eq!(bob.next_event().await["message"]["id"], json!(id));
    }
    // SpacetimeDB fsyncs its log every 500 ms: give it time to persist them.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stdb.kill();
    let refused =
        app.command("alice", "chat", "general", json!({ "type": "send", "id": Uuid::new_v4(), "text": "x" })).await;
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.json::<Value>().await.unwrap()["error"]["code"], "cache_unavailable");

    stdb.start_again().await;
    app.wait_for_cache().await;
    loop {
        // Bob's socket stayed open; he is told to resync, then sees new events.
        let frame = bob.next().await;
        if frame["kind"] == "resync" {
            break;
        }
    }
    // The restarted cache may have lost its last writes, and the scope cannot be
    // warmed again while PostgreSQL is down: it takes writes once it can.
    postgres.start_again();
    let after = send(&app, "alice", "general", "after restart").await;
    assert_eq!(bob.next_event().await["message"]["id"], json!(after));
    assert_eq!(app.snapshot("carol", "chat", "general").await["items"].as_array().unwrap().len(), 6);
    app.wait_for_count("SELECT count(*) FROM chat_messages", 6).await;
    app.wait_for_count("SELECT count(*) FROM chat_messages WHERE text LIKE 'pending %'", 2).await;
}

#[actix_web::test]
async fn a_recreated_cache_database_is_warmed_again_from_postgres() {
    let stdb = TestSpacetime::publish_all(DOMAINS).await;
    let app = crate::helpers::spawn_app_with(|s| use_spacetimedb(s, &stdb.url, &stdb.token, &stdb.prefix)).await;
    app.wait_for_cache().await;
    app.create_scope("chat", "general").await;
    for i in 0..4 {
        send(&app, "alice", "general", &format!("kept {i}")).await;
    }
    app.wait_for_count("SELECT last_applied_seq FROM outbox_progress WHERE domain = 'chat'", 4).await;

    boardsync_testkit::publish(&stdb.url, &stdb.token, &stdb.database, "chat", true).await;

    for _ in 0..400 {
        let items = app.get_as("carol", "/api/chat/general").await;
        if items.status() == 200 && items.json::<Value>().await.unwrap()["items"].as_array().unwrap().len() == 4 {
            let epochs: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox_progress WHERE domain = 'chat'")
                .fetch_one(&app.pool)
                .await
                .unwrap();
            send(&app, "alice", "general", "into the new cache").await;
            app.wait_for_count("SELECT count(*) FROM chat_messages", 5).await;
            assert!(epochs >= 1);
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the recreated cache was not warmed from PostgreSQL");
}

#[actix_web::test]
async fn a_write_postgres_refuses_is_dead_lettered_and_the_rest_keeps_flowing() {
    let app = spawn_app_on_spacetimedb().await;
    app.create_scope("chat", "general").await;
    // A rule PostgreSQL has and the cache does not: how poison entries happen.
    sqlx::query("ALTER TABLE chat_messages ADD CONSTRAINT no_poison CHECK (text <> 'poison')")
        .execute(&app.pool)
        .await
        .unwrap();

    for text in ["before", "poison", "after"] {
        send(&app, "alice", "general", text).await;
    }

    app.wait_for_count("SELECT count(*) FROM outbox_dead_letters WHERE domain = 'chat'", 1).await;
    app.wait_for_count("SELECT count(*) FROM chat_messages WHERE text IN ('before', 'after')", 2).await;
    let error: String = sqlx::query_scalar("SELECT error FROM outbox_dead_letters").fetch_one(&app.pool).await.unwrap();
    assert!(error.contains("no_poison"), "{error}");
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("boardsync_outbox_dead_letters_total{domain=\"chat\"} 1"), "{metrics}");
    // The writes behind it were not held up, and the cache still serves all three.
    assert_eq!(app.snapshot("bob", "chat", "general").await["items"].as_array().unwrap().len(), 3);
}

#[actix_web::test]
async fn a_write_postgres_cannot_take_yet_stalls_and_is_never_set_aside() {
    let app = spawn_app_on_spacetimedb().await;
    app.create_scope("chat", "general").await;
    send(&app, "alice", "general", "before the deploy").await;
    app.wait_for_count("SELECT count(*) FROM chat_messages", 1).await;
    // A rolling deploy renamed a column the outbox writes (SQLSTATE 42703): a retry
    // fixes that once the deploy is through, so nothing may be dead-lettered.
    sqlx::query("ALTER TABLE chat_messages RENAME COLUMN edited_at TO edited_at_next")
        .execute(&app.pool)
        .await
        .unwrap();
    send(&app, "alice", "general", "held back").await;

    let failing = "boardsync_outbox_failures_total{domain=\"chat\"}";
    let mut metrics = String::new();
    for _ in 0..200 {
        metrics = app.get("/metrics").await.text().await.unwrap();
        if metrics.lines().any(|line| line.starts_with(failing) && !line.ends_with(" 0")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(metrics.lines().any(|line| line.starts_with(failing) && !line.ends_with(" 0")), "{metrics}");
    app.wait_for_count("SELECT count(*) FROM outbox_dead_letters", 0).await;

    sqlx::query("ALTER TABLE chat_messages RENAME COLUMN edited_at_next TO edited_at")
        .execute(&app.pool)
        .await
        .unwrap();
    app.wait_for_count("SELECT count(*) FROM chat_messages WHERE text = 'held back'", 1).await;
    app.wait_for_count("SELECT count(*) FROM outbox_dead_letters", 0).await;
}

#[actix_web::test]
async fn a_scope_that_is_not_warm_in_this_cache_generation_takes_no_writes() {
    let app = spawn_app_on_spacetimedb_with(|settings| {
        settings.framework["warm_wait_ms"] = json!(1000);
    })
    .await;
    // The scope's warm-up fails (PostgreSQL cannot be read), so the cache may lack
    // what PostgreSQL has: a write now could carry a version PostgreSQL already has.
    sqlx::query("ALTER TABLE chat_messages RENAME TO chat_messages_away").execute(&app.pool).await.unwrap();
    app.create_scope("chat", "general").await;
    let refused =
        app.command("alice", "chat", "general", json!({ "type": "send", "id": Uuid::new_v4(), "text": "early" })).await;
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.json::<Value>().await.unwrap()["error"]["code"], "scope_warming");

    sqlx::query("ALTER TABLE chat_messages_away RENAME TO chat_messages").execute(&app.pool).await.unwrap();
    let rewarm = app
        .http
        .post(format!("{}/api/admin/warmup/chat/general", app.address))
        .bearer_auth(app.admin_token())
        .send()
        .await
        .unwrap();
    assert!(rewarm.status().is_success(), "{}", rewarm.text().await.unwrap());
    send(&app, "alice", "general", "once warm").await;
    app.wait_for_count("SELECT count(*) FROM chat_messages", 1).await;
}

#[actix_web::test]
async fn sigterm_drains_the_outbox_into_postgres_before_the_process_exits() {
    let stdb = TestSpacetime::publish_all(DOMAINS).await;
    let (_, database_url) = boardsync_testkit::TestPostgres::create_empty().await;
    let (mut process, app) =
        crate::process::Process::start(&database_url, (&stdb.url, &stdb.token, &stdb.prefix), &QUIET_OUTBOX).await;
    let app = &app;
    app.wait_for_cache().await;
    app.create_scope("chat", "general").await;
    for i in 0..20 {
        send(app, "alice", "general", &format!("before SIGTERM {i}")).await;
    }
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM chat_messages").fetch_one(&app.pool).await.unwrap();
    assert!(stored < 20, "the writes are still in the outbox ({stored} stored)");

    assert!(process.terminate().await, "a graceful stop exits successfully");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM chat_messages").fetch_one(&app.pool).await.unwrap();
    assert_eq!(stored, 20, "every acknowledged write is in PostgreSQL when the process is gone");
}

#[actix_web::test]
async fn outbox_drain_puts_what_a_crashed_server_left_in_the_outbox_into_postgres() {
    let stdb = TestSpacetime::publish_all(DOMAINS).await;
    let (_, database_url) = boardsync_testkit::TestPostgres::create_empty().await;
    let (mut process, app) =
        crate::process::Process::start(&database_url, (&stdb.url, &stdb.token, &stdb.prefix), &QUIET_OUTBOX).await;
    app.wait_for_cache().await;
    app.create_scope("chat", "general").await;
    for i in 0..12 {
        send(&app, "alice", "general", &format!("left behind {i}")).await;
    }
    // The server dies with the writes still in the cache's outbox; before a schema
    // change clears the cache, `outbox drain` puts them into PostgreSQL.
    process.kill();
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM chat_messages").fetch_one(&app.pool).await.unwrap();
    assert!(stored < 12, "still in the outbox ({stored} stored)");
    let drained = process.run(&["outbox", "drain"]);
    let stdout = String::from_utf8_lossy(&drained.stdout);
    assert!(drained.status.success(), "{stdout}{}", String::from_utf8_lossy(&drained.stderr));
    assert!(stdout.contains("chat: "), "{stdout}");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM chat_messages").fetch_one(&app.pool).await.unwrap();
    assert_eq!(stored, 12, "every acknowledged write is in PostgreSQL");

    // With PostgreSQL unreachable it refuses (nothing could be drained), and says why.
    let refused = process.run_with(&["outbox", "drain"], &[("DATABASE_URL", "postgres://postgres@127.0.0.1:9/none")]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("PostgreSQL is unreachable"));
}

/// The cache holds every user's data: only the backend's identity may read it. Anyone
/// can get a SpacetimeDB identity, so a stranger's SQL and subscriptions must see
/// nothing of any module's tables.
#[actix_web::test]
async fn a_stranger_s_spacetimedb_identity_reads_nothing_of_the_cache() {
    let app = spawn_app_on_spacetimedb().await;
    let writes = [
        ("chat", "message", json!({ "type": "send", "text": "secret" })),
        ("poll", "poll_option", json!({ "type": "add_option", "label": "secret" })),
        ("kanban", "board_column", json!({ "type": "create_column", "name": "secret" })),
        ("whiteboard", "element", json!({ "type": "add", "kind": "rect", "x": 1.0, "y": 2.0 })),
    ];
    let stdb = &app.settings.spacetimedb;
    let owner = secrecy::ExposeSecret::expose_secret(&stdb.token).to_string();
    let stranger = stranger_token(&stdb.url).await;
    for (domain, table, mut command) in writes {
        app.create_scope(domain, "team").await;
        let id = Uuid::new_v4().to_string();
        command["id"] = json!(id);
        let response = app.command("alice", domain, "team", command).await;
        assert_eq!(response.status(), 200, "{domain}: {}", response.text().await.unwrap());
        let database = format!("{}-{domain}", stdb.database_prefix);
        for table in [table, "sync_outbox", "cache_epoch", "owner", "module_settings", "forgotten_scope"] {
            let query = format!("SELECT * FROM {table}");
            let (status, body) = sql(&stdb.url, &owner, &database, &query).await;
            assert_eq!(status, 200, "the backend reads {domain}'s {table}: {body}");
            let (status, body) = sql(&stdb.url, &stranger, &database, &query).await;
            assert!(status >= 400, "a stranger must not read {domain}'s {table}, got {status}: {body}");
            assert!(!body.contains(&id) && !body.contains("secret"), "{domain}'s {table} leaked: {body}");
        }
        let (_, body) = sql(&stdb.url, &owner, &database, &format!("SELECT * FROM {table}")).await;
        assert!(body.contains(&id), "the backend sees the row it wrote: {body}");
    }
}

/// A channel's cache holds its newest messages; older pages come from PostgreSQL
/// through the same cursor, and authors edit messages outside the window.
#[actix_web::test]
async fn history_beyond_the_warm_window_pages_back_through_postgres() {
    let app = spawn_app_on_spacetimedb().await;
    history(&app, "long", 30).await;
    let config = json!({ "warmup": { "max_items": 5 }, "access": { "authenticated": "write" } });
    assert_eq!(app.put_scope("chat", "long", json!({ "name": "long", "config": config })).await.status(), 200);
    let recent = send(&app, "alice", "long", "new").await;

    let seen = app.all_pages("bob", "chat", "long", 4).await;
    app.wait_for_count("SELECT count(*) FROM chat_messages WHERE channel = 'long'", 31).await;
    let stored: Vec<Uuid> =
        sqlx::query_scalar("SELECT id FROM chat_messages WHERE channel = 'long' ORDER BY created_at DESC, id DESC")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(seen.first(), Some(&recent.to_string()), "the newest message first");
    let stored: Vec<String> = stored.iter().map(Uuid::to_string).collect();
    assert_eq!(seen, stored, "every message once, newest first, the cache's and PostgreSQL's pages joined");

    // The oldest message is far outside the window; its author still edits it.
    let (oldest, author): (Uuid, String) =
        sqlx::query_as("SELECT id, author FROM chat_messages WHERE channel = 'long' ORDER BY created_at LIMIT 1")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    let edit = json!({ "type": "edit", "id": oldest, "text": "edited long after", "durability": "durable" });
    let response = app.command("mallory", "chat", "long", edit.clone()).await;
    assert_eq!(response.status(), 403, "only its author: {}", response.text().await.unwrap());
    let response = app.command(&author, "chat", "long", edit).await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let text: String = sqlx::query_scalar("SELECT text FROM chat_messages WHERE id = $1")
        .bind(oldest)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(text, "edited long after");
}

/// PostgreSQL is the source of truth: a row changed with plain SQL by an outside
/// writer reaches the cache and live clients, and the backends' own writes are not
/// echoed back.
#[actix_web::test]
async fn a_row_changed_with_plain_sql_reaches_the_cache_and_live_clients() {
    let app = spawn_app_on_spacetimedb().await;
    app.create_scope("chat", "general").await;
    let mine = Uuid::new_v4();
    let send = json!({ "type": "send", "id": mine, "text": "typo", "durability": "durable" });
    assert_eq!(app.command("alice", "chat", "general", send).await.status(), 200);
    let echoes: i64 = sqlx::query_scalar("SELECT count(*) FROM outside_changes").fetch_one(&app.pool).await.unwrap();
    assert_eq!(echoes, 0, "a backend's own writes are no outside changes");
    let mut bob = app.live("bob", "chat", "general").await;

    // An operator's connection: not a backend's.
    let operator =
        sqlx::PgPool::connect(secrecy::ExposeSecret::expose_secret(&app.settings.database.url)).await.unwrap();
    let started = std::time::Instant::now();
    sqlx::query("UPDATE chat_messages SET text = 'fixed by an operator' WHERE id = $1")
        .bind(mine)
        .execute(&operator)
        .await
        .unwrap();
    let event = bob.next_event().await;
    let delay = started.elapsed();
    assert_eq!(event["type"], "edited", "{event}");
    assert_eq!(event["message"]["text"], "fixed by an operator");
    assert_eq!(
        event["message"]["version"], 1_000_001,
        "an outside write jumps the version: it supersedes what the cache has not delivered yet"
    );
    let cached = app.snapshot("carol", "chat", "general").await;
    assert_eq!(cached["items"][0]["text"], "fixed by an operator", "the cache has it");

    let theirs = Uuid::new_v4();
    sqlx::query("INSERT INTO chat_messages (id, channel, author, text, created_at, version) VALUES ($1, 'general', 'importer', 'imported', now(), 1)")
        .bind(theirs)
        .execute(&operator)
        .await
        .unwrap();
    let event = bob.next_event().await;
    assert_eq!(
        (event["type"].as_str(), event["message"]["id"].as_str()),
        (Some("sent"), Some(theirs.to_string().as_str()))
    );
    let cached = app.snapshot("carol", "chat", "general").await;
    assert_eq!(cached["items"][0]["text"], "imported");
    // The cache's later writes to it still reach PostgreSQL: versions move on from 2.
    let edit = json!({ "type": "edit", "id": mine, "text": "final", "durability": "durable" });
    let edited: Value = app.command("alice", "chat", "general", edit).await.json().await.unwrap();
    assert_eq!(edited["message"]["version"], 1_000_002);
    let text: String = sqlx::query_scalar("SELECT text FROM chat_messages WHERE id = $1")
        .bind(mine)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(text, "final");
    // A reaction added by SQL changes its message; a hard DELETE is refused.
    sqlx::query("INSERT INTO chat_reactions (message_id, user_id, emoji) VALUES ($1, 'dora', '🎉')")
        .bind(theirs)
        .execute(&operator)
        .await
        .unwrap();
    let event = loop {
        // (Alice's edit comes first.)
        let event = bob.next_event().await;
        if event["message"]["id"] == json!(theirs) {
            break event;
        }
    };
    assert_eq!(event["message"]["reactions"][0]["user"], "dora", "{event}");
    let refused = sqlx::query("DELETE FROM chat_messages WHERE id = $1").bind(theirs).execute(&operator).await;
    assert!(refused.unwrap_err().to_string().contains("mark rows"), "outside writers soft-delete");
    println!("an outside SQL update reached a live client in {} ms", delay.as_millis());
}

/// A channel without warm-up pages from PostgreSQL, with the cache's writes that have
/// not reached PostgreSQL yet in their place.
#[actix_web::test]
async fn a_channel_without_warm_up_shows_writes_postgres_does_not_have_yet() {
    let app = spawn_app_on_spacetimedb_with(|s| {
        // The outbox does not drain during this test.
        s.framework["outbox_push"] = json!(false);
        s.framework["outbox_poll_interval_ms"] = json!(600_000);
    })
    .await;
    // (Announced, the old rows would make the follower warm the scope again after the
    // send, and that run first writes back what the cache keeps: the new message.)
    history_unannounced(&app, "cold", 3).await;
    let config = json!({ "warmup": { "enabled": false }, "access": { "authenticated": "write" } });
    assert_eq!(app.put_scope("chat", "cold", json!({ "name": "cold", "config": config })).await.status(), 200);
    let fresh = send(&app, "alice", "cold", "not in postgres yet").await;
    let texts = |page: &Value| -> Vec<String> {
        page["items"].as_array().unwrap().iter().map(|m| m["text"].as_str().unwrap().to_string()).collect()
    };
    let first: Value = app.get_as("bob", "/api/chat/cold?limit=2").await.json().await.unwrap();
    assert_eq!(texts(&first), ["not in postgres yet", "old 3"]);
    let next = first["next_before"].as_str().unwrap();
    let second: Value = app.get_as("bob", &format!("/api/chat/cold?limit=2&before={next}")).await.json().await.unwrap();
    assert_eq!(texts(&second), ["old 2", "old 1"]);
    let after_fresh: Value =
        app.get_as("bob", &format!("/api/chat/cold?limit=1&before={fresh}")).await.json().await.unwrap();
    assert_eq!(texts(&after_fresh), ["old 3"], "a cursor only the cache has");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM chat_messages WHERE channel = 'cold'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, 3, "the new message was not in PostgreSQL yet");
}

/// A channel within its window, warmed again while this node holds its rows, stays
/// whole in the cache: its snapshot comes from the cache alone. (A warm-up that set
/// the node's floor at the channel's oldest row would send every short page to
/// PostgreSQL.)
#[actix_web::test]
async fn a_channel_within_its_window_warmed_while_held_is_served_from_the_cache_alone() {
    let app = spawn_app_on_spacetimedb().await;
    history_unannounced(&app, "small", 3).await;
    app.create_scope("chat", "small").await;
    wait_for_warmup(&app, &["small"], 1).await;
    // Bob's socket makes this node hold the channel's rows.
    let _bob = app.live("bob", "chat", "small").await;
    assert_eq!(app.snapshot("bob", "chat", "small").await["items"].as_array().unwrap().len(), 3);
    let rewarm = app
        .http
        .post(format!("{}/api/admin/warmup/chat/small", app.address))
        .bearer_auth(app.admin_token())
        .send()
        .await
        .unwrap();
    assert!(rewarm.status().is_success(), "{}", rewarm.text().await.unwrap());
    wait_for_warmup(&app, &["small"], 2).await;

    // An older message only PostgreSQL has, written as a backend writes (so no outside
    // change brings it to the cache): a page read from PostgreSQL would show it.
    let mut tx = app.pool.begin().await.unwrap();
    sqlx::query("SET LOCAL boardsync.origin = 'backend'").execute(&mut *tx).await.unwrap();
    sqlx::query(
        "INSERT INTO chat_messages (id, channel, author, text, created_at, version)
         VALUES (gen_random_uuid(), 'small', 'history', 'older', now() - interval '1 hour', 1)",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let snapshot = app.snapshot("alice", "chat", "small").await;
    assert_eq!(snapshot["items"].as_array().unwrap().len(), 3, "served from the cache alone: {snapshot}");
}
