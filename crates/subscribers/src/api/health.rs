//! `/healthz`, `/readyz` and `/metrics` (`/openapi.json` is [`super::openapi`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::types::RDKafkaErrorCode;
use serde::Serialize;
use tokio::sync::watch;
use utoipa::ToSchema;

use super::AppState;
use crate::db;

/// How long each readiness check may take. A probe that waits longer than its caller's timeout
/// answers nobody, so this stays well under the usual few seconds of a health checker.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The body of `/healthz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    status: &'static str,
}

/// `/healthz`: the process is alive and serving HTTP. Says nothing about its dependencies.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "Alive", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "alive" })
}

/// How often the background check asks Kafka and PostgreSQL.
pub const READY_INTERVAL: Duration = Duration::from_secs(1);

/// What the last check found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Status {
    kafka: bool,
    postgres: bool,
}

/// The last readiness check. `/readyz` answers from it: a probe costs no connection and no
/// metadata request however often it comes, and a stranger hammering it reaches neither
/// dependency.
#[derive(Debug, Clone)]
pub struct Readiness {
    latest: watch::Receiver<Status>,
}

impl Readiness {
    /// Checks both dependencies every [`READY_INTERVAL`] until `stopped` completes. Down until
    /// the first check has answered.
    pub fn start(
        kafka: Arc<BaseConsumer>,
        database: tokio_postgres::Config,
        tls: db::Tls,
        stopped: impl Future<Output = ()> + Send + 'static,
    ) -> (Readiness, tokio::task::JoinHandle<()>) {
        let (tx, latest) = watch::channel(Status::default());
        let task = tokio::spawn(async move {
            tokio::pin!(stopped);
            let mut last: Option<(Result<(), String>, Result<(), String>)> = None;
            let mut refused = None;
            loop {
                let (k, p) = tokio::join!(
                    check_kafka(Arc::clone(&kafka), &mut refused),
                    check_postgres(&database, &tls)
                );
                let status = Status {
                    kafka: k.is_ok(),
                    postgres: p.is_ok(),
                };
                // The reasons go to the log, once per change of status or reason (a refused
                // login may be known only from the second failed check on): they name hosts
                // and databases, which the probe's answer does not.
                if last.as_ref() != Some(&(k.clone(), p.clone())) {
                    match (&k, &p) {
                        (Ok(()), Ok(())) => tracing::info!("ready: Kafka and PostgreSQL answer"),
                        _ => tracing::warn!(
                            kafka = ?k.as_ref().err(),
                            postgres = ?p.as_ref().err(),
                            "not ready"
                        ),
                    }
                }
                last = Some((k, p));
                tx.send_replace(status);
                tokio::select! {
                    () = &mut stopped => return,
                    () = tokio::time::sleep(READY_INTERVAL) => {}
                }
            }
        });
        (Readiness { latest }, task)
    }
}

/// The body of `/readyz`: which dependency is down, never why (that is logged).
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadyBody {
    /// Both dependencies answered the last check.
    ready: bool,
    kafka: Up,
    postgres: Up,
}

#[derive(Debug, Serialize, ToSchema)]
struct Up {
    up: bool,
}

/// `/readyz`: 200 when Kafka answered a metadata request and PostgreSQL `SELECT 1` at the last
/// check (at most a second or two ago), otherwise 503.
#[utoipa::path(
    get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "Ready", body = ReadyBody),
        (status = 503, description = "A dependency did not answer the last check; the body says which", body = ReadyBody),
    )
)]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<ReadyBody>) {
    let status = *state.readiness.latest.borrow();
    let ready = status.kafka && status.postgres;
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = ReadyBody {
        ready,
        kafka: Up { up: status.kafka },
        postgres: Up {
            up: status.postgres,
        },
    };
    (code, Json(body))
}

/// A metadata request. A broker that refuses the service's login (wrong password, mechanism or
/// CA) is named as such, not as the transport failure the request itself meets; `refused`
/// remembers the refusal until a request goes through, since librdkafka reports it only when
/// it tries to log in again.
async fn check_kafka(
    kafka: Arc<BaseConsumer>,
    refused: &mut Option<RDKafkaErrorCode>,
) -> Result<(), String> {
    // `fetch_metadata` blocks its thread until the broker answers or the timeout passes.
    let (answer, refusal) = tokio::task::spawn_blocking(move || {
        let answer = kafka.fetch_metadata(None, CHECK_TIMEOUT).map(drop);
        (answer, kafkaesque_runtime::login_refused(&kafka))
    })
    .await
    .map_err(|e| format!("metadata request did not finish: {e}"))?;
    let Err(e) = answer else {
        *refused = None;
        return Ok(());
    };
    *refused = refusal.or(*refused);
    Err(match refused {
        Some(code) => format!(
            "the broker refused the service's login: {code} (check kafka_security_protocol, \
             kafka_sasl_mechanism, kafka_sasl_username, kafka_sasl_password, \
             kafka_ssl_ca_location and kafka_properties)"
        ),
        None => format!("metadata request failed: {e}"),
    })
}

/// A fresh connection on every check, so that it reports what a new connection would meet now,
/// not the fate of an old one.
async fn check_postgres(database: &tokio_postgres::Config, tls: &db::Tls) -> Result<(), String> {
    let select_one = async {
        let client = db::connect(database, tls)
            .await
            .map_err(|e| e.to_string())?;
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
#[utoipa::path(get, path = "/metrics", tag = "health", responses((status = 200, description = "Prometheus text", content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
