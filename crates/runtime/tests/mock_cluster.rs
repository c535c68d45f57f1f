//! Fault injection with librdkafka's mock cluster (in addition to, never instead of, the real
//! broker): brokers going down and coming back, failing commits; and the proof that completed
//! records above the commit watermark are not replayed after a restart, the same test body on
//! the mock cluster and on Apache Kafka.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{key, logs, Fixture, Ledger};
use kafkaesque_runtime::{Consumer, HandlerError, Record};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio::sync::Notify;

const TOPIC: &str = "mocked";

fn produce_range(bootstrap: &str, keys: usize, seqs: std::ops::Range<usize>) {
    produce_to(bootstrap, TOPIC, keys, seqs);
}

fn produce_to(bootstrap: &str, topic: &str, keys: usize, seqs: std::ops::Range<usize>) {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    for seq in seqs {
        for k in 0..keys {
            let (key, value) = (key(k), format!("{}:{seq}", key(k)));
            while p
                .send(BaseRecord::<str, str>::to(topic).key(&key).payload(&value))
                .is_err()
            {
                p.poll(Duration::from_millis(10));
            }
        }
    }
    p.flush(Duration::from_secs(30)).unwrap();
}

fn committed(bootstrap: &str, group: &str, partitions: i32) -> Vec<i64> {
    committed_of(bootstrap, TOPIC, group, partitions)
}

fn committed_of(bootstrap: &str, topic: &str, group: &str, partitions: i32) -> Vec<i64> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = c.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
    got.elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => o,
            _ => -1,
        })
        .collect()
}

fn consumer(bootstrap: &str, group: &str) -> kafkaesque_runtime::ConsumerBuilder {
    consumer_of(bootstrap, TOPIC, group)
}

fn consumer_of(bootstrap: &str, topic: &str, group: &str) -> kafkaesque_runtime::ConsumerBuilder {
    Consumer::builder()
        .brokers(bootstrap)
        .group_id(group)
        .topics([topic])
        .concurrency(100)
        .commit_interval(Duration::from_millis(100))
        .drain_timeout(Duration::from_secs(1))
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "1000")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovers_from_broker_outages_and_commit_errors_without_help() {
    const KEYS: usize = 500;
    const PER_KEY: usize = 20;
    logs();
    let mock = MockCluster::new(3).unwrap();
    mock.create_topic(TOPIC, 4, 3).unwrap();
    let bootstrap = mock.bootstrap_servers();
    // Half now, half once the brokers are back: the consumer must carry on by itself.
    tokio::task::block_in_place(|| produce_range(&bootstrap, KEYS, 0..PER_KEY / 2));
    let ledger = Ledger::default();
    let seen = Arc::new(AtomicUsize::new(0));
    let all = Arc::new(Notify::new());
    let (l, s, done) = (ledger.clone(), seen.clone(), all.clone());
    let handler = move |r: Record| {
        let (l, s, done) = (l.clone(), s.clone(), done.clone());
        async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            s.fetch_add(1, Ordering::SeqCst);
            if l.record(&r) == KEYS * PER_KEY {
                done.notify_one();
            }
            Ok::<(), HandlerError>(())
        }
    };
    let c = consumer(&bootstrap, "mock-faults").build().unwrap();
    let run = tokio::spawn(c.run(handler, async move { all.notified().await }));
    // Let it get going, then take every broker down and bring them back; then fail commits.
    while seen.load(Ordering::SeqCst) < 1_000 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for b in 1..=3 {
        mock.broker_down(b).unwrap();
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    for b in 1..=3 {
        mock.broker_up(b).unwrap();
    }
    tokio::task::block_in_place(|| produce_range(&bootstrap, KEYS, PER_KEY / 2..PER_KEY));
    mock.request_errors(
        RDKafkaApiKey::OffsetCommit,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT; 5],
    );
    tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("recovered and finished in time")
        .unwrap()
        .expect("clean run");
    ledger.check(KEYS, PER_KEY);
    let got = tokio::task::block_in_place(|| committed(&bootstrap, "mock-faults", 4));
    assert_eq!(
        got,
        ledger.ends(4),
        "committed to the end despite the failed commits"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_mock_cluster_completed_records_above_the_watermark_are_not_replayed() {
    logs();
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic(TOPIC, 1, 1).unwrap();
    completed_records_above_the_watermark_are_not_replayed(
        &mock.bootstrap_servers(),
        TOPIC,
        "mock-metadata",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_apache_kafka_completed_records_above_the_watermark_are_not_replayed() {
    logs();
    let f = Fixture::new("metadata", 1).await;
    completed_records_above_the_watermark_are_not_replayed(
        f.broker.bootstrap_servers(),
        f.topic.name(),
        &f.group,
    )
    .await;
}

/// A restart replays only what was not completed: the commit's metadata carries the completed
/// offsets above the watermark, and the broker returns them to the next owner.
async fn completed_records_above_the_watermark_are_not_replayed(
    bootstrap: &str,
    topic: &str,
    group: &str,
) {
    const KEYS: usize = 1_000;
    const PER_KEY: usize = 5;
    tokio::task::block_in_place(|| produce_to(bootstrap, topic, KEYS, 0..PER_KEY));
    // First run: the first record's key never finishes, so the watermark stays at offset 0
    // while everything else completes; then a shutdown whose drain gives up on that key.
    let stuck = key(0);
    let first = Ledger::default();
    let others_done = Arc::new(Notify::new());
    let (l, done, stuck2) = (first.clone(), others_done.clone(), stuck.clone());
    let handler = move |r: Record| {
        let (l, done, stuck) = (l.clone(), done.clone(), stuck2.clone());
        async move {
            if r.key() == Some(stuck.as_bytes()) {
                std::future::pending::<()>().await;
            }
            if l.record(&r) == (KEYS - 1) * PER_KEY {
                done.notify_one();
            }
            Ok::<(), HandlerError>(())
        }
    };
    let c = consumer_of(bootstrap, topic, group).build().unwrap();
    // The shutdown's final commit carries the completed offsets in its metadata.
    let shutdown = async move { others_done.notified().await };
    tokio::time::timeout(Duration::from_secs(60), c.run(handler, shutdown))
        .await
        .unwrap()
        .unwrap();
    let at = tokio::task::block_in_place(|| committed_of(bootstrap, topic, group, 1));
    assert_eq!(at, vec![0], "the stuck first record holds the watermark");
    // Second run: only the stuck key's records run again.
    let second = Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = second.clone();
    let handler = move |r: Record| {
        let s = s.clone();
        async move {
            s.lock()
                .unwrap()
                .push(String::from_utf8_lossy(r.key().unwrap()).into_owned());
            Ok::<(), HandlerError>(())
        }
    };
    let seen = second.clone();
    let shutdown = async move {
        while seen.lock().unwrap().len() < PER_KEY {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await; // anything else would show up by now
    };
    let c = consumer_of(bootstrap, topic, group).build().unwrap();
    tokio::time::timeout(Duration::from_secs(60), c.run(handler, shutdown))
        .await
        .unwrap()
        .unwrap();
    let replayed = second.lock().unwrap().clone();
    assert_eq!(
        replayed,
        vec![stuck; PER_KEY],
        "only the unfinished key was replayed: {} replays of {} completed records",
        replayed.len().saturating_sub(PER_KEY),
        (KEYS - 1) * PER_KEY
    );
}
