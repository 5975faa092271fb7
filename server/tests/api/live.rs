//! The live socket under a client that stops reading: the server's memory for it stays
//! bounded, and the client learns of the gap once, when it reads again.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

use crate::helpers::spawn_app;

#[actix_web::test]
async fn a_client_that_stops_reading_gets_one_resync_per_gap() {
    let app = spawn_app().await;
    app.create_scope("chat", "busy").await;
    // A client whose socket buffers almost nothing.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(format!("127.0.0.1:{}", app.port).parse().unwrap()).await.unwrap();
    let url = format!("ws://127.0.0.1:{}/api/chat/busy/live?token={}", app.port, app.token("slow"));
    let (mut slow, _) = tokio_tungstenite::client_async(url, stream).await.unwrap();
    let ready = slow.next().await.unwrap().unwrap();
    assert!(ready.to_text().unwrap().contains("ready"));

    // 2,000 events of about 3.6 kB (7 MB) while it reads nothing: far more than the
    // kernel's buffers and the server's per-socket bound hold.
    let text = "x".repeat(3500);
    for chunk in 0..100 {
        let sends = (0..20).map(|i| {
            let command = json!({ "type": "send", "id": Uuid::new_v4(), "text": format!("{chunk}/{i} {text}") });
            app.command("alice", "chat", "busy", command)
        });
        for response in futures::future::join_all(sends).await {
            assert_eq!(response.status(), 200);
        }
    }

    // Now it reads everything there is.
    let mut kinds: Vec<String> = Vec::new();
    let mut last_event_text = String::new();
    while let Ok(Some(frame)) = tokio::time::timeout(Duration::from_secs(2), slow.next()).await {
        match frame.unwrap() {
            Message::Text(text) => {
                let frame: Value = serde_json::from_str(&text).unwrap();
                kinds.push(frame["kind"].as_str().unwrap_or_default().to_string());
                if let Some(text) = frame["event"]["message"]["text"].as_str() {
                    last_event_text = text.to_string();
                }
            }
            Message::Ping(payload) => slow.send(Message::Pong(payload)).await.unwrap(),
            _ => {}
        }
    }
    let events = kinds.iter().filter(|k| *k == "event").count();
    let resyncs = kinds.iter().filter(|k| *k == "resync").count();
    assert!(events < 2000, "the client missed events, else this test filled no buffer ({events} events)");
    assert!(resyncs >= 1, "the client is told it missed events");
    // One resync per gap (the kernel's buffers grow as the test runs, so events may
    // get through between gaps): never two in a row, and never one per missed event.
    assert!(kinds.windows(2).all(|pair| pair != ["resync", "resync"]), "{kinds:?}");
    assert!(resyncs * 10 < 2000 - events, "{resyncs} resyncs for {} missed events", 2000 - events);
    // The last gap is told too: the stream ends with a resync, unless its end (the last
    // batch's events) got through, after any earlier gap's resync.
    let ended_with_the_last_batch = kinds.last().is_some_and(|k| k == "event") && last_event_text.starts_with("99/");
    assert!(
        kinds.last().is_some_and(|k| k == "resync") || ended_with_the_last_batch,
        "the last gap is told too: last frame {:?}, last event {:?}",
        kinds.last(),
        last_event_text.get(..8)
    );
    // After it, events flow again.
    let after = Uuid::new_v4();
    let command = json!({ "type": "send", "id": after, "text": "after the gap" });
    assert_eq!(app.command("alice", "chat", "busy", command).await.status(), 200);
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), slow.next()).await.unwrap().unwrap().unwrap();
        if let Message::Text(text) = frame {
            if text.contains(&after.to_string()) {
                break;
            }
        }
    }
}

/// A graceful stop closes live sockets at once with 1001 (going away), so their
/// clients reconnect (elsewhere, or to the next incarnation) instead of holding the
/// stop for `server.shutdown_timeout_secs` on sockets nobody will serve.
#[actix_web::test]
async fn a_graceful_stop_closes_live_sockets_as_going_away() {
    let (mut process, _app, mut live) = a_process_with_a_socket().await;
    let (clean, code) = tokio::join!(process.terminate(), live.closed());
    assert_eq!(code, Some(1001), "going away");
    assert!(clean, "a clean stop");
}

/// A server process of its own (PostgreSQL adapter, a long stop timeout) with a
/// scope, `chat/stopping`, and a socket on it.
async fn a_process_with_a_socket() -> (crate::process::Process, crate::helpers::TestApp, crate::helpers::LiveClient) {
    let (_, database_url) = boardsync_testkit::TestPostgres::create_empty().await;
    let patient = [("BOARDSYNC__SERVER__SHUTDOWN_TIMEOUT_SECS", "60")];
    let (process, app) = crate::process::Process::start(&database_url, ("", "", "unused"), &patient).await;
    app.create_scope("chat", "stopping").await;
    let live = app.live("bob", "chat", "stopping").await;
    (process, app, live)
}

/// The stop comes while a socket's first command runs (held on a lock in
/// PostgreSQL) and its others wait behind it: the running one is finished and
/// acknowledged, the others answered `shutting_down`, and nothing else is stored.
/// Meanwhile the node says it is stopping, and takes no new socket.
#[actix_web::test]
async fn a_graceful_stop_answers_the_commands_a_socket_read_and_keeps_the_acknowledged() {
    let (mut process, app, mut live) = a_process_with_a_socket().await;
    let mut lock = app.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE chat_messages IN EXCLUSIVE MODE").execute(&mut *lock).await.unwrap();
    for i in 0..20 {
        live.send(json!({ "type": "send", "id": Uuid::new_v4(), "text": format!("m{i}"), "ref": format!("c{i}") }))
            .await;
    }
    // The server answers a ping as it reads it: its pong says the 20 commands before
    // it were read (and the first started: it waits on the lock).
    live.send_ping(b"read").await;
    loop {
        match live.next_any().await {
            Message::Pong(payload) if &payload[..] == b"read" => break,
            Message::Text(text) if text.contains("presence_snapshot") => {}
            Message::Ping(_) => {} // a heartbeat, on a slow machine
            other => panic!("nothing but the pong is due yet: {other:?}"),
        }
    }
    // (This test's database only: tests run side by side on one cluster.)
    let waiting = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
                   AND wait_event_type = 'Lock' AND query LIKE '%chat_messages%'";
    app.wait_for_count(waiting, 1).await;
    let mut replies = Vec::new();
    let stop_meanwhile = async {
        // The socket runs on a task of its own, outside actix's count of connections:
        // the stop must still wait for it to answer what it read, and to close.
        let health = loop {
            let response = app.http.get(format!("{}/health", app.address)).send().await.unwrap();
            let (status, body) = (response.status().as_u16(), response.json::<Value>().await.unwrap());
            if body["status"] == "shutting_down" {
                break (status, body);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(health.0, 503, "a stopping node is out of the load balancer: {}", health.1);
        let (status, body) = app.live_refusal("carol", "chat", "stopping").await;
        assert_eq!((status, body["error"]["code"].as_str()), (503, Some("shutting_down")), "{body}");
        lock.rollback().await.unwrap();
        loop {
            match live.next_any().await {
                Message::Text(text) => {
                    let frame: Value = serde_json::from_str(&text).unwrap();
                    if frame["kind"] == "reply" {
                        replies.push(frame);
                    }
                }
                Message::Close(close) => return close.map(|close| u16::from(close.code)),
                _ => {}
            }
        }
    };
    let (clean, code) = tokio::join!(process.terminate(), stop_meanwhile);
    assert_eq!(code, Some(1001), "going away, after the replies");
    assert!(clean, "a clean stop");
    assert_eq!(replies.len(), 20, "every command read is answered: {replies:?}");
    for (i, reply) in replies.iter().enumerate() {
        assert_eq!(reply["ref"], format!("c{i}"), "in order: {reply}");
    }
    assert_eq!(replies[0]["ok"], true, "the running command is finished: {}", replies[0]);
    assert!(replies[1..].iter().all(|reply| reply["error"]["code"] == "shutting_down"), "{replies:?}");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM chat_messages").fetch_one(&app.pool).await.unwrap();
    assert_eq!(stored, 1, "the acknowledged send is stored, and no other");
}

/// Commands sent without waiting for replies (pipelined) are applied in the order
/// sent and answered in that order, refusals in their place among them.
#[actix_web::test]
async fn pipelined_commands_apply_and_are_answered_in_order() {
    pipelined_commands(&spawn_app().await).await;
}

#[actix_web::test]
async fn pipelined_commands_apply_and_are_answered_in_order_on_the_spacetimedb_adapter() {
    pipelined_commands(&crate::helpers::spawn_app_on_spacetimedb().await).await;
}

async fn pipelined_commands(app: &crate::helpers::TestApp) {
    app.create_scope("chat", "pipelined").await;
    // Once the scope is warm (a snapshot waits for it): a socket opened before would
    // get a resync when it is, which replaces the events held back then.
    app.snapshot("alice", "chat", "pipelined").await;
    let mut alice = app.live("alice", "chat", "pipelined").await;
    let mut sent = Vec::new();
    for i in 0..40 {
        let id = Uuid::new_v4();
        sent.push(id);
        alice.send(json!({ "ref": format!("c{i}"), "type": "send", "id": id, "text": format!("n{i}") })).await;
        if i == 20 {
            alice.send_text("not json").await;
        }
    }
    // Every frame in the order it came: the 41 replies and the 40 events.
    let (mut replies, mut order) = (Vec::new(), Vec::new());
    while replies.len() < 41 || order.iter().filter(|(kind, _)| kind == "event").count() < 40 {
        let frame = alice.next().await;
        if frame["kind"] == "reply" {
            order.push(("reply".to_string(), frame["event"]["message"]["id"].clone()));
            replies.push(frame);
        } else if frame["kind"] == "event" {
            order.push(("event".to_string(), frame["event"]["message"]["id"].clone()));
        } else {
            panic!("a frame this test does not expect: {frame}");
        }
    }
    // A command's reply comes before the event it caused.
    for id in &sent {
        let position = |kind: &str| order.iter().position(|(k, i)| k == kind && *i == json!(id)).unwrap();
        assert!(position("reply") < position("event"), "the reply to {id} came after its event");
    }
    let references: Vec<Value> = replies.iter().map(|reply| reply["ref"].clone()).collect();
    let mut expected: Vec<Value> = (0..40).map(|i| json!(format!("c{i}"))).collect();
    expected.insert(21, Value::Null);
    assert_eq!(references, expected, "answered in the order sent, the refusal in its place");
    assert_eq!(replies[21]["error"]["code"], "malformed_json");
    assert!(replies.iter().enumerate().all(|(i, reply)| i == 21 || reply["ok"] == true), "{replies:?}");
    let snapshot = app.snapshot("alice", "chat", "pipelined").await;
    // Newest first.
    let order: Vec<Uuid> = snapshot["items"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|message| serde_json::from_value(message["id"].clone()).unwrap())
        .collect();
    assert_eq!(order, sent, "applied in the order sent");
}

/// While a command waits (a durable write waiting for PostgreSQL), the socket keeps
/// reading: a ping is answered at once, and the commands behind it are read, then
/// applied and answered after it, in order.
#[actix_web::test]
async fn a_socket_reads_on_while_a_command_waits() {
    let app = crate::helpers::spawn_app_on_spacetimedb_with(|settings| {
        // The outbox is drained only by its poll, every 3 s: a durable write waits.
        settings.framework["outbox_push"] = json!(false);
        settings.framework["outbox_poll_interval_ms"] = json!(3_000);
    })
    .await;
    app.create_scope("chat", "waiting").await;
    let mut alice = app.live("alice", "chat", "waiting").await;
    let slow = Uuid::new_v4();
    alice.send(json!({ "ref": "slow", "type": "send", "id": slow, "text": "durable", "durability": "durable" })).await;
    let quick = Uuid::new_v4();
    alice.send(json!({ "ref": "quick", "type": "send", "id": quick, "text": "after" })).await;
    alice.send_ping(b"here?").await;
    // The pong comes before either reply: the socket was read while the durable
    // write waited.
    let mut frames = Vec::new();
    loop {
        match alice.next_any().await {
            Message::Pong(payload) => {
                assert_eq!(&payload[..], b"here?");
                break;
            }
            Message::Text(text) => frames.push(serde_json::from_str::<Value>(&text).unwrap()),
            _ => {}
        }
    }
    assert!(frames.iter().all(|frame| frame["kind"] != "reply"), "no reply before the pong: {frames:?}");
    // The replies, in order (a resync may come too: the scope was just created, and
    // its live clients are told to resync once it is warm).
    let mut replies = Vec::new();
    while replies.len() < 2 {
        let frame = alice.next_non_event().await;
        if frame["kind"] == "reply" {
            replies.push(frame);
        }
    }
    let answered: Vec<(Option<&str>, Option<bool>)> =
        replies.iter().map(|reply| (reply["ref"].as_str(), reply["ok"].as_bool())).collect();
    assert_eq!(answered, vec![(Some("slow"), Some(true)), (Some("quick"), Some(true))], "{replies:?}");
    let stored: Option<String> = sqlx::query_scalar("SELECT text FROM chat_messages WHERE id = $1")
        .bind(slow)
        .fetch_optional(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored.as_deref(), Some("durable"), "durable when answered");
    let snapshot = app.snapshot("alice", "chat", "waiting").await;
    let ids: Vec<&Value> = snapshot["items"].as_array().unwrap().iter().map(|m| &m["id"]).collect();
    assert_eq!(ids, vec![&json!(quick), &json!(slow)], "applied in the order sent (newest first)");
}

/// A client that sends commands and closes the socket at once (a tab being closed
/// right after the user acted) gets every one of them applied, even those still
/// queued behind a command that waits.
#[actix_web::test]
async fn commands_sent_before_a_close_are_all_applied() {
    let app = crate::helpers::spawn_app_on_spacetimedb_with(|settings| {
        settings.framework["outbox_push"] = json!(false);
        settings.framework["outbox_poll_interval_ms"] = json!(3_000);
    })
    .await;
    app.create_scope("chat", "leaving").await;
    let mut alice = app.live("alice", "chat", "leaving").await;
    alice.send(json!({ "type": "send", "id": Uuid::new_v4(), "text": "durable", "durability": "durable" })).await;
    for i in 0..10 {
        alice.send(json!({ "type": "send", "id": Uuid::new_v4(), "text": format!("queued {i}") })).await;
    }
    // A close handshake: the client reads on until the server's close (one that
    // drops its socket with frames unread resets the connection, and the kernel
    // throws away what the server had not read yet).
    alice.send_close().await;
    alice.closed().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let snapshot = app.snapshot("alice", "chat", "leaving").await;
        let count = snapshot["items"].as_array().unwrap().len();
        if count == 11 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "only {count} of the 11 commands were applied");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Sends `request` on a connection of its own and reads until the server closes it.
async fn raw_exchange(port: u16, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection after answering an upgrade it does not take")
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

const UPGRADE_HEADERS: &str = "Host: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                               Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

#[actix_web::test]
async fn an_upgrade_the_route_does_not_take_gets_the_routes_answer_and_the_connection_closes() {
    let app = spawn_app().await;
    // A route that is no WebSocket answers as it would without the upgrade headers.
    let plain = app.get("/health").await.status().as_u16();
    let answer = raw_exchange(app.port, &format!("GET /health HTTP/1.1\r\n{UPGRADE_HEADERS}\r\n")).await;
    assert!(answer.starts_with(&format!("HTTP/1.1 {plain} ")), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("connection: close"), "{answer}");

    // The live route refuses a socket without a token with its JSON error.
    let answer = raw_exchange(app.port, &format!("GET /api/chat/nowhere/live HTTP/1.1\r\n{UPGRADE_HEADERS}\r\n")).await;
    assert!(answer.starts_with("HTTP/1.1 401 "), "{answer}");
    let body: Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert!(body["error"]["code"].is_string(), "{body}");
}

/// Opens `path` as a WebSocket with `after` sent in the same packet as the handshake,
/// and returns the 101's head and the client socket (its frames unread).
async fn open_with(
    port: u16,
    path: &str,
    after: &[u8],
) -> (String, tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_tungstenite::tungstenite::protocol::Role;
    let mut packet = format!("GET {path} HTTP/1.1\r\n{UPGRADE_HEADERS}\r\n").into_bytes();
    packet.extend_from_slice(after);
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream.write_all(&packet).await.unwrap();
    // The head, read a byte at a time so that no frame is read with it.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(stream.read_u8().await.unwrap());
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    (head, tokio_tungstenite::WebSocketStream::from_raw_socket(stream, Role::Client, None).await)
}

/// The next frame that is not a ping or a presence frame, within 10 s.
async fn next_frame(socket: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>) -> Message {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match socket.next().await.unwrap().unwrap() {
                Message::Text(text) if text.contains("presence") || text.contains(r#""kind":"ready""#) => {}
                Message::Ping(_) => {}
                frame => return frame,
            }
        }
    })
    .await
    .expect("the server answers within 10 s")
}

#[actix_web::test]
async fn a_frame_announced_past_the_limit_is_refused_from_its_header() {
    let app = spawn_app().await;
    app.create_scope("chat", "flood").await;
    // A text frame announcing 2^40 bytes (masked, as a client's must be), and nothing
    // of it: the server must not wait for the bytes (nor buffer them) to refuse it.
    let mut header = vec![0x81, 0x80 | 127];
    header.extend_from_slice(&(1u64 << 40).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    let path = format!("/api/chat/flood/live?token={}", app.token("flooder"));
    let (_, mut socket) = open_with(app.port, &path, &header).await;
    let Message::Text(reply) = next_frame(&mut socket).await else { panic!("a reply comes first") };
    let reply: Value = serde_json::from_str(&reply).unwrap();
    assert_eq!((reply["status"].as_u64(), reply["error"]["code"].as_str()), (Some(413), Some("frame_rejected")));
    match next_frame(&mut socket).await {
        Message::Close(Some(close)) => assert_eq!(u16::from(close.code), 1009),
        other => panic!("the socket closes with 1009, not {other:?}"),
    }
}

#[actix_web::test]
async fn a_handshake_the_http_parser_does_not_hand_over_is_refused() {
    let app = spawn_app().await;
    app.create_scope("chat", "mixed").await;
    // The route's handshake check would take this `Upgrade`, but actix-http's parser
    // keeps the connection as HTTP: a 101 here would leave it so, and what followed
    // would be read as requests.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let token = app.token("mixed");
    let request = format!(
        "GET /api/chat/mixed/live?token={token} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\n\
         Upgrade: websocket, h2c\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    // The connection stays HTTP (kept alive): read the answer's head and its body.
    let mut answer = Vec::new();
    let read = async {
        while !String::from_utf8_lossy(&answer).contains("not_a_websocket") {
            let mut chunk = [0u8; 4096];
            let read = stream.read(&mut chunk).await.unwrap();
            assert!(read > 0, "the server closed without answering");
            answer.extend_from_slice(&chunk[..read]);
        }
    };
    let answered = tokio::time::timeout(Duration::from_secs(10), read).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answered.is_ok(), "a 400 not_a_websocket within 10 s, not: {answer}");
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
}

#[actix_web::test]
async fn a_command_sent_in_the_same_packet_as_the_handshake_is_applied() {
    let app = spawn_app().await;
    app.create_scope("chat", "eager").await;
    let command = json!({ "type": "send", "id": Uuid::new_v4(), "text": "first", "ref": "early" }).to_string();
    // A client's frame is masked; this one with a zero mask, so its payload is as is
    // (a one-byte length: at most 125 bytes).
    let length = u8::try_from(command.len()).ok().filter(|length| *length <= 125).expect("a short command");
    let mut frame = vec![0x81, 0x80 | length, 0, 0, 0, 0];
    frame.extend_from_slice(command.as_bytes());
    let path = format!("/api/chat/eager/live?token={}", app.token("eager"));
    let (_, mut socket) = open_with(app.port, &path, &frame).await;
    let Message::Text(reply) = next_frame(&mut socket).await else { panic!("the reply comes first") };
    let reply: Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(reply["kind"], "reply", "{reply}");
    assert_eq!(reply["ref"], "early", "{reply}");
    assert_eq!(reply["ok"], true, "{reply}");
    let snapshot = app.snapshot("eager", "chat", "eager").await;
    assert!(snapshot.to_string().contains("first"), "{snapshot}");
}

#[actix_web::test]
async fn a_command_in_fragments_is_refused_once_and_the_socket_goes_on() {
    let app = spawn_app().await;
    app.create_scope("chat", "pieces").await;
    // `{"type":` then `"send"}` as a text message in two fragments (zero masks).
    let mut fragments = vec![0x01, 0x80 | 8, 0, 0, 0, 0];
    fragments.extend_from_slice(br#"{"type":"#);
    fragments.extend_from_slice(&[0x80, 0x80 | 7, 0, 0, 0, 0]);
    fragments.extend_from_slice(br#""send"}"#);
    let path = format!("/api/chat/pieces/live?token={}", app.token("pieces"));
    let (_, mut socket) = open_with(app.port, &path, &fragments).await;
    let Message::Text(reply) = next_frame(&mut socket).await else { panic!("a reply comes first") };
    let reply: Value = serde_json::from_str(&reply).unwrap();
    assert_eq!((reply["status"].as_u64(), reply["error"]["code"].as_str()), (Some(400), Some("fragmented_message")));
    let command = json!({ "type": "send", "id": Uuid::new_v4(), "text": "whole", "ref": "whole" });
    socket.send(Message::text(command.to_string())).await.unwrap();
    let Message::Text(reply) = next_frame(&mut socket).await else { panic!("a reply") };
    let reply: Value = serde_json::from_str(&reply).unwrap();
    assert_eq!((reply["ref"].as_str(), reply["ok"].as_bool()), (Some("whole"), Some(true)), "{reply}");
}
