//! The HTTP edge under a hostile client, over raw TCP as an attacker would speak it, against the
//! service on the real broker and database: what a slow, idle or greedy client can hold, and
//! for how long.
//!
//! - A client trickling its headers (slowloris), or idling on a keep-alive connection, loses the
//!   connection after the header-read timeout.
//! - A client sending its body slowly is answered 408 in JSON after the request timeout.
//! - Requests over the cap in flight are answered 503 with `Retry-After` at once, in JSON, while
//!   the probes still answer; once the greedy requests are gone, requests go through again.
//! - Connections over the cap are not served until one closes.

mod support;

use std::time::{Duration, Instant};

use kafkaesque_subscribers::config::HttpLimits;
use kafkaesque_subscribers::{Config, Roles};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Everything the server sends on `stream` until it closes it, and how long that took; `None`
/// if it is still open after `limit`.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<(String, Duration)> {
    let start = Instant::now();
    let mut got = Vec::new();
    let read = tokio::time::timeout(limit, stream.read_to_end(&mut got)).await;
    match read {
        Ok(_) => Some((String::from_utf8_lossy(&got).into_owned(), start.elapsed())),
        Err(_) => None,
    }
}

/// The status and JSON body of the first response in `text`.
fn response(text: &str) -> (u16, Value) {
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP response in {text:?}"));
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

async fn connect(addr: std::net::SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.expect("connect")
}

/// A PUT whose headers promise a body of 1,000 bytes, of which 10 are sent.
async fn slow_body(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = connect(addr).await;
    let head = format!(
        "PUT /api/v1/players/{} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: 1000\r\n\r\n{{\"app_id\":",
        uuid::Uuid::new_v4()
    );
    s.write_all(head.as_bytes()).await.expect("write");
    s
}

fn config(rig: &Rig, http: HttpLimits) -> Config {
    Config {
        http,
        ..rig.config.clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_trickling_its_headers_or_idling_loses_its_connection() {
    let rig = Rig::new("slowloris", 1).await;
    let timeout = Duration::from_millis(700);
    let http = HttpLimits {
        header_read_timeout: timeout,
        ..HttpLimits::default()
    };
    let service = Running::start(&config(&rig, http), Roles::API).await;

    // Headers a byte at a time, never finished.
    let mut trickle = connect(service.addr).await;
    let started = Instant::now();
    for b in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " {
        if trickle.write_all(&[*b]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
        if started.elapsed() > 3 * timeout {
            break;
        }
    }
    let (_, after) = read_until_closed(&mut trickle, Duration::from_secs(5))
        .await
        .expect("the trickling connection is closed");
    assert!(
        started.elapsed() >= timeout && started.elapsed() < timeout + Duration::from_secs(3),
        "closed {:?} after its first byte (timeout {timeout:?}, {after:?} after the last)",
        started.elapsed()
    );

    // A served request, then silence on the kept-alive connection.
    let mut idle = connect(service.addr).await;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (text, waited) = read_until_closed(&mut idle, Duration::from_secs(5))
        .await
        .expect("the idle connection is closed");
    assert_eq!(response(&text).0, 200, "{text}");
    assert!(
        waited >= timeout - Duration::from_millis(100),
        "kept {waited:?}"
    );
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_body_is_answered_408_in_json_after_the_request_timeout() {
    let rig = Rig::new("slow-body", 1).await;
    let timeout = Duration::from_millis(1500);
    let http = HttpLimits {
        request_timeout: timeout,
        ..HttpLimits::default()
    };
    let config = Config {
        write_timeout: Duration::from_millis(1000),
        ..config(&rig, http)
    };
    let service = Running::start(&config, Roles::API).await;
    let mut slow = slow_body(service.addr).await;
    let started = Instant::now();
    let mut got = vec![0; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), slow.read(&mut got))
        .await
        .expect("answered in time")
        .expect("read");
    let text = String::from_utf8_lossy(&got[..n]).into_owned();
    let (status, body) = response(&text);
    assert_eq!(status, 408, "{text}");
    assert!(
        body["errors"][0]
            .as_str()
            .is_some_and(|e| e.contains("request_timeout_ms")),
        "{body}"
    );
    assert!(started.elapsed() >= timeout, "{:?}", started.elapsed());
    let c = service.client();
    let (_, metrics) = c.must(Method::GET, "/metrics", None, None).await;
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("subscribers_http_requests_timed_out_total 1"),
        "{metrics}"
    );
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_the_cap_are_shed_with_503_while_the_probes_answer() {
    let rig = Rig::new("shed", 1).await;
    let http = HttpLimits {
        max_requests_in_flight: 2,
        ..HttpLimits::default()
    };
    let service = Running::start(&config(&rig, http), Roles::API).await;
    let c = service.client();
    let app = c.create_app("shed").await;
    let greedy = [slow_body(service.addr).await, slow_body(service.addr).await];
    // Both slow requests hold their slots once their headers are read.
    let (status, retry, body) = eventually("a request shed", WITHIN, || async {
        let resp = reqwest::Client::new()
            .put(format!(
                "http://{}/api/v1/players/{}",
                service.addr,
                uuid::Uuid::new_v4()
            ))
            .header("Authorization", app.auth())
            .json(&serde_json::json!({"app_id": app.id}))
            .send()
            .await
            .ok()?;
        let status = resp.status();
        let retry = resp
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        (status == StatusCode::SERVICE_UNAVAILABLE).then_some((
            status,
            retry,
            resp.json::<Value>().await.ok()?,
        ))
    })
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(retry.as_deref(), Some("1"));
    assert!(
        body["errors"][0]
            .as_str()
            .is_some_and(|e| e.contains("too many requests in flight")),
        "{body}"
    );
    for probe in ["/healthz", "/metrics"] {
        let (s, _) = c.must(Method::GET, probe, None, None).await;
        assert_eq!(s, StatusCode::OK, "{probe} answers during the flood");
    }
    let (_, metrics) = c.must(Method::GET, "/metrics", None, None).await;
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("subscribers_http_requests_shed_total"),
        "{metrics}"
    );
    drop(greedy);
    eventually("requests served again", WITHIN, || async {
        let (s, _) = c
            .call(Method::GET, "/api/v1/players/x", Some(&app.auth()), None)
            .await
            .ok()?;
        (s == StatusCode::BAD_REQUEST).then_some(())
    })
    .await;
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_wait_until_one_closes() {
    let rig = Rig::new("conn-cap", 1).await;
    let http = HttpLimits {
        max_connections: 2,
        ..HttpLimits::default()
    };
    let service = Running::start(&config(&rig, http), Roles::API).await;
    // The start-up probe's client is gone: wait until the server has closed its connection.
    eventually(
        "the start-up probe's connection to close",
        Duration::from_secs(10),
        || async {
            let metrics = kafkaesque_subscribers::telemetry::prometheus().render();
            let open = metrics
                .lines()
                .find_map(|l| l.strip_prefix("subscribers_http_connections "))?;
            (open.trim().parse::<f64>().ok()? == 0.0).then_some(())
        },
    )
    .await;
    let healthz = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = connect(service.addr).await;
        s.write_all(healthz).await.unwrap();
        let mut buf = vec![0; 1024];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("served within the cap")
            .unwrap();
        assert_eq!(response(&String::from_utf8_lossy(&buf[..n])).0, 200);
        held.push(s);
    }
    let mut third = connect(service.addr).await;
    third.write_all(healthz).await.unwrap();
    let mut buf = vec![0; 1024];
    let early = tokio::time::timeout(Duration::from_millis(800), third.read(&mut buf)).await;
    assert!(early.is_err(), "a third connection was served over the cap");
    drop(held.pop());
    let n = tokio::time::timeout(Duration::from_secs(5), third.read(&mut buf))
        .await
        .expect("served once a connection closed")
        .unwrap();
    assert_eq!(response(&String::from_utf8_lossy(&buf[..n])).0, 200);
    drop((held, third));
    service.stop().await;
}
