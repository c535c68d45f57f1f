//! Tombstones are forgotten once the topic can no longer hold a record they guard against, and
//! never while it can: the bound is read from the topic's own configuration on the broker.

mod support;

use std::time::Duration;

use kafkaesque_subscribers::store::Store;
use kafkaesque_subscribers::{db, migrations, tombstones};
use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use support::*;
use uuid::Uuid;

/// Sets the topic's `retention.ms` and `segment.ms` on the broker.
async fn configure(rig: &Rig, retention_ms: &str, segment_ms: &str) {
    let admin: AdminClient<DefaultClientContext> =
        rig.broker.client_config().create().expect("admin client");
    let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    let change = AlterConfig::new(ResourceSpecifier::Topic(rig.topic.name()))
        .set("retention.ms", retention_ms)
        .set("segment.ms", segment_ms);
    for result in admin.alter_configs([&change], &opts).await.expect("alter") {
        result.expect("the topic's configuration changed");
    }
}

/// The rig's database, migrated, with a tombstone of each of the given ages (minutes); returns
/// their ids in the same order.
async fn tombstones_aged(rig: &Rig, minutes: &[i32]) -> (tokio_postgres::Client, Vec<Uuid>) {
    let (config, tls) = (&rig.config.database, &rig.config.database_tls);
    db::ensure_database(config, tls).await.expect("database");
    let mut client = db::connect(config, tls).await.expect("connect");
    migrations::migrate(&mut client, "test")
        .await
        .expect("migrate");
    let mut ids = Vec::new();
    for m in minutes {
        let id = Uuid::new_v4();
        client
            .execute(
                "INSERT INTO deleted_players (id, app_id, source_offset, deleted_at) \
                 VALUES ($1, $2, 1, now() - make_interval(mins => $3))",
                &[&id, &Uuid::new_v4(), m],
            )
            .await
            .expect("tombstone");
        ids.push(id);
    }
    (client, ids)
}

async fn left(client: &tokio_postgres::Client, ids: &[Uuid]) -> Vec<Uuid> {
    let rows = client
        .query("SELECT id FROM deleted_players WHERE id = ANY($1)", &[&ids])
        .await
        .expect("tombstones");
    ids.iter()
        .copied()
        .filter(|id| rows.iter().any(|r| r.get::<_, Uuid>(0) == *id))
        .collect()
}

fn store(rig: &Rig) -> Store {
    let pooled = rig.config.pooled_database();
    Store::new(&pooled, &rig.config.database_tls, 2).expect("pool")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tombstones_older_than_the_topics_retention_segment_and_margin_are_pruned_and_no_others() {
    let rig = Rig::new("tombstones", 1).await;
    // A record can stay up to an hour and ten minutes; the margin adds an hour.
    configure(&rig, "3600000", "600000").await;
    assert_eq!(tombstones::MARGIN, Duration::from_secs(3600));
    let (client, ids) = tombstones_aged(&rig, &[0, 60, 125, 135, 24 * 60]).await;
    let pruned = tombstones::prune_once(&rig.config, &store(&rig))
        .await
        .expect("pruned");
    assert_eq!(pruned, Some(2));
    assert_eq!(left(&client, &ids).await, ids[..3].to_vec());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_that_keeps_its_records_for_good_keeps_every_tombstone() {
    let rig = Rig::new("tombstones-kept", 1).await;
    configure(&rig, "-1", "600000").await;
    let (client, ids) = tombstones_aged(&rig, &[0, 365 * 24 * 60]).await;
    let pruned = tombstones::prune_once(&rig.config, &store(&rig))
        .await
        .expect("asked");
    assert_eq!(pruned, None);
    assert_eq!(left(&client, &ids).await, ids);
}
