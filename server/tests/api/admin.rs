//! Scopes through the admin API, and the OpenAPI document.

use serde_json::{json, Value};

use crate::helpers::{boardsync_cli, spawn_app};

#[actix_web::test]
async fn scopes_are_created_updated_and_listed_with_validated_config() {
    let app = spawn_app().await;

    let created = app.put_scope("chat", "general", json!({ "name": "General" })).await;
    assert_eq!(created.status(), 200);
    let config = json!({ "warmup": { "max_items": 50, "priority": 5 } });
    let updated: Value = app
        .put_scope("chat", "general", json!({ "name": "General chat", "config": config }))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(updated["name"], "General chat");
    assert_eq!(updated["config"]["warmup"]["max_items"], 50);

    for (bad, code) in [
        (json!({ "name": "x", "config": { "warmup": { "max_itemz": 5 } } }), "invalid_scope_config"),
        (json!({ "name": "x", "config": { "colour": "red" } }), "invalid_scope_config"),
        (json!({ "name": "x", "config": [] }), "invalid_scope_config"),
        (json!({ "name": "  " }), "invalid_scope_name"),
    ] {
        let response = app.put_scope("chat", "general", bad).await;
        assert_eq!(response.status(), 422);
        assert_eq!(response.json::<Value>().await.unwrap()["error"]["code"], code);
    }
    assert_eq!(app.put_scope("nope", "general", json!({ "name": "x" })).await.status(), 404);

    let listed: Value = app.get_as_admin("/api/admin/scopes?domain=chat").await.json().await.unwrap();
    let scopes = listed["scopes"].as_array().unwrap();
    assert_eq!(scopes.len(), 1);
    assert_eq!((scopes[0]["key"].as_str(), scopes[0]["name"].as_str()), (Some("general"), Some("General chat")));
    assert_eq!(scopes[0]["config"]["warmup"]["priority"], 5, "a refused update leaves the stored config alone");
}

/// Every domain has its own paths, and every command, event, item and live frame its
/// fields, generated from the Rust types.
#[actix_web::test]
async fn the_openapi_document_describes_every_domain_from_its_types() {
    let app = spawn_app().await;

    let document: Value = app.get("/api/openapi.json").await.json().await.unwrap();

    assert_eq!(document["openapi"], "3.0.3");
    let schemas = &document["components"]["schemas"];
    let tags = |schema: &str| -> Vec<String> {
        let variants = schemas[schema]["oneOf"].as_array().unwrap_or_else(|| panic!("{schema} has variants"));
        variants.iter().map(|v| v["properties"]["type"]["enum"][0].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(tags("ChatRequest"), ["send", "edit", "delete", "react", "unreact"]);
    assert_eq!(tags("PollRequest"), ["add_option", "vote", "unvote", "remove_option"]);
    assert!(tags("KanbanRequest").contains(&"move_card".to_owned()));
    assert_eq!(tags("WhiteboardRequest"), ["add", "update", "move", "delete", "reorder"]);
    let send = &schemas["ChatRequest"]["oneOf"][0];
    assert_eq!(send["required"], json!(["type", "id", "text"]));
    assert_eq!(send["additionalProperties"], false, "unknown fields are refused, as the server does");
    assert!(send["properties"]["durability"].is_object());
    assert!(schemas["ChatClientFrame"]["oneOf"][0]["properties"]["ref"].is_object());
    let add = &schemas["WhiteboardRequest"]["oneOf"][0];
    assert!(add["properties"]["style"]["description"].as_str().unwrap().contains("JSON object"));
    for domain in ["chat", "kanban", "poll", "whiteboard"] {
        for path in ["", "/{scope}", "/{scope}/live", "/{scope}/members", "/{scope}/members/{user}"] {
            assert!(document["paths"][format!("/api/{domain}{path}")].is_object(), "/api/{domain}{path}");
        }
        let snapshot = &document["paths"][format!("/api/{domain}/{{scope}}")]["get"];
        assert!(!snapshot["description"].as_str().unwrap().is_empty(), "{domain} says how its snapshot is ordered");
        let page = &snapshot["responses"]["200"]["content"]["application/json"]["schema"];
        assert_eq!(page["required"], json!(["items", "has_more", "next_before"]));
        let live = &document["paths"][format!("/api/{domain}/{{scope}}/live")]["get"]["x-websocket"];
        assert!(live["server"]["$ref"].as_str().unwrap().ends_with("EventFrame"), "{live}");
    }
    let server_frame = &schemas["ChatEventFrame"];
    let kinds: Vec<&str> = server_frame["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["properties"]["kind"]["enum"][0].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["ready", "event", "reply", "resync", "presence_snapshot", "presence", "presence_left"]);
    let signal = schemas["ChatClientFrame"]["oneOf"].as_array().unwrap().last().unwrap().clone();
    assert!(signal["$ref"].as_str().unwrap().ends_with("ClientSignal"), "{signal}");
    assert!(schemas["WarmupStatus"]["properties"]["rows_loaded"].is_object());
    assert!(document["paths"]["/api/admin/warmup"]["post"]["responses"]["202"].is_object());
}

/// `boardsync openapi` prints, without a server, the document a server serves: the
/// one the generated client types are made from.
#[actix_web::test]
async fn the_command_line_prints_the_document_the_server_serves() {
    let app = spawn_app().await;
    let served: Value = app.get("/api/openapi.json").await.json().await.unwrap();
    let output = boardsync_cli(&["openapi"]).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let printed: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(printed, served);
}

/// `boardsync warmup` against a server on the PostgreSQL adapter: nothing to warm,
/// said plainly, exit 0.
#[actix_web::test]
async fn warmup_on_the_postgres_adapter_says_there_is_nothing_to_warm() {
    let app = spawn_app().await;
    let output = boardsync_cli(&["warmup", "--url", &app.address]).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout} {}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("nothing to warm"), "{stdout}");
}

/// A scope is read, patched (name, or config merged key by key) and deleted on its
/// own; deleting keeps its items in PostgreSQL and closes its live sockets.
#[actix_web::test]
async fn scopes_are_read_patched_and_deleted_one_by_one() {
    let app = spawn_app().await;
    let admin = |request: reqwest::RequestBuilder| request.bearer_auth(app.admin_token()).send();
    let url = format!("{}/api/admin/scopes/chat/general", app.address);
    let config = json!({ "warmup": { "max_items": 50 }, "access": { "authenticated": "write" } });
    assert_eq!(app.put_scope("chat", "general", json!({ "name": "General", "config": config })).await.status(), 200);

    let renamed: Value =
        admin(app.http.patch(&url).json(&json!({ "name": "Lobby" }))).await.unwrap().json().await.unwrap();
    assert_eq!(
        (renamed["name"].as_str(), renamed["config"]["warmup"]["max_items"].as_u64()),
        (Some("Lobby"), Some(50))
    );
    let patch = json!({ "config": { "warmup": { "priority": 3 } } });
    let merged: Value = admin(app.http.patch(&url).json(&patch)).await.unwrap().json().await.unwrap();
    assert_eq!(merged["config"]["warmup"], json!({ "max_items": 50, "priority": 3 }), "merged, not replaced");
    assert_eq!(merged["config"]["access"]["authenticated"], "write");
    let removed = json!({ "config": { "warmup": { "max_items": null } } });
    let merged: Value = admin(app.http.patch(&url).json(&removed)).await.unwrap().json().await.unwrap();
    assert_eq!(merged["config"]["warmup"], json!({ "priority": 3 }), "null removes a key");
    let bad = json!({ "config": { "warmup": { "max_itemz": 1 } } });
    assert_eq!(admin(app.http.patch(&url).json(&bad)).await.unwrap().status(), 422);
    let read: Value = admin(app.http.get(&url)).await.unwrap().json().await.unwrap();
    assert_eq!((read["name"].as_str(), &read["config"]["warmup"]), (Some("Lobby"), &json!({ "priority": 3 })));

    // Deleting keeps the items.
    let id = uuid::Uuid::new_v4();
    let send = json!({ "type": "send", "id": id, "text": "still here" });
    assert_eq!(app.command("alice", "chat", "general", send).await.status(), 200);
    let mut live = app.live("bob", "chat", "general").await;
    let deleted: Value = admin(app.http.delete(&url)).await.unwrap().json().await.unwrap();
    assert_eq!(deleted["items"], "kept in PostgreSQL");
    let last = live.next_non_event().await;
    assert_eq!(last["error"]["code"], "access_revoked", "{last}");
    assert_eq!(app.get_as("bob", "/api/chat/general").await.status(), 404);
    assert_eq!(admin(app.http.get(&url)).await.unwrap().status(), 404);
    assert_eq!(admin(app.http.delete(&url)).await.unwrap().status(), 404);
    app.create_scope("chat", "general").await;
    let snapshot = app.snapshot("bob", "chat", "general").await;
    assert_eq!(snapshot["items"][0]["text"], "still here", "created again, its items are back");
}

/// A patch racing a delete never brings the scope back: whichever comes second sees
/// the other's result (the patch then answers 404).
#[actix_web::test]
async fn a_patch_racing_a_delete_never_revives_the_scope() {
    let app = spawn_app().await;
    let url = format!("{}/api/admin/scopes/chat/racy", app.address);
    for round in 0..20 {
        app.create_scope("chat", "racy").await;
        let patch = app.http.patch(&url).bearer_auth(app.admin_token()).json(&json!({ "name": "Renamed" })).send();
        let delete = app.http.delete(&url).bearer_auth(app.admin_token()).send();
        let (patched, deleted) = tokio::join!(patch, delete);
        assert_eq!(deleted.unwrap().status(), 200, "round {round}");
        assert!([200, 404].contains(&patched.unwrap().status().as_u16()), "round {round}");
        let read = app.http.get(&url).bearer_auth(app.admin_token()).send().await.unwrap();
        assert_eq!(read.status(), 404, "round {round}: the deleted scope stays deleted");
    }
}
