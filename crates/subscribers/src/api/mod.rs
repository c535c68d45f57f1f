//! The HTTP API: the subscriber endpoints (`/api/v1`), the admin endpoints, health, metrics and
//! the OpenAPI document. Every refusal is JSON (see [`error`]).

pub mod admin;
pub mod apps;
pub mod auth;
pub mod body;
pub mod edge;
pub mod error;
pub mod health;
pub mod limit;
pub mod openapi;
pub mod players;
mod publish;
pub mod request;
pub mod shapes;
pub mod users;
pub mod validate;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::watch;

use crate::consumer::ConsumerView;
use crate::producer::Producer;
use crate::skip::SkipList;
use crate::store::Store;
use crate::Config;
use error::ApiError;

/// What the request handlers share.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    pub keys: auth::Keys,
    pub limits: limit::Limits,
    /// The last readiness check, refreshed in the background.
    pub readiness: health::Readiness,
    pub skips: SkipList,
    /// Present when this process runs the API.
    pub producer: Option<Producer>,
    /// Whether the topic exists yet (it is created in the background: Kafka may be down).
    pub topic_ready: watch::Receiver<bool>,
    /// Present when this process runs the consumer.
    pub consumer: Option<ConsumerView>,
    pub metrics: PrometheusHandle,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("config", &self.config)
            .field("store", &self.store)
            .field("api", &self.producer.is_some())
            .field("consumer", &self.consumer.is_some())
            .finish_non_exhaustive()
    }
}

/// Every route. The subscriber API is mounted only where the process runs it, behind the cap on
/// requests in flight; every request is bounded in time ([`edge`]).
pub fn router(state: AppState) -> Router {
    let open = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/openapi.json", get(openapi::serve))
        .route(
            "/admin/skip",
            get(admin::skips).put(admin::skip).delete(admin::unskip),
        )
        .route("/admin/top", get(admin::top));
    let mut api = Router::new()
        .route("/api/v1/apps", post(apps::create))
        .route(
            "/api/v1/apps/{id}/key",
            post(apps::rotate_key).delete(apps::revoke_key),
        );
    if state.producer.is_some() {
        api = api
            .route("/api/v1/players", post(players::create).get(players::list))
            .route(
                "/api/v1/players/{id}",
                put(players::update)
                    .get(players::get)
                    .delete(players::delete),
            )
            // `{id}` is the app, as in the key's path above: one name per segment.
            .route(
                "/api/v1/apps/{id}/users/{external_user_id}",
                put(users::edit_tags),
            );
    }
    let limits = state.config.http;
    let body_limit = DefaultBodyLimit::max(state.config.body_limit);
    let api = refusing(api).layer(body_limit).with_state(state.clone());
    let app = open
        .method_not_allowed_fallback(not_allowed)
        .layer(body_limit)
        .with_state(state)
        .fallback_service(edge::limited(api, &limits));
    edge::timed(app, &limits)
}

/// `routes`, answering unknown paths 404 and unknown methods 405, in JSON.
fn refusing(routes: Router<AppState>) -> Router<AppState> {
    routes
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .method_not_allowed_fallback(not_allowed)
}

async fn not_allowed() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this endpoint",
    )
}
