//! Every error the API answers: `{"errors": ["<message naming the field or the problem>"]}`
//! with a 4xx status (5xx only when a dependency fails). A refusal that will pass later (429,
//! 503) says when to try again in `Retry-After`.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// An error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub errors: Vec<String>,
    /// Seconds to wait before retrying (`Retry-After`), where waiting helps.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, error: impl Into<String>) -> Self {
        ApiError {
            status,
            errors: vec![error.into()],
            retry_after: None,
        }
    }

    /// This refusal, with `Retry-After: seconds`.
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds.max(1));
        self
    }

    pub fn bad_request(error: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error)
    }

    pub fn invalid(errors: Vec<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            errors,
            retry_after: None,
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

    /// Kafka did not acknowledge a write: the client may retry, nothing was promised. The
    /// broker's error is logged, not told: it may name hosts.
    pub fn kafka(error: impl std::fmt::Display) -> Self {
        tracing::warn!(%error, "write not acknowledged by Kafka");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "kafka: the update was not acknowledged; retry later",
        )
        .retry_after(1)
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
        let refusal = Self::new(
            status,
            "database: the request could not be completed; retry later",
        );
        if status == StatusCode::SERVICE_UNAVAILABLE {
            refusal.retry_after(1)
        } else {
            refusal
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(json!({ "errors": self.errors }))).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, seconds.into());
        }
        response
    }
}
