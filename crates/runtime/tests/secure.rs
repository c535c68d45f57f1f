//! The consumer over SASL_SSL (SCRAM-SHA-512 over TLS) on the secure broker, with a user the
//! test creates: records produced there are consumed, dead-lettered and diverted through the
//! overflow topic by clients that all log in; a wrong password ends the run with an
//! authentication error instead of leaving it waiting.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{key, Ledger, SESSION};
use kafkaesque_runtime::{Consumer, HandlerError, HotKeyPolicy, Limits, Record};
use kafkaesque_testkit::{require_secure_broker, unique_name, Broker};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::Notify;

const HOT: usize = 40;
const OTHERS: usize = 20;
const PER_OTHER: usize = 2;
const POISON: &str = "poison";

/// The hot key's records with the other keys' spread among them, and one poison record.
fn produce(broker: &Broker, topic: &str) {
    let p: BaseProducer = broker
        .client_config()
        .set("enable.idempotence", "true")
        .create()
        .expect("a producer logged in over SASL_SSL");
    let send = |key: &str, value: String| {
        while p
            .send(BaseRecord::<str, str>::to(topic).key(key).payload(&value))
            .is_err()
        {
            p.poll(Duration::from_millis(10));
        }
    };
    send(POISON, "poison".into());
    for seq in 0..HOT {
        send("hot", format!("hot:{seq}"));
        if seq % (HOT / PER_OTHER) == 0 {
            for k in 0..OTHERS {
                send(&key(k), format!("{}:{}", key(k), seq / (HOT / PER_OTHER)));
            }
        }
    }
    p.flush(Duration::from_secs(30))
        .expect("every record acknowledged over SASL_SSL");
}

/// The payloads in partition 0 of `topic`, read from the beginning over SASL_SSL until nothing
/// more arrives for a few seconds.
fn read_all(broker: &Broker, topic: &str) -> Vec<String> {
    let c: BaseConsumer = broker
        .group_config(&unique_name("secure-reader"))
        .create()
        .expect("a consumer logged in over SASL_SSL");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    c.assign(&tpl).unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut idle = 0;
    while idle < 30 && Instant::now() < deadline {
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
async fn producing_consuming_dead_lettering_and_diverting_all_work_over_sasl_ssl() {
    common::logs();
    let secure = require_secure_broker().await;
    let user = secure.create_user("rt-secure").await.expect("a SCRAM user");
    let broker = secure.connect_as(&user).await.expect("logged in");
    let topic = broker.create_topic("rt-secure", 1).await.expect("topic");
    tokio::task::block_in_place(|| produce(&broker, topic.name()));

    let (hot, others) = (Ledger::default(), Ledger::default());
    let poisoned = Arc::new(AtomicUsize::new(0));
    let all = Arc::new(Notify::new());
    let (h, o, p, done) = (hot.clone(), others.clone(), poisoned.clone(), all.clone());
    let handler = move |r: Record| {
        let (h, o, p, done) = (h.clone(), o.clone(), p.clone(), done.clone());
        async move {
            let finished = |h: &Ledger, o: &Ledger, p: &AtomicUsize| {
                h.distinct() == HOT
                    && o.distinct() == OTHERS * PER_OTHER
                    && p.load(Ordering::SeqCst) > 0
            };
            match r.key() {
                Some(b"poison") => {
                    p.fetch_add(1, Ordering::SeqCst);
                    if finished(&h, &o, &p) {
                        done.notify_one();
                    }
                    return Err(HandlerError::fatal("this record can never be applied"));
                }
                Some(b"hot") => {
                    // Slow, so that the hot key's queue fills and it is diverted.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    h.record(&r);
                }
                _ => {
                    o.record(&r);
                }
            }
            if finished(&h, &o, &p) {
                done.notify_one();
            }
            Ok(())
        }
    };
    let mut builder = Consumer::builder()
        .brokers(broker.bootstrap_servers())
        .group_id(unique_name("rt-secure"))
        .topics([topic.name()])
        .concurrency(50)
        .limits(Limits {
            key_max_records: 5,
            ..Limits::default()
        })
        .hot_key(HotKeyPolicy::Divert)
        .commit_interval(Duration::from_millis(100));
    for (k, v) in broker.properties() {
        builder = builder.set(k, v);
    }
    for (k, v) in SESSION {
        builder = builder.set(k, v);
    }
    let consumer = builder.build().expect("a valid configuration");
    tokio::time::timeout(
        Duration::from_secs(90),
        consumer.run(handler, async move { all.notified().await }),
    )
    .await
    .expect("finished in time")
    .expect("clean run");

    hot.check(1, HOT);
    others.check(OTHERS, PER_OTHER);
    let (dead, diverted) = tokio::task::block_in_place(|| {
        (
            read_all(&broker, &format!("{}.dlq", topic.name())),
            read_all(&broker, &format!("{}.overflow", topic.name())),
        )
    });
    assert_eq!(dead, vec!["poison".to_owned()], "the dead-letter topic");
    assert!(
        !diverted.is_empty() && diverted.iter().all(|v| v.starts_with("hot:")),
        "the overflow topic holds the hot key's records: {diverted:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_ends_the_consumer_with_an_authentication_error() {
    common::logs();
    let secure = require_secure_broker().await;
    let user = secure.create_user("rt-wrong").await.expect("a SCRAM user");
    let mut builder = Consumer::builder()
        .brokers(secure.bootstrap_servers())
        .group_id(unique_name("rt-wrong"))
        .topics([unique_name("rt-wrong")]);
    for (k, v) in secure.properties(&user.name, "not-the-password") {
        builder = builder.set(k, v);
    }
    let consumer = builder.build().expect("a valid configuration");
    let started = Instant::now();
    let outcome = tokio::time::timeout(
        Duration::from_secs(30),
        consumer.run(
            |_: Record| async { Ok::<(), HandlerError>(()) },
            std::future::pending(),
        ),
    )
    .await
    .expect("the consumer gives up instead of waiting for ever");
    let error = outcome
        .expect_err("a wrong password is an error")
        .to_string();
    assert!(
        error.to_lowercase().contains("authentication"),
        "the error names the failed authentication: {error}"
    );
    assert!(
        !error.contains("not-the-password"),
        "the error shows no password: {error}"
    );
    // The cluster metadata and commit-metadata budget are asked first (up to 5 s), then the
    // topic's metadata a second at a time: the refusal ends the run within a few seconds more.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "failed only after {:?}",
        started.elapsed()
    );
}
