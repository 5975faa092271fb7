use crate::helpers::spawn_app;

#[actix_web::test]
async fn the_app_migrates_its_database_at_start() {
    let app = spawn_app().await;

    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();

    assert!(tables.contains(&"scopes".to_string()), "{tables:?}");
}

#[actix_web::test]
async fn a_sql_write_is_read_back_from_the_test_database() {
    let app = spawn_app().await;

    sqlx::query("INSERT INTO scopes (domain, key, name) VALUES ('chat', 'general', 'General')")
        .execute(&app.pool)
        .await
        .unwrap();
    let name: String = sqlx::query_scalar("SELECT name FROM scopes WHERE domain = 'chat' AND key = 'general'")
        .fetch_one(&app.pool)
        .await
        .unwrap();

    assert_eq!(name, "General");
}

/// On the PostgreSQL adapter too, what an outside writer changes with plain SQL
/// reaches live clients (snapshots read PostgreSQL anyway).
#[actix_web::test]
async fn a_row_changed_with_plain_sql_reaches_live_clients_on_postgres() {
    use serde_json::json;
    let app = spawn_app().await;
    app.create_scope("whiteboard", "plans").await;
    let id = uuid::Uuid::new_v4();
    let add = json!({ "type": "add", "id": id, "kind": "rect", "x": 1.0, "y": 1.0 });
    assert_eq!(app.command("alice", "whiteboard", "plans", add).await.status(), 200);
    let mut bob = app.live("bob", "whiteboard", "plans").await;
    let operator =
        sqlx::PgPool::connect(secrecy::ExposeSecret::expose_secret(&app.settings.database.url)).await.unwrap();
    let started = std::time::Instant::now();
    sqlx::query("UPDATE whiteboard_elements SET x = 42 WHERE id = $1").bind(id).execute(&operator).await.unwrap();
    let event = loop {
        // (The add's own event may still be on its way to a new subscriber.)
        let event = bob.next_event().await;
        if event["elements"][0]["version"] != 1 {
            break event;
        }
    };
    let delay = started.elapsed();
    assert_eq!(event["elements"][0]["x"], 42.0, "{event}");
    assert_eq!(event["elements"][0]["version"], 1_000_001);
    let snapshot = app.snapshot("carol", "whiteboard", "plans").await;
    assert_eq!(snapshot["items"][0]["x"], 42.0);
    // The backend's own writes after it build on the jumped version.
    let moved = json!({ "type": "move", "to": [{ "id": id, "x": 5.0, "y": 5.0 }] });
    let answer: serde_json::Value = app.command("alice", "whiteboard", "plans", moved).await.json().await.unwrap();
    assert_eq!(answer["elements"][0]["version"], 1_000_002);
    println!("an outside SQL update reached a live client on the PostgreSQL adapter in {} ms", delay.as_millis());
}
