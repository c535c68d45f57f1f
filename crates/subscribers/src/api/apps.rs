//! `POST /api/v1/apps` (admin token): creates an app and its API key. The key is returned once
//! and stored only as its SHA-256. `POST /api/v1/apps/{id}/key` gives the app a new key (the
//! old one stops working: here at once, in other processes within their key cache's TTL);
//! `DELETE` revokes it, leaving the app without a key until the next rotation.

use axum::extract::{Path, State};
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

fn app_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|e| ApiError::bad_request(format!("id: not a UUID ({e})")))
}

/// `POST /api/v1/apps/{id}/key`: a new key, returned once; the old one stops working.
pub async fn rotate_key(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (key, hash) = auth::new_key();
    let id = replace_key(&s, &headers, &id, Some(&hash)).await?;
    tracing::warn!(app_id = %id, "app key rotated");
    Ok(Json(json!({ "id": id, "api_key": key })))
}

/// `DELETE /api/v1/apps/{id}/key`: the app's key stops working; it has none until rotated.
pub async fn revoke_key(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = replace_key(&s, &headers, &id, None).await?;
    tracing::warn!(app_id = %id, "app key revoked");
    Ok(Json(json!({ "id": id, "revoked": true })))
}

/// For the admin: app `id`'s key becomes `hash` (none with `None`), and this process forgets
/// the old one at once (the others within their cache's time to live).
async fn replace_key(
    s: &AppState,
    headers: &HeaderMap,
    id: &str,
    hash: Option<&[u8]>,
) -> Result<Uuid, ApiError> {
    auth::admin(headers, s.config.admin_token.as_deref())?;
    let id = app_id(id)?;
    if !s.store.replace_key(id, hash).await? {
        return Err(ApiError::not_found(format!("id: no app {id}")));
    }
    s.keys.forget_app(id);
    Ok(id)
}
