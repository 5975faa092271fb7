//! HTTP routes. The domain routes are generic: a new domain gets them without new
//! route code.

pub mod admin;
pub mod domain;
pub mod health;
pub mod live;
pub mod members;
pub mod metrics;
pub mod openapi;
pub mod web;

use std::sync::Arc;

use boardsync_actors::DomainService;
use boardsync_core::{DomainError, ScopeKey};

use crate::error::ApiError;
use crate::startup::AppState;

/// The running domain named in the path, or 404.
pub fn domain_service(state: &AppState, name: &str) -> Result<Arc<dyn DomainService>, ApiError> {
    state
        .domains
        .get(name)
        .cloned()
        .ok_or_else(|| ApiError(DomainError::not_found("unknown_domain", format!("there is no domain {name:?}"))))
}

/// The methods a path's route takes, when the path names a route at all (for 405
/// with `Allow` rather than 404). Mirrors the routes registered in `startup`.
pub fn allowed_methods(path: &str) -> Option<&'static str> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    Some(match parts.as_slice() {
        ["health"] | ["metrics"] | ["api", "openapi.json"] | [""] | ["app", ..] => "GET",
        ["api", "dev", "login"] => "POST",
        ["api", "admin", "scopes"] => "GET",
        ["api", "admin", "scopes", _, _] => "GET, PUT, PATCH, DELETE",
        ["api", "admin", "scopes", _, _, "move"] => "POST",
        ["api", "admin", "scopes", _, _, "members"] | ["api", _, _, "members"] => "GET",
        ["api", "admin", "scopes", _, _, "members", _] | ["api", _, _, "members", _] => "PUT, DELETE",
        ["api", "admin", "warmup"] => "GET, POST",
        ["api", "admin", "outbox"] | ["api", "admin", "dead-letters"] => "GET",
        ["api", "admin", "dead-letters", _, _] => "DELETE",
        ["api", "admin", "dead-letters", _, _, "replay"] => "POST",
        ["api", "admin", "warmup", _] | ["api", "admin", "warmup", _, _] => "POST",
        ["api", _, _, "live"] => "GET",
        ["api", _, _] => "GET, POST",
        ["api", _] => "GET",
        _ => return None,
    })
}

/// The domain and scope named by `/api/{domain}/{scope}`.
pub fn resolve(state: &AppState, domain: &str, scope: &str) -> Result<(Arc<dyn DomainService>, ScopeKey), ApiError> {
    let service = domain_service(state, domain)?;
    Ok((service, ScopeKey::parse(scope)?))
}
