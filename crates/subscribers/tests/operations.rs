//! What operators and the data model rely on, against the real broker and database: links and
//! the link limit, dead letters for unknown subscriptions, the skip list across processes, and
//! the busiest apps and rows.

mod support;

use std::time::{Duration, Instant};

use kafkaesque_runtime::headers;
use kafkaesque_subscribers::message::email_parent_id;
use kafkaesque_subscribers::Roles;
use rdkafka::message::{Headers, Message};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::*;
use uuid::Uuid;

/// The value of a counter in Prometheus text (0 when absent).
async fn counter(c: &Client, line_start: &str) -> f64 {
    let (_, text) = c.must(Method::GET, "/metrics", None, None).await;
    text.as_str()
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

/// Polls GET until `check` accepts the subscription's state.
async fn state_where(
    c: &Client,
    app: &App,
    id: Uuid,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    eventually(what, WITHIN, || async {
        let (s, v) = c.player(app, id).await;
        (s == StatusCode::OK && check(&v)).then_some(v)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_mirror_updates_and_the_link_limit_refuses_beyond_it() {
    let mut rig = Rig::new("links", 1).await;
    rig.config.link_limit = 2;
    let service = Running::start(&rig.config, Roles::ALL).await;
    let c = service.client();
    let app = c.create_app("links").await;
    let mut kids = Vec::new();
    for _ in 0..3 {
        kids.push(
            c.create_player(&app, json!({"app_id": app.id, "device_type": 0}))
                .await,
        );
    }
    let parent = email_parent_id(app.id, "boss@example.com");
    for (i, kid) in kids.iter().enumerate() {
        let body = json!({"app_id": app.id, "email": if i == 0 { "Boss@Example.com" } else { "boss@example.com" }, "tags": {"by": format!("kid{i}")}});
        c.update(&app, *kid, &body).await;
    }
    c.update(
        &app,
        kids[2],
        &json!({"app_id": app.id, "tags": {"late": "yes"}}),
    )
    .await;

    let refused = state_where(&c, &app, kids[2], "the refused child's own update", |v| {
        v["tags"]["late"] == "yes"
    })
    .await;
    assert_eq!(
        refused["parent_player_id"],
        Value::Null,
        "over the limit: not linked"
    );
    assert_eq!(
        refused["tags"]["by"], "kid2",
        "the rest of the update applied"
    );
    let linked = state_where(&c, &app, kids[1], "the second link", |v| {
        v["parent_player_id"] == json!(parent)
    })
    .await;
    assert_eq!(linked["tags"]["by"], "kid1");
    let first = c.player(&app, kids[0]).await.1;
    assert_eq!(first["parent_player_id"], json!(parent));
    let p = state_where(&c, &app, parent, "the email subscription", |_| true).await;
    assert_eq!(
        (p["device_type"].clone(), p["identifier"].clone()),
        (json!(11), json!("boss@example.com"))
    );
    assert_eq!(
        p["tags"],
        json!({"by": "kid1"}),
        "mirrored from linked children only"
    );
    eventually("the refusal counted", WITHIN, || async {
        (counter(&c, "subscribers_links_refused_total").await >= 1.0).then_some(())
    })
    .await;

    // The first child moves to another address: the parent has room again.
    c.update(
        &app,
        kids[0],
        &json!({"app_id": app.id, "email": "other@example.com"}),
    )
    .await;
    c.update(
        &app,
        kids[2],
        &json!({"app_id": app.id, "email": "boss@example.com", "language": "fr"}),
    )
    .await;
    state_where(
        &c,
        &app,
        kids[2],
        "the child linked once there is room",
        |v| v["parent_player_id"] == json!(parent),
    )
    .await;
    let moved = c.player(&app, kids[0]).await.1;
    assert_eq!(
        moved["parent_player_id"],
        json!(email_parent_id(app.id, "other@example.com"))
    );
    let p = c.player(&app, parent).await.1;
    assert_eq!(p["language"], "fr");
    service.stop().await;
}

/// Waits for the dead-letter record of the update of `id` and returns its reason header.
fn dead_letter_reason(rig: &Rig, id: Uuid) -> String {
    let c = rig.dead_letter_reader();
    let deadline = Instant::now() + WITHIN;
    while Instant::now() < deadline {
        let Some(Ok(m)) = c.poll(Duration::from_millis(200)) else {
            continue;
        };
        let payload = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
        if payload.contains(&id.to_string()) {
            let hs = m.headers().expect("headers");
            let reason = hs
                .iter()
                .find(|h| h.key == headers::REASON)
                .expect("reason header");
            return String::from_utf8_lossy(reason.value.unwrap()).into_owned();
        }
    }
    panic!("no dead letter for {id} in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_of_unknown_subscriptions_are_dead_lettered_and_counted() {
    let rig = Rig::new("unknown", 1).await;
    let service = Running::start(&rig.config, Roles::ALL).await;
    let c = service.client();
    let app = c.create_app("unknown").await;
    let (ghost, linking_ghost) = (Uuid::new_v4(), Uuid::new_v4());
    c.update(&app, ghost, &json!({"app_id": app.id, "language": "en"}))
        .await;
    c.update(
        &app,
        linking_ghost,
        &json!({"app_id": app.id, "email": "ghost@example.com"}),
    )
    .await;
    assert_eq!(
        tokio::task::block_in_place(|| dead_letter_reason(&rig, ghost)),
        "unknown_player"
    );
    assert_eq!(
        tokio::task::block_in_place(|| dead_letter_reason(&rig, linking_ghost)),
        "unknown_player"
    );
    eventually("both counted", WITHIN, || async {
        (counter(&c, "subscribers_unknown_player_total").await >= 2.0).then_some(())
    })
    .await;
    // A real subscription linking afterwards proves the parent's queue went past the ghost.
    let real = c
        .create_player(&app, json!({"app_id": app.id, "device_type": 1}))
        .await;
    c.update(
        &app,
        real,
        &json!({"app_id": app.id, "email": "ghost@example.com"}),
    )
    .await;
    let parent = email_parent_id(app.id, "ghost@example.com");
    state_where(&c, &app, real, "the real child linked", |v| {
        v["parent_player_id"] == json!(parent)
    })
    .await;
    let p = c.player(&app, parent).await.1;
    assert_eq!(p["device_type"], 11, "{p}");
    service.stop().await;
}

/// Whether `process` obeys a skip of `target` (`{"player_id": ..}` or `{"app_id": ..}`).
async fn in_effect(process: &Client, target: &Value) -> bool {
    let admin = format!("Bearer {ADMIN_TOKEN}");
    let (_, v) = process
        .must(Method::GET, "/admin/skip", Some(&admin), None)
        .await;
    v["in_effect_here"].as_array().unwrap().iter().any(|t| {
        let (kind, id) = t.as_object().unwrap().iter().next().unwrap();
        target[format!("{kind}_id")] == *id
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skip_set_through_one_process_stops_writes_in_another_and_top_shows_the_busiest() {
    let rig = Rig::new("skip", 1).await;
    let api = Running::start(&rig.config, Roles::API).await;
    let consumer = Running::start(&rig.config, Roles::CONSUMER).await;
    let (c, k) = (api.client(), consumer.client());
    let admin = format!("Bearer {ADMIN_TOKEN}");
    let app = c.create_app("skip").await;
    let x = c
        .create_player(&app, json!({"app_id": app.id, "device_type": 1}))
        .await;
    let y = c
        .create_player(&app, json!({"app_id": app.id, "device_type": 1}))
        .await;
    state_where(&c, &app, y, "created", |_| true).await;

    let skip_x = json!({"player_id": x});
    let both = json!({"player_id": x, "app_id": app.id});
    let refused = c
        .must(Method::PUT, "/admin/skip", None, Some(&skip_x))
        .await;
    assert_eq!(refused.0, StatusCode::UNAUTHORIZED, "{}", refused.1);
    let refused = c
        .must(Method::PUT, "/admin/skip", Some(&admin), Some(&both))
        .await;
    assert_eq!(refused.0, StatusCode::BAD_REQUEST, "{}", refused.1);
    let (s, v) = c
        .must(Method::PUT, "/admin/skip", Some(&admin), Some(&skip_x))
        .await;
    assert_eq!((s, v), (StatusCode::OK, json!({"skipping": {"player": x}})));
    eventually("the consumer process obeys the skip", WITHIN, || async {
        in_effect(&k, &skip_x).await.then_some(())
    })
    .await;
    for n in 1..=3 {
        c.update(
            &app,
            x,
            &json!({"app_id": app.id, "tags": {"n": n.to_string()}}),
        )
        .await;
    }
    c.update(&app, y, &json!({"app_id": app.id, "tags": {"n": "1"}}))
        .await;
    let skipped = "subscribers_skipped_records_total{target=\"player\"}";
    eventually("three records skipped", WITHIN, || async {
        (counter(&k, skipped).await >= 3.0).then_some(())
    })
    .await;
    state_where(&c, &app, y, "y written", |v| v["tags"]["n"] == "1").await;
    assert_eq!(
        c.player(&app, x).await.1["tags"],
        json!({}),
        "nothing written for x"
    );

    // Busiest apps and rows, as the consumer process saw them.
    // The consumer refreshes its partition figures every second.
    let top = eventually("partition figures", WITHIN, || async {
        let (s, top) = k
            .must(Method::GET, "/admin/top?n=5", Some(&admin), None)
            .await;
        assert_eq!(s, StatusCode::OK, "{top}");
        (!top["partitions"].as_array().unwrap().is_empty()).then_some(top)
    })
    .await;
    assert_eq!(
        top["apps"][0],
        json!({"app_id": app.id, "updates": 6}),
        "{top}"
    );
    assert_eq!(
        top["rows"][0],
        json!({"player_id": x, "updates": 4}),
        "{top}"
    );
    assert_eq!(top["partitions"].as_array().unwrap().len(), 1, "{top}");
    assert!(
        top["partitions"][0]["queued"].is_u64()
            && top["partitions"][0]["longest_in_flight_ms"].is_u64(),
        "{top}"
    );
    let (s, _) = c.must(Method::GET, "/admin/top", Some(&admin), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "the API process runs no consumer");

    let (s, _) = c
        .must(Method::DELETE, "/admin/skip", Some(&admin), Some(&skip_x))
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = c
        .must(Method::DELETE, "/admin/skip", Some(&admin), Some(&skip_x))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    eventually("the consumer process resumes", WITHIN, || async {
        (!in_effect(&k, &skip_x).await).then_some(())
    })
    .await;
    c.update(&app, x, &json!({"app_id": app.id, "tags": {"n": "4"}}))
        .await;
    state_where(&c, &app, x, "x written again", |v| v["tags"]["n"] == "4").await;

    // A whole app.
    let skip_app = json!({"app_id": app.id});
    c.must(Method::PUT, "/admin/skip", Some(&admin), Some(&skip_app))
        .await;
    eventually("the app skipped", WITHIN, || async {
        in_effect(&k, &skip_app).await.then_some(())
    })
    .await;
    // The API refuses the app's writes (once its copy of the list has the skip), and the
    // consumer skips a record that reaches the topic anyway (sent before, or by another path).
    let path = format!("/api/v1/players/{y}");
    let body = json!({"app_id": app.id, "tags": {"n": "2"}});
    let refused = eventually("the API refuses the skipped app", WITHIN, || async {
        let (s, v) = c
            .must(Method::PUT, &path, Some(&app.auth()), Some(&body))
            .await;
        (s == StatusCode::FORBIDDEN).then_some(v)
    })
    .await;
    assert!(
        refused["errors"][0].as_str().unwrap().contains("skip list"),
        "{refused}"
    );
    let create = json!({"app_id": app.id, "device_type": 1});
    let (s, _) = c
        .must(
            Method::POST,
            "/api/v1/players",
            Some(&app.auth()),
            Some(&create),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "a create is refused too");
    let record = json!({"op": "update", "player_id": y, "app_id": app.id, "tags": {"n": "2"}});
    rig.produce(app.id.to_string().as_bytes(), record.to_string().as_bytes())
        .await;
    eventually("the app's record skipped", WITHIN, || async {
        (counter(&k, "subscribers_skipped_records_total{target=\"app\"}").await >= 1.0)
            .then_some(())
    })
    .await;
    assert_eq!(c.player(&app, y).await.1["tags"]["n"], "1");
    consumer.stop().await;
    api.stop().await;
}
