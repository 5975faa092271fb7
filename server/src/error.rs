//! The one place errors become HTTP responses: `{"error": {"code", "message"}}` with
//! the status the error's kind calls for.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use boardsync_core::{DomainError, ErrorKind};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct ApiError(#[from] pub DomainError);

pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
        ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The JSON body of an error.
pub fn error_body(error: &DomainError) -> serde_json::Value {
    json!({ "error": { "code": error.code, "message": error.message } })
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        status_of(self.0.kind)
    }

    fn error_response(&self) -> HttpResponse {
        if self.0.kind == ErrorKind::Internal {
            tracing::error!(error = %self.0, "internal error");
        }
        HttpResponse::build(self.status_code()).json(error_body(&self.0))
    }
}
