//! End users authenticate with `Authorization: Bearer <JWT>` (HS256, secret from
//! `auth.jwt_secret`; `sub` is the user id, an `admin` claim opens the admin routes).
//! WebSocket clients that cannot set headers may pass `?token=<JWT>` instead.

use std::future::{ready, Ready};
use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::{dev::Payload, web, FromRequest, HttpRequest};
use boardsync_core::{DomainError, UserId};
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::settings::AuthSettings;
use crate::startup::AppState;

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    pub iat: u64,
    #[serde(default)]
    pub admin: bool,
}

/// A signed token for `user`, valid for `auth.token_ttl_secs`.
pub fn issue_token(settings: &AuthSettings, user: &str, admin: bool) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let claims = Claims { sub: user.to_string(), iat: now, exp: now + settings.token_ttl_secs, admin };
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(settings.jwt_secret.expose_secret().as_bytes()),
    )
    .expect("HS256 signing with an in-memory key cannot fail")
}

/// An authenticated end user.
#[derive(Debug, Clone)]
pub struct User {
    pub id: UserId,
    pub admin: bool,
}

fn unauthorized(message: &str) -> ApiError {
    ApiError(DomainError::unauthorized("unauthorized", message))
}

fn bearer_token(req: &HttpRequest) -> Option<String> {
    if let Some(header) = req.headers().get(actix_web::http::header::AUTHORIZATION) {
        return header.to_str().ok()?.strip_prefix("Bearer ").map(|t| t.trim().to_string());
    }
    web::Query::<TokenQuery>::from_query(req.query_string()).ok()?.into_inner().token
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

fn authenticate(req: &HttpRequest) -> Result<User, ApiError> {
    let state = req.app_data::<web::Data<AppState>>().expect("AppState is registered");
    let token = bearer_token(req).ok_or_else(|| unauthorized("a bearer token is required"))?;
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_required_spec_claims(&["exp", "sub"]);
    let key = DecodingKey::from_secret(state.settings.auth.jwt_secret.expose_secret().as_bytes());
    let claims = decode::<Claims>(&token, &key, &validation)
        .map_err(|e| unauthorized(&format!("the bearer token is not valid: {e}")))?
        .claims;
    if claims.sub.trim().is_empty() {
        return Err(unauthorized("the bearer token names no user"));
    }
    Ok(User { id: UserId(claims.sub), admin: claims.admin })
}

impl FromRequest for User {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(req))
    }
}

/// An authenticated user with the `admin` claim (403 without it).
#[derive(Debug, Clone)]
pub struct Admin(pub User);

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(req).and_then(|user| {
            if user.admin {
                Ok(Admin(user))
            } else {
                Err(ApiError(DomainError::forbidden("admin_required", "this route needs an admin token")))
            }
        }))
    }
}
