//! The runtime against the real broker: everything processed, in key order, committed to the end.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use kafkaesque_runtime::{Consumer, HandlerError, Record};
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
