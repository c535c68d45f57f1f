//! The service on the three-broker cluster (`scripts/broker start --nodes 3`): the topics it
//! creates are replicated as configured, and acknowledged updates survive the loss of the
//! broker leading their partition.

mod support;

use std::time::Duration;

use kafkaesque_subscribers::{Config, Roles};
use kafkaesque_testkit::{require_cluster, unique_name};
use reqwest::StatusCode;
use serde_json::json;
use support::*;

/// The replication of `topic` once it exists.
async fn replication(rig: &Rig, topic: &str) -> (i32, i32) {
    eventually(&format!("topic {topic} created"), WITHIN, || async {
        rig.broker.replication_of(topic).await.expect("broker")
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_topic_the_service_creates_takes_its_replication_from_configuration() {
    let rig = Rig::on(require_cluster().await, "replicated", 2).await;
    let cases = [
        (None, None, (3, 2)),
        (Some(2), Some(2), (2, 2)),
        (Some(3), Some(3), (3, 3)),
    ];
    for (factor, min_insync, expected) in cases {
        let config = Config {
            topic: unique_name("replicated"),
            replication_factor: factor,
            min_insync_replicas: min_insync,
            single_node_broker: false,
            ..rig.config.clone()
        };
        let service = Running::start(&config, Roles::ALL).await;
        let dead_letters = format!("{}.dlq", config.topic);
        assert_eq!(
            replication(&rig, &config.topic).await,
            expected,
            "{factor:?}/{min_insync:?}"
        );
        assert_eq!(
            replication(&rig, &dead_letters).await,
            expected,
            "dead letters"
        );
        service.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_acknowledged_while_a_broker_is_killed_are_all_applied() {
    let rig = Rig::on(require_cluster().await, "failover", 1).await;
    let config = Config {
        single_node_broker: false,
        ..rig.config.clone()
    };
    let service = Running::start(&config, Roles::ALL).await;
    let c = service.client();
    let app = c.create_app("failover").await;
    let id = c
        .create_player(&app, json!({"app_id": app.id, "device_type": 1}))
        .await;
    let leader = rig
        .broker
        .leader_of(rig.topic.name(), 0)
        .await
        .expect("broker");
    let leader = leader.expect("the partition has a leader");
    let mut acknowledged = Vec::new();
    for n in 1..=60 {
        if n == 20 {
            scripts_broker(&["kill", "--nodes", "3", "--node", &leader.to_string()]);
        }
        let body = json!({"app_id": app.id, "tags": {format!("t{n}"): "1", "seq": n.to_string()}});
        let path = format!("/api/v1/players/{id}");
        let (s, _) = c
            .must(reqwest::Method::PUT, &path, Some(&app.auth()), Some(&body))
            .await;
        if s == StatusCode::OK {
            acknowledged.push(n);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    scripts_broker(&["start", "--nodes", "3"]);
    assert!(
        acknowledged.len() >= 40,
        "the API went on acknowledging: {acknowledged:?}"
    );
    let last = *acknowledged.last().unwrap();
    let tags = eventually("the last acknowledged update applied", WITHIN, || async {
        let (s, v) = c.player(&app, id).await;
        let seq: usize = v["tags"]["seq"].as_str()?.parse().ok()?;
        (s == StatusCode::OK && seq >= last).then(|| v["tags"].clone())
    })
    .await;
    service.stop().await;
    let lost: Vec<_> = acknowledged
        .iter()
        .filter(|n| tags.get(format!("t{n}")).is_none())
        .collect();
    assert!(lost.is_empty(), "acknowledged but not applied: {lost:?}");
}

/// Runs `scripts/broker` with `args`.
fn scripts_broker(args: &[&str]) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/broker");
    let status = std::process::Command::new(script)
        .args(args)
        .status()
        .expect("scripts/broker");
    assert!(status.success(), "scripts/broker {args:?}");
}
