//! Test support: every test gets its own real PostgreSQL database and its own
//! SpacetimeDB database name, so tests run in parallel without sharing state.
//!
//! The services come from the environment that `scripts/test` sets up:
//! - `DATABASE_URL`: a PostgreSQL server where test databases may be created;
//! - `BOARDSYNC_TEST_SPACETIMEDB_URL`, `BOARDSYNC_TEST_SPACETIMEDB_TOKEN`: a SpacetimeDB
//!   server and the identity that publishes (and so owns) the test modules;
//! - `BOARDSYNC_MODULES_DIR`: the built modules, `<domain>.wasm`.
//!
//! Nothing is mocked: a test that needs a service and finds none fails and says so.

pub mod private;

use std::path::PathBuf;

use std::time::Duration;

use boardsync_core::factory::SpacetimeTarget;
use boardsync_core::spacetime::Backoff;
use boardsync_core::{Domain, DomainSettings};
use sqlx::migrate::Migrator;
use sqlx::{Connection, Executor, PgConnection, PgPool};

/// A name no other test uses, e.g. `test-chat-3f2a…`, valid for both PostgreSQL and
/// SpacetimeDB (lowercase letters, digits and dashes).
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

pub(crate) fn required_env(name: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| panic!("{name} is not set: run the tests through scripts/test, which starts the services"))
}

/// Polls `condition` every 20 ms until it holds; panics naming `what` after 20 s.
pub async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `D`'s settings as `settings/default.toml` gives them.
pub fn default_domain_settings<D: Domain>() -> DomainSettings<D> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../settings/default.toml");
    let settings = config::Config::builder()
        .add_source(config::File::with_name(path))
        .build()
        .unwrap_or_else(|e| panic!("settings/default.toml is invalid: {e}"));
    let read = |key: &str| -> serde_json::Value {
        settings.get(key).unwrap_or_else(|e| panic!("settings/default.toml has no valid [{key}]: {e}"))
    };
    DomainSettings::parse(&read("framework"), &read(&format!("domains.{}", D::NAME))).unwrap_or_else(|e| panic!("{e}"))
}

/// A fresh PostgreSQL database of its own, migrated.
pub struct TestPostgres {
    pub name: String,
    pub url: String,
    pub pool: PgPool,
}

impl TestPostgres {
    /// Creates the database and runs the core migrations and then `domain_migrators`.
    pub async fn create(domain_migrators: &[Migrator]) -> Self {
        let (name, url) = Self::create_empty().await;
        // As a backend connects: the tests' own SQL is not an outside writer's.
        let options = boardsync_core::postgres::backend_connect_options(&url).expect("a PostgreSQL URL");
        let pool = PgPool::connect_with(options).await.expect("connect to the test database");
        boardsync_core::migrations::run_all(&pool, domain_migrators).await.expect("migrate the test database");
        Self { name, url, pool }
    }

    /// An empty database without migrations, for code that migrates on its own:
    /// its name and URL.
    pub async fn create_empty() -> (String, String) {
        let admin_url = required_env("DATABASE_URL");
        let name = unique_name("test").replace('-', "_");
        let mut admin = PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to PostgreSQL at DATABASE_URL: {e}"));
        admin.execute(format!(r#"CREATE DATABASE "{name}""#).as_str()).await.expect("create the test database");
        let url = with_database(&admin_url, &name);
        (name, url)
    }
}

/// `url` with its database name replaced by `database`.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_end..].find('/') {
        Some(slash) => &base[..authority_end + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    }
}

/// A module published under a database name of its own.
pub struct TestSpacetime {
    pub url: String,
    pub token: String,
    pub database: String,
    /// The database-name prefix (`spacetimedb.database_prefix` for an app using it).
    pub prefix: String,
}

/// Publishes `domain`'s built module as `database` with `token` (its owner).
pub async fn publish(url: &str, token: &str, database: &str, domain: &str, clear: bool) {
    let wasm_path = PathBuf::from(required_env("BOARDSYNC_MODULES_DIR")).join(format!("{domain}.wasm"));
    let wasm = std::fs::read(&wasm_path).unwrap_or_else(|e| panic!("cannot read {}: {e}", wasm_path.display()));
    let response = reqwest::Client::new()
        .put(format!("{url}/v1/database/{database}{}", if clear { "?clear=true" } else { "" }))
        .bearer_auth(token)
        .body(wasm)
        .send()
        .await
        .expect("SpacetimeDB answers the publish request");
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    assert!(status.is_success(), "publishing {domain} as {database} failed with {status}: {body}");
}

/// A new SpacetimeDB identity's token, as anyone who can reach the server gets one.
pub async fn stranger_token(url: &str) -> String {
    let response = reqwest::Client::new()
        .post(format!("{url}/v1/identity"))
        .send()
        .await
        .expect("SpacetimeDB answers the identity request");
    let body: serde_json::Value = response.json().await.expect("an identity is JSON");
    body["token"].as_str().expect("an identity has a token").to_string()
}

/// Runs `query` on `database` over SpacetimeDB's SQL endpoint as the holder of
/// `token`: the HTTP status and the body.
pub async fn sql(url: &str, token: &str, database: &str, query: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(format!("{url}/v1/database/{database}/sql"))
        .bearer_auth(token)
        .body(query.to_string())
        .send()
        .await
        .expect("SpacetimeDB answers the SQL request");
    (response.status().as_u16(), response.text().await.unwrap_or_default())
}

impl TestSpacetime {
    /// Publishes the `domain`'s module (`BOARDSYNC_MODULES_DIR/<domain>.wasm`) as a new
    /// database `<prefix>-<domain>` under a fresh prefix, owned by the test identity.
    pub async fn publish(domain: &str) -> Self {
        Self::publish_all(&[domain]).await
    }

    /// Publishes several domains' modules under one fresh prefix, as an app that
    /// runs them all expects; `database` names the first.
    pub async fn publish_all(domains: &[&str]) -> Self {
        let url = required_env("BOARDSYNC_TEST_SPACETIMEDB_URL");
        let token = required_env("BOARDSYNC_TEST_SPACETIMEDB_TOKEN");
        let prefix = unique_name("t");
        for domain in domains {
            publish(&url, &token, &format!("{prefix}-{domain}"), domain, false).await;
        }
        Self { url, token, database: format!("{prefix}-{}", domains[0]), prefix }
    }

    /// Where the backend finds this module, with the test identity as the backend's.
    pub fn target(&self) -> SpacetimeTarget {
        let domain = self.database.strip_prefix(&format!("{}-", self.prefix)).unwrap_or(&self.database);
        SpacetimeTarget {
            shard: boardsync_core::shards::Shard::new(domain, "main", true),
            url: self.url.clone(),
            token: self.token.clone(),
            database: self.database.clone(),
            reducer_timeout: Duration::from_secs(10),
            durable_timeout: Duration::from_secs(10),
            backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(1)),
            compression: false,
        }
    }

    /// Removes the database from the server (tests call this at the end to keep the
    /// shared test server small; a failed test leaves it behind, which is harmless).
    pub async fn delete(self) {
        let _ = reqwest::Client::new()
            .delete(format!("{}/v1/database/{}", self.url, self.database))
            .bearer_auth(&self.token)
            .send()
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn replaces_the_database_name() {
        assert_eq!(with_database("postgres://u@h:5432/postgres", "t1"), "postgres://u@h:5432/t1");
        assert_eq!(with_database("postgres://u@h:5432", "t1"), "postgres://u@h:5432/t1");
        assert_eq!(with_database("postgres://u@h/db?sslmode=disable", "t1"), "postgres://u@h/t1?sslmode=disable");
    }
}
