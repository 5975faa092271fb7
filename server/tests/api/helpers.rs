//! `spawn_app`: the real application on a random port, with its own PostgreSQL
//! database and, when asked, its own SpacetimeDB database names; helpers so each
//! test reads as a scenario.

use std::collections::HashMap;
use std::time::Duration;

use boardsync::auth::issue_token;
use boardsync::settings::{Environment, Settings};
use boardsync::startup::Application;
use boardsync_testkit::{TestPostgres, TestSpacetime};
use futures::{SinkExt, StreamExt};
use secrecy::SecretString;
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio_tungstenite::tungstenite;

/// Every domain the app runs (each needs its module published on SpacetimeDB).
pub const DOMAINS: &[&str] = &["chat", "kanban", "poll", "whiteboard"];

pub struct TestApp {
    pub address: String,
    pub port: u16,
    pub pool: PgPool,
    pub http: reqwest::Client,
    pub settings: Settings,
}

pub fn test_settings() -> Settings {
    Settings::load_from(&Settings::source_dir(), Environment::Test, HashMap::new()).expect("test settings load")
}

/// The application on the PostgreSQL adapter, with a fresh database.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// The application with settings adjusted by `configure` after the database is set.
pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    let (_, url) = TestPostgres::create_empty().await;
    spawn_app_in(url, configure).await
}

/// The application on the SpacetimeDB adapter: the chat module published under a
/// prefix of its own, the app connected to it.
pub async fn spawn_app_on_spacetimedb() -> TestApp {
    spawn_app_on_spacetimedb_with(|_| {}).await
}

pub async fn spawn_app_on_spacetimedb_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    let stdb = TestSpacetime::publish_all(DOMAINS).await;
    let app = spawn_app_with(|settings| {
        use_spacetimedb(settings, &stdb.url, &stdb.token, &stdb.prefix);
        configure(settings);
    })
    .await;
    app.wait_for_cache().await;
    app
}

/// Points `settings` at a SpacetimeDB server, with quick timeouts and reconnects.
pub fn use_spacetimedb(settings: &mut Settings, url: &str, token: &str, prefix: &str) {
    settings.spacetimedb.url = url.to_string();
    settings.spacetimedb.token = SecretString::from(token.to_string());
    settings.spacetimedb.database_prefix = prefix.to_string();
    settings.spacetimedb.reconnect_initial_ms = 100;
    settings.spacetimedb.reconnect_max_ms = 500;
}

/// The application on the PostgreSQL database at `database_url`.
pub async fn spawn_app_in(database_url: String, configure: impl FnOnce(&mut Settings)) -> TestApp {
    if std::env::var("TEST_LOG").is_ok() {
        boardsync::telemetry::init(&test_settings().log);
    }
    let url = database_url;
    let mut settings = test_settings();
    settings.database.url = SecretString::from(url.clone());
    configure(&mut settings);
    let app = Application::build(settings.clone()).await.expect("the app builds");
    let port = app.port();
    actix_web::rt::spawn(app.run_until_stopped());
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        port,
        // As a backend connects: the tests' own SQL is not an outside writer's.
        pool: PgPool::connect_with(boardsync_core::postgres::backend_connect_options(&url).unwrap())
            .await
            .expect("connect to the app's database"),
        http: reqwest::Client::new(),
        settings,
    }
}

impl TestApp {
    /// Another handle on the same app, for a task of its own.
    pub fn handle(&self) -> TestApp {
        TestApp {
            address: self.address.clone(),
            port: self.port,
            pool: self.pool.clone(),
            http: self.http.clone(),
            settings: self.settings.clone(),
        }
    }

    /// The ids of every item of a scope, as `user` pages back through it `limit` at a
    /// time (newest first).
    pub async fn all_pages(&self, user: &str, domain: &str, scope: &str, limit: u32) -> Vec<String> {
        let mut seen: Vec<String> = Vec::new();
        let mut path = format!("/api/{domain}/{scope}?limit={limit}");
        loop {
            let response = self.get_as(user, &path).await;
            assert_eq!(response.status(), 200);
            let page: Value = response.json().await.unwrap();
            seen.extend(page["items"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_string()));
            match page["next_before"].as_str() {
                Some(cursor) => path = format!("/api/{domain}/{scope}?limit={limit}&before={cursor}"),
                None => return seen,
            }
        }
    }

    /// Waits until every domain's cache is connected (`/health` says so).
    pub async fn wait_for_cache(&self) {
        for _ in 0..400 {
            let health: Value = self.get("/health").await.json().await.unwrap();
            if DOMAINS.iter().all(|d| health["domains"][d]["cache_connected"] == true) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the cache did not connect within 20 s");
    }

    /// Polls `query` (a single number) until it equals `expected`.
    pub async fn wait_for_count(&self, query: &str, expected: i64) {
        let mut last = -1;
        for _ in 0..400 {
            last = sqlx::query_scalar::<_, i64>(query).fetch_one(&self.pool).await.unwrap_or(-1);
            if last == expected {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{query} stayed at {last}, expected {expected}");
    }

    pub fn token(&self, user: &str) -> String {
        issue_token(&self.settings.auth, user, false).expect("the test harness signs tokens")
    }

    pub fn admin_token(&self) -> String {
        issue_token(&self.settings.auth, "admin", true).expect("the test harness signs tokens")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(format!("{}{path}", self.address)).send().await.expect("the app answers")
    }

    /// GET `path` with an admin's token.
    pub async fn get_as_admin(&self, path: &str) -> reqwest::Response {
        let request = self.http.get(format!("{}{path}", self.address)).bearer_auth(self.admin_token());
        request.send().await.expect("the app answers")
    }

    pub async fn get_as(&self, user: &str, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.address))
            .bearer_auth(self.token(user))
            .send()
            .await
            .expect("the app answers")
    }

    /// Creates (or updates) a scope through the admin API.
    pub async fn put_scope(&self, domain: &str, key: &str, body: Value) -> reqwest::Response {
        self.http
            .put(format!("{}/api/admin/scopes/{domain}/{key}", self.address))
            .bearer_auth(self.admin_token())
            .json(&body)
            .send()
            .await
            .expect("the app answers")
    }

    /// Creates a scope every authenticated user may read and write.
    pub async fn create_scope(&self, domain: &str, key: &str) {
        let config = json!({ "access": { "authenticated": "write" } });
        let response = self.put_scope(domain, key, json!({ "name": key, "config": config })).await;
        assert_eq!(response.status(), 200, "creating {domain}/{key}: {}", response.text().await.unwrap());
    }

    /// Creates a scope only its members may see.
    pub async fn create_members_only_scope(&self, domain: &str, key: &str) {
        let response = self.put_scope(domain, key, json!({ "name": key })).await;
        assert_eq!(response.status(), 200, "creating {domain}/{key}: {}", response.text().await.unwrap());
    }

    /// `PUT /api/{domain}/{scope}/members/{member}` as `user` (an admin when `None`).
    pub async fn set_member(
        &self,
        user: Option<&str>,
        domain: &str,
        scope: &str,
        member: &str,
        role: &str,
    ) -> reqwest::Response {
        let token = user.map_or_else(|| self.admin_token(), |u| self.token(u));
        self.http
            .put(format!("{}/api/{domain}/{scope}/members/{member}", self.address))
            .bearer_auth(token)
            .json(&json!({ "role": role }))
            .send()
            .await
            .expect("the app answers")
    }

    /// `DELETE /api/{domain}/{scope}/members/{member}` as `user` (an admin when `None`).
    pub async fn remove_member(
        &self,
        user: Option<&str>,
        domain: &str,
        scope: &str,
        member: &str,
    ) -> reqwest::Response {
        let token = user.map_or_else(|| self.admin_token(), |u| self.token(u));
        self.http
            .delete(format!("{}/api/{domain}/{scope}/members/{member}", self.address))
            .bearer_auth(token)
            .send()
            .await
            .expect("the app answers")
    }

    pub async fn command(&self, user: &str, domain: &str, scope: &str, command: Value) -> reqwest::Response {
        self.http
            .post(format!("{}/api/{domain}/{scope}", self.address))
            .bearer_auth(self.token(user))
            .json(&command)
            .send()
            .await
            .expect("the app answers")
    }

    pub async fn snapshot(&self, user: &str, domain: &str, scope: &str) -> Value {
        let response = self.get_as(user, &format!("/api/{domain}/{scope}")).await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// A live WebSocket client, connected and subscribed (its `ready` consumed).
    pub async fn live(&self, user: &str, domain: &str, scope: &str) -> LiveClient {
        self.live_with(user, domain, scope, "").await
    }

    /// As [`Self::live`], with more of the route's query (`&presence=false`, say).
    pub async fn live_with(&self, user: &str, domain: &str, scope: &str, query: &str) -> LiveClient {
        let url = format!("ws://127.0.0.1:{}/api/{domain}/{scope}/live?token={}{query}", self.port, self.token(user));
        let (socket, _) = tokio_tungstenite::connect_async(url).await.expect("the WebSocket opens");
        let mut client = LiveClient { socket };
        let ready = client.next().await;
        assert_eq!(ready["kind"], "ready", "{ready}");
        client
    }
}

impl TestApp {
    /// The HTTP status a live WebSocket handshake is refused with (panics if it opens).
    pub async fn live_refused(&self, user: &str, domain: &str, scope: &str) -> u16 {
        self.live_refusal(user, domain, scope).await.0
    }

    /// The status and JSON error of a refused live handshake.
    pub async fn live_refusal(&self, user: &str, domain: &str, scope: &str) -> (u16, Value) {
        let url = format!("ws://127.0.0.1:{}/api/{domain}/{scope}/live?token={}", self.port, self.token(user));
        match tokio_tungstenite::connect_async(url).await {
            Ok(_) => panic!("the WebSocket to {domain}/{scope} opened for {user}"),
            Err(tungstenite::Error::Http(response)) => {
                let body = response.body().as_deref().map_or(Value::Null, |body| {
                    serde_json::from_slice(body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into()))
                });
                (response.status().as_u16(), body)
            }
            Err(error) => panic!("the handshake failed otherwise: {error}"),
        }
    }
}

pub struct LiveClient {
    socket: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
}

impl LiveClient {
    pub async fn send(&mut self, command: Value) {
        self.socket.send(tungstenite::Message::text(command.to_string())).await.expect("the frame is sent");
    }

    /// Sends a text frame as it is (not necessarily a valid command).
    pub async fn send_text(&mut self, text: &str) {
        self.socket.send(tungstenite::Message::text(text)).await.expect("the frame is sent");
    }

    /// Starts the close handshake (then read on with [`Self::closed`]).
    pub async fn send_close(&mut self) {
        self.socket.close(None).await.expect("the close frame is sent");
    }

    /// Sends a WebSocket ping.
    pub async fn send_ping(&mut self, payload: &[u8]) {
        self.socket.send(tungstenite::Message::Ping(payload.to_vec().into())).await.expect("the ping is sent");
    }

    /// The next frame of any type (a pong, say).
    pub async fn next_any(&mut self) -> tungstenite::Message {
        tokio::time::timeout(Duration::from_secs(10), self.socket.next())
            .await
            .expect("a frame arrives within 10 s")
            .expect("the socket stays open")
            .expect("the frame is valid")
    }

    /// The next JSON frame from the server, but presence frames (see
    /// [`Self::next_presence`]); pings are answered by tungstenite.
    pub async fn next(&mut self) -> Value {
        loop {
            let frame = self.next_frame().await;
            if !frame["kind"].as_str().unwrap_or_default().starts_with("presence") {
                return frame;
            }
        }
    }

    /// The next presence frame (`presence_snapshot`, `presence`, `presence_left`).
    pub async fn next_presence(&mut self) -> Value {
        loop {
            let frame = self.next_frame().await;
            if frame["kind"].as_str().unwrap_or_default().starts_with("presence") {
                return frame;
            }
        }
    }

    /// Closes the socket as a client that leaves does.
    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
    }

    /// Sets this connection's presence state.
    pub async fn set_presence(&mut self, state: Value) {
        self.send(json!({ "kind": "presence", "state": state })).await;
    }

    /// Whether a presence frame arrives within `wait`.
    pub async fn presence_within(&mut self, wait: Duration) -> Option<Value> {
        tokio::time::timeout(wait, self.next_presence()).await.ok()
    }

    async fn next_frame(&mut self) -> Value {
        // Pings come every heartbeat: the wait is for a text frame, not any frame.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let frame = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .expect("a frame arrives within 10 s")
                .expect("the socket stays open")
                .expect("the frame is valid");
            if let tungstenite::Message::Text(text) = frame {
                return serde_json::from_str(&text).expect("frames are JSON");
            }
        }
    }

    /// Reads until the server closes the socket; the close code, if it sent one.
    pub async fn closed(&mut self) -> Option<u16> {
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(10), self.socket.next())
                .await
                .expect("the socket closes within 10 s");
            match frame {
                None | Some(Err(_)) => return None,
                Some(Ok(tungstenite::Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => {}
            }
        }
    }

    /// The next pushed event (skipping replies).
    pub async fn next_event(&mut self) -> Value {
        loop {
            let frame = self.next().await;
            if frame["kind"] == "event" {
                return frame["event"].clone();
            }
        }
    }

    /// The next frame that is not a pushed event: an error or a reply. Events for
    /// writes made just before the socket opened may still arrive first.
    pub async fn next_non_event(&mut self) -> Value {
        loop {
            let frame = self.next().await;
            if frame["kind"] != "event" {
                return frame;
            }
        }
    }

    /// The reply to the command sent with `reference` (skipping events).
    pub async fn reply(&mut self, reference: &str) -> Value {
        loop {
            let frame = self.next().await;
            if frame["kind"] == "reply" && frame["ref"] == reference {
                return frame;
            }
        }
    }
}

/// Runs the `boardsync` command line with the test settings (and no database or
/// cache of its own: it reaches a server through `--url`), and returns its output.
pub async fn boardsync_cli(args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_boardsync"))
        .args(args)
        .env("BOARDSYNC_SETTINGS_DIR", Settings::source_dir())
        .env("BOARDSYNC_ENV", "test")
        .env_remove("DATABASE_URL")
        .env_remove("SPACETIMEDB_URL")
        .output()
        .await
        .expect("the command line runs")
}
