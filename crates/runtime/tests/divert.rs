//! `HotKeyPolicy::Divert` end to end: a key whose queue is full goes, in order, to
//! `<topic>.overflow` and comes back from it, while the partition's other keys carry on, and a
//! record that can never be applied goes to `<topic>.dlq`. The same test body runs on Apache
//! Kafka, on librdkafka's mock cluster and over SASL_SSL on the secure broker, where every client
//! — the producer, the consumer, the dead-letter and overflow sinks, the readers — logs in.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{ends_cleanly, key, logs, Fixture, Ledger};
use kafkaesque_runtime::{Consumer, HandlerError, HotKeyPolicy, Limits, Record};
use kafkaesque_testkit::{require_secure_broker, unique_name, Broker};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::Notify;

const HOT: usize = 100;
const OTHERS: usize = 100;
const PER_OTHER: usize = 10;
/// The key of the one record the handler refuses for good.
const POISON: &str = "poison";

/// A record that can never be applied, then one hot key's records with ten records of each of
/// the other keys spread among them.
fn produce(broker: &Broker, topic: &str) {
    let p: BaseProducer = broker
        .client_config()
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
    send(POISON, POISON.to_owned());
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

/// The payloads of every partition of `topic`, from the beginning until nothing more comes for
/// three seconds. (On the mock cluster the dead-letter and overflow topics end up with four
/// partitions, the source topic's one notwithstanding.)
fn read_all(broker: &Broker, topic: &str) -> Vec<String> {
    let c: BaseConsumer = broker
        .client_config()
        .set("group.id", unique_name("diverted-reader"))
        .create()
        .unwrap();
    let metadata = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in metadata.topics()[0].partitions() {
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut got = Vec::new();
    let mut idle = 0;
    while idle < 30 {
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                got.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
                idle = 0;
            }
            _ => idle += 1,
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_apache_kafka_a_flooded_key_goes_through_the_overflow_in_order_while_the_others_carry_on(
) {
    logs();
    let f = Fixture::new("diverted", 1).await;
    flooded_key_goes_through_the_overflow(&f.broker, f.topic.name(), &f.group).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_mock_cluster_a_flooded_key_goes_through_the_overflow_in_order_while_the_others_carry_on(
) {
    logs();
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("diverted", 1, 1).unwrap();
    let broker = Broker::connect(&mock.bootstrap_servers())
        .await
        .expect("the mock cluster answers");
    flooded_key_goes_through_the_overflow(&broker, "diverted", "diverting").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_sasl_ssl_a_flooded_key_goes_through_the_overflow_in_order_while_the_others_carry_on()
{
    logs();
    let secure = require_secure_broker().await;
    let user = secure.create_user("rt-secure").await.expect("a SCRAM user");
    let broker = secure.connect_as(&user).await.expect("logged in");
    let topic = broker.create_topic("rt-secure", 1).await.expect("topic");
    flooded_key_goes_through_the_overflow(&broker, topic.name(), &unique_name("rt-secure")).await;
}

async fn flooded_key_goes_through_the_overflow(broker: &Broker, topic: &str, group: &str) {
    tokio::task::block_in_place(|| produce(broker, topic));

    let (hot, others) = (Ledger::default(), Ledger::default());
    let poisoned = Arc::new(AtomicUsize::new(0));
    let hot_done = Arc::new(AtomicUsize::new(0));
    // How many hot records had completed when the last of the other keys' records did.
    let hot_when_others_done = Arc::new(AtomicUsize::new(usize::MAX));
    let all = Arc::new(Notify::new());
    let (h, o, p, hd, hw, done) = (
        hot.clone(),
        others.clone(),
        poisoned.clone(),
        hot_done.clone(),
        hot_when_others_done.clone(),
        all.clone(),
    );
    let handler = move |r: Record| {
        let (h, o, p, hd, hw) = (h.clone(), o.clone(), p.clone(), hd.clone(), hw.clone());
        let done = done.clone();
        async move {
            let outcome = match r.key() {
                Some(b"poison") => {
                    p.fetch_add(1, Ordering::SeqCst);
                    Err(HandlerError::fatal("this record can never be applied"))
                }
                Some(b"hot") => {
                    // Slow, so that the hot key's queue fills and it is diverted.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    hd.store(h.record(&r), Ordering::SeqCst);
                    Ok(())
                }
                _ => {
                    if o.record(&r) == OTHERS * PER_OTHER {
                        hw.store(hd.load(Ordering::SeqCst), Ordering::SeqCst);
                    }
                    Ok(())
                }
            };
            if hd.load(Ordering::SeqCst) == HOT
                && o.distinct() == OTHERS * PER_OTHER
                && p.load(Ordering::SeqCst) > 0
            {
                done.notify_one();
            }
            outcome
        }
    };
    let mut builder = Consumer::builder()
        .brokers(broker.bootstrap_servers())
        .group_id(group)
        .topics([topic])
        .concurrency(50)
        .limits(Limits {
            // Above the other keys' 10 records: the driver takes the whole partition in
            // before their first outcomes come back (each handler run is a task), so with a cap
            // below 10 they too would be hot, and rightly diverted.
            key_max_records: 12,
            ..Limits::default()
        })
        .hot_key(HotKeyPolicy::Divert)
        .commit_interval(Duration::from_millis(100))
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "1000");
    for (k, v) in broker.properties() {
        builder = builder.set(k, v);
    }
    let consumer = builder.build().unwrap();
    let run = consumer.run(handler, async move { all.notified().await });
    ends_cleanly(run, Duration::from_secs(90)).await;

    hot.check(1, HOT);
    others.check(OTHERS, PER_OTHER);
    let waited_for = hot_when_others_done.load(Ordering::SeqCst);
    assert!(
        waited_for < HOT / 2,
        "the other keys finished only after {waited_for} of the hot key's {HOT} records"
    );
    let (dead, diverted) = tokio::task::block_in_place(|| {
        (
            read_all(broker, &format!("{topic}.dlq")),
            read_all(broker, &format!("{topic}.overflow")),
        )
    });
    assert_eq!(dead, vec![POISON.to_owned()], "the dead-letter topic");
    assert!(
        !diverted.is_empty() && diverted.iter().all(|v| v.starts_with("hot:")),
        "the overflow topic holds the hot key's records, and only those: {diverted:?}"
    );
}
