//! `PUT /api/v1/apps/{app_id}/users/{external_user_id}`: edits the tags of every subscription of
//! the app carrying that external user id (OneSignal's "edit tags with external user id").
//!
//! **When the subscriptions are found: when the request arrives.** The API reads them from the
//! database (its own pool) and publishes one ordinary tag update per subscription, keyed and
//! routed like any update of that row. Each row then takes the edit in its own queue, in the
//! order of the topic, after every update of it acknowledged before, before any acknowledged
//! after: per-row order is the usual one, and the consumer needs no lookup of its own. The price
//! is the one of any read: a subscription created (acknowledged) but not yet applied, or given
//! the external user id by an update not yet applied, is not found, and its tags are not edited.
//! With none found the answer is 404, so a client can tell; the found ones are edited.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::auth::same_app;
use super::body::Body;
use super::error::ApiError;
use super::publish::{not_skipped, publish};
use super::shapes::{AppRefusals, Errors, Success};
use super::validate::{check_tags, check_text, tags};
use super::AppState;
use crate::message::{Fields, Message, Update};

/// Most subscriptions one request edits: a user has a few devices; an id on more is a mistake
/// (or a shared placeholder id), refused rather than fanned out without bound.
pub const MAX_USER_SUBSCRIPTIONS: i64 = 1_000;

/// The body: tags as on a subscription's update.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserTags {
    /// Values: strings, numbers or booleans, stored as strings; `""` or `null` deletes the tag.
    #[schema(schema_with = super::validate::tags_schema)]
    pub tags: BTreeMap<String, serde_json::Value>,
}

/// Edits the tags of the app's subscriptions carrying `external_user_id`.
#[utoipa::path(
    put, path = "/api/v1/apps/{app_id}/users/{external_user_id}", tag = "players",
    params(
        ("app_id" = Uuid, Path, description = "The app"),
        ("external_user_id" = String, Path, description = "The user's id in the app"),
    ),
    request_body = UserTags,
    responses(
        (status = 200, description = "One update per subscription found, acknowledged by Kafka", body = Success),
        (status = 404, description = "No subscription of the app carries it (yet)", body = Errors),
        (status = 413, description = "Body over the limit", body = Errors),
        AppRefusals,
    ),
    security(("appKey" = []))
)]
pub async fn edit_tags(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path((app, user)): Path<(String, String)>,
    body: Body,
) -> Result<Json<Success>, ApiError> {
    let key_app = s.keys.app(&headers, &s.store).await?;
    s.limits.check(key_app)?;
    let app = Uuid::parse_str(&app)
        .map_err(|e| ApiError::bad_request(format!("app_id: not a UUID ({e})")))?;
    let UserTags { tags: raw } = body.parse()?;
    let mut errors = Vec::new();
    check_text("external_user_id", Some(&user), &mut errors);
    let tags = check_tags(tags(raw, &mut errors), &s.config.tag_limit, &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    same_app(key_app, app)?;
    not_skipped(&s, app)?;
    let found = s
        .store
        .players_of_user(app, &user, MAX_USER_SUBSCRIPTIONS + 1)
        .await?;
    if found.is_empty() {
        return Err(ApiError::not_found(format!(
            "external_user_id: no subscription of app {app} carries {user:?} (a subscription \
             not applied yet is not found)"
        )));
    }
    if found.len() as i64 > MAX_USER_SUBSCRIPTIONS {
        return Err(ApiError::bad_request(format!(
            "external_user_id: more than {MAX_USER_SUBSCRIPTIONS} subscriptions carry {user:?}; \
             edit them one by one"
        )));
    }
    for player_id in &found {
        let update = Update {
            player_id: *player_id,
            app_id: app,
            fields: Fields::default(),
            tags: tags.clone(),
            email: None,
            parent_player_id: None,
        };
        publish(&s, &Message::Update(update)).await?;
    }
    metrics::counter!("subscribers_updates_accepted_total").increment(found.len() as u64);
    tracing::debug!(app_id = %app, subscriptions = found.len(), "user's tags accepted");
    Ok(Json(Success::yes()))
}
