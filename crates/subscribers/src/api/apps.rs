//! `POST /api/v1/apps` (admin token): creates an app and its API key. The key is returned once
//! and stored only as its SHA-256. `POST /api/v1/apps/{id}/key` gives the app a new key (the
//! old one stops working: here at once, in other processes within their key cache's TTL);
//! `DELETE` revokes it, leaving the app without a key until the next rotation.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::auth;
use super::body::Body;
use super::error::ApiError;
use super::shapes::{AdminRefusals, Errors};
use super::AppState;

/// The body of `POST /api/v1/apps`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApp {
    /// 1 to 200 bytes.
    name: String,
}

/// A new app and its key, shown once.
#[derive(Debug, Serialize, ToSchema)]
pub struct AppCreated {
    id: Uuid,
    name: String,
    api_key: String,
}

/// An app's new key, shown once.
#[derive(Debug, Serialize, ToSchema)]
pub struct AppKey {
    id: Uuid,
    api_key: String,
}

/// An app whose key was revoked.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyRevoked {
    id: Uuid,
    revoked: bool,
}

#[utoipa::path(
    post, path = "/api/v1/apps", tag = "admin",
    request_body = NewApp,
    responses(
        (status = 201, description = "The app and its key, shown once", body = AppCreated),
        (status = 400, description = "A field is wrong; the message names it", body = Errors),
        (status = 413, description = "Body over the limit", body = Errors),
        AdminRefusals,
    ),
    security(("adminToken" = []))
)]
pub async fn create(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<AppCreated>), ApiError> {
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
        Json(AppCreated {
            id,
            name,
            api_key: key,
        }),
    ))
}

fn app_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|e| ApiError::bad_request(format!("id: not a UUID ({e})")))
}

/// `POST /api/v1/apps/{id}/key`: a new key, returned once; the old one stops working.
#[utoipa::path(
    post, path = "/api/v1/apps/{id}/key", tag = "admin",
    params(("id" = Uuid, Path, description = "The app")),
    responses(
        (status = 200, description = "The new key, shown once", body = AppKey),
        (status = 400, description = "id: not a UUID", body = Errors),
        (status = 404, description = "No such app", body = Errors),
        AdminRefusals,
    ),
    security(("adminToken" = []))
)]
pub async fn rotate_key(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<AppKey>, ApiError> {
    let (key, hash) = auth::new_key();
    let id = replace_key(&s, &headers, &id, Some(&hash)).await?;
    tracing::warn!(app_id = %id, "app key rotated");
    Ok(Json(AppKey { id, api_key: key }))
}

/// `DELETE /api/v1/apps/{id}/key`: the app's key stops working; it has none until rotated.
#[utoipa::path(
    delete, path = "/api/v1/apps/{id}/key", tag = "admin",
    params(("id" = Uuid, Path, description = "The app")),
    responses(
        (status = 200, description = "Revoked", body = KeyRevoked),
        (status = 400, description = "id: not a UUID", body = Errors),
        (status = 404, description = "No such app", body = Errors),
        AdminRefusals,
    ),
    security(("adminToken" = []))
)]
pub async fn revoke_key(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<KeyRevoked>, ApiError> {
    let id = replace_key(&s, &headers, &id, None).await?;
    tracing::warn!(app_id = %id, "app key revoked");
    Ok(Json(KeyRevoked { id, revoked: true }))
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
