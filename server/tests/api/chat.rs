//! Chat through the API, over real HTTP and real WebSockets.

use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{spawn_app, spawn_app_on_spacetimedb, TestApp};

#[actix_web::test]
async fn two_users_see_each_others_messages_edits_reactions_and_deletes_live() {
    two_users_chat(&spawn_app().await).await;
}

#[actix_web::test]
async fn two_users_chat_the_same_way_on_the_spacetimedb_adapter() {
    let app = spawn_app_on_spacetimedb().await;
    let health: Value = app.get("/health").await.json().await.unwrap();
    assert_eq!(health["adapter"], "spacetimedb");
    two_users_chat(&app).await;
}

/// Two users in one channel see each other's messages, edits, deletes and reactions live.
pub async fn two_users_chat(app: &TestApp) {
    app.create_scope("chat", "general").await;
    let mut alice = app.live("alice", "chat", "general").await;
    let mut bob = app.live("bob", "chat", "general").await;
    let id = Uuid::new_v4();

    // Alice sends over her socket and gets a reply; Bob gets the event.
    alice.send(json!({ "ref": "1", "type": "send", "id": id, "text": "hi bob" })).await;
    let reply = alice.reply("1").await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["event"]["type"], "sent");
    let event = bob.next_event().await;
    assert_eq!(event["type"], "sent");
    assert_eq!(event["message"]["id"], json!(id));
    assert_eq!(event["message"]["author"], "alice");
    assert_eq!(event["message"]["text"], "hi bob");
    assert_eq!(alice.next_event().await["type"], "sent", "the sender's socket sees the event too");

    // Bob reacts over plain HTTP; both sockets see it.
    let response = app.command("bob", "chat", "general", json!({ "type": "react", "id": id, "emoji": "👍" })).await;
    assert_eq!(response.status(), 200);
    for client in [&mut alice, &mut bob] {
        let event = client.next_event().await;
        assert_eq!(event["type"], "reacted");
        assert_eq!(event["user"], "bob");
        assert_eq!(event["message"]["reactions"], json!([{ "user": "bob", "emoji": "👍" }]));
    }

    // Bob may not edit Alice's message; the refusal comes back on his socket only.
    bob.send(json!({ "ref": "b1", "type": "edit", "id": id, "text": "hacked" })).await;
    let refused = bob.reply("b1").await;
    assert_eq!(refused["ok"], false);
    assert_eq!(refused["status"], 403);
    assert_eq!(refused["error"]["code"], "not_author");

    // Alice edits, then deletes; Bob sees both.
    alice.send(json!({ "ref": "2", "type": "edit", "id": id, "text": "hi bob!" })).await;
    assert_eq!(alice.reply("2").await["ok"], true);
    let edited = bob.next_event().await;
    assert_eq!((edited["type"].as_str(), edited["message"]["text"].as_str()), (Some("edited"), Some("hi bob!")));
    assert!(edited["message"]["edited_at"].is_string());

    bob.send(json!({ "ref": "b2", "type": "unreact", "id": id, "emoji": "👍" })).await;
    assert_eq!(bob.reply("b2").await["ok"], true);
    assert_eq!(bob.next_event().await["type"], "unreacted");

    alice.send(json!({ "ref": "3", "type": "delete", "id": id })).await;
    assert_eq!(alice.reply("3").await["ok"], true);
    let deleted = bob.next_event().await;
    assert_eq!(deleted["type"], "deleted");
    assert_eq!(deleted["message"]["deleted"], true);

    let snapshot = app.snapshot("carol", "chat", "general").await;
    let items = snapshot["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!((items[0]["deleted"].as_bool(), items[0]["text"].as_str()), (Some(true), Some("")));
}

#[actix_web::test]
async fn snapshots_page_with_limit_and_before() {
    let app = spawn_app().await;
    app.create_scope("chat", "general").await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let id = Uuid::new_v4();
        let response =
            app.command("alice", "chat", "general", json!({ "type": "send", "id": id, "text": format!("m{i}") })).await;
        assert_eq!(response.status(), 200);
        ids.push(id);
    }

    let first: Value = app.get_as("bob", "/api/chat/general?limit=2").await.json().await.unwrap();
    let texts: Vec<&str> = first["items"].as_array().unwrap().iter().map(|m| m["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["m2", "m1"]);
    assert_eq!((&first["next_before"], &first["has_more"]), (&json!(ids[1]), &json!(true)));

    let rest: Value =
        app.get_as("bob", &format!("/api/chat/general?limit=2&before={}", ids[1])).await.json().await.unwrap();
    let texts: Vec<&str> = rest["items"].as_array().unwrap().iter().map(|m| m["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["m0"]);
    assert_eq!((&rest["next_before"], &rest["has_more"]), (&Value::Null, &json!(false)));

    // A full page that happens to be the last says so: no empty page to fetch.
    let exact: Value = app.get_as("bob", "/api/chat/general?limit=3").await.json().await.unwrap();
    assert_eq!(exact["items"].as_array().unwrap().len(), 3);
    assert_eq!((&exact["next_before"], &exact["has_more"]), (&Value::Null, &json!(false)));
}

#[actix_web::test]
async fn a_retried_send_returns_the_same_message_once() {
    let app = spawn_app().await;
    app.create_scope("chat", "general").await;
    let command = json!({ "type": "send", "id": Uuid::new_v4(), "text": "only once" });

    let first: Value = app.command("alice", "chat", "general", command.clone()).await.json().await.unwrap();
    let second: Value = app.command("alice", "chat", "general", command).await.json().await.unwrap();

    assert_eq!(first["message"], second["message"]);
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM chat_messages").fetch_one(&app.pool).await.unwrap();
    assert_eq!(count, 1);
}
