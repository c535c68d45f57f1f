//! The control handle against the real broker: pauses hold back exactly what they cover and
//! move nothing out of order, limits change while running, and a shutdown that drains what was
//! fetched handles and commits all of it.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use kafkaesque_runtime::{Error, HandlerError, Limits, Record, ShutdownMode, Target};
use rand::Rng;
use tokio::sync::Semaphore;

/// One handled record.
#[derive(Debug, Clone)]
struct Seen {
    partition: i32,
    offset: i64,
    key: String,
    seq: usize,
}

fn seen(r: &Record) -> Seen {
    let text = std::str::from_utf8(r.payload().unwrap_or_default()).expect("utf-8");
    let (key, seq) = text.rsplit_once(':').expect("key:seq");
    Seen {
        partition: r.partition(),
        offset: r.offset(),
        key: key.to_owned(),
        seq: seq.parse().expect("seq"),
    }
}

/// Every record handled, in the order the handlers finished them.
#[derive(Debug, Clone, Default)]
struct Log(Arc<Mutex<Vec<Seen>>>);

impl Log {
    fn push(&self, s: Seen) {
        self.0.lock().unwrap().push(s);
    }

    fn count(&self, f: impl Fn(&Seen) -> bool) -> usize {
        self.0.lock().unwrap().iter().filter(|s| f(s)).count()
    }

    /// Each key's sequence numbers in the order they were handled.
    fn by_key(&self) -> HashMap<String, Vec<usize>> {
        let mut m: HashMap<String, Vec<usize>> = HashMap::new();
        for s in self.0.lock().unwrap().iter() {
            m.entry(s.key.clone()).or_default().push(s.seq);
        }
        m
    }

    /// The partition each key was seen in.
    fn by_key_partition(&self) -> HashMap<String, i32> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|s| (s.key.clone(), s.partition))
            .collect()
    }

    /// Waits (up to two minutes) until `f` holds of the log.
    async fn until(&self, what: &str, f: impl Fn(&[Seen]) -> bool) {
        for _ in 0..1200 {
            if f(&self.0.lock().unwrap()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("timed out waiting until {what}");
    }
}

/// A handler that logs each record after a random pause of up to 2 ms, so that work is in flight
/// whenever a command arrives.
fn logging(
    log: &Log,
) -> impl Fn(Record) -> futures::future::BoxFuture<'static, Result<(), HandlerError>>
       + Send
       + Sync
       + 'static {
    let log = log.clone();
    move |r: Record| {
        let log = log.clone();
        Box::pin(async move {
            let ms = rand::thread_rng().gen_range(0..=2);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            log.push(seen(&r));
            Ok(())
        })
    }
}

/// The distinct (key, seq) pairs handled with `seq` in `seqs`, in partitions other than `skip`.
fn handled(log: &[Seen], seqs: std::ops::Range<usize>, keep: impl Fn(i32) -> bool) -> usize {
    log.iter()
        .filter(|s| seqs.contains(&s.seq) && keep(s.partition))
        .map(|s| (&s.key, s.seq))
        .collect::<std::collections::HashSet<_>>()
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pausing_a_partition_and_everything_holds_back_what_they_cover_and_reorders_nothing() {
    const KEYS: usize = 200;
    const PARTITIONS: i32 = 4;
    let f = Fixture::new("control-pause", PARTITIONS).await;
    let consumer = f.builder().concurrency(32).build().expect("valid config");
    let control = consumer.control();
    let log = Log::default();
    let stop = Arc::new(tokio::sync::Notify::new());
    let stopped = stop.clone();
    let run = tokio::spawn(consumer.run(logging(&log), async move { stopped.notified().await }));
    let produce = |seqs: std::ops::Range<usize>| {
        tokio::task::block_in_place(|| produce_seqs(&f.broker, &f.topic, KEYS, seqs))
    };
    // Which partition each key lands in, learned from the first round.
    produce(0..3);
    log.until("the first round is handled", |l| {
        handled(l, 0..3, |_| true) == KEYS * 3
    })
    .await;
    let keys_in = |p: i32| log.by_key_partition().values().filter(|&&q| q == p).count();
    let p0_keys = keys_in(0);
    assert!(
        p0_keys > 0 && p0_keys < KEYS,
        "keys spread over the partitions"
    );

    // Partition 0 paused: what is produced after the pause took effect reaches no handler,
    // while the other partitions' records of the same round are all handled.
    control
        .pause(Target::partition(f.topic.name(), 0))
        .await
        .expect("paused");
    let from = tokio::task::block_in_place(|| high_watermarks(&f.broker, &f.topic));
    produce(3..6);
    log.until("the other partitions' second round is handled", |l| {
        handled(l, 3..6, |p| p != 0) == (KEYS - p0_keys) * 3
    })
    .await;
    assert_eq!(
        log.count(|s| s.partition == 0 && s.offset >= from[0]),
        0,
        "nothing produced into the paused partition was handled"
    );

    // Everything paused, then partition 0 alone resumed: its held-back records all come, and
    // none of the others' produced after the pause.
    control.pause(Target::All).await.expect("paused");
    let from = tokio::task::block_in_place(|| high_watermarks(&f.broker, &f.topic));
    produce(6..9);
    control
        .resume(Target::partition(f.topic.name(), 0))
        .await
        .expect("resumed");
    log.until("partition 0's records so far are handled", |l| {
        handled(l, 0..9, |p| p == 0) == p0_keys * 9
    })
    .await;
    assert_eq!(
        log.count(|s| s.partition != 0 && s.offset >= from[s.partition as usize]),
        0,
        "nothing produced into the paused partitions was handled"
    );

    // Everything resumed: every record arrives, each key's in order.
    control.resume(Target::All).await.expect("resumed");
    produce(9..10);
    log.until("every record is handled", |l| {
        handled(l, 0..10, |_| true) == KEYS * 10
    })
    .await;
    stop.notify_one();
    run.await.expect("joined").expect("consumer ran cleanly");
    let duplicates = check_sequences(&log.by_key(), KEYS, 10);
    assert_eq!(duplicates, 0, "no rebalance or crash, so no duplicates");
}

/// A handler that holds every record until the gate lets it go, counting those running.
fn gated(
    log: &Log,
    gate: &Arc<Semaphore>,
    running: &Arc<AtomicUsize>,
) -> impl Fn(Record) -> futures::future::BoxFuture<'static, Result<(), HandlerError>>
       + Send
       + Sync
       + 'static {
    let (log, gate, running) = (log.clone(), gate.clone(), running.clone());
    move |r: Record| {
        let (log, gate, running) = (log.clone(), gate.clone(), running.clone());
        Box::pin(async move {
            running.fetch_add(1, Ordering::SeqCst);
            let permit = gate.acquire().await.expect("gate open");
            permit.forget();
            running.fetch_sub(1, Ordering::SeqCst);
            log.push(seen(&r));
            Ok(())
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_shutdown_handles_and_commits_everything_fetched_and_a_finish_shutdown_only_what_runs(
) {
    const KEYS: usize = 50;
    const PER_KEY: usize = 20;
    const TOTAL: usize = KEYS * PER_KEY;
    let f = Fixture::new("control-drain", 2).await;
    f.produce(KEYS, PER_KEY);
    for (mode, group) in [
        (ShutdownMode::DrainFetched, f.group.clone()),
        (ShutdownMode::FinishInFlight, format!("{}-finish", f.group)),
    ] {
        let consumer = f
            .builder_in(&group)
            .concurrency(4)
            .build()
            .expect("valid config");
        let (control, observer) = (consumer.control(), consumer.observer());
        let (log, gate, running) = (Log::default(), Arc::new(Semaphore::new(0)), Arc::default());
        let run = tokio::spawn(consumer.run(gated(&log, &gate, &running), std::future::pending()));
        // Everything fetched and queued behind the four records held at the gate.
        for _ in 0..1200 {
            if observer.snapshot().counters.fetched == TOTAL as u64 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            observer.snapshot().counters.fetched,
            TOTAL as u64,
            "all fetched"
        );
        assert_eq!(running.load(Ordering::SeqCst), 4, "four at once");
        control.shutdown(mode).await.expect("shutdown asked");
        gate.add_permits(TOTAL);
        run.await.expect("joined").expect("consumer ran cleanly");
        let committed = tokio::task::block_in_place(|| committed(&f.broker, &group, &f.topic));
        let ends: Vec<i64> = (0..2)
            .map(|p| {
                let l = log.0.lock().unwrap();
                l.iter()
                    .filter(|s| s.partition == p)
                    .map(|s| s.offset + 1)
                    .max()
                    .unwrap_or(-1)
            })
            .collect();
        match mode {
            ShutdownMode::DrainFetched => {
                let handled = handled(&log.0.lock().unwrap(), 0..PER_KEY, |_| true);
                assert_eq!(handled, TOTAL, "everything fetched was handled");
                assert_eq!(committed, ends, "and committed to the end");
                check_sequences(&log.by_key(), KEYS, PER_KEY);
            }
            _ => {
                let handled = log.count(|_| true);
                assert_eq!(handled, 4, "only the records in flight were handled");
                assert!(
                    committed.iter().sum::<i64>() <= 4,
                    "nothing queued is committed: {committed:?}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_concurrency_and_limits_change_while_running_and_bad_limits_are_refused() {
    let f = Fixture::new("control-limits", 1).await;
    f.produce(20, 2);
    let consumer = f.builder().concurrency(1).build().expect("valid config");
    let control = consumer.control();
    let (log, gate, running) = (
        Log::default(),
        Arc::new(Semaphore::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let run = tokio::spawn(consumer.run(gated(&log, &gate, &running), std::future::pending()));
    let wait_running = |n: usize| {
        let running = running.clone();
        async move {
            for _ in 0..1200 {
                if running.load(Ordering::SeqCst) == n {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("never {n} running");
        }
    };
    wait_running(1).await;
    let refused = control
        .set_limits(Limits {
            key_max_records: 1,
            ..Limits::default()
        })
        .await;
    assert!(
        matches!(&refused, Err(Error::Config { field, .. }) if field == "limits.key_max_records"),
        "refused, naming the field: {refused:?}"
    );
    let refused = control.set_concurrency(0).await;
    assert!(
        matches!(&refused, Err(Error::Config { field, .. }) if field == "limits.max_in_flight"),
        "refused, naming the field: {refused:?}"
    );
    assert_eq!(running.load(Ordering::SeqCst), 1, "still one at a time");
    control.set_concurrency(5).await.expect("accepted");
    wait_running(5).await;
    control
        .shutdown(ShutdownMode::FinishInFlight)
        .await
        .expect("shutdown asked");
    gate.add_permits(100);
    run.await.expect("joined").expect("consumer ran cleanly");
    assert!(
        control.pause(Target::All).await.is_err(),
        "a stopped consumer refuses commands"
    );
}

/// A topic paused before `run` covers the partitions the group gives the consumer later: a
/// second member's partitions move to it when that member leaves, and stay paused until the
/// resume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_topic_stays_paused_across_rebalances_until_resumed() {
    const KEYS: usize = 100;
    let f = Fixture::new("control-rebalance", 2).await;
    f.produce(KEYS, 2);
    let first = f.builder().build().expect("valid config");
    let (control, observer) = (first.control(), first.observer());
    // Carried out as the consumer starts, before it subscribes.
    let paused = tokio::spawn({
        let (control, topic) = (control.clone(), f.topic.name().to_owned());
        async move { control.pause(Target::topic(topic)).await }
    });
    let (log_first, log_second) = (Log::default(), Log::default());
    let stop_first = Arc::new(tokio::sync::Notify::new());
    let s = stop_first.clone();
    let run_first = tokio::spawn(first.run(logging(&log_first), async move { s.notified().await }));
    paused.await.expect("joined").expect("paused");
    let second = f.builder().build().expect("valid config");
    let stop_second = Arc::new(tokio::sync::Notify::new());
    let s = stop_second.clone();
    let run_second =
        tokio::spawn(second.run(logging(&log_second), async move { s.notified().await }));
    // The second member handles its partition; the first, paused, nothing of its own.
    log_second
        .until("the second member handled records", |l| !l.is_empty())
        .await;
    stop_second.notify_one();
    run_second
        .await
        .expect("joined")
        .expect("second ran cleanly");
    for _ in 0..1200 {
        if observer.snapshot().partitions.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        observer.snapshot().partitions.len(),
        2,
        "the first member owns both"
    );
    assert_eq!(log_first.count(|_| true), 0, "nothing handled while paused");
    control.resume(Target::All).await.expect("resumed");
    let all = |l: &[Seen]| handled(l, 0..2, |_| true);
    assert!(
        all(&log_second.0.lock().unwrap()) < KEYS * 2,
        "the second member had one partition"
    );
    log_first
        .until("the first member handled what the second left", |l| {
            let mut both = l.to_vec();
            both.extend(log_second.0.lock().unwrap().iter().cloned());
            all(&both) == KEYS * 2
        })
        .await;
    stop_first.notify_one();
    run_first.await.expect("joined").expect("first ran cleanly");
}
