//! Purging a scope (`DELETE /api/admin/scopes/{d}/{s}?purge=true`) on both adapters:
//! its items are gone from PostgreSQL and the cache, and no write racing the purge
//! brings them back. Also the operator's outbox and dead-letter routes.

use std::time::Duration;

use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{spawn_app, spawn_app_on_spacetimedb, TestApp, DOMAINS};
use crate::process::Process;

/// A command creating one item in `domain`.
fn create(domain: &str) -> Value {
    let id = Uuid::new_v4();
    match domain {
        "chat" => json!({ "type": "send", "id": id, "text": "to be purged" }),
        "kanban" => json!({ "type": "create_column", "id": id, "name": "To do" }),
        "poll" => json!({ "type": "add_option", "id": id, "label": "Pizza" }),
        "whiteboard" => json!({ "type": "add", "id": id, "kind": "rect", "x": 1, "y": 2, "width": 3, "height": 4 }),
        other => panic!("no create command for {other}"),
    }
}

/// The domain's items of `scope` in PostgreSQL.
async fn rows_in_postgres(app: &TestApp, domain: &str, scope: &str) -> i64 {
    let query = match domain {
        "chat" => "SELECT count(*) FROM chat_messages WHERE channel = $1",
        "kanban" => "SELECT (SELECT count(*) FROM kanban_columns WHERE board = $1) + (SELECT count(*) FROM kanban_cards WHERE board = $1)",
        "poll" => "SELECT count(*) FROM poll_options WHERE poll = $1",
        "whiteboard" => "SELECT count(*) FROM whiteboard_elements WHERE board = $1",
        other => panic!("no table for {other}"),
    };
    sqlx::query_scalar(query).bind(scope).fetch_one(&app.pool).await.unwrap()
}

async fn purge(app: &TestApp, domain: &str, scope: &str) -> reqwest::Response {
    app.http
        .delete(format!("{}/api/admin/scopes/{domain}/{scope}?purge=true", app.address))
        .bearer_auth(app.admin_token())
        .send()
        .await
        .unwrap()
}

async fn purged_everywhere(app: &TestApp) {
    for domain in DOMAINS {
        app.create_scope(domain, "doomed").await;
        for _ in 0..3 {
            let response = app.command("alice", domain, "doomed", create(domain)).await;
            assert_eq!(response.status(), 200, "{domain}: {}", response.text().await.unwrap());
        }
        let mut live = app.live("bob", domain, "doomed").await;
        let response = purge(app, domain, "doomed").await;
        assert_eq!(response.status(), 200, "{domain}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["items"], "purged", "{domain}: {body}");
        assert_eq!(live.next_non_event().await["error"]["code"], "access_revoked", "{domain}: its sockets close");
        assert_eq!(app.get_as("alice", &format!("/api/{domain}/doomed")).await.status(), 404, "{domain}");
        let refused = app.command("alice", domain, "doomed", create(domain)).await;
        assert_eq!(refused.status(), 404, "{domain}: no write reaches a purged scope");
        assert_eq!(rows_in_postgres(app, domain, "doomed").await, 0, "{domain}: gone from PostgreSQL");

        // Created again, it starts empty: neither PostgreSQL nor the cache, nor an
        // outbox entry arriving late, brings the purged items back.
        app.create_scope(domain, "doomed").await;
        let mut snapshot = Value::Null;
        for _ in 0..20 {
            let response = app.get_as("alice", &format!("/api/{domain}/doomed")).await;
            assert_eq!(response.status(), 200, "{domain}");
            snapshot = response.json().await.unwrap();
            assert_eq!(snapshot["items"], json!([]), "{domain}: the re-created scope shows purged items");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert_eq!(snapshot["has_more"], false);
        assert_eq!(rows_in_postgres(app, domain, "doomed").await, 0, "{domain}");
        // And it works as any new scope.
        assert_eq!(app.command("alice", domain, "doomed", create(domain)).await.status(), 200, "{domain}");
    }
    assert_eq!(purge(app, "chat", "never-was").await.status(), 404);
}

#[actix_web::test]
async fn a_purged_scope_loses_its_items_on_the_postgres_adapter() {
    purged_everywhere(&spawn_app().await).await;
}

#[actix_web::test]
async fn a_purged_scope_loses_its_items_on_the_cache_adapter() {
    purged_everywhere(&spawn_app_on_spacetimedb().await).await;
}

/// Writers keep sending while the scope is purged: every write either failed or was
/// purged, and none lands in PostgreSQL or the cache afterwards (an outbox entry read
/// just before the purge, a command authorized just before it).
async fn writes_racing_a_purge_do_not_survive_it(app: &TestApp) {
    for round in 0..3 {
        let scope = format!("racing-{round}");
        app.create_scope("chat", &scope).await;
        let writers: Vec<_> = (0..4)
            .map(|writer| {
                let (http, address, token, scope) =
                    (app.http.clone(), app.address.clone(), app.token(&format!("w{writer}")), scope.clone());
                tokio::spawn(async move {
                    let mut accepted = 0;
                    for _ in 0..40 {
                        let send = json!({ "type": "send", "id": Uuid::new_v4(), "text": "racing" });
                        let response = http
                            .post(format!("{address}/api/chat/{scope}"))
                            .bearer_auth(&token)
                            .json(&send)
                            .send()
                            .await
                            .unwrap();
                        if response.status() == 200 {
                            accepted += 1;
                        }
                    }
                    accepted
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(purge(app, "chat", &scope).await.status(), 200, "round {round}");
        let mut accepted = 0;
        for writer in writers {
            accepted += writer.await.unwrap();
        }
        // Let any outbox entry still on its way reach PostgreSQL (or be dropped).
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(rows_in_postgres(app, "chat", &scope).await, 0, "round {round}: {accepted} accepted before");
        app.create_scope("chat", &scope).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let snapshot = app.snapshot("alice", "chat", &scope).await;
        assert_eq!(snapshot["items"], json!([]), "round {round}");
        assert_eq!(rows_in_postgres(app, "chat", &scope).await, 0, "round {round}");
    }
}

#[actix_web::test]
async fn writes_racing_a_purge_on_the_postgres_adapter_do_not_survive_it() {
    writes_racing_a_purge_do_not_survive_it(&spawn_app().await).await;
}

#[actix_web::test]
async fn writes_racing_a_purge_on_the_cache_adapter_do_not_survive_it() {
    writes_racing_a_purge_do_not_survive_it(&spawn_app_on_spacetimedb().await).await;
}

/// Holds the outbox's progress row so that no batch of `domain` can commit until the
/// returned transaction ends (the poller waits for it inside its transaction, with its
/// batch read).
async fn stall_outbox(app: &TestApp, domain: &str) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut stall = app.pool.begin().await.unwrap();
    let rows = sqlx::query("SELECT 1 FROM outbox_progress WHERE domain = $1 FOR UPDATE")
        .bind(domain)
        .fetch_all(&mut *stall)
        .await
        .unwrap();
    assert!(!rows.is_empty(), "the outbox has progress to hold");
    stall
}

/// Waits until some backend waits for a lock (the stalled poller, with its batch).
async fn until_someone_waits(app: &TestApp) {
    for _ in 0..200 {
        let waiting: i64 = sqlx::query_scalar(
            // This test's database only: tests run side by side on one cluster.
            // (A row lock's wait is on a transaction id, which names no database: the
            // waiting session's does.)
            "SELECT count(*) FROM pg_locks WHERE NOT granted
             AND pid IN (SELECT pid FROM pg_stat_activity WHERE datname = current_database())",
        )
        .fetch_one(&app.pool)
        .await
        .unwrap();
        if waiting > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("nobody waited for the stalled outbox");
}

async fn send_cached(app: &TestApp, scope: &str, text: &str) {
    let send = json!({ "type": "send", "id": Uuid::new_v4(), "text": text });
    let response = app.command("alice", "chat", scope, send).await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}

/// The outbox read a batch before the purge and commits it only after the scope was
/// created again: those writes were purged, and stay so.
#[actix_web::test]
async fn an_outbox_batch_from_before_the_purge_does_not_land_in_the_re_created_scope() {
    let app = spawn_app_on_spacetimedb().await;
    app.create_scope("chat", "warmup-of-progress").await;
    send_cached(&app, "warmup-of-progress", "makes a progress row").await;
    app.wait_for_count("SELECT count(*) FROM chat_messages", 1).await;
    app.create_scope("chat", "reborn").await;
    let stall = stall_outbox(&app, "chat").await;
    for text in ["one", "two", "three"] {
        send_cached(&app, "reborn", text).await;
    }
    until_someone_waits(&app).await;
    assert_eq!(purge(&app, "chat", "reborn").await.status(), 200);
    app.create_scope("chat", "reborn").await;
    stall.rollback().await.unwrap();
    // The poller commits its batch (or drops it) now; then a marker write shows the
    // outbox went past it.
    send_cached(&app, "reborn", "after").await;
    app.wait_for_count("SELECT count(*) FROM chat_messages WHERE channel = 'reborn'", 1).await;
    let texts: Vec<String> = sqlx::query_scalar("SELECT text FROM chat_messages WHERE channel = 'reborn'")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(texts, vec!["after"]);
    let snapshot = app.snapshot("alice", "chat", "reborn").await;
    let shown: Vec<&str> = snapshot["items"].as_array().unwrap().iter().map(|m| m["text"].as_str().unwrap()).collect();
    assert_eq!(shown, vec!["after"]);
}

/// A scope purged, created again and then deleted (items kept) keeps the writes made
/// to its new life, those still in the outbox at the delete too.
#[actix_web::test]
async fn a_plain_delete_after_a_purge_keeps_the_new_writes() {
    let app = spawn_app_on_spacetimedb().await;
    app.create_scope("chat", "twice").await;
    send_cached(&app, "twice", "old").await;
    app.wait_for_count("SELECT count(*) FROM chat_messages WHERE channel = 'twice'", 1).await;
    assert_eq!(purge(&app, "chat", "twice").await.status(), 200);
    app.create_scope("chat", "twice").await;
    let stall = stall_outbox(&app, "chat").await;
    for text in ["a", "b", "c"] {
        send_cached(&app, "twice", text).await;
    }
    let url = format!("{}/api/admin/scopes/chat/twice", app.address);
    let deleted = app.http.delete(&url).bearer_auth(app.admin_token()).send().await.unwrap();
    assert_eq!(deleted.status(), 200);
    stall.rollback().await.unwrap();
    app.wait_for_count("SELECT count(*) FROM chat_messages WHERE channel = 'twice'", 3).await;
}

/// A scope that warms nothing (warm-up off) takes commands again once created again.
#[actix_web::test]
async fn a_re_created_scope_without_warm_up_takes_commands() {
    let app = spawn_app_on_spacetimedb().await;
    let config = json!({ "warmup": { "enabled": false }, "access": { "authenticated": "write" } });
    let body = json!({ "name": "cold", "config": config });
    assert_eq!(app.put_scope("chat", "cold", body.clone()).await.status(), 200);
    send_cached(&app, "cold", "before").await;
    assert_eq!(purge(&app, "chat", "cold").await.status(), 200);
    assert_eq!(app.put_scope("chat", "cold", body).await.status(), 200);
    send_cached(&app, "cold", "after").await;
}

/// Two backends on one cache: the other backend's copies of writes acknowledged
/// before the purge do not come back when it creates the scope again.
#[actix_web::test]
async fn another_backend_s_copies_do_not_bring_a_purged_scope_back() {
    let first = spawn_app_on_spacetimedb().await;
    let database_url = secrecy::ExposeSecret::expose_secret(&first.settings.database.url).to_string();
    let (url, token, prefix) = (
        first.settings.spacetimedb.url.clone(),
        secrecy::ExposeSecret::expose_secret(&first.settings.spacetimedb.token).to_string(),
        first.settings.spacetimedb.database_prefix.clone(),
    );
    // The second one, a process of its own, drains only by a slow poll: the first one
    // acknowledges everything.
    let slow =
        [("BOARDSYNC__FRAMEWORK__OUTBOX_PUSH", "false"), ("BOARDSYNC__FRAMEWORK__OUTBOX_POLL_INTERVAL_MS", "60000")];
    let (mut process, second) = Process::start(&database_url, (&url, &token, &prefix), &slow).await;
    second.wait_for_cache().await;
    first.create_scope("chat", "shared").await;
    for text in ["1", "2", "3", "4", "5"] {
        send_cached(&first, "shared", text).await;
    }
    first.wait_for_count("SELECT count(*) FROM chat_messages WHERE channel = 'shared'", 5).await;
    assert_eq!(purge(&first, "chat", "shared").await.status(), 200);
    second.create_scope("chat", "shared").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rows_in_postgres(&first, "chat", "shared").await, 0);
    assert_eq!(first.snapshot("alice", "chat", "shared").await["items"], json!([]));
    assert_eq!(second.snapshot("alice", "chat", "shared").await["items"], json!([]));
    // Nor when it stops and writes what it kept.
    assert!(process.terminate().await, "a clean stop");
    assert_eq!(rows_in_postgres(&first, "chat", "shared").await, 0);
}

/// A dead letter as the outbox leaves one: the item's state as JSON.
async fn dead_letter(app: &TestApp, item: &Value, seq: i64) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO outbox_dead_letters (domain, cache_epoch, seq, entity, kind, payload, request_id, error)
         VALUES ('chat', 1, $1, $2, 'send', $3, 'test', 'refused') RETURNING id",
    )
    .bind(seq)
    .bind(item["id"].as_str().unwrap())
    .bind(item.to_string())
    .fetch_one(&app.pool)
    .await
    .unwrap()
}

#[actix_web::test]
async fn dead_letters_are_listed_replayed_and_discarded() {
    let app = spawn_app().await;
    let admin = |request: reqwest::RequestBuilder| request.bearer_auth(app.admin_token()).send();
    app.create_scope("chat", "letters").await;
    let send = json!({ "type": "send", "id": Uuid::new_v4(), "text": "kept" });
    assert_eq!(app.command("alice", "chat", "letters", send).await.status(), 200);
    let kept = app.snapshot("alice", "chat", "letters").await["items"][0].clone();

    // One PostgreSQL now takes (a new message), one it refuses again (other content
    // at the version it holds), one discarded.
    let mut fresh = kept.clone();
    fresh["id"] = json!(Uuid::new_v4());
    fresh["text"] = json!("replayed");
    let replayable = dead_letter(&app, &fresh, 1).await;
    let mut clashing = kept.clone();
    clashing["text"] = json!("other content, same version");
    let refused = dead_letter(&app, &clashing, 2).await;
    let discarded = dead_letter(&app, &fresh, 3).await;

    // A purge takes the scope's dead letters with it.
    let doomed = json!({ "id": Uuid::new_v4(), "channel": "doomed-letters" });
    sqlx::query(
        "INSERT INTO outbox_dead_letters (domain, cache_epoch, seq, entity, kind, payload, request_id, error, scope)
         VALUES ('chat', 1, 9, 'x', 'send', $1, 'test', 'refused', 'doomed-letters')",
    )
    .bind(doomed.to_string())
    .execute(&app.pool)
    .await
    .unwrap();
    app.create_scope("chat", "doomed-letters").await;
    let purged: Value = purge(&app, "chat", "doomed-letters").await.json().await.unwrap();
    assert_eq!(purged["purged"]["dead_letters"], 1, "{purged}");

    let listed: Value = admin(app.http.get(format!("{}/api/admin/dead-letters?domain=chat", app.address)))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<i64> = listed["items"].as_array().unwrap().iter().map(|l| l["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, vec![replayable, refused, discarded]);
    assert_eq!(listed["items"][0]["payload"]["text"], "replayed");

    let url = |id: i64, tail: &str| format!("{}/api/admin/dead-letters/chat/{id}{tail}", app.address);
    let replayed = admin(app.http.post(url(replayable, "/replay"))).await.unwrap();
    assert_eq!(replayed.status(), 200);
    assert_eq!(replayed.json::<Value>().await.unwrap()["written"], 1);
    let texts: Vec<String> =
        sqlx::query_scalar("SELECT text FROM chat_messages WHERE channel = 'letters' ORDER BY text")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(texts, vec!["kept", "replayed"]);

    let again = admin(app.http.post(url(refused, "/replay"))).await.unwrap();
    assert_eq!(again.status(), 409);
    assert_eq!(again.json::<Value>().await.unwrap()["error"]["code"], "replay_refused");
    let text: String = sqlx::query_scalar("SELECT text FROM chat_messages WHERE id = $1::uuid")
        .bind(kept["id"].as_str().unwrap())
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(text, "kept", "a refused replay changes nothing");

    assert_eq!(admin(app.http.delete(url(discarded, ""))).await.unwrap().status(), 200);
    assert_eq!(admin(app.http.delete(url(discarded, ""))).await.unwrap().status(), 404);
    assert_eq!(admin(app.http.post(url(replayable, "/replay"))).await.unwrap().status(), 404, "replayed is gone");
    let left: Value =
        admin(app.http.get(format!("{}/api/admin/dead-letters", app.address))).await.unwrap().json().await.unwrap();
    assert_eq!(left["items"].as_array().unwrap().len(), 1, "only the refused one is left: {left}");
    let outbox: Value =
        admin(app.http.get(format!("{}/api/admin/outbox", app.address))).await.unwrap().json().await.unwrap();
    let chat = outbox["domains"].as_array().unwrap().iter().find(|d| d["domain"] == "chat").unwrap();
    assert_eq!(chat["dead_letters"], 1);
    // Not for users.
    let as_user = app.get_as("alice", "/api/admin/dead-letters").await;
    assert_eq!(as_user.status(), 403);
}

#[actix_web::test]
async fn the_outbox_route_reports_what_metrics_export() {
    let app = spawn_app_on_spacetimedb().await;
    app.create_scope("chat", "lagging").await;
    for _ in 0..5 {
        let send = json!({ "type": "send", "id": Uuid::new_v4(), "text": "x", "durability": "durable" });
        assert_eq!(app.command("alice", "chat", "lagging", send).await.status(), 200);
    }
    let outbox: Value = app.get_as_admin("/api/admin/outbox").await.json().await.unwrap();
    let chat = outbox["domains"].as_array().unwrap().iter().find(|d| d["domain"] == "chat").unwrap().clone();
    assert_eq!(chat["adapter"], "spacetimedb");
    assert!(chat["lag_count"].as_u64().unwrap() >= 5, "{chat}");
    let lag = &chat["lag_ms"];
    let (p50, p99) = (lag["p50"].as_f64().unwrap(), lag["p99"].as_f64().unwrap());
    assert!(p50 > 0.0 && p50 <= p99, "{lag}");
    let metrics = app.get("/metrics").await.text().await.unwrap();
    let count_line = format!("boardsync_outbox_lag_seconds_count{{domain=\"chat\"}} {}", chat["lag_count"]);
    assert!(metrics.contains(&count_line), "the same count as /metrics: {count_line}");
}

/// A durable write the purge dropped on its way to PostgreSQL is not answered
/// durable: its writer hears 503 `not_yet_durable`, and a retry finds the scope gone.
#[actix_web::test]
async fn a_durable_write_the_purge_dropped_is_not_acknowledged_durable() {
    let app = spawn_app_on_spacetimedb().await;
    app.create_scope("chat", "progress").await;
    send_cached(&app, "progress", "makes a progress row").await;
    app.wait_for_count("SELECT count(*) FROM chat_messages", 1).await;
    app.create_scope("chat", "doomed-durable").await;
    let stall = stall_outbox(&app, "chat").await;
    let (http, address, token) = (app.http.clone(), app.address.clone(), app.token("alice"));
    let writer = tokio::spawn(async move {
        let send = json!({ "type": "send", "id": Uuid::new_v4(), "text": "durable", "durability": "durable" });
        let response = http
            .post(format!("{address}/api/chat/doomed-durable"))
            .bearer_auth(token)
            .json(&send)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json::<Value>().await.unwrap())
    });
    until_someone_waits(&app).await;
    assert_eq!(purge(&app, "chat", "doomed-durable").await.status(), 200);
    stall.rollback().await.unwrap();
    let (status, body) = writer.await.unwrap();
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("not_yet_durable")), "{body}");
    assert_eq!(rows_in_postgres(&app, "chat", "doomed-durable").await, 0);
}
