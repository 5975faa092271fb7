//! The fourth domain through the generic API: no route code was written for it.

use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{spawn_app, spawn_app_on_spacetimedb, TestApp};

async fn lunch_vote(app: &TestApp) {
    app.create_scope("poll", "lunch").await;
    let mut watcher = app.live("dave", "poll", "lunch").await;
    let pizza = Uuid::new_v4();
    let added =
        app.command("alice", "poll", "lunch", json!({ "type": "add_option", "id": pizza, "label": "pizza" })).await;
    assert_eq!(added.status(), 200);
    for voter in ["bob", "carol"] {
        let voted = app.command(voter, "poll", "lunch", json!({ "type": "vote", "id": pizza })).await;
        assert_eq!(voted.status(), 200);
    }
    let refused = app.command("bob", "poll", "lunch", json!({ "type": "remove_option", "id": pizza })).await;
    assert_eq!(refused.status(), 403);
    let empty =
        app.command("bob", "poll", "lunch", json!({ "type": "add_option", "id": Uuid::new_v4(), "label": "" })).await;
    assert_eq!(empty.status(), 422);

    let kinds: Vec<String> = {
        let mut kinds = Vec::new();
        for _ in 0..3 {
            kinds.push(watcher.next_event().await["type"].as_str().unwrap().to_string());
        }
        kinds
    };
    assert_eq!(kinds, ["option_added", "voted", "voted"]);
    let snapshot: Value = app.snapshot("dave", "poll", "lunch").await;
    assert_eq!(snapshot["items"][0]["voters"], json!(["bob", "carol"]));
}

#[actix_web::test]
async fn a_poll_runs_through_the_generic_api_on_postgres() {
    lunch_vote(&spawn_app().await).await;
}

#[actix_web::test]
async fn a_poll_runs_through_the_generic_api_on_spacetimedb() {
    let app = spawn_app_on_spacetimedb().await;
    lunch_vote(&app).await;
    app.wait_for_count("SELECT count(*) FROM poll_votes", 2).await;
}
