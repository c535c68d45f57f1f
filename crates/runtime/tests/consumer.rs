//! The runtime against the real broker: everything processed, in key order, committed to the end.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use kafkaesque_runtime::{Consumer, HandlerError, Limits, Record};
use kafkaesque_testkit::{require_broker, unique_name};
use rand::Rng;
use tokio::sync::Notify;

const KEYS: usize = 10_000;
const PER_KEY: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_every_record_in_key_order_and_commits_to_the_end() {
    let broker = require_broker().await;
    let topic = broker.create_topic("runtime-e2e", 8).await.expect("topic");
    tokio::task::block_in_place(|| produce(&broker, &topic, KEYS, PER_KEY));
    let group = unique_name("runtime-e2e");
    let mut builder = Consumer::builder()
        .brokers(broker.bootstrap_servers())
        .group_id(&group)
        .topics([topic.name()])
        .concurrency(500);
    for (k, v) in SESSION {
        builder = builder.set(k, v);
    }
    let consumer = builder.build().expect("valid config");
    let ledger = Ledger::default();
    let all_seen = Arc::new(Notify::new());
    let (l, done) = (ledger.clone(), all_seen.clone());
    let handler = move |r: Record| {
        let (l, done) = (l.clone(), done.clone());
        async move {
            let ms = rand::thread_rng().gen_range(0..=5);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            if l.record(&r) == KEYS * PER_KEY {
                done.notify_one();
            }
            Ok::<(), HandlerError>(())
        }
    };
    let run = consumer.run(handler, async move { all_seen.notified().await });
    tokio::time::timeout(Duration::from_secs(240), run)
        .await
        .expect("consumed everything in time")
        .expect("consumer ran cleanly");
    let duplicates = ledger.check(KEYS, PER_KEY);
    assert_eq!(duplicates, 0, "no rebalance or crash, so no duplicates");
    let committed = tokio::task::block_in_place(|| common::committed(&broker, &group, &topic));
    assert_eq!(
        committed,
        ledger.ends(topic.partitions()),
        "committed to the end of every partition"
    );
}

/// A partition cap far below what is fetched: the engine refuses a record, the partition is
/// held (its queue left alone, the refused record kept), and resumed, hundreds of times. Nothing
/// may be lost, doubled or reordered across those hand-overs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_held_at_its_cap_over_and_over_loses_and_reorders_nothing() {
    const KEYS: usize = 300;
    const PER_KEY: usize = 10;
    let broker = require_broker().await;
    let topic = broker.create_topic("runtime-held", 2).await.expect("topic");
    tokio::task::block_in_place(|| produce(&broker, &topic, KEYS, PER_KEY));
    let group = unique_name("runtime-held");
    let mut builder = Consumer::builder()
        .brokers(broker.bootstrap_servers())
        .group_id(&group)
        .topics([topic.name()])
        .concurrency(64)
        .limits(Limits {
            partition_max_records: 16,
            ..Limits::default()
        });
    for (k, v) in SESSION {
        builder = builder.set(k, v);
    }
    let consumer = builder.build().expect("valid config");
    let observer = consumer.observer();
    let ledger = Ledger::default();
    let all_seen = Arc::new(Notify::new());
    let (l, done) = (ledger.clone(), all_seen.clone());
    let handler = move |r: Record| {
        let (l, done) = (l.clone(), done.clone());
        async move {
            let ms = rand::thread_rng().gen_range(0..=2);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            if l.record(&r) == KEYS * PER_KEY {
                done.notify_one();
            }
            Ok::<(), HandlerError>(())
        }
    };
    // Long enough for a last refresh of the snapshot (every second) after the final record.
    let stop = async move {
        all_seen.notified().await;
        tokio::time::sleep(Duration::from_millis(1_500)).await;
    };
    tokio::time::timeout(Duration::from_secs(180), consumer.run(handler, stop))
        .await
        .expect("consumed everything in time")
        .expect("consumer ran cleanly");
    assert_eq!(ledger.check(KEYS, PER_KEY), 0, "no duplicates");
    let pauses = observer.snapshot().counters.pauses;
    assert!(pauses >= 50, "the cap was reached often ({pauses} pauses)");
    let committed = tokio::task::block_in_place(|| common::committed(&broker, &group, &topic));
    assert_eq!(
        committed,
        ledger.ends(topic.partitions()),
        "committed to the end"
    );
}
