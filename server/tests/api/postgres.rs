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
