//! The chat module on a real SpacetimeDB server: published under a database name of
//! its own, called through the generated bindings, observed through a subscription.

use std::sync::mpsc;
use std::time::Duration;

use boardsync_chat::module_bindings::*;
use boardsync_testkit::TestSpacetime;
use spacetimedb_sdk::{DbContext, Status, Table};

const WAIT: Duration = Duration::from_secs(10);

/// Connects with `token` (None: a fresh anonymous identity) and waits until the
/// subscription to every message is applied.
fn connect(stdb: &TestSpacetime, token: Option<String>) -> (DbConnection, mpsc::Receiver<Message>) {
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
    let (applied_tx, applied) = mpsc::channel();
    conn.subscription_builder()
        .on_applied(move |_| {
            let _ = applied_tx.send(());
        })
        .subscribe(["SELECT * FROM message"]);
    conn.run_threaded();
    applied.recv_timeout(WAIT).expect("the subscription is applied");
    (conn, inserted)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reducer_call_by_the_owner_is_observed_through_a_subscription() {
    let stdb = TestSpacetime::publish("chat").await;
    let (conn, inserted) = connect(&stdb, Some(stdb.token.clone()));

    conn.reducers.send("r1".into(), "general".into(), "m1".into(), "alice".into(), "hello".into()).unwrap();

    let row = inserted.recv_timeout(WAIT).expect("the new row arrives");
    assert_eq!((row.id.as_str(), row.channel.as_str(), row.author.as_str()), ("m1", "general", "alice"));
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
    conn.reducers.on_send(move |ctx, _, _, _, _, _| {
        let _ = outcome_tx.send(ctx.event.status.clone());
    });

    conn.reducers.send("r1".into(), "general".into(), "m1".into(), "mallory".into(), "hi".into()).unwrap();

    match outcome.recv_timeout(WAIT).expect("the reducer's outcome arrives") {
        Status::Failed(message) => assert!(message.contains("not_owner"), "{message}"),
        other => panic!("expected the call to be refused, got {other:?}"),
    }
    assert!(inserted.try_recv().is_err(), "no row was written");
    assert_eq!(conn.db.message().count(), 0);
    conn.disconnect().unwrap();
    stdb.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn no_data_changing_reducer_accepts_a_caller_that_is_not_the_backend() {
    let stdb = TestSpacetime::publish("chat").await;
    let http = reqwest::Client::new();
    let calls = [
        ("send", serde_json::json!(["r", "general", "m1", "mallory", "hi"])),
        ("edit", serde_json::json!(["r", "general", "m1", "mallory", "x"])),
        ("delete", serde_json::json!(["r", "general", "m1", "mallory"])),
        ("react", serde_json::json!(["r", "general", "m1", "mallory", "👍"])),
        ("unreact", serde_json::json!(["r", "general", "m1", "mallory", "👍"])),
        ("warm_messages", serde_json::json!(["r", []])),
        ("ack_outbox", serde_json::json!(["r", [1]])),
        ("trim_channel", serde_json::json!(["r", "general", 0])),
        ("configure", serde_json::json!(["r", 1])),
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
        .json(&serde_json::json!(["r", 4000]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    stdb.delete().await;
}
