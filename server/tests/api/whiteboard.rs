//! The whiteboard through the generic API: stroke limits, and concurrent updates to
//! one element ending identical in the cache, the clients and PostgreSQL.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{spawn_app, spawn_app_on_spacetimedb};

#[actix_web::test]
async fn limits_are_422_and_concurrent_updates_end_identical_everywhere() {
    let app = spawn_app_on_spacetimedb().await;
    app.create_scope("whiteboard", "sketch").await;
    let huge: Vec<f32> = vec![1.0; 2 * 10_001];
    let refused = app
        .command(
            "alice",
            "whiteboard",
            "sketch",
            json!({ "type": "add", "id": Uuid::new_v4(), "kind": "stroke", "x": 0, "y": 0, "points": huge }),
        )
        .await;
    assert_eq!(refused.status(), 422, "validation, not a body over the size limit");
    assert_eq!(refused.json::<Value>().await.unwrap()["error"]["code"], "stroke_too_large");
    let odd = app
        .command(
            "alice",
            "whiteboard",
            "sketch",
            json!({ "type": "add", "id": Uuid::new_v4(), "kind": "blob", "x": 0, "y": 0 }),
        )
        .await;
    assert_eq!(odd.status(), 422);

    let id = Uuid::new_v4();
    let stroke: Vec<f32> = (0..2 * 10_000).map(|i| i as f32).collect();
    let added = app
        .command(
            "alice",
            "whiteboard",
            "sketch",
            json!({ "type": "add", "id": id, "kind": "stroke", "x": 0, "y": 0, "points": stroke }),
        )
        .await;
    assert_eq!(added.status(), 200, "the largest allowed stroke fits the cache and the outbox");
    let mut watcher = app.live("carol", "whiteboard", "sketch").await;
    // Each to an x the element never had (it starts at 0): an update to the x it has
    // would change nothing, so its version would not reach 9.
    let updates =
        (1..=8).map(|i| app.command("bob", "whiteboard", "sketch", json!({ "type": "update", "id": id, "x": i })));
    for response in futures::future::join_all(updates).await {
        assert_eq!(response.status(), 200);
    }
    // The watcher sees the element's final version (an event for the add may come first).
    let last_seen = loop {
        let element = watcher.next_event().await["elements"][0].clone();
        if element["version"] == 9 {
            break element;
        }
    };
    let cached = app.snapshot("carol", "whiteboard", "sketch").await["items"][0].clone();
    assert_eq!((cached["x"].clone(), cached["version"].clone()), (last_seen["x"].clone(), json!(9)));
    app.wait_for_count("SELECT version FROM whiteboard_elements", 9).await;
    let stored: (f64, i32) =
        sqlx::query_as("SELECT x, cardinality(points) FROM whiteboard_elements").fetch_one(&app.pool).await.unwrap();
    assert_eq!((stored.0, stored.1), (cached["x"].as_f64().unwrap(), 20_000));
}

#[actix_web::test]
async fn a_board_past_the_cache_message_limit_warms_in_batches_that_fit() {
    let app = spawn_app_on_spacetimedb().await;
    // 450 strokes of 20,000 points: about 36 MB in the cache's binary form, past
    // SpacetimeDB's 32 MiB message limit in one warm-up batch of 500 rows.
    let points: Vec<f32> = (0..20_000).map(|i| i as f32).collect();
    sqlx::query(
        "INSERT INTO whiteboard_elements (id, board, kind, x, y, width, height, rotation, style, points, z, deleted, created_at, version)
         SELECT gen_random_uuid(), 'huge', 'stroke', 0, 0, 0, 0, 0, '{}', $1, lpad(n::text, 6, '0'), false, now(), 1
         FROM generate_series(1, 450) AS n",
    )
    .bind(&points)
    .execute(&app.pool)
    .await
    .unwrap();
    app.create_scope("whiteboard", "huge").await;
    let mut status = Value::Null;
    for _ in 0..300 {
        let board: Value = app.get_as_admin("/api/admin/warmup?domain=whiteboard").await.json().await.unwrap();
        status = board["scopes"].as_array().unwrap().iter().find(|s| s["scope"] == "huge").cloned().unwrap_or_default();
        if status["state"] == "warm" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!((status["state"].as_str(), status["rows_loaded"].as_u64()), (Some("warm"), Some(450)), "{status}");
    // The first command here subscribes this backend to the board's 36 MB of rows.
    // On a loaded machine that can take longer than the reducer timeout: the answer
    // is then 503 `cache_timeout` with `retry_after`, and the subscription goes on,
    // so a client that retries as told gets in.
    let add = json!({ "type": "add", "id": Uuid::new_v4(), "kind": "rect", "x": 0, "y": 0 });
    let mut answer = (StatusCode::OK, String::new());
    for _ in 0..6 {
        let added = app.command("alice", "whiteboard", "huge", add.clone()).await;
        answer = (added.status(), added.text().await.unwrap_or_default());
        let body: Value = serde_json::from_str(&answer.1).unwrap_or_default();
        if answer.0 != StatusCode::SERVICE_UNAVAILABLE || body["error"]["code"] != "cache_timeout" {
            break;
        }
        assert_eq!(body["error"]["retry_after"], json!(1), "{body}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(answer.0, StatusCode::OK, "the board takes writes once warm: {}", answer.1);
}

/// `style` is a JSON object as text, opaque to the server but one shape for every
/// client: anything else is refused on both adapters, as the document says.
#[actix_web::test]
async fn a_style_must_be_a_json_object() {
    for app in [spawn_app().await, spawn_app_on_spacetimedb().await] {
        app.create_scope("whiteboard", "sketch").await;
        let add = |style: &str| json!({ "type": "add", "id": Uuid::new_v4(), "kind": "rect", "x": 0, "y": 0, "style": style });
        for bad in ["red", "[1,2]", "\"fill\"", "{\"fill\":"] {
            let refused = app.command("alice", "whiteboard", "sketch", add(bad)).await;
            assert_eq!(refused.status(), 422, "{bad}");
            assert_eq!(refused.json::<Value>().await.unwrap()["error"]["code"], "invalid_style", "{bad}");
        }
        let added = app.command("alice", "whiteboard", "sketch", add(r##"{"fill":"#ffd43b"}"##)).await;
        assert_eq!(added.status(), 200);
        let id = added.json::<Value>().await.unwrap()["elements"][0]["id"].clone();
        let update = json!({ "type": "update", "id": id, "style": "blue" });
        let refused = app.command("alice", "whiteboard", "sketch", update).await;
        assert_eq!(refused.json::<Value>().await.unwrap()["error"]["code"], "invalid_style");
    }
}

/// A page after an element deleted since is 409 `cursor_gone`, not an empty page that
/// would read as the end of the board.
#[actix_web::test]
async fn a_page_after_a_deleted_element_says_so() {
    for app in [spawn_app().await, spawn_app_on_spacetimedb().await] {
        app.create_scope("whiteboard", "paged").await;
        for x in 0..3 {
            let add = json!({ "type": "add", "id": Uuid::new_v4(), "kind": "rect", "x": x, "y": 0 });
            assert_eq!(app.command("alice", "whiteboard", "paged", add).await.status(), 200);
        }
        let first: Value = app.get_as("alice", "/api/whiteboard/paged?limit=2").await.json().await.unwrap();
        assert_eq!(first["has_more"], true);
        let cursor = first["next_before"].as_str().unwrap().to_owned();
        let delete = json!({ "type": "delete", "id": cursor });
        assert_eq!(app.command("alice", "whiteboard", "paged", delete).await.status(), 200);
        let next = app.get_as("alice", &format!("/api/whiteboard/paged?limit=2&before={cursor}")).await;
        assert_eq!(next.status(), 409);
        assert_eq!(next.json::<Value>().await.unwrap()["error"]["code"], "cursor_gone");
    }
}
