//! `POST /api/v1/players`, `PUT /api/v1/players/{id}`, `GET /api/v1/players/{id}?app_id=`.
//!
//! Each checks the caller's key first (401), then the body (400), then that the key's app is the
//! app the request names (403): a refused request writes nothing. Writes answer only once Kafka
//! has acknowledged them.

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::Json;
use serde_json::{json, Value};
use std::collections::HashMap;
use uuid::Uuid;

use super::auth::same_app;
use super::body::Body;
use super::error::ApiError;
use super::validate::{NewPlayerRequest, UpdateRequest};
use super::AppState;
use crate::message::Message;
use crate::store::PlayerView;

fn path_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|e| ApiError::bad_request(format!("id: not a UUID ({e})")))
}

pub async fn create(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let key_app = s.keys.app(&headers, &s.store).await?;
    s.limits.check(key_app)?;
    let request: NewPlayerRequest = body.parse()?;
    let app = request.app_id;
    let id = Uuid::new_v4();
    let message = request
        .into_message(id, &s.config.tag_limit)
        .map_err(ApiError::invalid)?;
    same_app(key_app, app)?;
    not_skipped(&s, app)?;
    publish(&s, &Message::Create(message)).await?;
    tracing::debug!(app_id = %app, player_id = %id, "subscription accepted");
    Ok(Json(json!({ "success": true, "id": id })))
}

pub async fn update(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let key_app = s.keys.app(&headers, &s.store).await?;
    s.limits.check(key_app)?;
    let id = path_id(&id)?;
    let request: UpdateRequest = body.parse()?;
    let app = request.app_id;
    let message = request
        .into_message(id, &s.config.tag_limit)
        .map_err(ApiError::invalid)?;
    same_app(key_app, app)?;
    not_skipped(&s, app)?;
    publish(&s, &Message::Update(message)).await?;
    metrics::counter!("subscribers_updates_accepted_total").increment(1);
    tracing::debug!(app_id = %app, player_id = %id, "update accepted");
    Ok(Json(json!({ "success": true })))
}

pub async fn get(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<PlayerView>, ApiError> {
    let key_app = s.keys.app(&headers, &s.store).await?;
    s.limits.check(key_app)?;
    let id = path_id(&id)?;
    if let Some(unknown) = query.keys().find(|k| k.as_str() != "app_id") {
        return Err(ApiError::bad_request(format!(
            "{unknown}: unknown query parameter"
        )));
    }
    let app = query
        .get("app_id")
        .ok_or_else(|| ApiError::bad_request("app_id: required query parameter"))?;
    let app = Uuid::parse_str(app)
        .map_err(|e| ApiError::bad_request(format!("app_id: not a UUID ({e})")))?;
    same_app(key_app, app)?;
    let player = s
        .store
        .player(app, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("id: no subscription {id} in app {app}")))?;
    Ok(Json(player))
}

/// Refuses a write of an app the operator has put on the skip list (403), rather than
/// acknowledging what the consumer would then drop. The list is this process's copy, read from
/// the database twice a second: a write in that half second is acknowledged, and skipped.
fn not_skipped(s: &AppState, app: uuid::Uuid) -> Result<(), ApiError> {
    if s.skips.app_skipped(app) {
        metrics::counter!("subscribers_writes_refused_skipped_total").increment(1);
        return Err(ApiError::forbidden(format!(
            "app_id: the operator has suspended writes of app {app} (skip list); nothing was written"
        )));
    }
    Ok(())
}

async fn publish(s: &AppState, message: &Message) -> Result<(), ApiError> {
    let producer = s
        .producer
        .as_ref()
        .ok_or_else(|| ApiError::not_found("this process runs no API"))?;
    // Right after start the topic may still be on its way: wait a little rather than refuse.
    // The wait and the write together take at most `write_timeout`: with Kafka unreachable the
    // client hears 503 then, not when librdkafka gives up.
    let mut ready = s.topic_ready.clone();
    let write = async {
        if !ready.wait_for(|r| *r).await.is_ok_and(|r| *r) {
            return Err(ApiError::kafka("the service is stopping"));
        }
        producer.send(message).await.map_err(ApiError::kafka)
    };
    match tokio::time::timeout(s.config.write_timeout, write).await {
        Ok(sent) => sent.map(drop),
        Err(_) if !*s.topic_ready.borrow() => Err(ApiError::kafka(format!(
            "topic {} is not ready within {:?}",
            s.config.topic, s.config.write_timeout
        ))),
        Err(_) => Err(ApiError::kafka(format!(
            "no acknowledgement within {:?}",
            s.config.write_timeout
        ))),
    }
}
