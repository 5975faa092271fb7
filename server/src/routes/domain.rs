//! `GET /api/{domain}/{scope}` (snapshot) and `POST /api/{domain}/{scope}` (command).

use actix_web::{get, post, web, HttpResponse};
use serde::Deserialize;

use boardsync_core::DomainError;

use crate::auth::User;
use crate::error::ApiError;
use crate::routes::resolve;
use crate::startup::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotQuery {
    limit: Option<u32>,
    before: Option<String>,
}

#[get("/api/{domain}/{scope}")]
pub async fn snapshot(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    query: web::Query<SnapshotQuery>,
    user: User,
) -> Result<HttpResponse, ApiError> {
    let (domain, scope) = path.into_inner();
    let (service, scope) = resolve(&state, &domain, &scope)?;
    let query = query.into_inner();
    let page = service.snapshot(&scope, &user.caller(), query.limit, query.before).await?;
    Ok(HttpResponse::Ok().json(page))
}

#[post("/api/{domain}/{scope}")]
pub async fn command(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    user: User,
    body: web::Json<serde_json::Value>,
) -> Result<HttpResponse, ApiError> {
    let (domain, scope) = path.into_inner();
    let (service, scope) = resolve(&state, &domain, &scope)?;
    state.limits.command(&user.id)?;
    let command = body.into_inner();
    // The same answer as on the live socket.
    if !command.is_object() {
        return Err(DomainError::bad_request("malformed_json", "a command must be a JSON object").into());
    }
    let event = service.apply(&scope, &user.caller(), command).await?;
    Ok(HttpResponse::Ok().json(event))
}
