//! The demo apps and the admin console: the built front end (`web.dir`), served as
//! files under `/app/`, plus the local login that lets two browser windows be two
//! people. Everything they show comes from the public API with the user's token; these
//! routes serve only files and (local runs only) tokens.

use std::path::{Component, Path, PathBuf};

use actix_web::http::header;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use boardsync_core::DomainError;
use serde::Deserialize;
use serde_json::json;

use crate::error::ApiError;
use crate::routes::members::member_id;
use crate::settings::is_loopback;
use crate::startup::AppState;

/// `/` and `/app` lead to the apps' home page.
#[get("/")]
pub async fn root() -> HttpResponse {
    HttpResponse::Found().insert_header((header::LOCATION, "/app/")).finish()
}

/// A file of the built front end. `/app/chat` is `chat.html`; `/app` is `index.html`.
/// Vite names its bundles by content hash, so those may be cached for good; pages are
/// revalidated so a rebuilt app reaches the next load.
#[get("/app{tail:(/.*)?}")]
pub async fn file(state: web::Data<AppState>, tail: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let dir = &state.settings.web.dir;
    if dir.as_os_str().is_empty() {
        return Err(DomainError::not_found("no_route", "the web apps are not served here (web.dir is empty)").into());
    }
    let relative = safe_relative(&tail).ok_or_else(not_found)?;
    // Only files inside web.dir, symbolic links resolved: a link placed there must not
    // serve what lies outside.
    let served = dir.canonicalize().ok();
    let path = [relative.clone(), relative.with_extension("html"), relative.join("index.html")]
        .into_iter()
        .filter_map(|candidate| dir.join(candidate).canonicalize().ok())
        .find(|candidate| candidate.is_file() && served.as_ref().is_some_and(|served| candidate.starts_with(served)));
    let Some(path) = path else {
        if !dir.join("index.html").is_file() {
            tracing::warn!(dir = %dir.display(), "web.dir holds no built apps: run scripts/serve (it builds web/dist)");
        }
        return Err(not_found().into());
    };
    let body = tokio::fs::read(&path).await.map_err(|error| {
        tracing::error!(path = %path.display(), %error, "cannot read a web file");
        DomainError::internal("cannot read a web file")
    })?;
    let immutable = relative.starts_with("assets");
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, content_type(&path)))
        .insert_header((
            header::CACHE_CONTROL,
            if immutable { "public, max-age=31536000, immutable" } else { "no-cache" },
        ))
        .insert_header(("x-content-type-options", "nosniff"))
        // Only the apps' own files run, and they talk only to this server; the console
        // holds an admin's token and has buttons that purge: no framing either.
        .insert_header(("content-security-policy", CONTENT_SECURITY_POLICY))
        .insert_header(("x-frame-options", "DENY"))
        .body(body))
}

/// Svelte sets style attributes (positions on the whiteboard), hence inline styles.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

fn not_found() -> DomainError {
    DomainError::not_found("no_route", "no such page")
}

/// The request's path below `/app`, refused if any part could leave `web.dir`
/// (`..`, an absolute part, a hidden file).
fn safe_relative(tail: &str) -> Option<PathBuf> {
    let mut relative = PathBuf::new();
    for component in Path::new(tail.trim_start_matches('/')).components() {
        match component {
            Component::Normal(part) if !part.to_string_lossy().starts_with('.') => relative.push(part),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(relative)
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    user: String,
    #[serde(default)]
    admin: bool,
}

/// A token for a typed-in user name (local and test runs; `auth.dev_login`): the demo
/// apps' login page. Production refuses to start with it on.
#[post("/api/dev/login")]
pub async fn dev_login(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Json<LoginBody>,
) -> Result<HttpResponse, ApiError> {
    if !state.settings.auth.dev_login {
        return Err(DomainError::forbidden(
            "dev_login_disabled",
            "local login is off here (auth.dev_login): sign in with your identity provider's token",
        )
        .into());
    }
    // Settings keep it to a loopback listener; this keeps it to loopback callers that
    // name a loopback host too, so a web page elsewhere cannot reach it through DNS
    // rebinding (its requests carry its own host name).
    let peer_local = request.peer_addr().is_some_and(|peer| peer.ip().is_loopback());
    // The Host header itself: `connection_info` would take `X-Forwarded-Host` or
    // `Forwarded` over it, which a page's script may set, unlike Host.
    let host = request.headers().get(actix_web::http::header::HOST).and_then(|host| host.to_str().ok()).unwrap_or("");
    let host_name =
        host.rsplit_once(':').filter(|(_, port)| port.parse::<u16>().is_ok()).map_or(host, |(name, _)| name);
    if !peer_local || !is_loopback(host_name) {
        tracing::warn!(peer = ?request.peer_addr(), host, "dev login refused: not a loopback caller and host");
        return Err(DomainError::forbidden(
            "dev_login_local_only",
            "local login answers only on this machine, at localhost",
        )
        .into());
    }
    let user = member_id(&body.user)?;
    let token = crate::auth::issue_token(&state.settings.auth, user, body.admin).map_err(|error| {
        tracing::error!(%error, "dev login cannot sign a token");
        DomainError::internal("cannot sign a token")
    })?;
    tracing::info!(user, admin = body.admin, "dev login");
    Ok(HttpResponse::Ok().json(json!({ "token": token, "user": user, "admin": body.admin })))
}
