//! `GET /api/{domain}/{scope}` (snapshot) and `POST /api/{domain}/{scope}` (command).

use actix_web::{get, post, web, HttpResponse};
use serde::Deserialize;

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
    let event = service.apply(&scope, &user.caller(), body.into_inner()).await?;
    Ok(HttpResponse::Ok().json(event))
}
