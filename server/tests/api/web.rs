//! The demo apps' files under `/app/` and the local login that mints their tokens.

use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_with};

#[actix_web::test]
async fn the_built_apps_are_served_under_app_and_nothing_outside_them() {
    let dir = std::env::temp_dir().join(format!("boardsync-web-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(dir.join("assets")).unwrap();
    std::fs::write(dir.join("index.html"), "<h1>home</h1>").unwrap();
    std::fs::write(dir.join("chat.html"), "<h1>chat</h1>").unwrap();
    std::fs::write(dir.join("assets/app-1a2b.js"), "console.log(1)").unwrap();
    std::fs::write(dir.join(".secret"), "hidden").unwrap();
    std::os::unix::fs::symlink("/etc/hostname", dir.join("leak.txt")).unwrap();
    std::os::unix::fs::symlink("/etc", dir.join("etcdir")).unwrap();
    let web_dir = dir.clone();
    let app = spawn_app_with(move |settings| settings.web.dir = web_dir).await;
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let get = |path: &str| client.get(format!("{}{path}", app.address)).send();

    let root = get("/").await.unwrap();
    assert_eq!((root.status().as_u16(), root.headers()["location"].to_str().unwrap()), (302, "/app/"));
    for (path, body) in [("/app", "<h1>home</h1>"), ("/app/", "<h1>home</h1>"), ("/app/chat", "<h1>chat</h1>")] {
        let page = get(path).await.unwrap();
        assert_eq!(page.status(), 200, "{path}");
        assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8", "{path}");
        assert_eq!(page.headers()["cache-control"], "no-cache", "{path}: pages are revalidated");
        assert_eq!(page.text().await.unwrap(), body, "{path}");
    }
    let script = get("/app/assets/app-1a2b.js").await.unwrap();
    assert_eq!(script.headers()["content-type"], "text/javascript; charset=utf-8");
    assert!(script.headers()["cache-control"].to_str().unwrap().contains("immutable"));
    let page = get("/app").await.unwrap();
    assert_eq!(page.headers()["x-frame-options"], "DENY", "the console cannot be framed");
    let policy = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(policy.contains("script-src 'self'") && policy.contains("frame-ancestors 'none'"), "{policy}");
    for outside in [
        "/app/../Cargo.toml",
        "/app/%2e%2e/Cargo.toml",
        "/app/.secret",
        "/app/missing",
        "/app/assets/../../x",
        "/app/leak.txt",
        "/app/etcdir/hostname",
    ] {
        let response = get(outside).await.unwrap();
        assert_eq!(response.status(), 404, "{outside}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "no_route", "{outside}");
    }
}

#[actix_web::test]
async fn the_local_login_mints_a_working_token_only_where_enabled() {
    let app = spawn_app().await;
    let login = |body: Value| app.http.post(format!("{}/api/dev/login", app.address)).json(&body).send();
    let answer: Value = login(json!({ "user": "carol" })).await.unwrap().json().await.unwrap();
    assert_eq!((answer["user"].as_str(), answer["admin"].as_bool()), (Some("carol"), Some(false)));
    let token = answer["token"].as_str().unwrap();
    let scopes = app.http.get(format!("{}/api/chat", app.address)).bearer_auth(token).send().await.unwrap();
    assert_eq!(scopes.status(), 200, "the token works");
    let admin_routes =
        app.http.get(format!("{}/api/admin/scopes", app.address)).bearer_auth(token).send().await.unwrap();
    assert_eq!(admin_routes.status(), 403, "not an admin unless asked");
    let admin: Value = login(json!({ "user": "root", "admin": true })).await.unwrap().json().await.unwrap();
    let admin_routes = app
        .http
        .get(format!("{}/api/admin/scopes", app.address))
        .bearer_auth(admin["token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(admin_routes.status(), 200);
    let blank = login(json!({ "user": "  " })).await.unwrap();
    assert_eq!(blank.status(), 422);
    // A page elsewhere reaching it through DNS rebinding names its own host.
    let rebound = app
        .http
        .post(format!("{}/api/dev/login", app.address))
        .header("host", "attacker.example:8080")
        .json(&json!({ "user": "mallory", "admin": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(rebound.status(), 403);
    assert_eq!(rebound.json::<Value>().await.unwrap()["error"]["code"], "dev_login_local_only");

    let locked = spawn_app_with(|settings| settings.auth.dev_login = false).await;
    let refused =
        locked.http.post(format!("{}/api/dev/login", locked.address)).json(&json!({ "user": "x" })).send().await;
    let refused = refused.unwrap();
    assert_eq!(refused.status(), 403);
    assert_eq!(refused.json::<Value>().await.unwrap()["error"]["code"], "dev_login_disabled");
}
