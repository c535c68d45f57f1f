//! What operators and the data model rely on, against the real broker and database: links and
//! the link limit, dead letters for unknown subscriptions, the skip list across processes, and
//! the busiest apps and rows.

mod support;

use std::time::{Duration, Instant};

use kafkaesque_runtime::headers;
use kafkaesque_subscribers::message::email_parent_id;
use kafkaesque_subscribers::Roles;
use kafkaesque_testkit::unique_name;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
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
    let c: BaseConsumer = rig
        .broker
        .group_config(&unique_name("dlq-reader"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&rig.dead_letter_topic(), 0, Offset::Beginning)
        .unwrap();
    c.assign(&tpl).expect("assign");
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
