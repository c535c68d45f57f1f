//! `/healthz`, `/readyz`, `/metrics` and `/openapi.json`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use serde::Serialize;

use super::AppState;
use crate::db;

/// How long each readiness check may take. A probe that waits longer than its caller's timeout
/// answers nobody, so this stays well under the usual few seconds of a health checker.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The OpenAPI document of every endpoint.
pub const OPENAPI: &str = include_str!("openapi.json");

/// The body of `/healthz`.
#[derive(Debug, Serialize)]
pub struct Health {
    status: &'static str,
}

/// `/healthz`: the process is alive and serving HTTP. Says nothing about its dependencies.
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "alive" })
}

/// The body of `/readyz`.
#[derive(Debug, Serialize)]
pub struct Readiness {
    /// Both dependencies answered.
    ready: bool,
    kafka: Check,
    postgres: Check,
}

/// The outcome of one dependency check.
#[derive(Debug, Serialize)]
struct Check {
    up: bool,
    /// Why it is down; absent when up.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl From<Result<(), String>> for Check {
    fn from(outcome: Result<(), String>) -> Self {
        Self {
            up: outcome.is_ok(),
            error: outcome.err(),
        }
    }
}

/// `/readyz`: 200 when Kafka answers a metadata request and PostgreSQL answers `SELECT 1`,
/// otherwise 503; the body says which one is down and why.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let (kafka, postgres) = tokio::join!(
        check_kafka(Arc::clone(&state.kafka)),
        check_postgres(&state.config.database)
    );
    let ready = kafka.is_ok() && postgres.is_ok();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = Readiness {
        ready,
        kafka: kafka.into(),
        postgres: postgres.into(),
    };
    (status, Json(body))
}

async fn check_kafka(kafka: Arc<AdminClient<DefaultClientContext>>) -> Result<(), String> {
    // `fetch_metadata` blocks its thread until the broker answers or the timeout passes.
    tokio::task::spawn_blocking(move || kafka.inner().fetch_metadata(None, CHECK_TIMEOUT))
        .await
        .map_err(|e| format!("metadata request did not finish: {e}"))?
        .map(drop)
        .map_err(|e| format!("metadata request failed: {e}"))
}

/// A fresh connection on every probe, so that it reports what a new connection would meet now,
/// not the fate of an old one.
async fn check_postgres(database: &tokio_postgres::Config) -> Result<(), String> {
    let select_one = async {
        let client = db::connect(database).await.map_err(|e| e.to_string())?;
        client
            .simple_query("SELECT 1")
            .await
            .map(drop)
            .map_err(|e| format!("SELECT 1 failed: {e}"))
    };
    tokio::time::timeout(CHECK_TIMEOUT, select_one)
        .await
        .map_err(|_| format!("no answer within {CHECK_TIMEOUT:?}"))?
}

/// `/metrics`: Prometheus text.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

pub async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}
