//! Admin routes: scopes (create, update, list) and warm-up (status, re-warm). They
//! need a token with the `admin` claim.

use actix_web::{get, post, put, web, HttpResponse};
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
        return Err(
            DomainError::invalid("invalid_scope_name", format!("name must be 1-{MAX_NAME_CHARS} characters")).into()
        );
    }
    service.validate_scope_config(&body.config)?;
    let stored = state.scopes.upsert(service.name(), &key, name, &body.config).await?;
    service.scope_changed(&key);
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarmupQuery {
    domain: Option<String>,
}

/// Every scope's warm-up status (pending, warming, warm, failed with reason, disabled;
/// rows; duration), and each domain's adapter and cache connection.
#[get("/api/admin/warmup")]
pub async fn warmup_status(
    state: web::Data<AppState>,
    query: web::Query<WarmupQuery>,
    _admin: Admin,
) -> Result<HttpResponse, ApiError> {
    if let Some(domain) = &query.domain {
        domain_service(&state, domain)?;
    }
    let domains: serde_json::Map<String, serde_json::Value> = state
        .domains
        .iter()
        .filter(|d| query.domain.as_deref().is_none_or(|name| name == d.name()))
        .map(|d| (d.name().to_string(), json!({ "adapter": d.adapter(), "cache_connected": d.cache_connected() })))
        .collect();
    let scopes = state.domains.warmup_board().list(query.domain.as_deref());
    Ok(HttpResponse::Ok().json(json!({ "domains": domains, "scopes": scopes })))
}

/// Re-warms one scope from PostgreSQL (202: queued; watch `GET /api/admin/warmup`).
#[post("/api/admin/warmup/{domain}/{scope}")]
pub async fn rewarm_scope(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    _admin: Admin,
) -> Result<HttpResponse, ApiError> {
    let (domain, scope) = path.into_inner();
    let service = domain_service(&state, &domain)?;
    let key = ScopeKey::parse(&scope)?;
    service.rewarm(Some(&key)).await?;
    Ok(HttpResponse::Accepted().json(json!({ "queued": [{ "domain": service.name(), "scope": key }] })))
}

/// Re-warms every scope of every domain on the cache (409 `no_cache` when none is).
#[post("/api/admin/warmup")]
pub async fn rewarm_all(state: web::Data<AppState>, _admin: Admin) -> Result<HttpResponse, ApiError> {
    let mut queued = Vec::new();
    for service in state.domains.iter().filter(|d| d.cache_connected().is_some()) {
        service.rewarm(None).await?;
        queued.push(json!({ "domain": service.name(), "scope": null }));
    }
    if queued.is_empty() {
        return Err(DomainError::conflict(
            "no_cache",
            "every domain runs on the PostgreSQL adapter: there is no cache to warm",
        )
        .into());
    }
    Ok(HttpResponse::Accepted().json(json!({ "queued": queued })))
}

/// Re-warms every scope of a domain.
#[post("/api/admin/warmup/{domain}")]
pub async fn rewarm_domain(
    state: web::Data<AppState>,
    path: web::Path<String>,
    _admin: Admin,
) -> Result<HttpResponse, ApiError> {
    let service = domain_service(&state, &path.into_inner())?;
    service.rewarm(None).await?;
    Ok(HttpResponse::Accepted().json(json!({ "queued": [{ "domain": service.name(), "scope": null }] })))
}
