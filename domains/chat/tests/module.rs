//! The chat module on a real SpacetimeDB server: published under a database name of
//! its own, called through the generated bindings, observed through a subscription.

use std::sync::mpsc;
use std::time::Duration;

use boardsync_chat::module_bindings::*;
use boardsync_testkit::TestSpacetime;
use spacetimedb_sdk::__codegen::__ws::CallReducerFlags;
use spacetimedb_sdk::{DbContext, Status, Table, Timestamp};

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
        ("warm_begin", serde_json::json!(["r", "general", true, "run"])),
        ("warm_batch", serde_json::json!(["r", "general", "run", []])),
        ("warm_end", serde_json::json!(["r", "general", "run", "", 0, { "some": 1 }])),
        ("ack_outbox", serde_json::json!(["r", 1, [{ "seq": 1, "request_id": "r" }]])),
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

/// A message row as warm-up reads it from PostgreSQL.
fn stored(id: &str, channel: &str) -> Message {
    Message {
        id: id.into(),
        channel: channel.into(),
        author: "ann".into(),
        text: format!("history {id}"),
        created_at: Timestamp::now(),
        edited_at: None,
        deleted: false,
        reactions: Vec::new(),
        version: 1,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_warm_up_ends_only_once_every_batch_it_sent_has_loaded() {
    let stdb = TestSpacetime::publish("chat").await;
    let (conn, _inserted) = connect(&stdb, Some(stdb.token.clone()));
    // As the backend sends batches: SpacetimeDB then reports no outcome of theirs, not
    // even a failure.
    conn.set_reducer_flags().warm_batch(CallReducerFlags::NoSuccessNotify);
    let (outcome_tx, outcomes) = mpsc::channel::<(String, Result<(), String>)>();
    let report = |tx: &mpsc::Sender<(String, Result<(), String>)>, id: &String, status: &Status| {
        let outcome = match status {
            Status::Committed => Ok(()),
            Status::Failed(message) => Err(message.to_string()),
            Status::OutOfEnergy => Err("out of energy".into()),
        };
        let _ = tx.send((id.clone(), outcome));
    };
    let tx = outcome_tx.clone();
    conn.reducers.on_warm_begin(move |ctx, id, _, _, _| report(&tx, id, &ctx.event.status));
    let tx = outcome_tx.clone();
    conn.reducers.on_warm_check(move |ctx, id, _, _, _| report(&tx, id, &ctx.event.status));
    let tx = outcome_tx.clone();
    conn.reducers.on_warm_end(move |ctx, id, _, _, _, _, _| report(&tx, id, &ctx.event.status));
    let tx = outcome_tx;
    conn.reducers.on_warm_batch(move |ctx, id, _, _, _| report(&tx, id, &ctx.event.status));
    // A batch that changed rows this connection subscribes to is heard of as any
    // subscriber hears of it (the backend counts on none of that).
    let outcome = |want: &str| -> Result<(), String> {
        loop {
            let (id, outcome) = outcomes.recv_timeout(WAIT).expect("an outcome");
            if !id.starts_with("batch") {
                assert_eq!(id, want, "outcomes come in order");
                return outcome;
            }
        }
    };
    let cached = |id: &str| conn.db.message().iter().any(|row| row.id == id);

    conn.reducers.warm_begin("begin-1".into(), "general".into(), true, "run-1".into()).unwrap();
    outcome("begin-1").unwrap();
    conn.reducers
        .warm_batch("batch-1".into(), "general".into(), "run-1".into(), vec![stored("m1", "general")])
        .unwrap();
    // This batch fails (a row of another channel): its rows and its count roll back.
    let foreign = vec![stored("m2", "general"), stored("m3", "random")];
    conn.reducers.warm_batch("batch-2".into(), "general".into(), "run-1".into(), foreign).unwrap();
    conn.reducers.warm_end("end-1".into(), "general".into(), "run-1".into(), String::new(), 2, None).unwrap();
    let refused = outcome("end-1").unwrap_err();
    assert!(refused.contains("warm_up_incomplete"), "{refused}");
    conn.reducers.warm_check("check-1".into(), "general".into(), "run-1".into(), 1).unwrap();
    outcome("check-1").expect("the first batch loaded");
    assert!(cached("m1"));
    assert!(!cached("m2") && !cached("m3"), "the failed batch left nothing");

    // Another run claims the scope: the first one loads nothing more and cannot end.
    conn.reducers.warm_begin("begin-2".into(), "general".into(), true, "run-2".into()).unwrap();
    outcome("begin-2").unwrap();
    conn.reducers
        .warm_batch("batch-3".into(), "general".into(), "run-1".into(), vec![stored("m4", "general")])
        .unwrap();
    conn.reducers.warm_end("end-old".into(), "general".into(), "run-1".into(), String::new(), 1, None).unwrap();
    let refused = outcome("end-old").unwrap_err();
    assert!(refused.contains("warm_up_superseded"), "{refused}");
    conn.reducers
        .warm_batch("batch-4".into(), "general".into(), "run-2".into(), vec![stored("m5", "general")])
        .unwrap();
    conn.reducers.warm_end("end-2".into(), "general".into(), "run-2".into(), String::new(), 1, None).unwrap();
    outcome("end-2").expect("every batch of the run holding the scope loaded");
    assert!(cached("m5"));
    assert!(!cached("m4"), "a superseded run's batch loads nothing");
    conn.disconnect().unwrap();
    stdb.delete().await;
}
