//! Every error the API answers: `{"errors": ["<message naming the field or the problem>"]}`
//! with a 4xx status (5xx only when a dependency fails).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// An error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub errors: Vec<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, error: impl Into<String>) -> Self {
        ApiError {
            status,
            errors: vec![error.into()],
        }
    }

    pub fn bad_request(error: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error)
    }

    pub fn invalid(errors: Vec<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            errors,
        }
    }

    pub fn unauthorized(error: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, error)
    }

    pub fn forbidden(error: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, error)
    }

    pub fn not_found(error: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, error)
    }

    /// Kafka did not acknowledge a write: the client may retry, nothing was promised.
    pub fn kafka(error: impl std::fmt::Display) -> Self {
        tracing::warn!(%error, "write not acknowledged by Kafka");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("kafka: the update was not acknowledged ({error}); retry later"),
        )
    }
}

/// A database failure: logged in full, answered briefly.
impl From<crate::Error> for ApiError {
    fn from(error: crate::Error) -> Self {
        tracing::error!(%error, "request failed");
        let status = match error {
            crate::Error::Pool(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(
            status,
            "database: the request could not be completed; retry later",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "errors": self.errors }))).into_response()
    }
}
