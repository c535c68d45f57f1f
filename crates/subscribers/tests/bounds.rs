//! Stored data has bounds, tried as an attacker would against the real broker and database.
//!
//! - Tags: a request setting more tags (or more bytes of them) than a subscription may hold is
//!   refused at the API naming `tags`; updates each within the limit whose merge would exceed it
//!   are acknowledged (the API cannot know the row) and dead-lettered as `tag_limit`, and the row
//!   keeps its tags.
//! - A program limit of PostgreSQL (SQLSTATE class 54) is dead-lettered as `program_limit`, not
//!   retried forever, and the consumer keeps going.
//! - A stranger's updates naming subscriptions that do not exist, or another app's, leave the
//!   router's link cache as it was, and the owner's links still route.

mod support;

use kafkaesque_subscribers::config::TagLimit;
use kafkaesque_subscribers::{Config, Roles};
use rand::distributions::{Alphanumeric, DistString};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::*;
use uuid::Uuid;

/// The sum of every series of `name` in Prometheus text.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn metrics(c: &Client) -> String {
    let (_, text) = c.must(Method::GET, "/metrics", None, None).await;
    text.as_str().unwrap_or_default().to_owned()
}

fn tags(n: usize) -> Value {
    (0..n)
        .map(|i| (format!("k{i}"), json!("v")))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_over_the_limit_are_refused_at_the_edge_and_dead_lettered_when_they_merge() {
    let rig = Rig::new("tag-limit", 1).await;
    let config = Config {
        tag_limit: TagLimit {
            max_tags: 4,
            max_bytes: 200,
        },
        ..rig.config.clone()
    };
    let service = Running::start(&config, Roles::ALL).await;
    let c = service.client();
    let app = c.create_app("tags").await;
    let auth = app.auth();
    let id = c
        .create_player(
            &app,
            json!({"app_id": app.id, "device_type": 1, "tags": {"a": "1"}}),
        )
        .await;
    let path = format!("/api/v1/players/{id}");

    let long = "x".repeat(120);
    let refused = [
        (
            Method::PUT,
            path.as_str(),
            json!({"app_id": app.id, "tags": tags(5)}),
            "tags: sets 5 tags, at most 4 per subscription",
        ),
        (
            Method::PUT,
            path.as_str(),
            json!({"app_id": app.id, "tags": {"a": long, "b": long}}),
            "tags: sets 242 bytes of tag keys and values, at most 200 per subscription",
        ),
        (
            Method::POST,
            "/api/v1/players",
            json!({"app_id": app.id, "device_type": 1, "tags": tags(5)}),
            "tags: sets 5 tags, at most 4 per subscription",
        ),
    ];
    let written = rig.written();
    for (method, path, body, error) in refused {
        let (s, v) = c.must(method, path, Some(&auth), Some(&body)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        assert_eq!(v["errors"], json!([error]), "{v}");
    }
    assert_eq!(rig.written(), written, "a refused request wrote nothing");

    // Each within the limit; the second's merge would leave five tags.
    c.update(
        &app,
        id,
        &json!({"app_id": app.id, "tags": {"b": "2", "c": "3"}}),
    )
    .await;
    let marker = Uuid::new_v4().to_string();
    c.update(
        &app,
        id,
        &json!({"app_id": app.id, "tags": {"d": "4", "e": marker}, "language": "de"}),
    )
    .await;
    // Deleting makes room: this one applies.
    c.update(
        &app,
        id,
        &json!({"app_id": app.id, "tags": {"a": null, "d": "4"}, "language": "fr"}),
    )
    .await;
    let reasons = tokio::task::block_in_place(|| dead_letters(&rig, std::slice::from_ref(&marker)));
    assert_eq!(reasons[&marker], "tag_limit");
    let (_, row) = eventually(
        "the update after the refused one applied",
        WITHIN,
        || async {
            let (s, v) = c.player(&app, id).await;
            (s == StatusCode::OK && v["language"] == "fr").then_some((s, v))
        },
    )
    .await;
    assert_eq!(row["tags"], json!({"b": "2", "c": "3", "d": "4"}));
    let text = metrics(&c).await;
    assert_eq!(
        metric(&text, "subscribers_tag_limit_refused_total"),
        1.0,
        "{text}"
    );
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_limit_of_postgresql_is_dead_lettered_not_retried_and_the_consumer_goes_on() {
    let rig = Rig::new("program-limit", 1).await;
    let service = Running::start(&rig.config, Roles::ALL).await;
    let c = service.client();
    let app = c.create_app("limit").await;
    let id = c
        .create_player(&app, json!({"app_id": app.id, "device_type": 1}))
        .await;
    // An operator indexes external ids; PostgreSQL refuses an index entry over about 2.7 kB with
    // SQLSTATE 54000 (program limit exceeded), every time the same value is written.
    let db = rig.database.connect().await.expect("connection");
    db.batch_execute("CREATE INDEX players_by_external_id ON players (external_user_id)")
        .await
        .expect("index");
    // Incompressible and far longer than the API allows: a producer that bypasses it.
    let huge = Alphanumeric.sample_string(&mut rand::thread_rng(), 9000);
    let body = json!({"op": "update", "player_id": id, "app_id": app.id, "external_user_id": huge});
    rig.produce(app.id.to_string().as_bytes(), body.to_string().as_bytes())
        .await;
    c.update(
        &app,
        id,
        &json!({"app_id": app.id, "tags": {"after": "limit"}}),
    )
    .await;
    let marker = huge[..40].to_owned();
    let reasons = tokio::task::block_in_place(|| dead_letters(&rig, std::slice::from_ref(&marker)));
    assert_eq!(reasons[&marker], "program_limit");
    eventually("the update behind it applied", WITHIN, || async {
        let (s, v) = c.player(&app, id).await;
        (s == StatusCode::OK && v["tags"]["after"] == "limit").then_some(())
    })
    .await;
    let text = metrics(&c).await;
    assert_eq!(metric(&text, "subscribers_program_limit_total"), 1.0);
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_naming_subscriptions_that_do_not_exist_leave_the_link_cache_as_it_was() {
    let rig = Rig::new("link-cache", 1).await;
    let service = Running::start(&rig.config, Roles::ALL).await;
    let c = service.client();
    let (owner, stranger) = (c.create_app("owner").await, c.create_app("stranger").await);
    let (child, parent) = c
        .linked_child(&owner, "owner@example.com", json!({"v": "0"}))
        .await;
    let cached = metric(&metrics(&c).await, "subscribers_link_cache_entries");
    assert_eq!(cached, 1.0, "the owner's link");

    // The stranger's flood, each with an email: random ids, and the owner's child.
    let (random, foreign) = (200, 50);
    for i in 0..random {
        let body = json!({"app_id": stranger.id, "email": format!("s{i}@example.com")});
        c.update(&stranger, Uuid::new_v4(), &body).await;
    }
    for i in 0..foreign {
        let body = json!({"app_id": stranger.id, "email": format!("f{i}@example.com")});
        c.update(&stranger, child, &body).await;
    }
    let text = eventually("every stranger's update dead-lettered", WITHIN, || async {
        let text = metrics(&c).await;
        let done = metric(&text, "subscribers_unknown_player_total") >= f64::from(random)
            && metric(&text, "subscribers_foreign_player_total") >= f64::from(foreign);
        done.then_some(text)
    })
    .await;
    assert_eq!(
        metric(&text, "subscribers_link_cache_entries"),
        cached,
        "the link cache grew: {text}"
    );

    // The owner's link still routes: its child's tags reach the parent.
    c.update(
        &owner,
        child,
        &json!({"app_id": owner.id, "tags": {"v": "1"}}),
    )
    .await;
    eventually(
        "the child's update mirrored onto its parent",
        WITHIN,
        || async {
            let (s, v) = c.player(&owner, parent).await;
            (s == StatusCode::OK && v["tags"]["v"] == "1").then_some(())
        },
    )
    .await;
    service.stop().await;
}
