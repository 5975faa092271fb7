//! Kanban through the generic API: concurrent moves converge to one order in the
//! cache, in every client, and in PostgreSQL.

use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{spawn_app_on_spacetimedb, TestApp};

async fn command(app: &TestApp, body: Value) -> Value {
    let response = app.command("alice", "kanban", "roadmap", body).await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    response.json().await.unwrap()
}

/// Card ids of the board in snapshot order.
async fn card_order(app: &TestApp) -> Vec<String> {
    let snapshot = app.snapshot("bob", "kanban", "roadmap").await;
    snapshot["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|item| item["kind"] == "card")
        .map(|card| card["id"].as_str().unwrap().to_string())
        .collect()
}

#[actix_web::test]
async fn concurrent_moves_converge_in_the_cache_the_clients_and_postgres() {
    let app = spawn_app_on_spacetimedb().await;
    app.create_scope("kanban", "roadmap").await;
    let (todo, done) = (Uuid::new_v4(), Uuid::new_v4());
    command(&app, json!({ "type": "create_column", "id": todo, "name": "todo" })).await;
    command(&app, json!({ "type": "create_column", "id": done, "name": "done", "wip_limit": 20 })).await;
    let mut cards = Vec::new();
    for i in 0..10 {
        let id = Uuid::new_v4();
        command(&app, json!({ "type": "create_card", "id": id, "column": todo, "title": format!("task {i}") })).await;
        cards.push(id);
    }
    let mut watcher = app.live("carol", "kanban", "roadmap").await;

    let moves = cards
        .iter()
        .map(|id| app.command("alice", "kanban", "roadmap", json!({ "type": "move_card", "id": id, "column": done })));
    for response in futures::future::join_all(moves).await {
        assert_eq!(response.status(), 200);
    }

    // The live client sees every move; the cache, and PostgreSQL once drained, agree.
    for _ in 0..10 {
        assert_eq!(watcher.next_event().await["type"], "card_changed");
    }
    let cached = card_order(&app).await;
    app.wait_for_count(
        "SELECT count(*) FROM kanban_cards WHERE column_id = (SELECT id FROM kanban_columns WHERE name = 'done')",
        10,
    )
    .await;
    let stored: Vec<String> = sqlx::query_scalar(
        "SELECT id::text FROM kanban_cards WHERE NOT deleted ORDER BY position COLLATE \"C\", id::text",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(cached, stored);

    let full = app
        .command("alice", "kanban", "roadmap", json!({ "type": "set_wip_limit", "id": done, "wip_limit": 10 }))
        .await;
    assert_eq!(full.status(), 200);
    let refused = app
        .command(
            "alice",
            "kanban",
            "roadmap",
            json!({ "type": "create_card", "id": Uuid::new_v4(), "column": done, "title": "x" }),
        )
        .await;
    assert_eq!(refused.status(), 409);
    assert_eq!(refused.json::<Value>().await.unwrap()["error"]["code"], "column_full");
}

/// A WIP limit past the cards a board holds is refused on both adapters (PostgreSQL's
/// column could not hold every u32, and the two would then disagree).
#[actix_web::test]
async fn a_wip_limit_past_the_board_is_refused() {
    for app in [crate::helpers::spawn_app().await, crate::helpers::spawn_app_on_spacetimedb().await] {
        app.create_scope("kanban", "wip").await;
        for (command, id) in [("create_column", uuid::Uuid::new_v4()), ("set_wip_limit", uuid::Uuid::new_v4())] {
            let body = serde_json::json!({ "type": command, "id": id, "name": "Doing", "wip_limit": 3_000_000_000u32 });
            let body = if command == "set_wip_limit" {
                serde_json::json!({ "type": command, "id": id, "wip_limit": 3_000_000_000u32 })
            } else {
                body
            };
            let refused = app.command("alice", "kanban", "wip", body).await;
            assert_eq!(refused.status(), 422, "{command}");
            assert_eq!(refused.json::<serde_json::Value>().await.unwrap()["error"]["code"], "invalid_wip_limit");
        }
    }
}

/// A card's assignees and labels are sets: a repeated one is refused on both adapters
/// (clients key them by value; one card with `bug, bug` blanked the demo board).
#[actix_web::test]
async fn repeated_labels_or_assignees_are_refused() {
    for app in [crate::helpers::spawn_app().await, crate::helpers::spawn_app_on_spacetimedb().await] {
        app.create_scope("kanban", "tags").await;
        let column = uuid::Uuid::new_v4();
        let create = serde_json::json!({ "type": "create_column", "id": column, "name": "To do" });
        assert_eq!(app.command("alice", "kanban", "tags", create).await.status(), 200);
        let card = uuid::Uuid::new_v4();
        let twice = serde_json::json!({ "type": "create_card", "id": card, "column": column, "title": "t",
            "labels": ["bug", "bug"] });
        let refused = app.command("alice", "kanban", "tags", twice).await;
        assert_eq!(refused.status(), 422);
        assert_eq!(refused.json::<serde_json::Value>().await.unwrap()["error"]["code"], "duplicate_tags");
        let once = serde_json::json!({ "type": "create_card", "id": card, "column": column, "title": "t",
            "labels": ["bug", "ui"] });
        assert_eq!(app.command("alice", "kanban", "tags", once).await.status(), 200);
        let edit = serde_json::json!({ "type": "edit_card", "id": card, "assignees": ["ada", "ada"] });
        let refused = app.command("alice", "kanban", "tags", edit).await;
        assert_eq!(refused.json::<serde_json::Value>().await.unwrap()["error"]["code"], "duplicate_tags");
    }
}
