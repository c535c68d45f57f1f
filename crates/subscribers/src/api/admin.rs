//! Operator controls (admin token): the skip list and the busiest apps, rows and partitions.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use super::auth;
use super::body::Body;
use super::error::ApiError;
use super::shapes::{AdminRefusals, Errors};
use super::AppState;
use crate::busiest::WINDOW_SECONDS;
use crate::skip::SkipTarget;

/// `{"player_id": ...}` or `{"app_id": ...}`.
/// What to skip or resume: exactly one of the two.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SkipRequest {
    player_id: Option<Uuid>,
    app_id: Option<Uuid>,
}

fn target(s: &AppState, headers: &HeaderMap, body: &Body) -> Result<SkipTarget, ApiError> {
    auth::admin(headers, s.config.admin_token.as_deref())?;
    match body.parse::<SkipRequest>()? {
        SkipRequest {
            player_id: Some(p),
            app_id: None,
        } => Ok(SkipTarget::Player(p)),
        SkipRequest {
            player_id: None,
            app_id: Some(a),
        } => Ok(SkipTarget::App(a)),
        _ => Err(ApiError::bad_request(
            "body: give exactly one of player_id and app_id",
        )),
    }
}

/// `PUT /admin/skip`: from now on (within a second, in every process), records of the target
/// are completed without being written.
/// Completes the records of an app or row without writing them (within a second, in every
/// process).
#[utoipa::path(
    put, path = "/admin/skip", tag = "admin",
    request_body = SkipRequest,
    responses(
        (status = 200, description = "Skipping", body = Object),
        (status = 400, description = "A field is wrong; the message names it", body = Errors),
        (status = 413, description = "Body over the limit", body = Errors),
        AdminRefusals,
    ),
    security(("adminToken" = []))
)]
pub async fn skip(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let t = target(&s, &headers, &body)?;
    s.store.add_skip(t).await?;
    s.skips.insert(t);
    tracing::warn!(target = t.kind(), id = %t.id(), "skipping records by operator request");
    Ok(Json(json!({ "skipping": t })))
}

/// `DELETE /admin/skip`: writes resume.
/// Resumes writing an app or row.
#[utoipa::path(
    delete, path = "/admin/skip", tag = "admin",
    request_body = SkipRequest,
    responses(
        (status = 200, description = "Resumed", body = Object),
        (status = 400, description = "A field is wrong; the message names it", body = Errors),
        (status = 404, description = "Not skipped", body = Errors),
        (status = 413, description = "Body over the limit", body = Errors),
        AdminRefusals,
    ),
    security(("adminToken" = []))
)]
pub async fn unskip(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let t = target(&s, &headers, &body)?;
    if !s.store.remove_skip(t).await? {
        return Err(ApiError::not_found(format!(
            "{} {} is not skipped",
            t.kind(),
            t.id()
        )));
    }
    s.skips.remove(t);
    tracing::warn!(target = t.kind(), id = %t.id(), "no longer skipping records");
    Ok(Json(json!({ "resumed": t })))
}

/// `GET /admin/skip`: the skip list, and what this process obeys (the same, within a second).
/// The skip list, and what of it is in effect in this process.
#[utoipa::path(
    get, path = "/admin/skip", tag = "admin",
    responses(
        (status = 200, description = "Skipped apps and rows", body = Object),
        AdminRefusals,
    ),
    security(("adminToken" = []))
)]
pub async fn skips(State(s): State<AppState>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    auth::admin(&headers, s.config.admin_token.as_deref())?;
    let mut all: Vec<SkipTarget> = s.store.skips().await?.into_iter().collect();
    all.sort_by_key(|t| (t.kind(), t.id()));
    Ok(Json(
        json!({ "skipping": all, "in_effect_here": s.skips.active() }),
    ))
}

/// `GET /admin/top?n=20`: the busiest apps and rows of the last minute, and each partition's
/// queue depth and time in flight, from the consumer of this process.
/// The busiest apps and rows of the last minute; queue depth and time in flight per partition
/// (served by processes that run the consumer).
#[utoipa::path(
    get, path = "/admin/top", tag = "admin",
    params(("n" = Option<usize>, Query, minimum = 1, maximum = 1000, description = "How many of each; 20 by default")),
    responses(
        (status = 200, description = "The view", body = Object),
        (status = 400, description = "A parameter is wrong; the message names it", body = Errors),
        (status = 404, description = "This process runs no consumer", body = Errors),
        AdminRefusals,
    ),
    security(("adminToken" = []))
)]
pub async fn top(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    auth::admin(&headers, s.config.admin_token.as_deref())?;
    let n = match q.get("n") {
        None => 20,
        Some(n) => n
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| ApiError::bad_request("n: a number from 1 to 1000"))?,
    };
    let view = s.consumer.as_ref().ok_or_else(|| {
        ApiError::not_found("no consumer runs in this process: ask a `kafkaesque consume` process")
    })?;
    let (apps, rows) = view.top.top(n);
    let snapshot = view.observer().map(|o| o.snapshot()).unwrap_or_default();
    let key = |k: &Option<std::sync::Arc<[u8]>>| {
        k.as_deref()
            .map(|k| String::from_utf8_lossy(k).into_owned())
    };
    let partitions: Vec<Value> = snapshot
        .partitions
        .iter()
        .map(|p| {
            let longest = snapshot
                .top_keys_by_time_in_flight
                .iter()
                .filter(|k| k.tp == p.stats.tp)
                .map(|k| k.in_flight_ms)
                .max()
                .unwrap_or(0);
            json!({
                "topic": &*p.stats.tp.topic,
                "partition": p.stats.tp.partition,
                "queued": p.stats.held,
                "in_flight": p.stats.in_flight,
                "uncommitted": p.stats.uncommitted,
                "paused": p.stats.paused.is_some(),
                "longest_in_flight_ms": longest,
                "lag_messages": p.lag_messages,
                "lag_ms": p.lag_ms,
            })
        })
        .collect();
    let keys = |list: &[kafkaesque_runtime::KeyStats]| -> Vec<Value> {
        list.iter()
            .take(n)
            .map(|k| {
                json!({
                    "row": key(&k.key),
                    "partition": k.tp.partition,
                    "queued": k.queued,
                    "bytes": k.bytes,
                    "in_flight_ms": k.in_flight_ms,
                    "coalescing": k.coalescing,
                })
            })
            .collect()
    };
    Ok(Json(json!({
        "window_seconds": WINDOW_SECONDS,
        "apps": apps.iter().map(|(a, n)| json!({"app_id": a, "updates": n})).collect::<Vec<_>>(),
        "rows": rows.iter().map(|(r, n)| json!({"player_id": r, "updates": n})).collect::<Vec<_>>(),
        "partitions": partitions,
        "rows_by_queue": keys(&snapshot.top_keys_by_queued),
        "rows_by_time_in_flight": keys(&snapshot.top_keys_by_time_in_flight),
    })))
}
