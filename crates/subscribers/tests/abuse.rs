//! Abuse, tried as an attacker would, against the real broker and database: a flood of bad keys,
//! a key that was rotated or revoked, an app over its rate, and writes while Kafka is away.
//!
//! - Bad keys are refused from memory: with the `apps` table renamed away, a key never seen
//!   before gets a 5xx (its lookup reached PostgreSQL and failed), while the flood of bad keys
//!   already seen keeps getting 401 — none of them reached the database.
//! - A rotated or revoked key stops working at once where it was changed and within the key
//!   cache's TTL in another process.
//! - An app over its rate gets 429 with `Retry-After`, writes nothing, and leaves the other apps'
//!   buckets alone; each app's accepted and refused requests are in `/metrics`.
//! - With Kafka unreachable a write is answered 503 with `Retry-After` within the default bound.

mod support;

use std::time::{Duration, Instant};

use kafkaesque_subscribers::config::RateLimit;
use kafkaesque_subscribers::Roles;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::*;
use uuid::Uuid;

/// A request with `auth`, as status, `Retry-After` and JSON body.
async fn send(
    base: &str,
    method: Method,
    path: &str,
    auth: &str,
    body: Option<&Value>,
) -> (StatusCode, Option<String>, Value) {
    let mut req = reqwest::Client::new()
        .request(method, format!("{base}{path}"))
        .header("Authorization", auth);
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, retry, resp.json().await.unwrap_or(Value::Null))
}

fn random_key() -> String {
    format!("Key {}", Uuid::new_v4().simple())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_bad_keys_is_refused_from_memory_and_never_reaches_postgres() {
    let rig = Rig::new("bad-keys", 1).await;
    let service = Running::start(&rig.config, Roles::API).await;
    let (c, base) = (service.client(), format!("http://{}", service.addr));
    let app = c.create_app("victim").await;
    let id = c
        .create_player(&app, json!({"app_id": app.id, "device_type": 1}))
        .await;
    let bad: Vec<String> = (0..50).map(|_| random_key()).collect();
    let update = |app_id: Uuid| json!({"app_id": app_id, "tags": {"k": "v"}});
    let path = format!("/api/v1/players/{id}");
    for key in &bad {
        let (s, _, v) = send(&base, Method::PUT, &path, key, Some(&update(app.id))).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    }

    // From now on any key lookup that reaches PostgreSQL fails.
    let db = rig.database.connect().await.expect("database");
    db.batch_execute("ALTER TABLE apps RENAME TO apps_away")
        .await
        .unwrap();
    let (s, _, v) = send(
        &base,
        Method::PUT,
        &path,
        &random_key(),
        Some(&update(app.id)),
    )
    .await;
    assert!(
        s.is_server_error(),
        "the control: a new key's lookup reaches the database and fails: {s} {v}"
    );

    let flood = (0..20).flat_map(|_| bad.iter()).map(|key| {
        let (base, path, body) = (base.clone(), path.clone(), update(app.id));
        async move { send(&base, Method::PUT, &path, key, Some(&body)).await }
    });
    let answers = futures::future::join_all(flood).await;
    assert_eq!(answers.len(), 1000);
    for (s, _, v) in &answers {
        assert_eq!(*s, StatusCode::UNAUTHORIZED, "refused from memory: {v}");
        assert_eq!(v["errors"][0], "Authorization: unknown api key", "{v}");
    }
    // The real key, known from before, goes on working without the table.
    c.update(&app, id, &update(app.id)).await;

    db.batch_execute("ALTER TABLE apps_away RENAME TO apps")
        .await
        .unwrap();
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_or_revoked_key_stops_working_here_at_once_and_elsewhere_within_the_ttl() {
    let mut rig = Rig::new("rotate", 1).await;
    let ttl = Duration::from_secs(1);
    rig.config.key_cache_ttl = ttl;
    let here = Running::start(&rig.config, Roles::ALL).await;
    let elsewhere = Running::start(&rig.config, Roles::API).await;
    let (c, other) = (here.client(), elsewhere.client());
    let admin = format!("Bearer {ADMIN_TOKEN}");
    let app = c.create_app("rotating").await;
    let id = c
        .create_player(&app, json!({"app_id": app.id, "device_type": 1}))
        .await;
    let body = json!({"app_id": app.id, "language": "en"});
    // Both processes know the key.
    c.update(&app, id, &body).await;
    other.update(&app, id, &body).await;

    let key_path = format!("/api/v1/apps/{}/key", app.id);
    let (s, v) = c.must(Method::POST, &key_path, Some(&admin), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let rotated_at = Instant::now();
    assert_eq!(v["id"], json!(app.id));
    let new = App {
        id: app.id,
        key: v["api_key"].as_str().unwrap().to_owned(),
    };
    assert_ne!(new.key, app.key);

    let path = format!("/api/v1/players/{id}");
    let refused = |client: &Client, who: &App| {
        let (client, auth, path, body) = (client.clone(), who.auth(), path.clone(), body.clone());
        async move {
            let (s, _) = client
                .must(Method::PUT, &path, Some(&auth), Some(&body))
                .await;
            s == StatusCode::UNAUTHORIZED
        }
    };
    assert!(refused(&c, &app).await, "the old key, where it was rotated");
    c.update(&new, id, &body).await;
    eventually(
        "the old key refused in the other process",
        ttl * 3,
        || async { refused(&other, &app).await.then_some(()) },
    )
    .await;
    let within = rotated_at.elapsed();
    assert!(within <= ttl + Duration::from_millis(1500), "{within:?}");
    other.update(&new, id, &body).await;

    let (s, v) = c.must(Method::DELETE, &key_path, Some(&admin), None).await;
    assert_eq!((s, &v["revoked"]), (StatusCode::OK, &json!(true)), "{v}");
    assert!(
        refused(&c, &new).await,
        "the revoked key, where it was revoked"
    );
    eventually("the revoked key refused elsewhere", ttl * 3, || async {
        refused(&other, &new).await.then_some(())
    })
    .await;

    let unknown = format!("/api/v1/apps/{}/key", Uuid::new_v4());
    for method in [Method::POST, Method::DELETE] {
        let (s, v) = c.must(method.clone(), &unknown, Some(&admin), None).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{method} {v}");
        let (s, v) = c
            .must(method.clone(), "/api/v1/apps/nope/key", Some(&admin), None)
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{method} {v}");
    }
    elsewhere.stop().await;
    here.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_over_its_rate_gets_429_with_retry_after_and_the_others_are_untouched() {
    let mut rig = Rig::new("rate", 1).await;
    // The apps first, so that the limited service can name one of them in its overrides.
    let setup = Running::start(&rig.config, Roles::API).await;
    let c = setup.client();
    let (flooder, quiet, big) = (
        c.create_app("flooder").await,
        c.create_app("quiet").await,
        c.create_app("big").await,
    );
    setup.stop().await;
    rig.config.rate_limit = RateLimit {
        per_second: 1,
        burst: 10,
    };
    rig.config.rate_limits = [(
        big.id,
        RateLimit {
            per_second: 1000,
            burst: 1000,
        },
    )]
    .into();
    let service = Running::start(&rig.config, Roles::API).await;
    let (c, base) = (service.client(), format!("http://{}", service.addr));
    let read = |app: &App| format!("/api/v1/players/{}?app_id={}", Uuid::new_v4(), app.id);

    let mut answers = Vec::new();
    for _ in 0..30 {
        answers.push(send(&base, Method::GET, &read(&flooder), &flooder.auth(), None).await);
    }
    let passed = answers
        .iter()
        .filter(|a| a.0 == StatusCode::NOT_FOUND)
        .count();
    let limited: Vec<_> = answers
        .iter()
        .filter(|a| a.0 == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    assert_eq!(passed + limited.len(), 30, "{answers:?}");
    assert!(
        (10..=12).contains(&passed),
        "the burst and a refill: {passed}"
    );
    for (_, retry, v) in &limited {
        let seconds: u64 = retry.as_deref().expect("Retry-After").parse().unwrap();
        assert!((1..=2).contains(&seconds), "{seconds}");
        let error = v["errors"][0].as_str().unwrap();
        assert!(
            error.starts_with("rate limit:") && error.contains("1 requests per second"),
            "{error}"
        );
    }
    // A refused write writes nothing.
    let written = rig.written();
    let id = Uuid::new_v4();
    let body = json!({"app_id": flooder.id, "tags": {"k": "v"}});
    let (s, retry, _) = send(
        &base,
        Method::PUT,
        &format!("/api/v1/players/{id}"),
        &flooder.auth(),
        Some(&body),
    )
    .await;
    assert_eq!((s, retry.is_some()), (StatusCode::TOO_MANY_REQUESTS, true));
    assert_eq!(rig.written(), written, "records in the topic");

    // The others: the quiet app has its whole burst, the big one its own limit.
    for _ in 0..10 {
        let (s, _, v) = send(&base, Method::GET, &read(&quiet), &quiet.auth(), None).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    }
    for _ in 0..200 {
        let (s, _, v) = send(&base, Method::GET, &read(&big), &big.auth(), None).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    }

    let (_, metrics) = c.must(Method::GET, "/metrics", None, None).await;
    let metrics = metrics.as_str().unwrap().to_owned();
    let count = |name: &str, app: &App| -> u64 {
        let label = format!("{name}{{app_id=\"{}\"}} ", app.id);
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&label))
            .map_or(0, |v| v.trim().parse().unwrap())
    };
    let refused = "subscribers_app_requests_refused_total";
    let accepted = "subscribers_app_requests_accepted_total";
    assert_eq!(
        count(refused, &flooder),
        limited.len() as u64 + 1,
        "{metrics}"
    );
    assert_eq!(count(accepted, &flooder), passed as u64);
    assert_eq!((count(accepted, &quiet), count(refused, &quiet)), (10, 0));
    assert_eq!((count(accepted, &big), count(refused, &big)), (200, 0));
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_kafka_unreachable_a_write_is_answered_503_with_retry_after_within_the_bound() {
    let mut rig = Rig::new("no-kafka-write", 1).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    rig.config.kafka_brokers = format!("127.0.0.1:{port}");
    let bound = rig.config.write_timeout;
    assert_eq!(
        bound,
        Duration::from_secs(5),
        "the default is what is proved"
    );
    let service = Running::start(&rig.config, Roles::API).await;
    let (c, base) = (service.client(), format!("http://{}", service.addr));
    let app = c.create_app("offline").await;
    let writes = [
        (
            Method::POST,
            "/api/v1/players".to_owned(),
            json!({"app_id": app.id, "device_type": 1}),
        ),
        (
            Method::PUT,
            format!("/api/v1/players/{}", Uuid::new_v4()),
            json!({"app_id": app.id, "language": "en"}),
        ),
    ];
    for (method, path, body) in &writes {
        let started = Instant::now();
        let (s, retry, v) = send(&base, method.clone(), path, &app.auth(), Some(body)).await;
        let took = started.elapsed();
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{method} {path}: {v}");
        assert!(
            took <= bound + Duration::from_secs(2),
            "{method} {path}: {took:?}"
        );
        assert!(retry.is_some_and(|r| r.parse::<u64>().unwrap() >= 1));
        let error = v["errors"][0].as_str().unwrap();
        assert!(error.starts_with("kafka:"), "{error}");
        assert!(!error.contains(&port.to_string()), "names no host: {error}");
    }
    service.stop().await;
}
