//! The chat module on a real SpacetimeDB server: published under a database name of
//! its own, called through the generated bindings, observed through a subscription.

use std::sync::mpsc;
use std::time::Duration;

use boardsync_chat::module_bindings::*;
use boardsync_testkit::TestSpacetime;
use spacetimedb_sdk::{DbContext, Status, Table};

const WAIT: Duration = Duration::from_secs(10);
const MESSAGE_ID: &str = "6f1c1b9e-1d2f-4c57-9a59-2b9f3c1d7a10";
const SETTINGS: &str = r#"{"max_text_chars":4000,"shortcodes":[],"max_reactions_per_message":200}"#;

fn send_json() -> String {
    serde_json::json!({ "type": "send", "id": MESSAGE_ID, "text": "hello" }).to_string()
}

/// Connects with `token` (None: a fresh anonymous identity) and, for the owner,
/// waits until the subscription to every message is applied. Anyone else may not
/// subscribe to the cache's private tables at all.
fn connect(stdb: &TestSpacetime, token: Option<String>) -> (DbConnection, mpsc::Receiver<Message>) {
    let owner = token.is_some();
    let conn = DbConnection::builder()
        .with_uri(&stdb.url)
        .with_module_name(&stdb.database)
        .with_token(token)
        .build()
        .expect("connect to SpacetimeDB");
    let (inserted_tx, inserted) = mpsc::channel();
    conn.db.message().on_insert(move |_, row| {
        let _ = inserted_tx.send(row.clone());
    });
    conn.run_threaded();
    if owner {
        let (applied_tx, applied) = mpsc::channel();
        conn.subscription_builder()
            .on_applied(move |_| {
                let _ = applied_tx.send(());
            })
            .subscribe(["SELECT * FROM message"]);
        applied.recv_timeout(WAIT).expect("the subscription is applied");
    }
    (conn, inserted)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stranger_cannot_subscribe_to_the_cache() {
    let stdb = TestSpacetime::publish("chat").await;
    let stranger = DbConnection::builder()
        .with_uri(&stdb.url)
        .with_module_name(&stdb.database)
        .build()
        .expect("connect to SpacetimeDB");
    let (outcome_tx, outcome) = mpsc::channel();
    let refused_tx = outcome_tx.clone();
    stranger
        .subscription_builder()
        .on_applied(move |_| {
            let _ = outcome_tx.send("applied");
        })
        .on_error(move |_, _| {
            let _ = refused_tx.send("refused");
        })
        .subscribe(["SELECT * FROM message"]);
    stranger.run_threaded();
    // A refused subscription may also end the connection before its error arrives.
    let answer = outcome.recv_timeout(WAIT).unwrap_or("refused");
    assert_eq!(answer, "refused", "the message table is private");
    assert_eq!(stranger.db.message().count(), 0);
    let _ = stranger.disconnect();
    stdb.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reducer_call_by_the_owner_is_observed_through_a_subscription() {
    let stdb = TestSpacetime::publish("chat").await;
    let (conn, inserted) = connect(&stdb, Some(stdb.token.clone()));

    conn.reducers.configure("r0".into(), SETTINGS.into()).unwrap();
    conn.reducers.apply("r1".into(), "general".into(), "alice".into(), false, send_json()).unwrap();

    let row = inserted.recv_timeout(WAIT).expect("the new row arrives");
    assert_eq!((row.id.as_str(), row.channel.as_str(), row.author.as_str()), (MESSAGE_ID, "general", "alice"));
    assert_eq!(row.text, "hello");
    assert!(!row.deleted);
    conn.disconnect().unwrap();
    stdb.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_identity_that_is_not_the_backend_cannot_write() {
    let stdb = TestSpacetime::publish("chat").await;
    let (conn, inserted) = connect(&stdb, None);
    let (outcome_tx, outcome) = mpsc::channel();
    conn.reducers.on_apply(move |ctx, _, _, _, _, _| {
        let _ = outcome_tx.send(ctx.event.status.clone());
    });

    conn.reducers.apply("r1".into(), "general".into(), "mallory".into(), true, send_json()).unwrap();

    match outcome.recv_timeout(WAIT).expect("the reducer's outcome arrives") {
        Status::Failed(message) => assert!(message.contains("not_owner"), "{message}"),
        other => panic!("expected the call to be refused, got {other:?}"),
    }
    assert!(inserted.try_recv().is_err(), "no row was written");
    let (owner, _) = connect(&stdb, Some(stdb.token.clone()));
    assert_eq!(owner.db.message().count(), 0, "the owner sees that nothing was written");
    owner.disconnect().unwrap();
    conn.disconnect().unwrap();
    stdb.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn no_data_changing_reducer_accepts_a_caller_that_is_not_the_backend() {
    let stdb = TestSpacetime::publish("chat").await;
    let http = reqwest::Client::new();
    // Every reducer of the contract (`modules/contract.rs`) that changes data.
    let calls = [
        ("apply", serde_json::json!(["r", "general", "mallory", true, send_json()])),
        ("warm", serde_json::json!(["r", []])),
        ("ack_outbox", serde_json::json!(["r", 1, [{ "seq": 1, "request_id": "r" }]])),
        ("trim", serde_json::json!(["r", "general", 0])),
        ("configure", serde_json::json!(["r", SETTINGS])),
    ];
    for (reducer, args) in &calls {
        // No token: the server makes a fresh anonymous identity for the call.
        let response = http
            .post(format!("{}/v1/database/{}/call/{reducer}", stdb.url, stdb.database))
            .json(args)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body = response.text().await.unwrap();
        assert_eq!(status, 530, "{reducer} must refuse a foreign identity: {body}");
        assert!(body.contains("not_owner"), "{reducer}: {body}");
    }
    // The backend's own identity may call them.
    let response = http
        .post(format!("{}/v1/database/{}/call/configure", stdb.url, stdb.database))
        .bearer_auth(&stdb.token)
        .json(&serde_json::json!(["r", SETTINGS]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    stdb.delete().await;
}
