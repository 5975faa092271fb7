//! Admin routes: scopes (create or replace, read, patch, delete, list) and warm-up (status, re-warm). They
//! need a token with the `admin` claim.

use actix_web::{delete, get, patch, post, put, web, HttpResponse};
use boardsync_core::DomainError;
use serde::Deserialize;
use serde_json::json;

use crate::auth::Admin;
use crate::error::ApiError;
use crate::routes::{domain_service, resolve};
use crate::startup::AppState;

pub const MAX_NAME_CHARS: usize = 200;

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
    _admin: Admin,
    path: web::Path<(String, String)>,
    body: web::Json<ScopeBody>,
) -> Result<HttpResponse, ApiError> {
    let (domain, scope) = path.into_inner();
    let (service, key) = resolve(&state, &domain, &scope)?;
    let body = body.into_inner();
    let name = body.name.trim();
    check_name(name)?;
    service.validate_scope_config(&body.config)?;
    service.prepare_recreate(&key).await?;
    let stored = state.scopes.upsert(service.name(), &key, name, &body.config, service.place(&key).as_deref()).await?;
    service.scope_changed(&key).await;
    Ok(HttpResponse::Ok().json(stored))
}

fn check_name(name: &str) -> Result<(), DomainError> {
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        let message = format!("name must be 1-{MAX_NAME_CHARS} characters");
        return Err(DomainError::invalid("invalid_scope_name", message));
    }
    Ok(())
}

/// JSON merge patch (RFC 7396): objects merge key by key, `null` removes a key,
/// anything else replaces.
fn merge(target: &mut serde_json::Value, patch: serde_json::Value) {
    match (target, patch) {
        (serde_json::Value::Object(target), serde_json::Value::Object(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(&key);
                } else {
                    merge(target.entry(key).or_insert(serde_json::Value::Null), value);
                }
            }
        }
        (target, patch) => *target = patch,
    }
}

#[get("/api/admin/scopes/{domain}/{scope}")]
pub async fn get_scope(
    state: web::Data<AppState>,
    _admin: Admin,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (domain, scope) = path.into_inner();
    let (service, key) = resolve(&state, &domain, &scope)?;
    let stored = state.scopes.require(service.name(), service.scope_noun(), &key).await?;
    let mut body =
        serde_json::to_value(&stored).map_err(|e| DomainError::internal("a scope cannot be encoded").caused_by(e))?;
    // Operators see which cache shard it lives on (none on the PostgreSQL adapter).
    if service.cache_connected().is_some() {
        let shard = stored.shard.clone().unwrap_or_else(|| state.settings.spacetimedb.shard_name.clone());
        body["shard"] = json!(shard);
    }
    Ok(HttpResponse::Ok().json(body))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoveBody {
    /// The shard to move the scope to (a name from `spacetimedb.shard_name` or
    /// `spacetimedb.shards`).
    to: String,
}

/// Moves a scope to another cache shard, losing no write (see
/// [`boardsync_actors::moving`]): 200 with how long it took, once it serves from
/// there; 503 `move_not_drained` (nothing moved) when its writes do not reach
/// PostgreSQL in time.
#[post("/api/admin/scopes/{domain}/{scope}/move")]
pub async fn move_scope(
    state: web::Data<AppState>,
    _admin: Admin,
    path: web::Path<(String, String)>,
    body: web::Json<MoveBody>,
) -> Result<HttpResponse, ApiError> {
    let (domain, scope) = path.into_inner();
    let (service, key) = resolve(&state, &domain, &scope)?;
    let within = std::time::Duration::from_millis(state.settings.spacetimedb.move_drain_timeout_ms);
    let moved = service.move_scope(&key, &body.to, within).await?;
    Ok(HttpResponse::Ok().json(moved))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopePatch {
    name: Option<String>,
    config: Option<serde_json::Value>,
}

/// Changes a scope's name and/or merges into its config (JSON merge patch), leaving
/// the rest as it is.
#[patch("/api/admin/scopes/{domain}/{scope}")]
pub async fn patch_scope(
    state: web::Data<AppState>,
    _admin: Admin,
    path: web::Path<(String, String)>,
    body: web::Json<ScopePatch>,
) -> Result<HttpResponse, ApiError> {
    let (domain, scope) = path.into_inner();
    let (service, key) = resolve(&state, &domain, &scope)?;
    let ScopePatch { name, config: patch } = body.into_inner();
    let stored = state
        .scopes
        .update(service.name(), service.scope_noun(), &key, |current| {
            let name = name.map(|n| n.trim().to_string()).unwrap_or(current.name);
            check_name(&name)?;
            let mut config = current.config;
            if let Some(patch) = patch {
                merge(&mut config, patch);
            }
            service.validate_scope_config(&config)?;
            Ok((name, config))
        })
        .await?;
    service.scope_changed(&key).await;
    Ok(HttpResponse::Ok().json(stored))
}

/// Other query keys are ignored, as they were before `purge` existed.
#[derive(Deserialize)]
pub struct DeleteQuery {
    #[serde(default)]
    purge: bool,
}

/// Deletes a scope and its members; its items stay in PostgreSQL (creating the scope
/// again brings them back). With `?purge=true` its items go too, from PostgreSQL and
/// the cache, for good. Its live sockets close.
#[delete("/api/admin/scopes/{domain}/{scope}")]
pub async fn delete_scope(
    state: web::Data<AppState>,
    _admin: Admin,
    path: web::Path<(String, String)>,
    query: web::Query<DeleteQuery>,
) -> Result<HttpResponse, ApiError> {
    let (domain, scope) = path.into_inner();
    let (service, key) = resolve(&state, &domain, &scope)?;
    if query.purge {
        let purged = service.purge(&key).await?;
        return Ok(HttpResponse::Ok().json(json!({
            "deleted": { "domain": service.name(), "scope": key },
            "items": "purged",
            "purged": purged,
        })));
    }
    state.scopes.delete(service.name(), service.scope_noun(), &key).await?;
    tracing::info!(domain = service.name(), scope = %key, "scope deleted; its items stay in PostgreSQL");
    Ok(HttpResponse::Ok()
        .json(json!({ "deleted": { "domain": service.name(), "scope": key }, "items": "kept in PostgreSQL" })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    domain: Option<String>,
}

#[get("/api/admin/scopes")]
pub async fn list_scopes(
    state: web::Data<AppState>,
    _admin: Admin,
    query: web::Query<ListQuery>,
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
    _admin: Admin,
    query: web::Query<WarmupQuery>,
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
    _admin: Admin,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (domain, scope) = path.into_inner();
    let (service, key) = resolve(&state, &domain, &scope)?;
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
    _admin: Admin,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let service = domain_service(&state, &path.into_inner())?;
    service.rewarm(None).await?;
    Ok(HttpResponse::Accepted().json(json!({ "queued": [{ "domain": service.name(), "scope": null }] })))
}

/// Each domain's outbox: entries not yet in PostgreSQL, the oldest one's age, lag
/// percentiles since start (the numbers `/metrics` exports), dead letters, and the
/// node draining it (of all the nodes on this PostgreSQL; null: none now).
#[get("/api/admin/outbox")]
pub async fn outbox(state: web::Data<AppState>, _admin: Admin) -> Result<HttpResponse, ApiError> {
    let summaries = state.metrics.outbox_summaries();
    let letters = boardsync_core::dead_letters::counts(&state.pool).await?;
    let units: Vec<String> = state.domains.iter().flat_map(|d| d.shards()).map(|shard| shard.unit).collect();
    let drainers = boardsync_actors::drainer::holders(&state.pool, &units).await.map_err(DomainError::from_sqlx)?;
    let drainer_of = |unit: &str| drainers.iter().find(|(name, _)| name == unit).and_then(|(_, node)| node.clone());
    let mut domains = Vec::new();
    for service in state.domains.iter() {
        let summary = summaries.get(service.name()).cloned().unwrap_or_default();
        let letters = letters.get(service.name()).copied().unwrap_or(0);
        let shards: Vec<serde_json::Value> = service
            .shards()
            .into_iter()
            .map(|shard| {
                let summary = summaries.get(&shard.unit).cloned().unwrap_or_default();
                json!({
                    "shard": shard.shard,
                    "drainer": drainer_of(&shard.unit),
                    "pending": summary.pending,
                    "oldest_age_ms": summary.oldest_age_ms,
                })
            })
            .collect();
        // The first shard's (the only one, unless there are more).
        let drainer = drainer_of(service.name());
        domains.push(json!({
            "domain": service.name(),
            "adapter": service.adapter(),
            "drainer": drainer,
            "pending": summary.pending,
            "oldest_age_ms": summary.oldest_age_ms,
            "lag_count": summary.lag_count,
            "lag_ms": summary.lag_ms,
            "dead_letters": letters,
            "shards": shards,
        }));
    }
    Ok(HttpResponse::Ok().json(json!({ "domains": domains })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterQuery {
    domain: Option<String>,
    limit: Option<u32>,
}

/// Outbox entries PostgreSQL refused on their own, oldest first.
#[get("/api/admin/dead-letters")]
pub async fn dead_letters(
    state: web::Data<AppState>,
    _admin: Admin,
    query: web::Query<DeadLetterQuery>,
) -> Result<HttpResponse, ApiError> {
    if let Some(domain) = &query.domain {
        domain_service(&state, domain)?;
    }
    let limit = query.limit.unwrap_or(state.settings.api.default_page_size);
    if limit == 0 || limit > state.settings.api.max_page_size {
        let message = format!("limit must be between 1 and {}", state.settings.api.max_page_size);
        return Err(DomainError::bad_request("invalid_limit", message).into());
    }
    let items = boardsync_core::dead_letters::list(&state.pool, query.domain.as_deref(), limit.into()).await?;
    Ok(HttpResponse::Ok().json(json!({ "items": items })))
}

/// Writes a dead letter into PostgreSQL (after the operator fixed what PostgreSQL
/// objected to) and removes it; 409 `replay_refused` when PostgreSQL refuses again.
#[post("/api/admin/dead-letters/{domain}/{id}/replay")]
pub async fn replay_dead_letter(
    state: web::Data<AppState>,
    _admin: Admin,
    path: web::Path<(String, i64)>,
) -> Result<HttpResponse, ApiError> {
    let (domain, id) = path.into_inner();
    let replayed = domain_service(&state, &domain)?.replay_dead_letter(id).await?;
    Ok(HttpResponse::Ok().json(replayed))
}

/// Drops a dead letter for good.
#[delete("/api/admin/dead-letters/{domain}/{id}")]
pub async fn discard_dead_letter(
    state: web::Data<AppState>,
    _admin: Admin,
    path: web::Path<(String, i64)>,
) -> Result<HttpResponse, ApiError> {
    let (domain, id) = path.into_inner();
    let service = domain_service(&state, &domain)?;
    boardsync_core::dead_letters::discard(&state.pool, service.name(), id).await?;
    Ok(HttpResponse::Ok().json(json!({ "discarded": id })))
}
