//! A record whose handler always fails ends in the dead-letter topic, with its headers, after
//! the configured attempts — and while it waits for its retries, only its own key waits.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{ends_cleanly, first_dead_letter, header, key, Fixture};
use kafkaesque_runtime::{headers, HandlerError, Record, RetryPolicy};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use tokio::sync::Notify;

const OTHERS: usize = 1_000;
const POISON: &str = "poison";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_record_is_dead_lettered_and_holds_up_only_its_key() {
    let f = Fixture::new("rt-poison", 1).await;
    let (broker, topic) = (&f.broker, &f.topic);
    tokio::task::block_in_place(|| {
        // Idempotent: the partition holds the records in the order they were sent.
        let p: BaseProducer = broker
            .client_config()
            .set("enable.idempotence", "true")
            .create()
            .unwrap();
        let send = |k: &str, v: &str| {
            p.send(BaseRecord::<str, str>::to(topic.name()).key(k).payload(v))
                .unwrap();
        };
        send(POISON, "poison:0");
        for k in 0..OTHERS {
            send(&key(k), &format!("{}:0", key(k)));
        }
        send(POISON, "poison:1");
        p.flush(Duration::from_secs(30)).unwrap();
    });
    // (what, when) in the order handlers finished.
    let log = Arc::new(Mutex::new(Vec::<(String, Instant)>::new()));
    let finished = Arc::new(Notify::new());
    let (l, done) = (log.clone(), finished.clone());
    let handler = move |r: Record| {
        let (l, done) = (l.clone(), done.clone());
        async move {
            let text = String::from_utf8_lossy(r.payload().unwrap()).into_owned();
            if text == "poison:0" {
                return Err(HandlerError::retry(format!(
                    "cannot apply {text} (attempt {})",
                    r.attempt()
                )));
            }
            let mut g = l.lock().unwrap();
            g.push((text.clone(), Instant::now()));
            if g.len() == OTHERS + 1 {
                done.notify_one();
            }
            Ok(())
        }
    };
    let run = f
        .builder()
        .concurrency(50)
        .retry(RetryPolicy {
            max_attempts: 3,
            base_backoff_ms: 400,
            max_backoff_ms: 2_000,
        })
        .build()
        .unwrap()
        .run(handler, async move { finished.notified().await });
    ends_cleanly(run, Duration::from_secs(120)).await;

    let log = log.lock().unwrap().clone();
    let poison_next = log
        .iter()
        .position(|(t, _)| t == "poison:1")
        .expect("the poison key moved on");
    assert_eq!(
        poison_next,
        OTHERS,
        "every other key finished while the poison key waited: {:?}",
        &log[..3]
    );

    // The dead-letter record: original key and value, plus where it came from and why.
    let m = first_dead_letter(broker, &format!("{}.dlq", topic.name()));
    assert_eq!(m.key(), Some(POISON.as_bytes()));
    assert_eq!(m.payload(), Some("poison:0".as_bytes()));
    let header = |name: &str| header(&m, name);
    assert_eq!(header(headers::SOURCE_TOPIC), topic.name());
    assert_eq!(header(headers::SOURCE_PARTITION), "0");
    assert_eq!(header(headers::SOURCE_OFFSET), "0");
    assert_eq!(header(headers::ATTEMPTS), "3");
    assert_eq!(header(headers::REASON), "max_attempts");
    assert!(header(headers::ERROR).contains("cannot apply poison:0 (attempt 3)"));
}
