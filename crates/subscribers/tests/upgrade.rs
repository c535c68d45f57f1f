//! Upgrades never lose data: a message of a format newer than the consumer's is held on its
//! row — not applied, not dead-lettered, the committed offset never past it — while other rows
//! keep applying; and the topics the service creates carry the configured retention.

mod support;

use std::time::Duration;

use kafkaesque_subscribers::message::FORMAT_VERSION;
use kafkaesque_subscribers::Roles;
use kafkaesque_testkit::unique_name;
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use reqwest::{Method, StatusCode};
use serde_json::json;
use support::*;
use uuid::Uuid;

/// The sum of a counter's series in `/metrics`.
async fn counter(c: &Client, name: &str) -> f64 {
    let (_, text) = c.must(Method::GET, "/metrics", None, None).await;
    text.as_str()
        .unwrap_or_default()
        .lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The consumer group's committed offset of the topic's partition 0, if it has one.
fn committed(rig: &Rig) -> Option<i64> {
    let c: BaseConsumer = rig
        .broker
        .group_config(&rig.config.group_id)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(rig.topic.name(), 0);
    let got = c
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    match got.elements()[0].offset() {
        Offset::Offset(o) => Some(o),
        _ => None,
    }
}

/// Every dead letter's payload, up to the dead-letter topic's end.
fn all_dead_letters(rig: &Rig) -> Vec<String> {
    let c = rig.dead_letter_reader();
    let (_, high) = c
        .fetch_watermarks(&rig.dead_letter_topic(), 0, Duration::from_secs(10))
        .expect("watermarks");
    let mut payloads = Vec::new();
    let mut next = 0;
    while next < high {
        let Some(Ok(m)) = c.poll(Duration::from_millis(200)) else {
            continue;
        };
        next = m.offset() + 1;
        payloads.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
    }
    payloads
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_of_a_newer_format_holds_its_row_alone_and_is_never_applied_nor_dead_lettered() {
    let rig = Rig::new("upgrade", 1).await;
    let service = Running::start(&rig.config, Roles::ALL).await;
    let c = service.client();
    let app = c.create_app("upgrade").await;
    let new = json!({"app_id": app.id, "device_type": 1, "language": "en"});
    let (held, other) = (
        c.create_player(&app, new.clone()).await,
        c.create_player(&app, new).await,
    );
    for id in [held, other] {
        eventually("the player created", WITHIN, || async {
            (c.player(&app, id).await.0 == StatusCode::OK).then_some(())
        })
        .await;
    }

    // An API one version ahead wrote this: a field this consumer has never heard of.
    let marker = format!("newer-{}", Uuid::new_v4());
    let newer = json!({
        "version": FORMAT_VERSION + 1, "op": "update", "player_id": held, "app_id": app.id,
        "language": "xx", "loyalty": {"tier": marker},
    });
    let held_at = rig.written();
    rig.produce(app.id.to_string().as_bytes(), newer.to_string().as_bytes())
        .await;
    let behind = json!({"app_id": app.id, "tags": {"behind": "1"}});
    c.update(&app, held, &behind).await;
    let elsewhere = json!({"app_id": app.id, "tags": {"elsewhere": "1"}});
    c.update(&app, other, &elsewhere).await;

    // Another row, written after both, applies.
    eventually("the other row's update applied", WITHIN, || async {
        let (_, v) = c.player(&app, other).await;
        (v["tags"]["elsewhere"] == "1").then_some(())
    })
    .await;
    // The held record is tried again and again, and everything before it is committed.
    let held_total = "subscribers_newer_format_held_total";
    eventually("the newer message retried", WITHIN, || async {
        (counter(&c, held_total).await >= 3.0).then_some(())
    })
    .await;
    let rig_ref = &rig;
    eventually("the offsets before it committed", WITHIN, || async move {
        let at = tokio::task::block_in_place(|| committed(rig_ref));
        (at == Some(held_at)).then_some(())
    })
    .await;
    let before = counter(&c, held_total).await;
    eventually("the newer message retried once more", WITHIN, || async {
        (counter(&c, held_total).await > before).then_some(())
    })
    .await;

    let (_, v) = c.player(&app, held).await;
    assert_eq!(v["language"], "en", "the newer message is not applied");
    assert!(
        v["tags"].get("behind").is_none(),
        "the update behind it on its row waits: {v}"
    );
    let committed_now = tokio::task::block_in_place(|| committed(&rig));
    assert_eq!(committed_now, Some(held_at), "the commit never passes it");
    let dead = tokio::task::block_in_place(|| all_dead_letters(&rig));
    assert!(
        dead.iter().all(|p| !p.contains(&marker)),
        "never dead-lettered: {dead:?}"
    );
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_topics_the_service_creates_carry_the_configured_retention() {
    let mut rig = Rig::new("retention", 1).await;
    // A topic of its own that does not exist yet: the service creates it, and its dead letters.
    let topic = unique_name("retention-created");
    rig.config.topic = topic.clone();
    rig.config.topic_retention = Duration::from_secs(2 * 24 * 60 * 60);
    let service = Running::start(&rig.config, Roles::ALL).await;
    let admin: AdminClient<DefaultClientContext> =
        rig.broker.client_config().create().expect("admin client");
    let dead_letters = format!("{topic}.dlq");
    for name in [topic.as_str(), dead_letters.as_str()] {
        let retention = eventually("the topic's retention", WITHIN, || async {
            let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(5)));
            let described = admin
                .describe_configs([&ResourceSpecifier::Topic(name)], &opts)
                .await
                .ok()?;
            described
                .into_iter()
                .flatten()
                .flat_map(|r| r.entries)
                .find(|e| e.name == "retention.ms" && !e.is_default)
                .and_then(|e| e.value)
        })
        .await;
        assert_eq!(retention, "172800000", "retention.ms of {name}");
    }
    service.stop().await;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let _ = admin
        .delete_topics(&[topic.as_str(), dead_letters.as_str()], &opts)
        .await;
}
