//! Request bodies: an extractor and a parser whose refusals are JSON too and name the field at fault:
//! `"timezone: invalid type: string \"x\", expected i32"`, `"unknown field `foo`, expected ..."`,
//! and 413 for a body over the configured limit.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// A request body, read within the size limit; handlers [`parse`] it after checking who asks,
/// so that a caller without credentials learns nothing from validation messages.
#[derive(Debug)]
pub struct Body(pub Bytes);

impl Body {
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        parse(&self.0)
    }
}

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            let status = rejection.status();
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(status, "body: larger than the limit for request bodies")
            } else {
                ApiError::new(status, format!("body: {}", rejection.body_text()))
            }
        })?;
        Ok(Body(bytes))
    }
}

/// Parses `bytes` as `T`, naming the field of any mistake.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = if inner.is_syntax() || inner.is_eof() {
            format!("body: not valid JSON ({inner})")
        } else if path == "." {
            format!("body: {inner}")
        } else {
            format!("{path}: {inner}")
        };
        ApiError::bad_request(message)
    })
}
