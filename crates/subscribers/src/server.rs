//! The HTTP server: `/healthz` and `/readyz`, served until a shutdown future completes.
//!
//! Like mini-redis, the server takes its shutdown signal as a future: the binary passes Ctrl-C or
//! SIGTERM, tests pass a channel they complete when they are done, and in both cases requests in
//! flight are finished before [`run`] returns.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;
use serde::Serialize;
use tokio::net::TcpListener;

use crate::{db, migrations, Config, Error, Result};

/// How long each readiness check may take. A probe that waits longer than its caller's timeout
/// answers nobody, so this stays well under the usual few seconds of a health checker.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Binds `config.listen` and runs the service until `shutdown` completes; see [`run`].
///
/// # Errors
/// As [`run`], and [`Error::Bind`] when the address cannot be bound.
pub async fn serve(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| Error::Bind {
            addr: config.listen,
            source,
        })?;
    run(listener, config, shutdown).await
}

/// Runs the service on `listener` until `shutdown` completes.
///
/// On start it creates the database if the server lacks it and applies the migrations: without
/// PostgreSQL the service cannot do anything useful, so it fails at once. An unreachable Kafka is
/// not fatal: `/readyz` reports it until it comes back.
///
/// # Errors
/// When PostgreSQL cannot be reached, a migration fails, or the HTTP server fails.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let server = db::describe(&config.database);
    db::ensure_database(&config.database).await?;
    let mut client = db::connect(&config.database).await?;
    let applied = migrations::migrate(&mut client, &server).await?;
    drop(client);
    tracing::info!(database = %server, ?applied, "database ready");

    let kafka: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &config.kafka_brokers)
        .create()?;
    let state = AppState {
        kafka: Arc::new(kafka),
        database: config.database,
    };
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state);

    let addr = listener.local_addr().map_err(Error::Serve)?;
    tracing::info!(%addr, kafka_brokers = %config.kafka_brokers, "listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(Error::Serve)?;
    tracing::info!("shut down");
    Ok(())
}

/// What the request handlers share.
#[derive(Clone)]
struct AppState {
    /// A long-lived client: librdkafka keeps its broker connections open and re-establishes them,
    /// so a readiness probe costs one metadata round trip.
    kafka: Arc<AdminClient<DefaultClientContext>>,
    /// Readiness opens a fresh connection with these settings on every probe, so that it reports
    /// what a new connection would meet now, not the fate of an old one.
    database: tokio_postgres::Config,
}

/// The body of `/healthz`.
#[derive(Debug, Serialize)]
struct Health {
    status: &'static str,
}

/// `/healthz`: the process is alive and serving HTTP. Says nothing about its dependencies.
async fn healthz() -> Json<Health> {
    Json(Health { status: "alive" })
}

/// The body of `/readyz`.
#[derive(Debug, Serialize)]
struct Readiness {
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
async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let (kafka, postgres) = tokio::join!(
        check_kafka(Arc::clone(&state.kafka)),
        check_postgres(&state.database)
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
