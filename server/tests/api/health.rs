use secrecy::SecretString;
use serde_json::Value;

use crate::helpers::{spawn_app, spawn_app_with};

#[actix_web::test]
async fn health_reports_postgres_up_and_the_postgres_adapter_without_spacetimedb() {
    let app = spawn_app().await;

    let response = app.get("/health").await;

    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["adapter"], "postgres");
    assert_eq!(body["postgres"]["status"], "up");
    assert_eq!(body["spacetimedb"]["status"], "not_configured");
}

#[actix_web::test]
async fn health_reports_a_reachable_spacetimedb_and_the_spacetimedb_adapter() {
    let url =
        std::env::var("BOARDSYNC_TEST_SPACETIMEDB_URL").expect("scripts/test sets BOARDSYNC_TEST_SPACETIMEDB_URL");
    let app = spawn_app_with(|settings| {
        settings.spacetimedb.url = url;
        settings.spacetimedb.token = SecretString::from("unused-by-health");
    })
    .await;

    let body: Value = app.get("/health").await.json().await.unwrap();

    assert_eq!(body["adapter"], "spacetimedb");
    assert_eq!(body["spacetimedb"]["status"], "up", "{body}");
}

#[actix_web::test]
async fn health_is_503_when_spacetimedb_does_not_answer() {
    let app = spawn_app_with(|settings| {
        // Port 9 (discard) on loopback: nothing listens there.
        settings.spacetimedb.url = "http://127.0.0.1:9".into();
        settings.spacetimedb.token = SecretString::from("unused-by-health");
    })
    .await;

    let response = app.get("/health").await;

    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["spacetimedb"]["status"], "down");
    assert_eq!(body["postgres"]["status"], "up");
}

#[actix_web::test]
async fn metrics_are_exported_in_prometheus_text_format() {
    let app = spawn_app().await;
    app.get("/health").await;

    let response = app.get("/metrics").await;

    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(text.contains("boardsync_info{adapter=\"postgres\""), "{text}");
    assert!(text.contains("boardsync_dependency_up{dependency=\"postgres\"} 1"), "{text}");
    assert!(
        text.contains("boardsync_http_requests_total{method=\"GET\",route=\"/health\",status=\"200\"} 1"),
        "{text}"
    );
}
