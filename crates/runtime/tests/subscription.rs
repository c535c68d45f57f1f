//! Subscriptions against the real broker: a pattern picks up a topic created after the consumer
//! started, and the revoke hook runs once the revoked partitions' work is finished and committed.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use kafkaesque_runtime::{Consumer, HandlerError, Record, TopicPartition};
use kafkaesque_testkit::unique_name;
use tokio::sync::Notify;

/// Each topic's distinct records handled, as `"<key>:<seq>"`.
#[derive(Debug, Clone, Default)]
struct ByTopic(Arc<Mutex<HashMap<String, std::collections::HashSet<String>>>>);

impl ByTopic {
    fn record(&self, r: &Record) {
        let text = String::from_utf8_lossy(r.payload().unwrap_or_default()).into_owned();
        let mut g = self.0.lock().unwrap();
        g.entry(r.topic().to_string()).or_default().insert(text);
    }

    fn count(&self, topic: &str) -> usize {
        self.0.lock().unwrap().get(topic).map_or(0, |s| s.len())
    }

    async fn until(&self, topic: &str, n: usize) {
        for _ in 0..1200 {
            if self.count(topic) == n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "{topic}: {} of {n} records handled in time",
            self.count(topic)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_created_after_the_consumer_starts_that_matches_its_pattern_is_consumed() {
    let broker = kafkaesque_testkit::require_broker().await;
    // Topics are named `kq-<prefix>-<hex>`; the pattern takes this test's prefix alone.
    let prefix = unique_name("pattern");
    let pattern = format!("^kq-{prefix}-[0-9a-f]+$");
    let first = broker.create_topic(&prefix, 2).await.expect("topic");
    tokio::task::block_in_place(|| produce_seqs(&broker, &first, 20, 0..2));
    let consumer = Consumer::builder()
        .brokers(broker.bootstrap_servers())
        .group_id(unique_name("pattern"))
        .topics([pattern.as_str()])
        .build()
        .expect("valid config");
    let seen = ByTopic::default();
    let s = seen.clone();
    let handler = move |r: Record| {
        s.record(&r);
        async { Ok::<(), HandlerError>(()) }
    };
    let stop = Arc::new(Notify::new());
    let stopped = stop.clone();
    let run = tokio::spawn(consumer.run(handler, async move { stopped.notified().await }));
    seen.until(first.name(), 40).await;

    let later = broker.create_topic(&prefix, 3).await.expect("topic");
    let other = broker
        .create_topic("pattern-other", 1)
        .await
        .expect("topic");
    tokio::task::block_in_place(|| {
        produce_seqs(&broker, &other, 10, 0..1);
        produce_seqs(&broker, &later, 20, 0..3);
    });
    seen.until(later.name(), 60).await;
    stop.notify_one();
    run.await.expect("joined").expect("consumer ran cleanly");
    assert_eq!(
        seen.count(other.name()),
        0,
        "a topic outside the pattern is not read"
    );
}

/// What the revoke hook saw when it was called.
#[derive(Debug)]
struct Revoked {
    partitions: Vec<i32>,
    /// Per revoked partition: how many records handled its commit does not cover (offset and
    /// metadata), and its handlers still running.
    at_call: Vec<(usize, usize)>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_revoke_hook_runs_after_the_revoked_partitions_work_is_finished_and_committed() {
    const KEYS: usize = 200;
    const PER_KEY: usize = 5;
    let f = Arc::new(Fixture::new("revoke-hook", 2).await);
    f.produce(KEYS, PER_KEY);
    let handled_offsets: Arc<Mutex<HashMap<i32, Vec<i64>>>> = Arc::default();
    let running: Arc<[AtomicUsize; 2]> = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let calls: Arc<Mutex<Vec<Revoked>>> = Arc::default();
    let hook = {
        let (f, offsets, running, calls) = (
            f.clone(),
            handled_offsets.clone(),
            running.clone(),
            calls.clone(),
        );
        Arc::new(move |tps: &[TopicPartition]| {
            let commits = commits(&f.broker, &f.group, &f.topic);
            let offsets = offsets.lock().unwrap();
            let partitions: Vec<i32> = tps.iter().map(|tp| tp.partition).collect();
            let at_call = partitions
                .iter()
                .map(|&p| {
                    let commit = &commits[p as usize];
                    let uncovered = offsets
                        .get(&p)
                        .map_or(0, |o| o.iter().filter(|&&o| !commit.covers(o)).count());
                    (uncovered, running[p as usize].load(Ordering::SeqCst))
                })
                .collect();
            calls.lock().unwrap().push(Revoked {
                partitions,
                at_call,
            });
        })
    };
    let first = f
        .builder()
        .concurrency(8)
        .on_revoke(hook)
        .build()
        .expect("valid config");
    // Slow handlers, so that work is in flight when the second member joins.
    let handled = Arc::new(AtomicUsize::new(0));
    let handler = {
        let (offsets, running, handled) =
            (handled_offsets.clone(), running.clone(), handled.clone());
        move |r: Record| {
            let (offsets, running, handled) = (offsets.clone(), running.clone(), handled.clone());
            async move {
                running[r.partition() as usize].fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
                offsets
                    .lock()
                    .unwrap()
                    .entry(r.partition())
                    .or_default()
                    .push(r.offset());
                running[r.partition() as usize].fetch_sub(1, Ordering::SeqCst);
                handled.fetch_add(1, Ordering::SeqCst);
                Ok::<(), HandlerError>(())
            }
        }
    };
    let stop_first = Arc::new(Notify::new());
    let s = stop_first.clone();
    let run_first = tokio::spawn(first.run(handler, async move { s.notified().await }));
    while handled.load(Ordering::SeqCst) < 50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A second member: one partition moves to it, and the first member's hook is told.
    let second = f.builder().build().expect("valid config");
    let stop_second = Arc::new(Notify::new());
    let s = stop_second.clone();
    let noop = |_: Record| async { Ok::<(), HandlerError>(()) };
    let run_second = tokio::spawn(second.run(noop, async move { s.notified().await }));
    for _ in 0..1200 {
        if !calls.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop_first.notify_one();
    run_first.await.expect("joined").expect("first ran cleanly");
    stop_second.notify_one();
    run_second
        .await
        .expect("joined")
        .expect("second ran cleanly");

    let calls = calls.lock().unwrap();
    assert!(
        calls.len() >= 2,
        "called at the rebalance and at shutdown: {calls:?}"
    );
    assert_eq!(
        calls[0].partitions.len(),
        1,
        "one partition moved: {calls:?}"
    );
    let mut told: Vec<i32> = calls.iter().flat_map(|c| c.partitions.clone()).collect();
    told.sort_unstable();
    told.dedup();
    assert_eq!(told, vec![0, 1], "every partition it gave up");
    for c in calls.iter() {
        for &(uncovered, running) in &c.at_call {
            assert_eq!(
                running, 0,
                "no handler of a revoked partition still running: {c:?}"
            );
            assert_eq!(uncovered, 0, "everything handled is committed: {c:?}");
        }
    }
}

#[test]
fn a_pattern_with_the_divert_policy_is_refused_at_build_naming_the_hot_key_policy() {
    let refused = Consumer::builder()
        .group_id("g")
        .topics(["^orders-[0-9]+$"])
        .hot_key(kafkaesque_runtime::HotKeyPolicy::Divert)
        .build();
    assert!(
        matches!(&refused, Err(kafkaesque_runtime::Error::Config { field, .. }) if field == "hot_key"),
        "refused, naming the field: {refused:?}"
    );
}
