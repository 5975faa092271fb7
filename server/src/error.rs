//! The one place errors become HTTP responses: `{"error": {"code", "message"}}` with
//! the status the error's kind calls for.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use boardsync_core::{DomainError, ErrorBody, ErrorDetail, ErrorKind};

#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct ApiError(#[from] pub DomainError);

pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
        ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The JSON body of an error (a retryable one says after how many seconds, for
/// clients that see no headers, such as a WebSocket's). An internal error's cause goes to the log under a
/// fresh request id, and the client gets only that id: internal text (SQL, paths,
/// library messages) never leaves the server.
pub fn error_body(error: &DomainError) -> ErrorBody {
    if error.kind == ErrorKind::Internal {
        let request_id = uuid::Uuid::new_v4().simple().to_string();
        tracing::error!(%request_id, %error, "internal error");
        return ErrorBody {
            error: ErrorDetail {
                code: "internal".into(),
                message: "internal error".into(),
                retry_after: None,
                request_id: Some(request_id),
            },
        };
    }
    ErrorBody {
        error: ErrorDetail {
            code: error.code.to_string(),
            message: error.message.clone(),
            retry_after: error.retry_after_secs,
            request_id: None,
        },
    }
}

impl ApiError {
    /// The error response of a 405, with the methods the route takes.
    pub fn error_response_allowing(&self, allow: &str) -> HttpResponse {
        let mut response = self.error_response();
        if let Ok(value) = actix_web::http::header::HeaderValue::from_str(allow) {
            response.headers_mut().insert(actix_web::http::header::ALLOW, value);
        }
        response
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        status_of(self.0.kind)
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        if let Some(secs) = self.0.retry_after_secs {
            response.insert_header((actix_web::http::header::RETRY_AFTER, secs.to_string()));
        }
        response.json(error_body(&self.0))
    }
}
