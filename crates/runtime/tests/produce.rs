//! Producing from a handler, against the real broker: outputs reach Kafka in the order of their
//! sources per key; an output that cannot be produced fails its source record, which is retried
//! and dead-lettered; and in exactly-once mode a consumer SIGKILLed mid-transaction and
//! replaced by another leaves every output visible exactly once to a `read_committed` reader,
//! and dead letters join the transaction.
//! The exactly-once consumers are child processes: this test binary itself, running the
//! ignored `child_exactly_once` test with its settings in the environment.

mod common;

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use kafkaesque_runtime::{headers, HandlerError, Output, Record, RetryPolicy};
use kafkaesque_testkit::{unique_name, Broker, TestTopic};
use rand::Rng;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::Notify;

/// The output of a `"<key>:<seq>"` record: the same key and payload, in `out`.
fn echo(out: &str, r: &Record) -> Output {
    Output::new(out)
        .key(r.key_bytes().cloned().unwrap_or_default())
        .payload(r.payload_bytes().cloned().unwrap_or_default())
        .header("source-offset", r.offset().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handlers_outputs_reach_kafka_in_the_order_of_their_sources_per_key() {
    const KEYS: usize = 500;
    const PER_KEY: usize = 10;
    let f = Fixture::new("rt-produce", 4).await;
    let out = f.broker.create_topic("rt-produce-out", 4).await.unwrap();
    f.produce(KEYS, PER_KEY);
    let total = KEYS * PER_KEY;
    let seen = Arc::new(AtomicUsize::new(0));
    let all = Arc::new(Notify::new());
    let (s, a, name) = (seen.clone(), all.clone(), out.name().to_owned());
    let handler = move |r: Record| {
        let (s, a, name) = (s.clone(), a.clone(), name.clone());
        async move {
            let ms = rand::thread_rng().gen_range(0..=2);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            if s.fetch_add(1, Ordering::SeqCst) + 1 == total {
                a.notify_one();
            }
            Ok::<_, HandlerError>(vec![echo(&name, &r)])
        }
    };
    let run = f
        .builder()
        .concurrency(64)
        .build()
        .unwrap()
        .run_producing(handler, async move { all.notified().await });
    ends_cleanly(run, Duration::from_secs(120)).await;
    // The shutdown waited for the last outputs' acknowledgements before its final commit.
    let ends = end_offsets(&f.broker, &f.topic);
    assert_eq!(f.committed(), ends, "every record committed");
    let outputs =
        tokio::task::block_in_place(|| read_all(&f.broker, &out, "read_uncommitted", total));
    let duplicates = check_sequences(&by_key(&outputs), KEYS, PER_KEY);
    assert_eq!(duplicates, 0, "no output twice without a crash");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_whose_output_cannot_be_produced_is_retried_then_dead_lettered() {
    let f = Fixture::new("rt-produce-fail", 1).await;
    let out = f
        .broker
        .create_topic("rt-produce-fail-out", 1)
        .await
        .unwrap();
    f.produce(2, 1); // key-00000:0, key-00001:0
    let attempts = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(Notify::new());
    let (n, done, name) = (attempts.clone(), finished.clone(), out.name().to_owned());
    let handler = move |r: Record| {
        let (n, done, name) = (n.clone(), done.clone(), name.clone());
        async move {
            if r.key() == Some(key(0).as_bytes()) {
                // Larger than the producer's `message.max.bytes` (1 MB): never accepted.
                if n.fetch_add(1, Ordering::SeqCst) + 1 == 2 {
                    done.notify_one();
                }
                return Ok(vec![Output::new(&name).payload(vec![0u8; 2 << 20])]);
            }
            Ok::<_, HandlerError>(vec![echo(&name, &r)])
        }
    };
    let run = f
        .builder()
        .retry(RetryPolicy {
            max_attempts: 2,
            base_backoff_ms: 50,
            max_backoff_ms: 100,
        })
        .build()
        .unwrap()
        .run_producing(handler, async move { finished.notified().await });
    ends_cleanly(run, Duration::from_secs(60)).await;
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        2,
        "tried max_attempts times"
    );
    let dlq = tokio::task::block_in_place(|| {
        let t = format!("{}.dlq", f.topic.name());
        read_messages(&f.broker, &[&t], "read_uncommitted", 1)
    });
    let m = &dlq[0];
    assert_eq!(m.key(), Some(key(0).as_bytes()));
    let header = |name: &str| {
        let hs = m.headers().expect("headers");
        hs.iter()
            .find(|h| h.key == name)
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_else(|| panic!("header {name} missing"))
    };
    assert_eq!(header(headers::REASON), "max_attempts");
    assert!(
        header(headers::ERROR).contains("producing"),
        "{}",
        header(headers::ERROR)
    );
    let outputs = tokio::task::block_in_place(|| read_all(&f.broker, &out, "read_uncommitted", 1));
    assert_eq!(outputs.len(), 1, "only the other key's output: {outputs:?}");
    assert_eq!(
        f.committed(),
        vec![2],
        "both records done: one produced, one dead-lettered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_exactly_once_mode_a_dead_letter_commits_with_the_outputs_and_offsets() {
    let f = Fixture::new("rt-eos-dlq", 1).await;
    let out = f.broker.create_topic("rt-eos-dlq-out", 1).await.unwrap();
    f.produce(3, 1); // key-00000:0 … key-00002:0
    let seen = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(Notify::new());
    let (n, done, name) = (seen.clone(), finished.clone(), out.name().to_owned());
    let handler = move |r: Record| {
        let (n, done, name) = (n.clone(), done.clone(), name.clone());
        async move {
            if n.fetch_add(1, Ordering::SeqCst) + 1 == 3 {
                done.notify_one();
            }
            if r.key() == Some(key(1).as_bytes()) {
                return Err(HandlerError::rejected("poison", "cannot apply it"));
            }
            Ok(vec![echo(&name, &r)])
        }
    };
    let run = f
        .builder()
        .exactly_once()
        .build()
        .unwrap()
        .run_producing(handler, async move { finished.notified().await });
    ends_cleanly(run, Duration::from_secs(60)).await;
    let (dlq, outputs) = tokio::task::block_in_place(|| {
        let t = format!("{}.dlq", f.topic.name());
        (
            read_messages(&f.broker, &[&t], "read_committed", 1),
            read_all(&f.broker, &out, "read_committed", 2),
        )
    });
    // A transactional producer refuses a write outside a transaction: the dead letter being
    // there, committed, means it joined one.
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0].key(), Some(key(1).as_bytes()));
    assert_eq!(outputs.len(), 2, "{outputs:?}");
    assert_eq!(f.committed(), vec![3], "the offsets committed with them");
}

/// Not a test of its own: the body of every exactly-once child process.
#[test]
#[ignore = "runs only as a child process of the tests below"]
fn child_exactly_once() {
    let Some((b, rt)) = child() else {
        return;
    };
    let out = std::env::var("CHILD_OUT").unwrap();
    logs();
    rt.block_on(async move {
        let mut b = b
            .concurrency(64)
            .commit_interval(Duration::from_millis(200))
            .exactly_once()
            // The killed member's open transaction is aborted by the broker after this.
            .set("transaction.timeout.ms", "10000");
        for (k, v) in SESSION {
            b = b.set(k, v);
        }
        let handler = move |r: Record| {
            let out = out.clone();
            async move {
                let ms = rand::thread_rng().gen_range(0..=3);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok::<_, HandlerError>(vec![echo(&out, &r)])
            }
        };
        let shutdown = async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
            term.recv().await;
        };
        b.build()
            .unwrap()
            .run_producing(handler, shutdown)
            .await
            .unwrap();
    });
}

fn spawn_child(env: &[(&str, String)]) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_exactly_once",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .spawn()
        .expect("spawn child consumer")
}

fn signal(child: &mut Child, signal: &str) {
    let ok = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {signal}");
    child.wait().unwrap();
}

fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_exactly_once_mode_a_rebalance_and_a_consumer_killed_mid_transaction_leave_every_output_once(
) {
    const KEYS: usize = 1_000;
    const PER_KEY: usize = 10;
    let f = Fixture::new("rt-eos", 4).await;
    let out = f.broker.create_topic("rt-eos-out", 4).await.unwrap();
    f.produce(KEYS, PER_KEY);
    let total = KEYS * PER_KEY;
    let ends = end_offsets(&f.broker, &f.topic);
    let env = [
        ("CHILD_BROKERS", f.broker.bootstrap_servers().to_owned()),
        ("CHILD_TOPIC", f.topic.name().to_owned()),
        ("CHILD_OUT", out.name().to_owned()),
        ("CHILD_GROUP", f.group.clone()),
    ];
    let aborted = tokio::task::block_in_place(|| {
        let mut first = spawn_child(&env);
        let done = |c: &[i64]| c.iter().map(|&o| o.max(0)).sum::<i64>();
        wait_for(
            "20% of the records committed",
            Duration::from_secs(120),
            || done(&f.committed()) >= total as i64 / 5,
        );
        // A second member joins: the first gives up some partitions, committing their final
        // offsets in a transaction of their own.
        let mut second = spawn_child(&env);
        wait_for("a stable group of two", Duration::from_secs(60), || {
            stable_members(&f.broker, &f.group) == 2
        });
        wait_for(
            "40% of the records committed",
            Duration::from_secs(120),
            || done(&f.committed()) >= total as i64 * 2 / 5,
        );
        assert!(
            first.try_wait().unwrap().is_none(),
            "the first member stopped (an aborted transaction?) before the kill"
        );
        // Commits come every 200 ms and records keep completing in between: a transaction is
        // open, with outputs in it, when the kill lands.
        signal(&mut first, "-KILL");
        wait_for("every record committed", Duration::from_secs(180), || {
            f.committed() == ends
        });
        signal(&mut second, "-TERM");
        let everything = read_all(&f.broker, &out, "read_uncommitted", total);
        everything.len() - total
    });
    let committed =
        tokio::task::block_in_place(|| read_all(&f.broker, &out, "read_committed", total));
    let duplicates = check_sequences(&by_key(&committed), KEYS, PER_KEY);
    println!(
        "records {total}, outputs visible to read_committed {}, in the log including aborted transactions {}",
        committed.len(),
        total + aborted
    );
    assert_eq!(
        duplicates, 0,
        "an output seen twice by a read_committed reader"
    );
    assert_eq!(committed.len(), total);
}

/// How many members `group` has once it is stable (0 while it rebalances).
fn stable_members(broker: &Broker, group: &str) -> usize {
    let c: BaseConsumer = broker.group_config(&unique_name("probe")).create().unwrap();
    let Ok(list) = c.fetch_group_list(Some(group), Duration::from_secs(5)) else {
        return 0;
    };
    list.groups()
        .iter()
        .find(|g| g.name() == group && g.state() == "Stable")
        .map_or(0, |g| g.members().len())
}

/// One past the last offset of each partition of `topic`.
fn end_offsets(broker: &Broker, topic: &TestTopic) -> Vec<i64> {
    let c: BaseConsumer = broker.group_config(&unique_name("ends")).create().unwrap();
    (0..topic.partitions())
        .map(|p| {
            c.fetch_watermarks(topic.name(), p, Duration::from_secs(10))
                .unwrap()
                .1
        })
        .collect()
}

/// `(partition, "<key>:<seq>")` of every record in `topic`, in each partition's order.
fn read_all(
    broker: &Broker,
    topic: &TestTopic,
    isolation: &str,
    at_least: usize,
) -> Vec<(i32, String)> {
    read_messages(broker, &[topic.name()], isolation, at_least)
        .iter()
        .map(|m| {
            let text = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
            (m.partition(), text)
        })
        .collect()
}

/// Every record of `topics` from the beginning: at least `at_least` of them, then whatever
/// else arrives within two seconds (a duplicate comes after the record it repeats).
fn read_messages(
    broker: &Broker,
    topics: &[&str],
    isolation: &str,
    at_least: usize,
) -> Vec<rdkafka::message::OwnedMessage> {
    let c: BaseConsumer = broker
        .group_config(&unique_name("reader"))
        .set("isolation.level", isolation)
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for t in topics {
        let md = c.fetch_metadata(Some(t), Duration::from_secs(10)).unwrap();
        for p in md.topics()[0].partitions() {
            tpl.add_partition_offset(t, p.id(), Offset::Beginning)
                .unwrap();
        }
    }
    c.assign(&tpl).unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut quiet_until = None;
    loop {
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => got.push(m.detach()),
            Some(Err(e)) => panic!("reading {topics:?}: {e}"),
            None => {}
        }
        let now = Instant::now();
        if got.len() >= at_least {
            let until = *quiet_until.get_or_insert(now + Duration::from_secs(2));
            if now >= until {
                return got;
            }
        }
        assert!(
            now < deadline,
            "{} of {at_least} records in {topics:?}",
            got.len()
        );
    }
}

/// The sequence numbers of each key's outputs, in the order each partition holds them.
fn by_key(outputs: &[(i32, String)]) -> HashMap<String, Vec<usize>> {
    let mut by_key: HashMap<String, Vec<usize>> = HashMap::new();
    let partitions: HashSet<i32> = outputs.iter().map(|(p, _)| *p).collect();
    for p in partitions {
        for (_, text) in outputs.iter().filter(|(q, _)| *q == p) {
            let (k, s) = text.rsplit_once(':').expect("key:seq");
            by_key
                .entry(k.to_owned())
                .or_default()
                .push(s.parse().expect("seq"));
        }
    }
    by_key
}
