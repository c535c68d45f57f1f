//! OneSignal's players API: `POST /api/v1/players`, `PUT /api/v1/players/{id}`,
//! `GET /api/v1/players/{id}?app_id=`, `GET /api/v1/players?app_id=&limit=&offset=`,
//! `DELETE /api/v1/players/{id}?app_id=`.
//!
//! Each checks the caller's key first (401), then the body or query (400), then that the key's
//! app is the app the request names (403): a refused request writes nothing. Writes answer only
//! once Kafka has acknowledged them; reads answer from the database, so they show what the
//! consumer has applied so far.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::Json;
use uuid::Uuid;

use super::auth::same_app;
use super::body::Body;
use super::error::ApiError;
use super::publish::{not_skipped, publish};
use super::request::PlayerRequest;
use super::shapes::{AppRefusals, Created, Errors, PlayerPage, Success};
use super::AppState;
use crate::message::{Delete, Message};
use crate::store::PlayerView;

/// Most subscriptions one page of `GET /api/v1/players` holds, and its default: OneSignal's.
pub const MAX_PAGE: i64 = 300;

pub(super) fn path_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|e| ApiError::bad_request(format!("id: not a UUID ({e})")))
}

/// Creates a subscription (OneSignal's "add a device"). An email subscription (`device_type`
/// 11) gets an id derived from its address: creating it again names the same one, and changes
/// nothing of it.
#[utoipa::path(
    post, path = "/api/v1/players", tag = "players",
    request_body = PlayerRequest,
    responses(
        (status = 200, description = "Acknowledged by Kafka; applied shortly", body = Created),
        (status = 413, description = "Body over the limit", body = Errors),
        AppRefusals,
    ),
    security(("appKey" = []))
)]
pub async fn create(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Created>, ApiError> {
    let key_app = s.keys.app(&headers, &s.store).await?;
    s.limits.check(key_app)?;
    let request: PlayerRequest = body.parse()?;
    let app = request.app_id;
    let (id, messages) = request
        .into_create(&s.config.tag_limit)
        .map_err(ApiError::invalid)?;
    same_app(key_app, app)?;
    not_skipped(&s, app)?;
    for message in &messages {
        publish(&s, message).await?;
    }
    tracing::debug!(app_id = %app, player_id = %id, "subscription accepted");
    Ok(Json(Created { success: true, id }))
}

/// Updates a subscription (OneSignal's "edit device"): absent fields stay as they are.
#[utoipa::path(
    put, path = "/api/v1/players/{id}", tag = "players",
    params(("id" = Uuid, Path, description = "The subscription")),
    request_body = PlayerRequest,
    responses(
        (status = 200, description = "Acknowledged by Kafka; applied shortly, in order", body = Success),
        (status = 413, description = "Body over the limit", body = Errors),
        AppRefusals,
    ),
    security(("appKey" = []))
)]
pub async fn update(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Result<Json<Success>, ApiError> {
    let key_app = s.keys.app(&headers, &s.store).await?;
    s.limits.check(key_app)?;
    let id = path_id(&id)?;
    let request: PlayerRequest = body.parse()?;
    let app = request.app_id;
    let message = request
        .into_update(id, &s.config.tag_limit)
        .map_err(ApiError::invalid)?;
    same_app(key_app, app)?;
    not_skipped(&s, app)?;
    publish(&s, &Message::Update(message)).await?;
    metrics::counter!("subscribers_updates_accepted_total").increment(1);
    tracing::debug!(app_id = %app, player_id = %id, "update accepted");
    Ok(Json(Success::yes()))
}

/// One subscription, as applied so far.
#[utoipa::path(
    get, path = "/api/v1/players/{id}", tag = "players",
    params(
        ("id" = Uuid, Path, description = "The subscription"),
        ("app_id" = Uuid, Query, description = "Its app"),
        ("email_auth_hash" = Option<String>, Query, description = "Identity verification: accepted and ignored"),
    ),
    responses(
        (status = 200, description = "The subscription; unset fields left out", body = PlayerView),
        (status = 404, description = "No such subscription in the app (or not applied yet)", body = Errors),
        AppRefusals,
    ),
    security(("appKey" = []))
)]
pub async fn get(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<PlayerView>, ApiError> {
    let key_app = s.keys.app(&headers, &s.store).await?;
    s.limits.check(key_app)?;
    let id = path_id(&id)?;
    let query = Params::of(&query, &["app_id", "email_auth_hash"])?;
    let app = query.app()?;
    same_app(key_app, app)?;
    let player = s
        .store
        .player(app, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("id: no subscription {id} in app {app}")))?;
    Ok(Json(player))
}

/// A page of the app's subscriptions, by id (OneSignal's "view devices").
#[utoipa::path(
    get, path = "/api/v1/players", tag = "players",
    params(
        ("app_id" = Uuid, Query, description = "The app"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 300, description = "At most 300 (the default)"),
        ("offset" = Option<i64>, Query, minimum = 0, description = "Subscriptions to skip, by id; 0 by default"),
    ),
    responses(
        (status = 200, description = "The page", body = PlayerPage),
        AppRefusals,
    ),
    security(("appKey" = []))
)]
pub async fn list(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<PlayerPage>, ApiError> {
    let key_app = s.keys.app(&headers, &s.store).await?;
    s.limits.check(key_app)?;
    let query = Params::of(&query, &["app_id", "limit", "offset"])?;
    let app = query.app()?;
    let limit = query.number("limit", MAX_PAGE, 1..=MAX_PAGE)?;
    let offset = query.number("offset", 0, 0..=i64::from(i32::MAX))?;
    same_app(key_app, app)?;
    let (total_count, players) = s.store.players(app, limit, offset).await?;
    Ok(Json(PlayerPage {
        total_count,
        offset,
        limit,
        players,
    }))
}

/// Deletes a subscription (OneSignal's "delete a device"): an ordered event like any update,
/// applied after every change of the row acknowledged before it. What comes of it there, and
/// of later updates of the row, is the consumer's (docs/subscribers.md).
#[utoipa::path(
    delete, path = "/api/v1/players/{id}", tag = "players",
    params(
        ("id" = Uuid, Path, description = "The subscription"),
        ("app_id" = Uuid, Query, description = "Its app"),
    ),
    responses(
        (status = 200, description = "Acknowledged by Kafka; applied shortly, in order", body = Success),
        AppRefusals,
    ),
    security(("appKey" = []))
)]
pub async fn delete(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Success>, ApiError> {
    let key_app = s.keys.app(&headers, &s.store).await?;
    s.limits.check(key_app)?;
    let id = path_id(&id)?;
    let app = Params::of(&query, &["app_id"])?.app()?;
    same_app(key_app, app)?;
    not_skipped(&s, app)?;
    let delete = Delete {
        player_id: id,
        app_id: app,
    };
    publish(&s, &Message::Delete(delete)).await?;
    tracing::debug!(app_id = %app, player_id = %id, "delete accepted");
    Ok(Json(Success::yes()))
}

/// A query string, checked: only the parameters an endpoint knows.
pub(super) struct Params<'a>(&'a HashMap<String, String>);

impl<'a> Params<'a> {
    pub(super) fn of(query: &'a HashMap<String, String>, known: &[&str]) -> Result<Self, ApiError> {
        if let Some(unknown) = query.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(ApiError::bad_request(format!(
                "{unknown}: unknown query parameter"
            )));
        }
        Ok(Params(query))
    }

    /// The required `app_id`.
    pub(super) fn app(&self) -> Result<Uuid, ApiError> {
        let app = self
            .0
            .get("app_id")
            .ok_or_else(|| ApiError::bad_request("app_id: required query parameter"))?;
        Uuid::parse_str(app).map_err(|e| ApiError::bad_request(format!("app_id: not a UUID ({e})")))
    }

    /// The whole number `name`, `default` when absent.
    fn number(
        &self,
        name: &str,
        default: i64,
        range: std::ops::RangeInclusive<i64>,
    ) -> Result<i64, ApiError> {
        let Some(v) = self.0.get(name) else {
            return Ok(default);
        };
        v.parse::<i64>()
            .ok()
            .filter(|n| range.contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "{name}: {v:?} is not a whole number from {} to {}",
                    range.start(),
                    range.end()
                ))
            })
    }
}
