//! The production incident as a test: one app links 5,000 subscriptions to one email address and
//! updates all of them again and again — every update mirrored onto that one parent row — while
//! a second app sends normal traffic into the same partition. The second app's updates keep
//! being applied, each within a generous bound, while the flood is still arriving; and the
//! parent ends in the state of the last mirrored update.
//!
//! In the legacy design the parent's queue filled the consumer's one memory cap and stopped the
//! whole partition for as long as the parent took to drain, one write per update.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, StreamExt};
use kafkaesque_subscribers::message::email_parent_id;
use kafkaesque_subscribers::Roles;
use reqwest::StatusCode;
use serde_json::json;
use support::*;
use uuid::Uuid;

const CHILDREN: usize = 5_000;
const ROUNDS: usize = 2;
const IN_FLIGHT: usize = 16;
/// How long one normal update may take to show: generous, far below the flood's duration in
/// the legacy design (one write per mirrored update).
const NORMAL_BOUND: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_on_one_parent_row_does_not_hold_up_another_app() {
    // One partition: both apps share it, as a big app and its neighbours did.
    let mut rig = Rig::new("incident", 1).await;
    rig.config.key_max_records = 16;
    let service = Running::start(&rig.config, Roles::ALL).await;
    let c = service.client();
    let (flood_app, normal_app) = (c.create_app("flood").await, c.create_app("normal").await);

    let children: Vec<Uuid> = stream::iter(0..CHILDREN)
        .map(|_| {
            let (c, app) = (c.clone(), flood_app.clone());
            async move {
                c.create_player(&app, json!({"app_id": app.id, "device_type": 1}))
                    .await
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let normal = c
        .create_player(
            &normal_app,
            json!({"app_id": normal_app.id, "device_type": 0}),
        )
        .await;

    // Measure the flood, not the creation backlog ahead of it.
    let db = rig.database.connect().await.expect("database");
    eventually("every subscription created", WITHIN * 3, || async {
        let n: i64 = db
            .query_one("SELECT count(*) FROM players", &[])
            .await
            .expect("count")
            .get(0);
        (n == CHILDREN as i64 + 1).then_some(())
    })
    .await;

    let flooding = Arc::new(AtomicBool::new(true));
    let flood = tokio::spawn({
        let (c, app, children, flooding) = (
            c.clone(),
            flood_app.clone(),
            children.clone(),
            flooding.clone(),
        );
        async move {
            let cities = ["Chicago", "NYC", "Tokyo", "Paris", "Lima"];
            for round in 0..=ROUNDS {
                stream::iter(children.iter().enumerate())
                    .for_each_concurrent(IN_FLIGHT, |(i, id)| {
                        let (c, app) = (c.clone(), app.clone());
                        let city = cities[(i + round) % cities.len()];
                        let mut body = json!({"app_id": app.id, "tags": {"city": city}, "lat": i as f64 / 100.0, "long": round as f64});
                        if round == 0 {
                            body["email"] = json!("admin@flood.example.com");
                        }
                        async move { c.update(&app, *id, &body).await }
                    })
                    .await;
            }
            flooding.store(false, Ordering::Relaxed);
        }
    });

    // Normal traffic, one update after another, each waited for, for as long as the flood runs.
    let applied = AtomicUsize::new(0);
    let mut n = 0;
    while flooding.load(Ordering::Relaxed) || n < 5 {
        n += 1;
        let body = json!({"app_id": normal_app.id, "tags": {"n": n.to_string()}});
        c.update(&normal_app, normal, &body).await;
        let want = n.to_string();
        eventually(
            &format!("normal update {n} applied during the flood"),
            NORMAL_BOUND,
            || async {
                let (s, v) = c.player(&normal_app, normal).await;
                (s == StatusCode::OK && v["tags"]["n"] == want.as_str()).then_some(())
            },
        )
        .await;
        applied.fetch_add(1, Ordering::Relaxed);
    }
    flood.await.expect("flood sent");
    assert!(applied.load(Ordering::Relaxed) >= 5);

    // The last mirrored update, sent once everything else was acknowledged.
    let last = json!({"app_id": flood_app.id, "tags": {"city": "Reykjavik"}, "lat": 64.1, "long": -21.9, "language": "is"});
    c.update(&flood_app, children[0], &last).await;
    let parent = email_parent_id(flood_app.id, "admin@flood.example.com");
    let p = eventually(
        "the parent in the state of the last mirrored update",
        WITHIN * 3,
        || async {
            let (s, v) = c.player(&flood_app, parent).await;
            (s == StatusCode::OK && v["language"] == "is").then_some(v)
        },
    )
    .await;
    assert_eq!(p["tags"], json!({"city": "Reykjavik"}), "{p}");
    assert_eq!(
        (p["lat"].clone(), p["long"].clone()),
        (json!(64.1), json!(-21.9)),
        "{p}"
    );
    let linked: i64 = db
        .query_one(
            "SELECT count(*) FROM links WHERE parent_id = $1",
            &[&parent],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(linked, CHILDREN as i64, "every child linked");
    // The flood was coalesced: far fewer writes of the parent than updates mirrored onto it.
    let (_, metrics) = c.must(reqwest::Method::GET, "/metrics", None, None).await;
    let coalesced = metrics
        .as_str()
        .unwrap()
        .lines()
        .find(|l| l.starts_with("kafkaesque_coalesced_total"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(coalesced > 0.0, "the parent's queue coalesced");
    service.stop().await;
}
