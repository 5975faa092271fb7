//! Presence over the live socket: who is here, with a small state each, seen by the
//! scope's other members and by nobody else, on both adapters alike.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_on_spacetimedb, spawn_app_with, TestApp};

async fn joins_updates_and_leaves_reach_the_other_members(app: TestApp) {
    app.create_members_only_scope("whiteboard", "room").await;
    for (user, role) in [("alice", "editor"), ("bob", "viewer"), ("carol", "viewer")] {
        assert_eq!(app.set_member(None, "whiteboard", "room", user, role).await.status(), 200);
    }
    let mut alice = app.live("alice", "whiteboard", "room").await;
    assert_eq!(alice.next_presence().await, json!({ "kind": "presence_snapshot", "present": [] }));

    let mut bob = app.live("bob", "whiteboard", "room").await;
    let snapshot = bob.next_presence().await;
    assert_eq!(snapshot["present"][0]["user"], "alice", "{snapshot}");
    assert_eq!(snapshot["present"][0]["state"], Value::Null);
    let alice_connection = snapshot["present"][0]["connection"].clone();
    let joined = alice.next_presence().await;
    assert_eq!((joined["kind"].as_str(), joined["user"].as_str()), (Some("presence"), Some("bob")));
    let bob_connection = joined["connection"].clone();

    let cursor = json!({ "cursor": { "x": 120.5, "y": 40 } });
    alice.set_presence(cursor.clone()).await;
    let seen = bob.next_presence().await;
    assert_eq!(seen, json!({ "kind": "presence", "connection": alice_connection, "user": "alice", "state": cursor }));

    // A non-member cannot open the socket, so hears nothing; a member removed is
    // disconnected, and the others see them leave.
    assert_eq!(app.live_refused("nora", "whiteboard", "room").await, 404);
    assert_eq!(app.remove_member(None, "whiteboard", "room", "bob").await.status(), 204);
    let left = alice.next_presence().await;
    assert_eq!(left, json!({ "kind": "presence_left", "connection": bob_connection, "user": "bob" }));

    // A client that closes its socket leaves too.
    let carol = app.live("carol", "whiteboard", "room").await;
    assert_eq!(alice.next_presence().await["user"], "carol");
    carol.close().await;
    let left = alice.next_presence().await;
    assert_eq!((left["kind"].as_str(), left["user"].as_str()), (Some("presence_left"), Some("carol")));
    // Nobody hears their own updates.
    alice.set_presence(json!({ "typing": true })).await;
    assert_eq!(alice.presence_within(Duration::from_millis(300)).await, None);
}

/// A socket opened with `presence=false` is not listed, hears no presence, and may
/// not set any; it still gets the scope's events.
#[actix_web::test]
async fn a_socket_may_stay_out_of_presence() {
    let app = spawn_app().await;
    app.create_members_only_scope("chat", "hall").await;
    for user in ["alice", "wall"] {
        assert_eq!(app.set_member(None, "chat", "hall", user, "editor").await.status(), 200);
    }
    let mut wall = app.live_with("wall", "chat", "hall", "&presence=false").await;
    let mut alice = app.live("alice", "chat", "hall").await;
    assert_eq!(alice.next_presence().await, json!({ "kind": "presence_snapshot", "present": [] }));
    alice.set_presence(json!({ "typing": true })).await;
    assert_eq!(wall.presence_within(Duration::from_millis(300)).await, None);
    wall.set_presence(json!({ "typing": true })).await;
    let refused = wall.next().await;
    assert_eq!(refused["error"]["code"], "presence_off", "{refused}");
    assert_eq!(alice.presence_within(Duration::from_millis(300)).await, None);
    alice.send(json!({ "type": "send", "id": uuid::Uuid::new_v4(), "text": "hello" })).await;
    assert_eq!(wall.next_event().await["message"]["text"], "hello");
}

#[actix_web::test]
async fn presence_on_the_postgres_adapter() {
    joins_updates_and_leaves_reach_the_other_members(spawn_app().await).await;
}

#[actix_web::test]
async fn presence_on_the_spacetimedb_adapter() {
    joins_updates_and_leaves_reach_the_other_members(spawn_app_on_spacetimedb().await).await;
}

/// A burst of updates past `presence.updates_per_sec` reaches the others as a few,
/// the latest last; a state past `presence.max_state_bytes` is refused.
#[actix_web::test]
async fn fast_updates_are_coalesced_and_large_ones_refused() {
    let app = spawn_app_with(|settings| {
        settings.presence.updates_per_sec = 5;
        settings.presence.max_state_bytes = 256;
    })
    .await;
    app.create_scope("whiteboard", "busy").await;
    let mut alice = app.live("alice", "whiteboard", "busy").await;
    let mut bob = app.live("bob", "whiteboard", "busy").await;
    assert_eq!(bob.next_presence().await["kind"], "presence_snapshot");
    for n in 0..50 {
        alice.set_presence(json!({ "n": n })).await;
    }
    let mut seen = Vec::new();
    while seen.last() != Some(&json!({ "n": 49 })) {
        seen.push(bob.next_presence().await["state"].clone());
    }
    assert!(seen.len() <= 5, "50 updates in a burst went out as {} ({seen:?})", seen.len());

    alice.send(json!({ "kind": "presence", "state": "x".repeat(300) })).await;
    let refused = alice.next().await;
    assert_eq!(
        (refused["status"].as_u64(), refused["error"]["code"].as_str()),
        (Some(422), Some("presence_too_large"))
    );
    alice.send(json!({ "kind": "wave" })).await;
    assert_eq!(alice.next().await["error"]["code"], "malformed_signal");
}

/// A command that carries a `kind` of its own (a whiteboard element's) is a command,
/// not a signal: only a frame without `type` is read as one.
#[actix_web::test]
async fn a_command_with_a_kind_field_is_still_a_command() {
    let app = spawn_app().await;
    app.create_scope("whiteboard", "shapes").await;
    let mut alice = app.live("alice", "whiteboard", "shapes").await;
    let add = json!({ "type": "add", "id": uuid::Uuid::new_v4(), "kind": "rect", "x": 1, "y": 2, "ref": "r1" });
    alice.send(add).await;
    let reply = alice.reply("r1").await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["event"]["elements"][0]["kind"], "rect");
}
