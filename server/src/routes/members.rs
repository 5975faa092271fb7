//! A scope's members: `GET /api/{domain}/{scope}/members`,
//! `PUT /api/{domain}/{scope}/members/{user}` (`{"role": "owner" | "editor" | "viewer"}`)
//! and `DELETE /api/{domain}/{scope}/members/{user}`. The scope's owners and admins
//! may use them; to anyone who may not see the scope they answer 404. The same routes
//! live under `/api/admin/scopes/{domain}/{scope}/members` for operators' tools.
//! Removing a member closes their live sockets on the scope.

use actix_web::{delete, get, put, web, HttpResponse};
use boardsync_core::access::{Need, Role};
use boardsync_core::{DomainError, ScopeKey};
use serde::Deserialize;
use serde_json::json;

use crate::auth::User;
use crate::error::ApiError;
use crate::routes::resolve;
use crate::startup::AppState;

/// Longest user id accepted (a token's `sub`).
pub const MAX_USER_CHARS: usize = 255;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberBody {
    role: Role,
}

/// The scope, if `user` may manage its members.
async fn managed(
    state: &AppState,
    user: &User,
    domain: &str,
    scope: &str,
) -> Result<(&'static str, ScopeKey), ApiError> {
    let (service, key) = resolve(state, domain, scope)?;
    state.scopes.authorize(service.name(), service.scope_noun(), &key, &user.caller(), Need::Manage).await?;
    Ok((service.name(), key))
}

pub fn member_id(user: &str) -> Result<&str, ApiError> {
    let user = user.trim();
    if user.is_empty() || user.chars().count() > MAX_USER_CHARS {
        return Err(DomainError::invalid("invalid_user", format!("a user id is 1-{MAX_USER_CHARS} characters")).into());
    }
    Ok(user)
}

async fn list(state: &AppState, user: &User, domain: &str, scope: &str) -> Result<HttpResponse, ApiError> {
    let (domain, key) = managed(state, user, domain, scope).await?;
    let members = state.scopes.members.list(domain, &key).await?;
    Ok(HttpResponse::Ok().json(json!({ "members": members })))
}

async fn set(
    state: &AppState,
    user: &User,
    path: (String, String, String),
    role: Role,
) -> Result<HttpResponse, ApiError> {
    let (domain, scope, member) = path;
    let (domain, key) = managed(state, user, &domain, &scope).await?;
    let member = member_id(&member)?;
    state.scopes.members.set(domain, &key, member, role).await?;
    tracing::info!(domain, scope = %key, member, role = role.as_str(), by = user.id.as_str(), "member set");
    Ok(HttpResponse::Ok().json(json!({ "user": member, "role": role })))
}

async fn remove(state: &AppState, user: &User, path: (String, String, String)) -> Result<HttpResponse, ApiError> {
    let (domain, scope, member) = path;
    let (domain, key) = managed(state, user, &domain, &scope).await?;
    if !state.scopes.members.remove(domain, &key, &member).await? {
        return Err(DomainError::not_found("member_not_found", format!("{member} is not a member")).into());
    }
    tracing::info!(domain, scope = %key, member, by = user.id.as_str(), "member removed");
    Ok(HttpResponse::NoContent().finish())
}

#[get("/api/{domain}/{scope}/members")]
pub async fn list_members(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    user: User,
) -> Result<HttpResponse, ApiError> {
    let (domain, scope) = path.into_inner();
    list(&state, &user, &domain, &scope).await
}

#[put("/api/{domain}/{scope}/members/{user}")]
pub async fn set_member(
    state: web::Data<AppState>,
    path: web::Path<(String, String, String)>,
    user: User,
    body: web::Json<MemberBody>,
) -> Result<HttpResponse, ApiError> {
    set(&state, &user, path.into_inner(), body.role).await
}

#[delete("/api/{domain}/{scope}/members/{user}")]
pub async fn remove_member(
    state: web::Data<AppState>,
    path: web::Path<(String, String, String)>,
    user: User,
) -> Result<HttpResponse, ApiError> {
    remove(&state, &user, path.into_inner()).await
}

#[get("/api/admin/scopes/{domain}/{scope}/members")]
pub async fn admin_list_members(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    admin: crate::auth::Admin,
) -> Result<HttpResponse, ApiError> {
    let (domain, scope) = path.into_inner();
    list(&state, &admin.0, &domain, &scope).await
}

#[put("/api/admin/scopes/{domain}/{scope}/members/{user}")]
pub async fn admin_set_member(
    state: web::Data<AppState>,
    path: web::Path<(String, String, String)>,
    admin: crate::auth::Admin,
    body: web::Json<MemberBody>,
) -> Result<HttpResponse, ApiError> {
    set(&state, &admin.0, path.into_inner(), body.role).await
}

#[delete("/api/admin/scopes/{domain}/{scope}/members/{user}")]
pub async fn admin_remove_member(
    state: web::Data<AppState>,
    path: web::Path<(String, String, String)>,
    admin: crate::auth::Admin,
) -> Result<HttpResponse, ApiError> {
    remove(&state, &admin.0, path.into_inner()).await
}
