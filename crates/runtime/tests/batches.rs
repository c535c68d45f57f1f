//! The batch handler: a batch holds at most one record per key, no more than its size, and a
//! key's records arrive in offset order within and across batches; a failed batch fails each of
//! its records once, and each is retried on its own.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{ends_cleanly, Fixture, Ledger};
use kafkaesque_runtime::{HandlerError, Record};
use tokio::sync::Notify;

const KEYS: usize = 40;
const PER_KEY: usize = 25;
const MAX: usize = 16;

/// The record's key, as text.
fn key(r: &Record) -> String {
    String::from_utf8_lossy(r.key().unwrap_or_default()).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_hold_distinct_keys_and_keep_each_keys_offset_order_across_batches() {
    let f = Fixture::new("rt-batches", 4).await;
    f.produce(KEYS, PER_KEY);
    let ledger = Ledger::default();
    let sizes = Arc::new(Mutex::new(Vec::<usize>::new()));
    let all = Arc::new(Notify::new());
    let (l, s, a) = (ledger.clone(), sizes.clone(), all.clone());
    let handler = move |batch: Vec<Record>| {
        let (l, s, a) = (l.clone(), s.clone(), a.clone());
        async move {
            let keys: HashSet<String> = batch.iter().map(key).collect();
            assert_eq!(keys.len(), batch.len(), "a key twice in one batch");
            s.lock().unwrap().push(batch.len());
            let mut seen = 0;
            for r in &batch {
                seen = l.record(r);
            }
            if seen == KEYS * PER_KEY {
                a.notify_one();
            }
            tokio::task::yield_now().await;
            Ok::<_, HandlerError>(())
        }
    };
    let run = f
        .builder()
        .concurrency(64)
        .batch(MAX, Duration::from_millis(20))
        .build()
        .unwrap()
        .run_batches(handler, async move { all.notified().await });
    ends_cleanly(run, Duration::from_secs(120)).await;

    assert_eq!(ledger.check(KEYS, PER_KEY), 0, "duplicates without a crash");
    let sizes = sizes.lock().unwrap();
    assert!(sizes.iter().all(|&n| (1..=MAX).contains(&n)), "{sizes:?}");
    assert!(
        sizes.iter().any(|&n| n > 1),
        "no batch held more than one record"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_batch_fails_each_of_its_records_once_and_each_is_retried_in_order() {
    let f = Fixture::new("rt-batch-fail", 1).await;
    f.produce(8, 5);
    let ledger = Ledger::default();
    // The records of the first batch, which fails; then every record's attempt when applied.
    let failed = Arc::new(Mutex::new(Vec::<(String, i64)>::new()));
    let attempts = Arc::new(Mutex::new(Vec::<((String, i64), u32)>::new()));
    let all = Arc::new(Notify::new());
    let (l, fl, at, a) = (
        ledger.clone(),
        failed.clone(),
        attempts.clone(),
        all.clone(),
    );
    let handler = move |batch: Vec<Record>| {
        let (l, fl, at, a) = (l.clone(), fl.clone(), at.clone(), a.clone());
        async move {
            {
                let mut fl = fl.lock().unwrap();
                if fl.is_empty() {
                    fl.extend(batch.iter().map(|r| (key(r), r.offset())));
                    return Err(HandlerError::retry("the first batch fails"));
                }
            }
            let mut seen = 0;
            for r in &batch {
                at.lock().unwrap().push(((key(r), r.offset()), r.attempt()));
                seen = l.record(r);
            }
            if seen == 8 * 5 {
                a.notify_one();
            }
            Ok::<_, HandlerError>(())
        }
    };
    let run = f
        .builder()
        .concurrency(8)
        .batch(8, Duration::from_millis(20))
        .build()
        .unwrap()
        .run_batches(handler, async move { all.notified().await });
    ends_cleanly(run, Duration::from_secs(120)).await;

    ledger.check(8, 5);
    let failed = failed.lock().unwrap();
    let attempts = attempts.lock().unwrap();
    assert!(!failed.is_empty());
    for (record, attempt) in attempts.iter() {
        let expected = if failed.contains(record) { 2 } else { 1 };
        assert_eq!(*attempt, expected, "{record:?}");
    }
}
