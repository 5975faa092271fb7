//! The one error type every domain and adapter returns.
//!
//! A [`DomainError`] carries a [`ErrorKind`] (which the API maps to an HTTP status in
//! exactly one place), a stable machine-readable `code` (`message_not_found`,
//! `not_author`, ...) and a human-readable message. Both adapters of a domain return
//! the same kind and code for the same mistake, so clients cannot tell them apart.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::Serialize;

/// An error as clients receive it, over HTTP and in live replies.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// See [`ErrorBody`].
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ErrorDetail {
    /// Stable and machine-readable (`scope_not_found`, `read_only`, `id_conflict`).
    pub code: String,
    /// For people; the wording may change.
    pub message: String,
    /// Seconds to wait before retrying (a 429 or 503), as `Retry-After` says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// On a 500: the id under which the server logged the cause.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Malformed input: the request cannot be understood (400).
    BadRequest,
    /// No credentials, or credentials that do not verify (401).
    Unauthorized,
    /// The caller is not allowed to do this (403).
    Forbidden,
    /// The scope or item does not exist (404).
    NotFound,
    /// The route exists, but not with this method (405).
    MethodNotAllowed,
    /// The request conflicts with existing state, e.g. an id already used (409).
    Conflict,
    /// The request is larger than a configured limit (413).
    TooLarge,
    /// Well-formed but invalid: a rule of the domain refuses it (422).
    Invalid,
    /// The caller sent more than their limit allows; retry later (429).
    TooManyRequests,
    /// A dependency (PostgreSQL, SpacetimeDB) cannot serve the request now (503).
    Unavailable,
    /// A bug or an unexpected failure (500).
    Internal,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Conflict => "conflict",
            Self::TooLarge => "too_large",
            Self::Invalid => "invalid",
            Self::TooManyRequests => "too_many_requests",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
        }
    }

    pub fn parse(kind: &str) -> Option<Self> {
        Some(match kind {
            "bad_request" => Self::BadRequest,
            "unauthorized" => Self::Unauthorized,
            "forbidden" => Self::Forbidden,
            "not_found" => Self::NotFound,
            "method_not_allowed" => Self::MethodNotAllowed,
            "conflict" => Self::Conflict,
            "too_large" => Self::TooLarge,
            "invalid" => Self::Invalid,
            "too_many_requests" => Self::TooManyRequests,
            "unavailable" => Self::Unavailable,
            "internal" => Self::Internal,
            _ => return None,
        })
    }
}

/// An error a client may see: a kind (its HTTP status), a stable code and a message.
/// The cause, if any, is kept as the error's `source` for the log; clients never see
/// it, and an internal error's message is replaced before it leaves (see the server's
/// error responses).
#[derive(Debug, Clone)]
pub struct DomainError {
    pub kind: ErrorKind,
    pub code: Cow<'static, str>,
    pub message: String,
    /// When a retry may succeed, in seconds (the API's `Retry-After`); every
    /// unavailable error is worth a retry after a second unless it says otherwise.
    pub retry_after_secs: Option<u64>,
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

/// Errors compare by what a client sees; the cause is for the log.
impl PartialEq for DomainError {
    fn eq(&self, other: &Self) -> bool {
        (self.kind, &self.code, &self.message) == (other.kind, &other.code, &other.message)
    }
}

impl Eq for DomainError {}

impl fmt::Display for DomainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.kind.as_str(), self.message)?;
        let mut cause = self.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static));
        while let Some(error) = cause {
            write!(f, ": {error}")?;
            cause = error.source();
        }
        Ok(())
    }
}

impl std::error::Error for DomainError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl DomainError {
    pub fn new(kind: ErrorKind, code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        let retry_after_secs = (kind == ErrorKind::Unavailable).then_some(1);
        Self { kind, code: code.into(), message: message.into(), retry_after_secs, source: None }
    }

    /// Tells the client to retry after `secs` seconds.
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }

    /// Keeps `cause` for the log (it is in `Display` and `source()`, never in what a
    /// client is sent).
    pub fn caused_by(mut self, cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(cause));
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, code, message)
    }
    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unauthorized, code, message)
    }
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, code, message)
    }
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, code, message)
    }
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, code, message)
    }
    pub fn too_large(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::TooLarge, code, message)
    }
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, code, message)
    }
    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, code, message)
    }
    pub fn too_many_requests(code: &'static str, message: impl Into<String>, retry_after_secs: u64) -> Self {
        Self::new(ErrorKind::TooManyRequests, code, message).retry_after(retry_after_secs)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, "internal", message)
    }

    /// A database failure: unavailable when the database cannot be reached, internal otherwise.
    ///
    /// SQLSTATE classes 08 (connection), 40 (transaction rollback: serialization,
    /// deadlock), 53 (insufficient resources) and 57 (operator intervention, e.g. a
    /// restart) are transient: unavailable, worth a retry.
    pub fn from_sqlx(error: sqlx::Error) -> Self {
        let transient = match &error {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => true,
            sqlx::Error::Database(db) => {
                db.code().is_some_and(|code| ["08", "40", "53", "57"].iter().any(|class| code.starts_with(class)))
            }
            _ => false,
        };
        if transient {
            Self::unavailable("postgres_unavailable", "PostgreSQL is unavailable; retry shortly").caused_by(error)
        } else {
            Self::internal("PostgreSQL refused the operation").caused_by(error)
        }
    }

    /// The SQLSTATE of the PostgreSQL error that caused this, if one did.
    pub fn sqlstate(&self) -> Option<String> {
        let mut cause = std::error::Error::source(self);
        while let Some(error) = cause {
            if let Some(sqlx::Error::Database(db)) = error.downcast_ref::<sqlx::Error>() {
                return db.code().map(|code| code.into_owned());
            }
            cause = error.source();
        }
        None
    }

    /// The wire format SpacetimeDB modules use for reducer errors: `kind|code|message`.
    pub fn to_reducer_error(&self) -> String {
        format!("{}|{}|{}", self.kind.as_str(), self.code, self.message)
    }

    /// Reads a reducer's error back; anything not in `kind|code|message` form is internal.
    pub fn from_reducer_error(text: &str) -> Self {
        let mut parts = text.splitn(3, '|');
        match (parts.next().and_then(ErrorKind::parse), parts.next(), parts.next()) {
            (Some(kind), Some(code), Some(message)) => Self::new(kind, code.to_string(), message),
            _ => Self::internal(format!("SpacetimeDB reducer failed: {text}")),
        }
    }
}

impl From<crate::refusal::Refusal> for DomainError {
    fn from(refusal: crate::refusal::Refusal) -> Self {
        Self::new(ErrorKind::parse(refusal.kind).unwrap_or(ErrorKind::Invalid), refusal.code, refusal.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reducer_errors_round_trip() {
        let error = DomainError::forbidden("not_author", "only the author may change this message");
        assert_eq!(DomainError::from_reducer_error(&error.to_reducer_error()), error);
    }

    #[test]
    fn the_cause_is_kept_for_the_log_but_not_in_the_message() {
        let io = std::io::Error::other("disk on fire");
        let error = DomainError::internal("writing failed").caused_by(io);
        assert_eq!(error.message, "writing failed");
        assert!(error.to_string().ends_with("writing failed: disk on fire"), "{error}");
        assert_eq!(std::error::Error::source(&error).unwrap().to_string(), "disk on fire");
    }

    #[test]
    fn a_foreign_reducer_error_is_internal() {
        let error = DomainError::from_reducer_error("wasm trap: unreachable");
        assert_eq!(error.kind, ErrorKind::Internal);
        assert!(error.message.contains("unreachable"));
    }
}
