//! Who may see and change what, for every domain on both adapters: members' roles,
//! scopes open to every authenticated user, 404 for what a user may not see (live
//! included), and a removed member's live socket closing.

use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{spawn_app, spawn_app_on_spacetimedb, TestApp, DOMAINS};

/// A valid new write in `domain`.
fn a_write(domain: &str) -> Value {
    let id = Uuid::new_v4();
    match domain {
        "chat" => json!({ "type": "send", "id": id, "text": "hello" }),
        "poll" => json!({ "type": "add_option", "id": id, "label": "yes" }),
        "kanban" => json!({ "type": "create_column", "id": id, "name": "todo" }),
        "whiteboard" => json!({ "type": "add", "id": id, "kind": "rect", "x": 1.0, "y": 2.0 }),
        other => panic!("no sample write for {other}"),
    }
}

async fn code_of(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (status, body["error"]["code"].as_str().unwrap_or_default().to_string())
}

async fn membership_is_enforced(app: &TestApp) {
    for &domain in DOMAINS {
        app.create_members_only_scope(domain, "team").await;
        // An admin names the owner; the owner adds the others without the admin claim.
        assert_eq!(app.set_member(None, domain, "team", "olivia", "owner").await.status(), 200);
        assert_eq!(app.set_member(Some("olivia"), domain, "team", "eddie", "editor").await.status(), 200);
        assert_eq!(app.set_member(Some("olivia"), domain, "team", "vera", "viewer").await.status(), 200);

        // An editor writes; a viewer reads but cannot write.
        let write = a_write(domain);
        let response = app.command("eddie", domain, "team", write.clone()).await;
        assert_eq!(response.status(), 200, "{domain}: {}", response.text().await.unwrap());
        let seen = app.snapshot("vera", domain, "team").await;
        assert!(seen.to_string().contains(write["id"].as_str().unwrap()), "{domain}: the viewer sees the write");
        let refused = code_of(app.command("vera", domain, "team", a_write(domain)).await).await;
        assert_eq!(refused, (403, "read_only".into()), "{domain}");
        let refused = code_of(app.set_member(Some("vera"), domain, "team", "vera", "owner").await).await;
        assert_eq!(refused, (403, "owner_required".into()), "{domain}: a viewer cannot promote themselves");

        // A non-member sees 404 everywhere, exactly as for a scope that does not exist.
        let missing = code_of(app.get_as("nora", &format!("/api/{domain}/no-such-scope")).await).await;
        assert_eq!(missing, (404, "scope_not_found".into()));
        assert_eq!(code_of(app.get_as("nora", &format!("/api/{domain}/team")).await).await, missing, "{domain}");
        assert_eq!(code_of(app.command("nora", domain, "team", a_write(domain)).await).await, missing, "{domain}");
        assert_eq!(code_of(app.get_as("nora", &format!("/api/{domain}/team/members")).await).await, missing);
        assert_eq!(code_of(app.set_member(Some("nora"), domain, "team", "nora", "owner").await).await, missing);
        assert_eq!(app.live_refused("nora", domain, "team").await, 404, "{domain}: live is 404 too");

        // A member's live socket gets events until they are removed; then it closes.
        let mut live = app.live("vera", domain, "team").await;
        let write = a_write(domain);
        assert_eq!(app.command("eddie", domain, "team", write.clone()).await.status(), 200);
        let event = live.next_event().await;
        assert!(event.to_string().contains(write["id"].as_str().unwrap()), "{domain}: {event}");
        assert_eq!(app.remove_member(Some("olivia"), domain, "team", "vera").await.status(), 204);
        let last = live.next_non_event().await;
        assert_eq!(last["error"]["code"], "access_revoked", "{domain}: {last}");
        assert_eq!(live.closed().await, Some(1008), "{domain}: the socket closes as a policy violation");
        assert_eq!(code_of(app.get_as("vera", &format!("/api/{domain}/team")).await).await, missing, "{domain}");

        // A scope open to every authenticated user, for reading only.
        let config = json!({ "access": { "authenticated": "read" } });
        assert_eq!(app.put_scope(domain, "lobby", json!({ "name": "lobby", "config": config })).await.status(), 200);
        assert_eq!(app.get_as("nora", &format!("/api/{domain}/lobby")).await.status(), 200, "{domain}");
        let refused = code_of(app.command("nora", domain, "lobby", a_write(domain)).await).await;
        assert_eq!(refused, (403, "read_only".into()), "{domain}");
        // Its members still write.
        assert_eq!(app.set_member(None, domain, "lobby", "eddie", "editor").await.status(), 200);
        assert_eq!(app.command("eddie", domain, "lobby", a_write(domain)).await.status(), 200, "{domain}");
    }
}

#[actix_web::test]
async fn membership_on_the_postgres_adapter() {
    membership_is_enforced(&spawn_app().await).await;
}

#[actix_web::test]
async fn membership_on_the_spacetimedb_adapter() {
    membership_is_enforced(&spawn_app_on_spacetimedb().await).await;
}

#[actix_web::test]
async fn members_are_listed_to_owners_and_admins() {
    let app = spawn_app().await;
    app.create_members_only_scope("chat", "team").await;
    assert_eq!(app.set_member(None, "chat", "team", "olivia", "owner").await.status(), 200);
    assert_eq!(app.set_member(Some("olivia"), "chat", "team", "eddie", "editor").await.status(), 200);
    let listed: Value = app.get_as("olivia", "/api/chat/team/members").await.json().await.unwrap();
    assert_eq!(
        listed,
        json!({ "members": [{ "user": "eddie", "role": "editor" }, { "user": "olivia", "role": "owner" }] })
    );
    let response = app.set_member(None, "chat", "team", "x", "superuser").await;
    assert_eq!(response.status(), 400, "an unknown role is refused");
    let removed = code_of(app.remove_member(None, "chat", "team", "nobody").await).await;
    assert_eq!(removed, (404, "member_not_found".into()));
}

/// Access changed with plain SQL (or by another backend) reaches this one through
/// the `boardsync_access` notification: the removed member's socket closes.
#[actix_web::test]
async fn a_member_removed_with_plain_sql_is_disconnected_too() {
    let app = spawn_app().await;
    app.create_members_only_scope("chat", "team").await;
    assert_eq!(app.set_member(None, "chat", "team", "vera", "viewer").await.status(), 200);
    let mut live = app.live("vera", "chat", "team").await;
    sqlx::query("DELETE FROM scope_members WHERE user_id = 'vera'").execute(&app.pool).await.unwrap();
    let last = live.next_non_event().await;
    assert_eq!(last["error"]["code"], "access_revoked", "{last}");
    assert_eq!(live.closed().await, Some(1008));
    let refused = code_of(app.get_as("vera", "/api/chat/team").await).await;
    assert_eq!(refused, (404, "scope_not_found".into()), "the cached membership was forgotten");
}

#[actix_web::test]
async fn a_live_socket_ends_when_its_token_expires() {
    let app = crate::helpers::spawn_app_with(|settings| {
        settings.auth.token_ttl_secs = 2;
        settings.auth.leeway_secs = 0;
        settings.api.ws_heartbeat_secs = 1;
    })
    .await;
    app.create_scope("chat", "general").await;
    let mut live = app.live("alice", "chat", "general").await;
    let last = live.next_non_event().await;
    assert_eq!(last["error"]["code"], "token_expired", "{last}");
    assert_eq!(live.closed().await, Some(1008));
}

/// A user lists the scopes they may see, and nothing else.
#[actix_web::test]
async fn users_list_the_scopes_they_may_see() {
    let app = spawn_app().await;
    app.create_members_only_scope("chat", "team").await;
    app.create_members_only_scope("chat", "secret").await;
    let open = json!({ "name": "lobby", "config": { "access": { "authenticated": "read" } } });
    assert_eq!(app.put_scope("chat", "lobby", open).await.status(), 200);
    assert_eq!(app.set_member(None, "chat", "team", "alice", "editor").await.status(), 200);
    let listed = |user: &'static str, query: &'static str| {
        let app = &app;
        async move {
            let response = app.get_as(user, &format!("/api/chat{query}")).await;
            assert_eq!(response.status(), 200);
            response.json::<Value>().await.unwrap()
        }
    };
    let alice = listed("alice", "").await;
    assert_eq!(
        alice["scopes"],
        json!([{ "key": "lobby", "name": "lobby", "role": null }, { "key": "team", "name": "team", "role": "editor" }])
    );
    let nora = listed("nora", "").await;
    assert_eq!(nora["scopes"].as_array().unwrap().len(), 1, "{nora}");
    let first = listed("alice", "?limit=1").await;
    assert_eq!((first["scopes"][0]["key"].as_str(), first["next_after"].as_str()), (Some("lobby"), Some("lobby")));
    assert_eq!(first["has_more"], true);
    let second = listed("alice", "?limit=1&after=lobby").await;
    assert_eq!(second["scopes"][0]["key"], "team");
    assert_eq!((&second["has_more"], &second["next_after"]), (&json!(false), &Value::Null), "the last page says so");
    let admin: Value = app.get_as_admin("/api/chat").await.json().await.unwrap();
    assert_eq!(admin["scopes"].as_array().unwrap().len(), 3);
}
