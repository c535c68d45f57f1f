//! The HTTP edge: what a slow, greedy or hostile client can hold of the server, and how it is
//! made to let go. Every bound is a setting ([`HttpLimits`]); each is enforced by a well-kept
//! crate rather than by hand — hyper's header-read timer, tower's timeout, concurrency limit and
//! load shedding — and this module only puts them together:
//!
//! - **Connections** are capped by a semaphore: a connection holds a permit from accept to close,
//!   so at most `max_connections` are open (each costs a file descriptor and a task). Beyond, the
//!   accept loop waits and new connections queue in the kernel's listen backlog.
//! - **Headers** must arrive within `header_read_timeout` (hyper's HTTP/1 timer), for the first
//!   request of a connection and for every later one: a client trickling its headers byte by
//!   byte (slowloris), or holding an idle keep-alive connection, loses the connection.
//! - **Requests** — body included — must complete within `request_timeout`, or are answered 408:
//!   a client sending its body slowly holds a request slot no longer than that.
//! - **Requests in flight** are capped at `max_requests_in_flight` for the subscriber API; a
//!   request beyond the cap is answered 503 with `Retry-After` at once (load shedding) rather than
//!   queued, so that a flood costs the server refusals, not memory and latency for everyone. The
//!   probes (`/healthz`, `/readyz`), `/metrics`, the OpenAPI document and the admin endpoints are
//!   outside that cap: an operator can still see and act (the skip list) during a flood.
//!
//! Refusals are JSON like every other ([`ApiError`]) and counted:
//! `subscribers_http_requests_shed_total`, `subscribers_http_requests_timed_out_total`; the open
//! connections are the gauge `subscribers_http_connections`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::{BoxError, ServiceBuilder};

use super::error::ApiError;
use crate::config::HttpLimits;

/// `api` behind the cap on requests in flight, shedding what is over it.
pub fn limited(api: Router, limits: &HttpLimits) -> Router {
    let stack = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(|error: BoxError| async move {
            refusal(&error, None)
        }))
        .load_shed()
        .concurrency_limit(limits.max_requests_in_flight)
        .service(api);
    Router::new().fallback_service(stack)
}

/// `app` with every request bounded in time.
pub fn timed(app: Router, limits: &HttpLimits) -> Router {
    let timeout = limits.request_timeout;
    app.layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(move |error: BoxError| async move {
                refusal(&error, Some(timeout))
            }))
            .timeout(timeout),
    )
}

/// The answer to a request the edge's layers refused.
fn refusal(error: &BoxError, timeout: Option<Duration>) -> axum::response::Response {
    if error.is::<tower::load_shed::error::Overloaded>() {
        metrics::counter!("subscribers_http_requests_shed_total").increment(1);
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server: too many requests in flight; retry later",
        )
        .retry_after(1)
        .into_response();
    }
    if error.is::<tower::timeout::error::Elapsed>() {
        metrics::counter!("subscribers_http_requests_timed_out_total").increment(1);
        let ms = timeout.map_or(0, |t| t.as_millis());
        return ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!("request: not completed within {ms} ms (request_timeout_ms)"),
        )
        .into_response();
    }
    tracing::error!(%error, "request failed in the HTTP edge");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "server: the request failed",
    )
    .into_response()
}

/// Serves `app` on `listener` within `limits` until `shutdown` completes; then stops accepting,
/// lets the requests in flight finish (idle connections are closed at once) and returns.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()>,
) {
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let open = metrics::gauge!("subscribers_http_connections");
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&connections).acquire_owned() => {
                permit.expect("the semaphore is never closed")
            }
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    accept_failed(&error).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        let open = open.clone();
        open.increment(1);
        tokio::spawn(async move {
            // A connection cut by the client, or timed out, is the client's business.
            let _ = connection.await;
            open.decrement(1);
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// After a failed accept: a connection reset before it was accepted is nothing; anything else
/// (out of file descriptors) is logged, and the loop pauses rather than spin.
async fn accept_failed(error: &std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        error.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    tracing::error!(%error, "cannot accept a connection");
    tokio::time::sleep(Duration::from_millis(100)).await;
}
