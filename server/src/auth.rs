//! Who is calling. End users authenticate with `Authorization: Bearer <JWT>`:
//! - HS256 tokens signed with `auth.jwt_secret` (`boardsync token`, local use);
//! - RS256/ES256 tokens of a configured identity provider (`auth.issuers`), verified
//!   with its public keys (a JWKS file or a PEM key), `iss` and `aud` checked.
//!
//! `sub` is the user id; `exp` is required, with `auth.leeway_secs` of clock skew.
//! The live WebSocket route alone also takes `?token=`, since browsers cannot set
//! headers on a WebSocket; no other route reads a token from the URL (URLs end up in
//! logs and histories).

use std::future::{ready, Ready};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::{dev::Payload, web, FromRequest, HttpRequest};
use boardsync_core::access::Caller;
use boardsync_core::{DomainError, UserId};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm};
use jsonwebtoken::{decode, decode_header, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::settings::{AuthSettings, IssuerSettings};
use crate::startup::AppState;

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    #[serde(default)]
    pub iat: u64,
    #[serde(default)]
    pub admin: bool,
}

/// A token signed with the local secret for `user`, valid for `auth.token_ttl_secs`.
pub fn issue_token(settings: &AuthSettings, user: &str, admin: bool) -> Result<String, AuthSetupError> {
    let secret = settings.jwt_secret.expose_secret();
    if secret.is_empty() {
        return Err(AuthSetupError::NoSecret);
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let claims = Claims { sub: user.to_string(), iat: now, exp: now + settings.token_ttl_secs, admin };
    Ok(encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret.as_bytes()))
        .expect("HS256 signing with an in-memory key cannot fail"))
}

#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error("no auth.jwt_secret is set, so no local token can be signed")]
    NoSecret,
    #[error("identity provider {issuer}: {reason}")]
    Issuer { issuer: String, reason: String },
}

/// One key a token may verify with.
struct VerifyingKey {
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

struct Issuer {
    validation: Validation,
    keys: Vec<VerifyingKey>,
    admin_claim: bool,
    /// Put before `sub` to make the user id, so two providers' users never meet.
    user_prefix: String,
}

/// Verifies bearer tokens; built once at start-up (key files are read then).
pub struct Verifier {
    local: Option<(DecodingKey, Validation)>,
    issuers: Vec<Issuer>,
}

impl Verifier {
    pub fn new(settings: &AuthSettings) -> Result<Self, AuthSetupError> {
        let required = |validation: &mut Validation| {
            validation.set_required_spec_claims(&["exp", "sub"]);
            validation.leeway = settings.leeway_secs;
        };
        let secret = settings.jwt_secret.expose_secret();
        let local = (!secret.is_empty()).then(|| {
            let mut validation = Validation::new(Algorithm::HS256);
            required(&mut validation);
            validation.validate_nbf = true;
            (DecodingKey::from_secret(secret.as_bytes()), validation)
        });
        let mut issuers = Vec::new();
        for issuer in &settings.issuers {
            let keys = issuer_keys(issuer)
                .map_err(|reason| AuthSetupError::Issuer { issuer: issuer.issuer.clone(), reason })?;
            let mut validation = Validation::new(Algorithm::RS256);
            validation.algorithms = vec![Algorithm::RS256, Algorithm::ES256];
            required(&mut validation);
            validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
            validation.set_issuer(&[&issuer.issuer]);
            validation.set_audience(&[&issuer.audience]);
            validation.validate_nbf = true;
            issuers.push(Issuer {
                validation,
                keys,
                admin_claim: issuer.admin_claim,
                user_prefix: issuer.user_prefix.clone(),
            });
        }
        Ok(Self { local, issuers })
    }

    /// The user a token names, if it verifies.
    pub fn verify(&self, token: &str) -> Result<User, DomainError> {
        let header = decode_header(token)
            .map_err(|_| DomainError::unauthorized("token_invalid", "the bearer token is not a JWT"))?;
        let claims = if header.alg == Algorithm::HS256 {
            let (key, validation) = self
                .local
                .as_ref()
                .ok_or_else(|| DomainError::unauthorized("token_invalid", "HS256 tokens are not accepted here"))?;
            decode::<Claims>(token, key, validation).map(|data| data.claims).map_err(invalid)?
        } else {
            self.verify_issued(token, &header)?
        };
        if claims.sub.trim().is_empty() {
            return Err(DomainError::unauthorized("token_invalid", "the bearer token names no user"));
        }
        Ok(User { id: UserId(claims.sub), admin: claims.admin, expires_at: claims.exp })
    }

    /// An identity provider's token: the first provider and key that verify it.
    fn verify_issued(&self, token: &str, header: &Header) -> Result<Claims, DomainError> {
        let mut last = DomainError::unauthorized("token_invalid", "no configured identity provider accepts this token");
        for issuer in &self.issuers {
            let keys = issuer.keys.iter().filter(|k| k.algorithm == header.alg);
            for key in keys.filter(|k| header.kid.is_none() || k.kid.is_none() || k.kid == header.kid) {
                let mut validation = issuer.validation.clone();
                validation.algorithms = vec![key.algorithm];
                match decode::<Claims>(token, &key.key, &validation) {
                    Ok(data) => {
                        let mut claims = data.claims;
                        claims.admin &= issuer.admin_claim;
                        if !claims.sub.trim().is_empty() {
                            claims.sub = format!("{}{}", issuer.user_prefix, claims.sub);
                        }
                        return Ok(claims);
                    }
                    Err(error) => last = invalid(error),
                }
            }
        }
        Err(last)
    }
}

fn issuer_keys(issuer: &IssuerSettings) -> Result<Vec<VerifyingKey>, String> {
    let read = |path: &Path| std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()));
    match (&issuer.jwks_file, &issuer.public_key_file) {
        (Some(path), None) => {
            let set: JwkSet = serde_json::from_slice(&read(path)?).map_err(|e| format!("{}: {e}", path.display()))?;
            let keys: Vec<VerifyingKey> = set
                .keys
                .iter()
                // Keys for encryption are not for verifying signatures.
                .filter(|jwk| jwk.common.public_key_use != Some(jsonwebtoken::jwk::PublicKeyUse::Encryption))
                .filter_map(|jwk| {
                    let algorithm = match (&jwk.common.key_algorithm, &jwk.algorithm) {
                        (Some(KeyAlgorithm::RS256), _) => Algorithm::RS256,
                        (Some(KeyAlgorithm::ES256), _) => Algorithm::ES256,
                        (Some(_), _) => return None,
                        (None, AlgorithmParameters::RSA(_)) => Algorithm::RS256,
                        (None, AlgorithmParameters::EllipticCurve(ec)) if ec.curve == EllipticCurve::P256 => {
                            Algorithm::ES256
                        }
                        (None, _) => return None,
                    };
                    let key = DecodingKey::from_jwk(jwk).ok()?;
                    Some(VerifyingKey { kid: jwk.common.key_id.clone(), algorithm, key })
                })
                .collect();
            if keys.is_empty() {
                return Err(format!("{} holds no RS256 or ES256 key", path.display()));
            }
            Ok(keys)
        }
        (None, Some(path)) => {
            let pem = read(path)?;
            let (algorithm, key) = match issuer.algorithm.as_deref() {
                Some("RS256") => (Algorithm::RS256, DecodingKey::from_rsa_pem(&pem)),
                Some("ES256") => (Algorithm::ES256, DecodingKey::from_ec_pem(&pem)),
                _ => return Err("public_key_file needs algorithm = \"RS256\" or \"ES256\"".into()),
            };
            let key = key.map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(vec![VerifyingKey { kid: None, algorithm, key }])
        }
        _ => Err("set exactly one of jwks_file and public_key_file".into()),
    }
}

/// An authenticated end user.
#[derive(Debug, Clone)]
pub struct User {
    pub id: UserId,
    pub admin: bool,
    /// When the token expires (seconds since the Unix epoch): a live socket it opened
    /// closes then.
    pub expires_at: u64,
}

impl User {
    /// The user as scopes' access rules see them.
    pub fn caller(&self) -> Caller<'_> {
        Caller { user: &self.id, admin: self.admin }
    }
}

/// A token that does not verify, with a code per reason (the library's text stays in
/// the log).
fn invalid(error: jsonwebtoken::errors::Error) -> DomainError {
    use jsonwebtoken::errors::ErrorKind as Why;
    let (code, message) = match error.kind() {
        Why::ExpiredSignature => ("token_expired", "the bearer token has expired"),
        Why::ImmatureSignature => ("token_not_yet_valid", "the bearer token is not valid yet"),
        Why::InvalidIssuer | Why::InvalidAudience => {
            ("token_wrong_audience", "the bearer token is not for this service")
        }
        Why::InvalidSignature => ("token_invalid", "the bearer token's signature does not verify"),
        Why::MissingRequiredClaim(_) => ("token_invalid", "the bearer token lacks a required claim"),
        _ => ("token_invalid", "the bearer token is not valid"),
    };
    tracing::debug!(%error, code, "bearer token refused");
    DomainError::unauthorized(code, message)
}

fn header_token(req: &HttpRequest) -> Option<String> {
    let header = req.headers().get(actix_web::http::header::AUTHORIZATION)?;
    header.to_str().ok()?.strip_prefix("Bearer ").map(|t| t.trim().to_string())
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

fn authenticate(req: &HttpRequest, from_query: bool) -> Result<User, ApiError> {
    let state = req.app_data::<web::Data<AppState>>().expect("AppState is registered");
    let token = header_token(req).or_else(|| {
        from_query.then(|| web::Query::<TokenQuery>::from_query(req.query_string()).ok()?.into_inner().token).flatten()
    });
    let token = token.ok_or_else(|| DomainError::unauthorized("token_missing", "a bearer token is required"))?;
    Ok(state.verifier.verify(&token)?)
}

impl FromRequest for User {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(req, false))
    }
}

/// The user of a live WebSocket, whose token may come as `?token=` instead.
#[derive(Debug, Clone)]
pub struct LiveUser(pub User);

impl FromRequest for LiveUser {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(req, true).map(LiveUser))
    }
}

/// An authenticated user with the `admin` claim (403 without it).
#[derive(Debug, Clone)]
pub struct Admin(pub User);

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(req, false).and_then(|user| {
            if user.admin {
                Ok(Admin(user))
            } else {
                Err(ApiError(DomainError::forbidden("admin_required", "this route needs an admin token")))
            }
        }))
    }
}
