//! Shared by the runtime's end-to-end tests: a topic and group of the test's own ([`Fixture`]),
//! producing keyed, numbered records, reading a group's committed offsets, and a ledger of what
//! the handlers saw that checks per-key order.
#![allow(dead_code, unreachable_pub)]

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafkaesque_runtime::{Consumer, ConsumerBuilder, Record};
use kafkaesque_testkit::{require_broker, unique_name, Broker, TestTopic};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

/// Group settings of the tests: a killed member's partitions move within seconds.
pub const SESSION: [(&str, &str); 2] = [
    ("session.timeout.ms", "6000"),
    ("heartbeat.interval.ms", "1000"),
];

/// The broker, and a topic and a consumer group of this test alone.
pub struct Fixture {
    pub broker: Broker,
    pub topic: TestTopic,
    pub group: String,
}

impl Fixture {
    /// A topic of `partitions` partitions and a group, both named after `name` and unique.
    pub async fn new(name: &str, partitions: i32) -> Fixture {
        let broker = require_broker().await;
        let topic = broker.create_topic(name, partitions).await.expect("topic");
        Fixture {
            broker,
            topic,
            group: unique_name(name),
        }
    }

    /// Produces `per_key` records for each of `keys` keys into the topic (see [`produce`]).
    pub fn produce(&self, keys: usize, per_key: usize) {
        tokio::task::block_in_place(|| produce(&self.broker, &self.topic, keys, per_key));
    }

    /// A consumer of the topic in the fixture's group, with the tests' [`SESSION`] settings.
    pub fn builder(&self) -> ConsumerBuilder {
        self.builder_in(&self.group)
    }

    /// A consumer of the topic in another group, with the tests' [`SESSION`] settings.
    pub fn builder_in(&self, group: &str) -> ConsumerBuilder {
        let mut b = Consumer::builder()
            .brokers(self.broker.bootstrap_servers())
            .group_id(group)
            .topics([self.topic.name()]);
        for (k, v) in SESSION {
            b = b.set(k, v);
        }
        b
    }

    /// Each partition's committed offset in the fixture's group; -1 where none is.
    pub fn committed(&self) -> Vec<i64> {
        tokio::task::block_in_place(|| committed(&self.broker, &self.group, &self.topic))
    }
}

pub fn key(k: usize) -> String {
    format!("key-{k:05}")
}

/// Produces `per_key` records for each of `keys` keys, interleaved (seq 0 of every key, then
/// seq 1...), each carrying `"<key>:<seq>"`.
///
/// Idempotent, so that each partition holds the records in the order they were sent: without
/// it a retried request (a slow broker on a loaded machine) lands after the ones sent behind it,
/// and the topic itself holds a key's seq 1 before its seq 0.
pub fn produce(broker: &Broker, topic: &TestTopic, keys: usize, per_key: usize) {
    produce_seqs(broker, topic, keys, 0..per_key);
}

/// Produces records `seqs` of each of `keys` keys, as [`produce`] does.
pub fn produce_seqs(broker: &Broker, topic: &TestTopic, keys: usize, seqs: std::ops::Range<usize>) {
    let producer: BaseProducer = broker
        .client_config()
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer");
    for seq in seqs {
        for k in 0..keys {
            let key = key(k);
            let value = format!("{key}:{seq}");
            loop {
                match producer.send(
                    BaseRecord::<str, str>::to(topic.name())
                        .key(&key)
                        .payload(&value),
                ) {
                    Ok(()) => break,
                    Err((_, _)) => {
                        producer.poll(Duration::from_millis(10));
                    }
                }
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer
        .flush(Duration::from_secs(60))
        .expect("all records delivered");
}

/// Each partition's high watermark: records produced from now on land at or above it.
pub fn high_watermarks(broker: &Broker, topic: &TestTopic) -> Vec<i64> {
    let c: BaseConsumer = broker.client_config().create().expect("consumer");
    (0..topic.partitions())
        .map(|p| {
            c.fetch_watermarks(topic.name(), p, Duration::from_secs(10))
                .expect("watermarks")
                .1
        })
        .collect()
}

/// Each partition's committed offset in `group`; -1 where none is.
pub fn committed(broker: &Broker, group: &str, topic: &TestTopic) -> Vec<i64> {
    commits(broker, group, topic)
        .iter()
        .map(|c| c.offset)
        .collect()
}

/// A partition's commit: its offset (-1 where none is) and the completed ranges above it that
/// its metadata names.
pub struct Commit {
    pub offset: i64,
    pub completed: Vec<(i64, i64)>,
}

impl Commit {
    /// Whether a restart from this commit skips `offset`.
    pub fn covers(&self, offset: i64) -> bool {
        offset < self.offset
            || self
                .completed
                .iter()
                .any(|&(s, e)| (s..e).contains(&offset))
    }
}

/// Each partition's commit in `group`, its metadata decoded with the engine's codec.
pub fn commits(broker: &Broker, group: &str, topic: &TestTopic) -> Vec<Commit> {
    let c: BaseConsumer = broker.group_config(group).create().expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..topic.partitions() {
        tpl.add_partition(topic.name(), p);
    }
    let got = c
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    (0..topic.partitions())
        .map(|p| {
            let e = got.find_partition(topic.name(), p).expect("partition");
            let Offset::Offset(offset) = e.offset() else {
                return Commit {
                    offset: -1,
                    completed: Vec::new(),
                };
            };
            let completed = kafkaesque_engine::codec::decode(e.metadata(), offset)
                .map(|d| d.completed)
                .unwrap_or_default();
            Commit { offset, completed }
        })
        .collect()
}

/// What the handlers saw, per key: the sequence numbers in the order they were applied; and
/// the highest offset seen per partition.
#[derive(Debug, Default, Clone)]
pub struct Ledger {
    inner: Arc<Mutex<Seen>>,
}

/// Sequence numbers per key, highest offset per partition, and the distinct `(key, seq)`
/// pairs seen: a count of applications would reach the total early when a rebalance or an
/// outage replays records, and a test waiting for it would stop before the last ones arrive.
type Seen = (
    HashMap<String, Vec<usize>>,
    HashMap<i32, i64>,
    HashSet<(String, usize)>,
);

impl Ledger {
    /// Records a `"<key>:<seq>"` record; returns how many distinct records have been seen.
    pub fn record(&self, r: &Record) -> usize {
        let text = std::str::from_utf8(r.payload().unwrap_or_default()).expect("utf-8 payload");
        let (key, seq) = text.rsplit_once(':').expect("key:seq");
        let mut g = self.inner.lock().unwrap();
        let seq: usize = seq.parse().expect("seq");
        g.0.entry(key.to_owned()).or_default().push(seq);
        let top = g.1.entry(r.partition()).or_insert(-1);
        *top = (*top).max(r.offset());
        g.2.insert((key.to_owned(), seq));
        g.2.len()
    }

    /// How many distinct records have been seen.
    pub fn distinct(&self) -> usize {
        self.inner.lock().unwrap().2.len()
    }

    /// One past the highest offset seen in each partition: where commits must end.
    pub fn ends(&self, partitions: i32) -> Vec<i64> {
        let g = self.inner.lock().unwrap();
        (0..partitions)
            .map(|p| g.1.get(&p).map_or(0, |o| o + 1))
            .collect()
    }

    /// Every key saw every seq, and the first time each seq was applied, it came after all
    /// smaller ones. Returns the number of duplicates (applications after the first).
    pub fn check(&self, keys: usize, per_key: usize) -> usize {
        check_sequences(&self.inner.lock().unwrap().0, keys, per_key)
    }
}

/// The sequence numbers each key saw, in the order they were applied: every key has all of
/// them, and the first application of each came after all smaller ones. Returns the
/// duplicates (applications after the first).
pub fn check_sequences(by_key: &HashMap<String, Vec<usize>>, keys: usize, per_key: usize) -> usize {
    assert_eq!(by_key.len(), keys, "keys seen");
    let mut duplicates = 0;
    for (key, seqs) in by_key {
        let mut next = 0;
        for &s in seqs {
            if s == next {
                next += 1;
            } else {
                assert!(s < next, "{key}: seq {s} applied before {next}: {seqs:?}");
                duplicates += 1;
            }
        }
        assert_eq!(next, per_key, "{key}: missing records: {seqs:?}");
    }
    duplicates
}

/// The first record of a dead-letter topic, read by a group of its own.
pub fn first_dead_letter(broker: &Broker, dlq: &str) -> OwnedMessage {
    let c: BaseConsumer = broker
        .group_config(&unique_name("dlq-reader"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    c.subscribe(&[dlq]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "no dead-letter record in {dlq}");
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            return m.detach();
        }
    }
}

/// In a child process a multi-process test started: a consumer of `CHILD_TOPIC` in
/// `CHILD_GROUP` at `CHILD_BROKERS`, for the child to configure further, and the runtime to run
/// it on. `None` in any other process, where the child's test has nothing to do.
pub fn child() -> Option<(ConsumerBuilder, tokio::runtime::Runtime)> {
    let brokers = std::env::var("CHILD_BROKERS").ok()?;
    let builder = Consumer::builder()
        .brokers(brokers)
        .group_id(std::env::var("CHILD_GROUP").expect("CHILD_GROUP"))
        .topics([std::env::var("CHILD_TOPIC").expect("CHILD_TOPIC")]);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    Some((builder, runtime))
}

/// Awaits a consumer's `run`; the test fails unless it ends cleanly within `within`.
pub async fn ends_cleanly<E: std::fmt::Debug>(
    run: impl std::future::Future<Output = Result<(), E>>,
    within: Duration,
) {
    tokio::time::timeout(within, run)
        .await
        .expect("in time")
        .expect("clean run");
}

/// A header of a record, as text; the test fails if it is missing.
pub fn header(m: &OwnedMessage, name: &str) -> String {
    m.headers()
        .and_then(|hs| hs.iter().find(|h| h.key == name))
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_else(|| panic!("header {name} missing"))
}

/// Logs to the test's output when `RUST_LOG` is set.
pub fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}
