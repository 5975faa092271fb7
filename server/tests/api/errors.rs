//! Every bad input gets its status and a JSON error, and nothing is stored.

use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{spawn_app, spawn_app_on_spacetimedb, TestApp};

async fn assert_error(response: reqwest::Response, status: u16, code: &str) {
    assert_eq!(response.status().as_u16(), status, "expected {status} {code}");
    let body: Value = response.json().await.expect("errors are JSON");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
}

async fn stored_messages(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM chat_messages").fetch_one(&app.pool).await.unwrap()
}

#[actix_web::test]
async fn authentication_is_required_and_checked() {
    let app = spawn_app().await;
    app.create_scope("chat", "general").await;
    let url = format!("{}/api/chat/general", app.address);

    assert_error(app.http.get(&url).send().await.unwrap(), 401, "token_missing").await;
    assert_error(app.http.get(&url).bearer_auth("not-a-jwt").send().await.unwrap(), 401, "token_invalid").await;
    let mut foreign = app.settings.auth.clone();
    foreign.jwt_secret = "another-secret".to_string().into();
    let forged = boardsync::auth::issue_token(&foreign, "mallory", true).unwrap();
    assert_error(app.http.get(&url).bearer_auth(forged).send().await.unwrap(), 401, "token_invalid").await;
    let live = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{}/api/chat/general/live", app.port)).await;
    assert!(live.is_err(), "a WebSocket without a token is refused");
    // Expired means expired: a minute past `exp` is past the (small) leeway.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let secret = secrecy::ExposeSecret::expose_secret(&app.settings.auth.jwt_secret).to_string();
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({ "sub": "ada", "exp": now - 60 }),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap();
    assert_error(app.http.get(&url).bearer_auth(expired).send().await.unwrap(), 401, "token_expired").await;
}

/// Counters an operator alerts on exist from the start, at zero.
#[actix_web::test]
async fn outbox_failure_metrics_exist_before_the_first_failure() {
    let app = crate::helpers::spawn_app_on_spacetimedb().await;
    let metrics = app.get("/metrics").await.text().await.unwrap();
    for domain in ["chat", "kanban", "poll", "whiteboard"] {
        for counter in ["boardsync_outbox_failures_total", "boardsync_outbox_dead_letters_total"] {
            let line = format!("{counter}{{domain=\"{domain}\"}} 0");
            assert!(metrics.contains(&line), "{line} in {metrics}");
        }
    }
}

/// A known route with another method is 405 with `Allow`; a trailing slash is the
/// same route; re-warming everything has its own route.
#[actix_web::test]
async fn wrong_methods_are_405_and_trailing_slashes_are_accepted() {
    let app = spawn_app().await;
    app.create_scope("chat", "general").await;
    let delete = app.http.delete(format!("{}/api/chat/general", app.address)).bearer_auth(app.token("alice"));
    let response = delete.send().await.unwrap();
    assert_eq!(response.headers()["allow"], "GET, POST");
    assert_error(response, 405, "method_not_allowed").await;
    let slash = app.http.get(format!("{}/api/chat/general/", app.address)).bearer_auth(app.token("alice"));
    assert_eq!(slash.send().await.unwrap().status(), 200);
    let rewarm = app.http.post(format!("{}/api/admin/warmup", app.address)).bearer_auth(app.admin_token());
    // The PostgreSQL adapter has no cache: a clear 409, not a command to domain "admin".
    assert_error(rewarm.send().await.unwrap(), 409, "no_cache").await;
    assert_error(app.get("/api/nothing/here/at/all").await, 404, "no_route").await;
    // The live route asked as plain HTTP: a JSON error, as the document says.
    assert_error(app.get_as("alice", "/api/chat/general/live").await, 400, "not_a_websocket").await;

    // The table behind 405 (`routes::allowed_methods`) names every route the API
    // document describes, so the two cannot drift apart.
    let document: Value = app.get("/api/openapi.json").await.json().await.unwrap();
    for (path, item) in document["paths"].as_object().unwrap() {
        let concrete = path.replace("{scope}", "general").replace("{user}", "ada");
        let allowed = boardsync::routes::allowed_methods(&concrete).unwrap_or_else(|| panic!("{path} has no methods"));
        for method in item.as_object().unwrap().keys().filter(|k| *k != "parameters") {
            assert!(allowed.contains(&method.to_uppercase()), "{path}: {method} not in {allowed}");
        }
    }
}

#[actix_web::test]
async fn admin_routes_need_the_admin_claim() {
    let app = spawn_app().await;
    let response = app
        .http
        .put(format!("{}/api/admin/scopes/chat/general", app.address))
        .bearer_auth(app.token("alice"))
        .json(&json!({ "name": "General" }))
        .send()
        .await
        .unwrap();
    assert_error(response, 403, "admin_required").await;
    assert_error(app.get_as("alice", "/api/admin/scopes").await, 403, "admin_required").await;
}

#[actix_web::test]
async fn unknown_domains_scopes_and_messages_are_404() {
    let app = spawn_app().await;
    app.create_scope("chat", "general").await;

    assert_error(app.get_as("alice", "/api/nope/general").await, 404, "unknown_domain").await;
    assert_error(app.get_as("alice", "/api/chat/missing").await, 404, "scope_not_found").await;
    let send = json!({ "type": "send", "id": Uuid::new_v4(), "text": "into the void" });
    assert_error(app.command("alice", "chat", "missing", send).await, 404, "scope_not_found").await;
    let edit = json!({ "type": "edit", "id": Uuid::new_v4(), "text": "x" });
    assert_error(app.command("alice", "chat", "general", edit).await, 404, "message_not_found").await;
    let live = tokio_tungstenite::connect_async(format!(
        "ws://127.0.0.1:{}/api/chat/missing/live?token={}",
        app.port,
        app.token("alice")
    ))
    .await;
    assert!(live.is_err(), "a WebSocket to an unknown scope is refused");
    assert_eq!(stored_messages(&app).await, 0);
}

#[actix_web::test]
async fn bad_commands_are_refused_with_their_status_and_nothing_is_stored() {
    let app = spawn_app().await;
    app.create_scope("chat", "general").await;
    let post_raw = |body: &'static str| {
        app.http
            .post(format!("{}/api/chat/general", app.address))
            .bearer_auth(app.token("alice"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    assert_error(post_raw("{not json").await.unwrap(), 400, "malformed_json").await;
    // Not an object: the same answer as the live socket gives.
    assert_error(post_raw("[1, 2]").await.unwrap(), 400, "malformed_json").await;
    let cases = [
        (json!({ "type": "shout", "text": "hi" }), 422, "invalid_command"),
        (json!({ "type": "send", "text": "no id" }), 422, "invalid_command"),
        (json!({ "type": "send", "id": "not-a-uuid", "text": "x" }), 422, "invalid_command"),
        (json!({ "type": "send", "id": Uuid::new_v4(), "text": "   " }), 422, "text_empty"),
        (json!({ "type": "send", "id": Uuid::new_v4(), "text": "x".repeat(4001) }), 422, "text_too_long"),
        (
            json!({ "type": "send", "id": Uuid::new_v4(), "text": "x", "durability": "eventually" }),
            422,
            "invalid_durability",
        ),
    ];
    for (command, status, code) in cases {
        assert_error(app.command("alice", "chat", "general", command).await, status, code).await;
    }
    let huge = json!({ "type": "send", "id": Uuid::new_v4(), "text": "x".repeat(1_100_000) });
    assert_error(app.command("alice", "chat", "general", huge).await, 413, "body_too_large").await;
    assert_error(app.get_as("alice", "/api/chat/general?limit=0").await, 400, "invalid_limit").await;
    assert_error(app.get_as("alice", "/api/chat/general?limit=abc").await, 400, "invalid_query").await;
    assert_error(app.get_as("alice", "/api/chat/General!").await, 400, "invalid_scope_key").await;
    assert_eq!(stored_messages(&app).await, 0);

    let id = Uuid::new_v4();
    let sent = app.command("alice", "chat", "general", json!({ "type": "send", "id": id, "text": "mine" })).await;
    assert_eq!(sent.status(), 200);
    let reused = json!({ "type": "send", "id": id, "text": "someone else's" });
    assert_error(app.command("bob", "chat", "general", reused).await, 409, "id_conflict").await;
    for emoji in ["", "ab", ":nope:", "👍👍"] {
        let react = json!({ "type": "react", "id": id, "emoji": emoji });
        assert_error(app.command("bob", "chat", "general", react).await, 422, "invalid_emoji").await;
    }
    let reactions: i64 = sqlx::query_scalar("SELECT count(*) FROM chat_reactions").fetch_one(&app.pool).await.unwrap();
    assert_eq!((stored_messages(&app).await, reactions), (1, 0));
}

#[actix_web::test]
async fn bad_websocket_frames_get_error_replies_and_store_nothing() {
    let app = spawn_app().await;
    app.create_scope("chat", "general").await;
    let mut alice = app.live("alice", "chat", "general").await;

    alice.send(json!("just a string")).await;
    let reply = alice.next().await;
    assert_eq!((reply["status"].as_u64(), reply["error"]["code"].as_str()), (Some(400), Some("malformed_json")));
    alice.send(json!({ "ref": "x", "type": "send", "id": Uuid::new_v4(), "text": "" })).await;
    let reply = alice.reply("x").await;
    assert_eq!((reply["status"].as_u64(), reply["error"]["code"].as_str()), (Some(422), Some("text_empty")));
    assert_eq!(stored_messages(&app).await, 0);
}

#[actix_web::test]
async fn an_internal_error_answers_a_request_id_and_nothing_of_its_cause() {
    let app = spawn_app().await;
    app.create_scope("poll", "lunch").await;
    // A table an operator dropped: PostgreSQL's error names it, the client must not see it.
    sqlx::query("DROP TABLE poll_votes").execute(&app.pool).await.unwrap();
    let response = app
        .command("alice", "poll", "lunch", json!({ "type": "add_option", "id": Uuid::new_v4(), "label": "x" }))
        .await;
    assert_eq!(response.status().as_u16(), 500);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "internal", "{body}");
    assert_eq!(body["error"]["message"], "internal error", "{body}");
    assert!(body["error"]["request_id"].as_str().is_some_and(|id| id.len() == 32), "{body}");
    let text = body.to_string();
    assert!(!text.contains("poll_votes") && !text.contains("relation"), "no internals leak: {text}");
}

/// What PostgreSQL or a client could not take is refused with a 422 and nothing
/// stored, on either adapter: NUL and other control characters in text, and numbers
/// that are not finite (JSON cannot carry them, but a number past f64's range parses
/// as one).
async fn unstorable_input_is_refused_at_the_edge(app: &TestApp) {
    app.create_scope("chat", "general").await;
    app.create_scope("whiteboard", "sketch").await;
    for text in ["nul \u{0} inside", "bell \u{7}", "escape \u{1b}[2J"] {
        let sent =
            app.command("alice", "chat", "general", json!({ "type": "send", "id": Uuid::new_v4(), "text": text }));
        assert_error(sent.await, 422, "invalid_characters").await;
    }
    let fine = app
        .command(
            "alice",
            "chat",
            "general",
            json!({ "type": "send", "id": Uuid::new_v4(), "text": "two\nlines\tand a tab" }),
        )
        .await;
    assert_eq!(fine.status(), 200, "line breaks and tabs are text");

    let id = Uuid::new_v4();
    let far = json!({ "type": "add", "id": id, "kind": "rect", "x": 1.0e308, "y": 0 });
    assert_eq!(app.command("alice", "whiteboard", "sketch", far).await.status(), 200);
    let past_f64 = r#"{"type":"move","to":[{"id":"ID","x":1e400,"y":0}]}"#.replace("ID", &id.to_string());
    let overflow = app
        .http
        .post(format!("{}/api/whiteboard/sketch", app.address))
        .bearer_auth(app.token("alice"))
        .header("content-type", "application/json")
        .body(past_f64)
        .send()
        .await
        .unwrap();
    assert!(overflow.status().is_client_error(), "{}", overflow.status());
    let snapshot: Value = app.snapshot("alice", "whiteboard", "sketch").await;
    assert_eq!(snapshot["items"][0]["x"], json!(1.0e308), "the element did not move");
}

#[actix_web::test]
async fn unstorable_input_is_refused_at_the_edge_on_postgres() {
    unstorable_input_is_refused_at_the_edge(&spawn_app().await).await;
}

#[actix_web::test]
async fn unstorable_input_is_refused_at_the_edge_on_spacetimedb() {
    let app = spawn_app_on_spacetimedb().await;
    unstorable_input_is_refused_at_the_edge(&app).await;
    app.wait_for_count("SELECT count(*) FROM whiteboard_elements", 1).await;
    app.wait_for_count("SELECT count(*) FROM outbox_dead_letters", 0).await;
}

#[actix_web::test]
async fn a_user_past_their_command_rate_gets_429_with_retry_after() {
    let app = crate::helpers::spawn_app_with(|settings| {
        settings.limits.commands_per_sec = 1.0;
        settings.limits.command_burst = 3;
        settings.limits.live_sockets_per_user = 1;
    })
    .await;
    app.create_scope("chat", "general").await;
    let send = || serde_json::json!({ "type": "send", "id": uuid::Uuid::new_v4(), "text": "hi" });
    for _ in 0..3 {
        assert_eq!(app.command("ada", "chat", "general", send()).await.status(), 200);
    }
    let refused = app.command("ada", "chat", "general", send()).await;
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "1");
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(
        (body["error"]["code"].as_str(), body["error"]["retry_after"].as_u64()),
        (Some("rate_limited"), Some(1))
    );
    assert_eq!(app.command("bob", "chat", "general", send()).await.status(), 200, "others keep their allowance");

    let _open = app.live("ada", "chat", "general").await;
    assert_eq!(app.live_refused("ada", "chat", "general").await, 429, "one live socket per user here");
}

/// A node holds at most `limits.live_sockets` sockets, whoever opens them: past it a
/// handshake gets 503 `server_full`, so the client tries again later or elsewhere.
#[actix_web::test]
async fn a_full_node_refuses_a_live_socket_with_503_server_full() {
    let app = crate::helpers::spawn_app_with(|settings| settings.limits.live_sockets = 2).await;
    app.create_scope("chat", "general").await;
    let first = app.live("ada", "chat", "general").await;
    let _second = app.live("bob", "chat", "general").await;
    let (status, body) = app.live_refusal("cy", "chat", "general").await;
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("server_full")), "{body}");
    // An operator sees both: how full the node is, and that it refused someone.
    let metrics = app.http.get(format!("{}/metrics", app.address)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.lines().any(|line| line == "boardsync_live_sockets 2"), "{metrics}");
    assert!(
        metrics.lines().any(|line| line == r#"boardsync_live_sockets_refused_total{code="server_full"} 1"#),
        "{metrics}"
    );
    drop(first);
    // The closed socket's place comes back once its task has ended.
    let reopened = async {
        loop {
            let url = format!("ws://127.0.0.1:{}/api/chat/general/live?token={}", app.port, app.token("cy"));
            if tokio_tungstenite::connect_async(url).await.is_ok() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), reopened).await.expect("a closed socket frees a place");
}

/// Browsers may call the API from the configured origins only.
#[actix_web::test]
async fn cross_origin_requests_come_only_from_configured_origins() {
    let app = crate::helpers::spawn_app_with(|s| s.api.cors_allowed_origins = vec!["https://app.example".into()]).await;
    let preflight = |origin: &str| {
        app.http
            .request(reqwest::Method::OPTIONS, format!("{}/api/chat/general", app.address))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization, content-type")
            .send()
    };
    let allowed = preflight("https://app.example").await.unwrap();
    assert_eq!(allowed.status(), 200);
    assert_eq!(allowed.headers()["access-control-allow-origin"], "https://app.example");
    let refused = preflight("https://evil.example").await.unwrap();
    assert!(refused.headers().get("access-control-allow-origin").is_none(), "{:?}", refused.headers());

    let by_default = spawn_app().await;
    let response = by_default
        .http
        .request(reqwest::Method::OPTIONS, format!("{}/api/chat/general", by_default.address))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(response.headers().get("access-control-allow-origin").is_none(), "no origin is allowed by default");
}
