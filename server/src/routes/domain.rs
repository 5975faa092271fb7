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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopesQuery {
    limit: Option<u32>,
    after: Option<String>,
}

/// `GET /api/{domain}`: the scopes the caller may see, by key, paged with `after`:
/// `{"scopes": [{"key", "name", "role"}], "has_more": bool, "next_after": key-or-null}`.
#[get("/api/{domain}")]
pub async fn scopes(
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<ScopesQuery>,
    user: User,
) -> Result<HttpResponse, ApiError> {
    let service = crate::routes::domain_service(&state, &path.into_inner())?;
    let pages = &state.settings.api;
    let limit = query.limit.unwrap_or(pages.default_page_size);
    if limit == 0 || limit > pages.max_page_size {
        let message = format!("limit must be between 1 and {}", pages.max_page_size);
        return Err(DomainError::bad_request("invalid_limit", message).into());
    }
    let mut visible = state.scopes.visible(service.name(), &user.caller(), query.after.as_deref(), limit + 1).await?;
    let has_more = visible.len() > limit as usize;
    visible.truncate(limit as usize);
    let next_after = if has_more { visible.last().map(|(s, _)| s.key.clone()) } else { None };
    let scopes: Vec<serde_json::Value> = visible
        .into_iter()
        .map(|(scope, role)| serde_json::json!({ "key": scope.key, "name": scope.name, "role": role }))
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "scopes": scopes, "has_more": has_more, "next_after": next_after })))
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
