//! The runtime against the real broker: everything processed, in key order, committed to the end;
//! a stopped consumer leaves nothing behind.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use kafkaesque_runtime::{AssignError, Consumer, HandlerError, Limits, Record};
use kafkaesque_testkit::unique_name;
use rand::Rng;
use tokio::sync::Notify;

const KEYS: usize = 10_000;
const PER_KEY: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_every_record_in_key_order_and_commits_to_the_end() {
    let f = Fixture::new("runtime-e2e", 8).await;
    f.produce(KEYS, PER_KEY);
    let consumer = f.builder().concurrency(500).build().expect("valid config");
    let ledger = consume_all(consumer, KEYS * PER_KEY, 5, Duration::ZERO).await;
    let duplicates = ledger.check(KEYS, PER_KEY);
    assert_eq!(duplicates, 0, "no rebalance or crash, so no duplicates");
    assert_eq!(
        f.committed(),
        ledger.ends(f.topic.partitions()),
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
    let f = Fixture::new("runtime-held", 2).await;
    f.produce(KEYS, PER_KEY);
    let consumer = f
        .builder()
        .concurrency(64)
        .limits(Limits {
            partition_max_records: 16,
            ..Limits::default()
        })
        .build()
        .expect("valid config");
    let observer = consumer.observer();
    // Lingers long enough for a last refresh of the snapshot (every second).
    let ledger = consume_all(consumer, KEYS * PER_KEY, 2, Duration::from_millis(1_500)).await;
    assert_eq!(ledger.check(KEYS, PER_KEY), 0, "no duplicates");
    let pauses = observer.snapshot().counters.pauses;
    assert!(pauses >= 50, "the cap was reached often ({pauses} pauses)");
    assert_eq!(
        f.committed(),
        ledger.ends(f.topic.partitions()),
        "committed to the end"
    );
}

/// An assign hook that cannot do its work (its database is down) holds its partitions: no record
/// of them is handled until it succeeds, it is called again until then, and the consumer still
/// shuts down at once while it keeps failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_assign_hook_holds_its_partitions_until_it_succeeds_and_never_blocks_shutdown() {
    const KEYS: usize = 50;
    const PER_KEY: usize = 4;
    let f = Fixture::new("runtime-gate", 2).await;
    f.produce(KEYS, PER_KEY);
    let consumer =
        |group: &str, fail_first: usize, ready: Arc<AtomicBool>, calls: Arc<AtomicUsize>| {
            let hook = Arc::new(move |_: &[kafkaesque_runtime::TopicPartition]| {
                if calls.fetch_add(1, Ordering::SeqCst) < fail_first {
                    return Err(AssignError::new("the database is down"));
                }
                ready.store(true, Ordering::SeqCst);
                Ok(())
            });
            f.builder_in(group)
                .on_assign(hook)
                .build()
                .expect("valid config")
        };

    // Fails three times, then succeeds: every record comes, none before the success.
    let (ready, calls) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let c = consumer(&f.group, 3, ready.clone(), calls.clone());
    let ledger = Ledger::default();
    let early = Arc::new(AtomicUsize::new(0));
    let all_seen = Arc::new(Notify::new());
    let (l, r, e, done) = (
        ledger.clone(),
        ready.clone(),
        early.clone(),
        all_seen.clone(),
    );
    let handler = move |rec: Record| {
        let (l, r, e, done) = (l.clone(), r.clone(), e.clone(), done.clone());
        async move {
            if !r.load(Ordering::SeqCst) {
                e.fetch_add(1, Ordering::SeqCst);
            }
            if l.record(&rec) == KEYS * PER_KEY {
                done.notify_one();
            }
            Ok::<(), HandlerError>(())
        }
    };
    tokio::time::timeout(
        Duration::from_secs(120),
        c.run(handler, async move { all_seen.notified().await }),
    )
    .await
    .expect("consumed everything in time")
    .expect("consumer ran cleanly");
    assert_eq!(
        early.load(Ordering::SeqCst),
        0,
        "no record before the hook succeeded"
    );
    assert!(
        calls.load(Ordering::SeqCst) >= 4,
        "called again after each failure"
    );
    assert_eq!(
        ledger.check(KEYS, PER_KEY),
        0,
        "every record once, in key order"
    );

    // Never succeeds: nothing is handled, and shutdown is not held up by the retries.
    let (ready, calls) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let c = consumer(
        &unique_name("runtime-gate"),
        usize::MAX,
        ready,
        calls.clone(),
    );
    let handled = Arc::new(AtomicUsize::new(0));
    let h = handled.clone();
    let handler = move |_: Record| {
        let h = h.clone();
        async move {
            h.fetch_add(1, Ordering::SeqCst);
            Ok::<(), HandlerError>(())
        }
    };
    let c2 = calls.clone();
    let asked = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let a = asked.clone();
    let stop = async move {
        // Until the hook has failed a few times: the partitions are assigned and held.
        while c2.load(Ordering::SeqCst) < 3 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        *a.lock().unwrap() = Some(Instant::now());
    };
    tokio::time::timeout(Duration::from_secs(120), c.run(handler, stop))
        .await
        .expect("stopped in time")
        .expect("consumer ran cleanly");
    let took = asked.lock().unwrap().expect("shutdown asked").elapsed();
    assert_eq!(
        handled.load(Ordering::SeqCst),
        0,
        "nothing handled while held"
    );
    assert!(
        took < Duration::from_secs(15),
        "shut down {took:?} after being asked"
    );
}

/// Stopped while records still stream in, with batches taken and not yet read, a consumer leaves
/// the group — the next consumer of the group gets every partition at once, not after the first
/// one's poll interval (five minutes) has run out — and lets go of its client: once `run` has
/// returned, its librdkafka client's threads are gone (Linux: `/proc/self/task`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_stopped_mid_stream_leaves_the_group_and_drops_its_client() {
    const KEYS: usize = 1_000;
    const PER_KEY: usize = 50;
    const PARTITIONS: i32 = 4;
    let f = Fixture::new("runtime-leave", PARTITIONS).await;
    f.produce(KEYS, PER_KEY);
    // The clients alive before (the test broker's own): each has one `rdk:main` thread.
    let clients_before = librdkafka_clients();
    // Each run stops once its handler has seen records of every partition, `enough` in all.
    let run = |enough: usize| {
        let consumer = f.builder().concurrency(100).build().expect("valid config");
        let seen = Arc::new(std::sync::Mutex::new((
            0usize,
            [false; PARTITIONS as usize],
        )));
        let done = Arc::new(Notify::new());
        let (s, d) = (seen.clone(), done.clone());
        let handler = move |r: Record| {
            let (s, d) = (s.clone(), d.clone());
            async move {
                tokio::time::sleep(Duration::from_millis(1)).await;
                let mut s = s.lock().unwrap();
                s.0 += 1;
                s.1[r.partition() as usize] = true;
                if s.0 >= enough && s.1.iter().all(|&p| p) {
                    d.notify_one();
                }
                Ok::<(), HandlerError>(())
            }
        };
        async move {
            tokio::time::timeout(
                Duration::from_secs(60),
                consumer.run(handler, async move { done.notified().await }),
            )
            .await
            .expect("saw every partition in time")
            .expect("consumer ran cleanly");
        }
    };
    run(2_000).await;
    run(1).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while librdkafka_clients() > clients_before {
        assert!(
            Instant::now() < deadline,
            "{} librdkafka clients left after run returned, {clients_before} before it",
            librdkafka_clients()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// librdkafka clients alive in this process: each runs one thread called `rdk:main`.
fn librdkafka_clients() -> usize {
    let tasks = std::fs::read_dir("/proc/self/task").expect("/proc/self/task");
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim() == "rdk:main")
        .count()
}

/// Runs `consumer`, its handler sleeping 0 to `max_ms` ms, until `total` distinct records have
/// been handled and `linger` has passed; returns what was handled. Fails after four minutes.
async fn consume_all(consumer: Consumer, total: usize, max_ms: u64, linger: Duration) -> Ledger {
    let ledger = Ledger::default();
    let all_seen = Arc::new(Notify::new());
    let (l, done) = (ledger.clone(), all_seen.clone());
    let handler = move |r: Record| {
        let (l, done) = (l.clone(), done.clone());
        async move {
            let ms = rand::thread_rng().gen_range(0..=max_ms);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            if l.record(&r) == total {
                done.notify_one();
            }
            Ok::<(), HandlerError>(())
        }
    };
    let stop = async move {
        all_seen.notified().await;
        tokio::time::sleep(linger).await;
    };
    tokio::time::timeout(Duration::from_secs(240), consumer.run(handler, stop))
        .await
        .expect("consumed everything in time")
        .expect("consumer ran cleanly");
    ledger
}
