//! `POST /api/v1/apps` (admin token): creates an app and its API key. The key is returned once
//! and stored only as its SHA-256.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::auth;
use super::body::Body;
use super::error::ApiError;
use super::AppState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewApp {
    name: String,
}

pub async fn create(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    auth::admin(&headers, s.config.admin_token.as_deref())?;
    let NewApp { name } = body.parse()?;
    let name = name.trim().to_owned();
    if name.is_empty() || name.len() > 200 {
        return Err(ApiError::bad_request("name: must be 1 to 200 bytes"));
    }
    if name.contains('\0') {
        return Err(ApiError::bad_request(format!(
            "name: {}",
            super::validate::NUL_REFUSED
        )));
    }
    let id = Uuid::new_v4();
    let (key, hash) = auth::new_key();
    s.store.create_app(id, &name, &hash).await?;
    tracing::info!(app_id = %id, %name, "app created");
    Ok((
        StatusCode::CREATED,
        Json(json!({ "id": id, "name": name, "api_key": key })),
    ))
}
