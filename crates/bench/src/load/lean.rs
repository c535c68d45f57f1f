//! The abusers' HTTP client: hyper's own HTTP/1.1 connections, a few of them kept alive, one
//! request at a time on each, with paths, headers and bodies made as plain bytes.
//!
//! **Why not `reqwest`**, which the five apps of the abuse run use. At the abusers' 3,000
//! requests a second its per-request work (parsing each URL, the connection pool, the redirect
//! policy, per-request tasks and timers) costs about a quarter of a core, against 16 % for this
//! client, on the same cores as the service, the broker and PostgreSQL: CPU the figures would
//! count against the service. What the service receives is the same: one request per round
//! trip on kept-alive connections, each parsed, authenticated and answered by it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How often the schedule sends what has come due: one timer a millisecond rather than one a
/// request.
const TICK: Duration = Duration::from_millis(1);

/// One request: `PUT` of `path` with `key` as the app key and `body` as JSON.
#[derive(Debug, Clone)]
pub(super) struct Put {
    pub path: String,
    pub key: HeaderValue,
    pub body: Bytes,
}

/// Where the service listens, as HTTP/1.1 wants it named.
#[derive(Debug, Clone)]
pub(super) struct Target {
    addr: SocketAddr,
    host: HeaderValue,
}

impl Target {
    /// The service at `base` (`http://host:port`).
    pub(super) async fn resolve(base: &str) -> Result<Target> {
        let url = reqwest::Url::parse(base).with_context(|| format!("the service's URL {base}"))?;
        let host = url.host_str().context("the service's URL has no host")?;
        let port = url.port_or_known_default().unwrap_or(80);
        let addr = tokio::net::lookup_host((host, port))
            .await?
            .next()
            .with_context(|| format!("{host} resolves to no address"))?;
        Ok(Target {
            addr,
            host: HeaderValue::from_str(&format!("{host}:{port}"))?,
        })
    }
}

/// Sends `make(i)` for request `i` at `start + i / rate` for `duration`, spread over
/// `connections` kept-alive connections; a request waits for its connection's earlier ones, and
/// the schedule waits once `in_flight` are queued. `done(i, status)` learns each outcome (a
/// status code, or `transport`); returns the count of each.
pub(super) async fn open_loop<F, D>(
    target: &Target,
    rate: f64,
    duration: Duration,
    connections: usize,
    in_flight: usize,
    mut make: F,
    done: D,
) -> BTreeMap<String, u64>
where
    F: FnMut(u64) -> Put,
    D: Fn(u64, &str) + Send + Sync + 'static,
{
    let done = Arc::new(done);
    let per_connection = (in_flight / connections).max(1);
    let (mut queues, mut workers) = (Vec::new(), Vec::new());
    for _ in 0..connections {
        let (tx, rx) = mpsc::channel(per_connection);
        queues.push(tx);
        workers.push(tokio::spawn(worker(target.clone(), rx, Arc::clone(&done))));
    }
    let start = Instant::now();
    let total = (rate * duration.as_secs_f64()).ceil() as u64;
    let mut i = 0;
    while i < total {
        let due = ((start.elapsed().as_secs_f64() * rate) as u64 + 1).min(total);
        while i < due {
            let queue = &queues[i as usize % connections];
            if queue.send((i, make(i))).await.is_err() {
                break; // a worker is gone: counted as it ends
            }
            i += 1;
        }
        tokio::time::sleep(TICK).await;
    }
    drop(queues);
    let mut tally = BTreeMap::new();
    for w in workers {
        for (status, n) in w.await.unwrap_or_default() {
            *tally.entry(status).or_insert(0) += n;
        }
    }
    tally
}

/// One connection's requests, in turn; reconnects when the connection fails.
async fn worker<D>(
    target: Target,
    mut rx: mpsc::Receiver<(u64, Put)>,
    done: Arc<D>,
) -> BTreeMap<String, u64>
where
    D: Fn(u64, &str) + Send + Sync + 'static,
{
    let mut tally = BTreeMap::new();
    let mut connection: Option<SendRequest<Full<Bytes>>> = None;
    while let Some((i, put)) = rx.recv().await {
        let status = match send(&target, &mut connection, &put).await {
            Ok(status) => status.to_string(),
            Err(_) => {
                connection = None;
                "transport".to_owned()
            }
        };
        done(i, &status);
        *tally.entry(status).or_insert(0) += 1;
    }
    tally
}

/// Sends `put` on the connection, opening one first if there is none, or opening a new one and
/// sending again if the kept-alive one was closed before the request went out.
async fn send(
    target: &Target,
    connection: &mut Option<SendRequest<Full<Bytes>>>,
    put: &Put,
) -> Result<u16> {
    for attempt in 0..2 {
        if connection.as_ref().is_none_or(SendRequest::is_closed) {
            *connection = Some(connect(target).await?);
        }
        let sender = connection.as_mut().expect("connected above");
        if sender.ready().await.is_err() {
            *connection = None;
            continue;
        }
        match sender.try_send_request(request(target, put)?).await {
            Ok(response) => {
                let status = response.status().as_u16();
                response.into_body().collect().await?;
                return Ok(status);
            }
            // Not sent (the connection closed meanwhile): once more, on a new one.
            Err(e) if e.message().is_some() && attempt == 0 => *connection = None,
            Err(e) => return Err(e.into_error().into()),
        }
    }
    anyhow::bail!("no connection to {}", target.addr)
}

async fn connect(target: &Target) -> Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(target.addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

fn request(target: &Target, put: &Put) -> Result<Request<Full<Bytes>>> {
    Ok(Request::builder()
        .method(Method::PUT)
        .uri(&put.path)
        .header(HOST, target.host.clone())
        .header(AUTHORIZATION, put.key.clone())
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .body(Full::new(put.body.clone()))?)
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::Mutex;

    use hyper::service::service_fn;
    use hyper::{Response, StatusCode};
    use tokio::net::TcpListener;

    use super::*;

    /// A server answering 200 to even paths and 429 to odd ones, that closes each connection
    /// after `per_connection` requests; returns its address and the requests it served.
    async fn server(per_connection: usize) -> (String, Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let served = Arc::clone(&seen);
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.expect("accept");
                let seen = Arc::clone(&served);
                let left = Arc::new(Mutex::new(per_connection));
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let (seen, left) = (Arc::clone(&seen), Arc::clone(&left));
                        async move {
                            let path = req.uri().path().to_owned();
                            let auth = req.headers()[AUTHORIZATION].to_str().unwrap().to_owned();
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            seen.lock()
                                .unwrap()
                                .push(format!("{path} {auth} {}", body.len()));
                            let n: u64 = path.rsplit('/').next().unwrap().parse().unwrap();
                            let mut left = left.lock().unwrap();
                            *left -= 1;
                            let mut answer = Response::builder().status(if n % 2 == 0 {
                                StatusCode::OK
                            } else {
                                StatusCode::TOO_MANY_REQUESTS
                            });
                            if *left == 0 {
                                answer = answer.header("connection", "close");
                            }
                            Ok::<_, Infallible>(answer.body(Full::new(Bytes::new())).unwrap())
                        }
                    });
                    let io = TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                });
            }
        });
        (base, seen)
    }

    #[tokio::test]
    async fn every_request_is_sent_once_and_answered_across_closed_connections() {
        let (base, seen) = server(3).await;
        let target = Target::resolve(&base).await.expect("target");
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&outcomes);
        let tally = open_loop(
            &target,
            2_000.0,
            Duration::from_millis(100),
            4,
            16,
            |i| Put {
                path: format!("/p/{i}"),
                key: HeaderValue::from_static("Key k"),
                body: Bytes::from_static(b"{}"),
            },
            move |i, status: &str| record.lock().unwrap().push((i, status.to_owned())),
        )
        .await;
        assert_eq!(tally.get("200"), Some(&100));
        assert_eq!(tally.get("429"), Some(&100));
        assert_eq!(tally.len(), 2, "no transport errors: {tally:?}");
        let mut outcomes = outcomes.lock().unwrap().clone();
        outcomes.sort();
        let expected: Vec<(u64, String)> = (0..200)
            .map(|i| (i, if i % 2 == 0 { "200" } else { "429" }.to_owned()))
            .collect();
        assert_eq!(outcomes, expected);
        let mut seen = seen.lock().unwrap().clone();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 200, "each request reached the server once");
        assert!(seen.iter().all(|s| s.ends_with("Key k 2")));
    }

    #[tokio::test]
    async fn an_unreachable_service_counts_as_transport_errors() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        drop(listener);
        let target = Target::resolve(&base).await.expect("target");
        let tally = open_loop(
            &target,
            1_000.0,
            Duration::from_millis(20),
            2,
            4,
            |i| Put {
                path: format!("/p/{i}"),
                key: HeaderValue::from_static("Key k"),
                body: Bytes::new(),
            },
            |_, _: &str| {},
        )
        .await;
        assert_eq!(tally.get("transport"), Some(&20));
    }
}
