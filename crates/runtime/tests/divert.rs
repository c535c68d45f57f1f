//! `HotKeyPolicy::Divert` end to end: a key whose queue is full goes, in order, to
//! `<topic>.overflow` and comes back from it, while the partition's other keys carry on. The
//! same test body runs on Apache Kafka and on librdkafka's mock cluster.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{key, logs, Fixture, Ledger};
use kafkaesque_runtime::{Consumer, HandlerError, HotKeyPolicy, Limits, Record};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio::sync::Notify;

const HOT: usize = 100;
const OTHERS: usize = 100;
const PER_OTHER: usize = 10;

/// One hot key's records, with ten records of each of the other keys spread among them.
fn produce(bootstrap: &str, topic: &str) {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    let send = |key: &str, value: String| {
        while p
            .send(BaseRecord::<str, str>::to(topic).key(key).payload(&value))
            .is_err()
        {
            p.poll(Duration::from_millis(10));
        }
    };
    // The other keys' records are spread over the whole run of hot records: a policy that
    // holds the partition up for the hot key (`Backpressure`) finishes them only near its end.
    let every = HOT / PER_OTHER;
    for seq in 0..HOT {
        send("hot", format!("hot:{seq}"));
        if seq % every == 0 {
            for k in 0..OTHERS {
                send(&key(k), format!("{}:{}", key(k), seq / every));
            }
        }
    }
    p.flush(Duration::from_secs(30)).unwrap();
}

/// Records in the overflow topic: proof that the hot key went through it.
fn overflowed(bootstrap: &str, topic: &str) -> usize {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "diverted-reader")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&format!("{topic}.overflow"), 0, Offset::Beginning)
        .unwrap();
    c.assign(&tpl).unwrap();
    let mut n = 0;
    let mut idle = 0;
    while idle < 30 {
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(_)) => {
                n += 1;
                idle = 0;
            }
            _ => idle += 1,
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_apache_kafka_a_flooded_key_goes_through_the_overflow_in_order_while_the_others_carry_on(
) {
    logs();
    let f = Fixture::new("diverted", 1).await;
    flooded_key_goes_through_the_overflow(f.broker.bootstrap_servers(), f.topic.name(), &f.group)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_mock_cluster_a_flooded_key_goes_through_the_overflow_in_order_while_the_others_carry_on(
) {
    logs();
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("diverted", 1, 1).unwrap();
    flooded_key_goes_through_the_overflow(&mock.bootstrap_servers(), "diverted", "diverting").await;
}

async fn flooded_key_goes_through_the_overflow(bootstrap: &str, topic: &str, group: &str) {
    let bootstrap = bootstrap.to_owned();
    tokio::task::block_in_place(|| produce(&bootstrap, topic));

    let (hot, others) = (Ledger::default(), Ledger::default());
    let hot_done = Arc::new(AtomicUsize::new(0));
    // How many hot records had completed when the last of the other keys' records did.
    let hot_when_others_done = Arc::new(AtomicUsize::new(usize::MAX));
    let all = Arc::new(Notify::new());
    let (h, o, hd, hw, done) = (
        hot.clone(),
        others.clone(),
        hot_done.clone(),
        hot_when_others_done.clone(),
        all.clone(),
    );
    let handler = move |r: Record| {
        let (h, o, hd, hw, done) = (h.clone(), o.clone(), hd.clone(), hw.clone(), done.clone());
        async move {
            if r.key() == Some(b"hot".as_slice()) {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let seen = h.record(&r);
                hd.store(seen, Ordering::SeqCst);
                if seen == HOT && o.distinct() == OTHERS * PER_OTHER {
                    done.notify_one();
                }
            } else if o.record(&r) == OTHERS * PER_OTHER {
                hw.store(hd.load(Ordering::SeqCst), Ordering::SeqCst);
                if hd.load(Ordering::SeqCst) == HOT {
                    done.notify_one();
                }
            }
            Ok::<(), HandlerError>(())
        }
    };
    let consumer = Consumer::builder()
        .brokers(&bootstrap)
        .group_id(group)
        .topics([topic])
        .concurrency(50)
        .limits(Limits {
            key_max_records: 5,
            ..Limits::default()
        })
        .hot_key(HotKeyPolicy::Divert)
        .commit_interval(Duration::from_millis(100))
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "1000")
        .build()
        .unwrap();
    tokio::time::timeout(
        Duration::from_secs(90),
        consumer.run(handler, async move { all.notified().await }),
    )
    .await
    .expect("finished in time")
    .expect("clean run");

    hot.check(1, HOT);
    others.check(OTHERS, PER_OTHER);
    let waited_for = hot_when_others_done.load(Ordering::SeqCst);
    assert!(
        waited_for < HOT / 2,
        "the other keys finished only after {waited_for} of the hot key's {HOT} records"
    );
    let diverted = tokio::task::block_in_place(|| overflowed(&bootstrap, topic));
    assert!(diverted > 0, "nothing went through the overflow topic");
}
