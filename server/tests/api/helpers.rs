//! `spawn_app`: the real application on a random port, with its own PostgreSQL
//! database and, when asked, its own SpacetimeDB database names.

use std::collections::HashMap;

use boardsync::settings::{Environment, Settings};
use boardsync::startup::Application;
use boardsync_testkit::TestPostgres;
use secrecy::SecretString;
use sqlx::PgPool;

pub struct TestApp {
    pub address: String,
    pub pool: PgPool,
    pub http: reqwest::Client,
}

impl TestApp {
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("the app answers")
    }
}

pub fn test_settings() -> Settings {
    Settings::load_from(&Settings::source_dir(), Environment::Test, HashMap::new())
        .expect("test settings load")
}

/// The application on the PostgreSQL adapter, with a fresh database.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// The application with settings adjusted by `configure` after the database is set.
pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    if std::env::var("TEST_LOG").is_ok() {
        boardsync::telemetry::init(&test_settings().log);
    }
    let (_, url) = TestPostgres::create_empty().await;
    let mut settings = test_settings();
    settings.database.url = SecretString::from(url.clone());
    configure(&mut settings);
    let app = Application::build(settings).await.expect("the app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        pool: PgPool::connect(&url)
            .await
            .expect("connect to the app's database"),
        http: reqwest::Client::new(),
    }
}
