//! Purging a scope (`DELETE /api/admin/scopes/{d}/{s}?purge=true`) on both adapters:
//! its items are gone from PostgreSQL and the cache, and no write racing the purge
//! brings them back. Also the operator's outbox and dead-letter routes.

use std::time::Duration;

use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{spawn_app, spawn_app_on_spacetimedb, TestApp, DOMAINS};

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
