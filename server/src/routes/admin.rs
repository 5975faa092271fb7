//! Admin routes: scopes (create, update, list). They need a token with `admin`.

use actix_web::{get, put, web, HttpResponse};
use boardsync_core::{DomainError, ScopeKey};
use serde::Deserialize;
use serde_json::json;

use crate::auth::Admin;
use crate::error::ApiError;
use crate::routes::domain_service;
use crate::startup::AppState;

const MAX_NAME_CHARS: usize = 200;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeBody {
    name: String,
    #[serde(default = "empty_object")]
    config: serde_json::Value,
}

fn empty_object() -> serde_json::Value {
    json!({})
}

#[put("/api/admin/scopes/{domain}/{scope}")]
pub async fn put_scope(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    _admin: Admin,
    body: web::Json<ScopeBody>,
) -> Result<HttpResponse, ApiError> {
    let (domain, scope) = path.into_inner();
    let service = domain_service(&state, &domain)?;
    let key = ScopeKey::parse(&scope)?;
    let body = body.into_inner();
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(DomainError::invalid(
            "invalid_scope_name",
            format!("name must be 1-{MAX_NAME_CHARS} characters"),
        )
        .into());
    }
    service.validate_scope_config(&body.config)?;
    let stored = state
        .scopes
        .upsert(service.name(), &key, name, &body.config)
        .await?;
    Ok(HttpResponse::Ok().json(stored))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    domain: Option<String>,
}

#[get("/api/admin/scopes")]
pub async fn list_scopes(
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
    _admin: Admin,
) -> Result<HttpResponse, ApiError> {
    if let Some(domain) = &query.domain {
        domain_service(&state, domain)?;
    }
    let scopes = state.scopes.list(query.domain.as_deref()).await?;
    Ok(HttpResponse::Ok().json(json!({ "scopes": scopes })))
}
