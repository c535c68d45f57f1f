//! Where handlers run and how they are bounded: a blocking handler holds up only its own key,
//! the consumer runs on a current-thread runtime, and a handler that times out is retried and
//! then dead-lettered.

mod common;

use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use common::{ends_cleanly, first_dead_letter, header, key, Fixture, Ledger};
use kafkaesque_runtime::{headers, HandlerError, Record, RetryPolicy};
use kafkaesque_testkit::Broker;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use tokio::sync::Notify;

/// Sends `(key, value)` records in order (idempotent: the partition keeps that order).
fn send(broker: &Broker, topic: &str, records: &[(String, String)]) {
    let p: BaseProducer = broker
        .client_config()
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    for (k, v) in records {
        p.send(BaseRecord::<str, str>::to(topic).key(k).payload(v))
            .unwrap();
    }
    p.flush(Duration::from_secs(30)).unwrap();
}

fn text(r: &Record) -> String {
    String::from_utf8_lossy(r.payload().unwrap_or_default()).into_owned()
}

const OTHERS: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_blocking_before_its_first_await_does_not_hold_up_the_other_keys() {
    let f = Fixture::new("rt-blocking", 1).await;
    let blocker = [("blocker".to_owned(), "blocker".to_owned())];
    tokio::task::block_in_place(|| send(&f.broker, f.topic.name(), &blocker));
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
    let started_tx = Mutex::new(Some(started_tx));
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    let others_done = Arc::new(Notify::new());
    let state = Arc::new((started_tx, release_rx));
    let (l, done) = (log.clone(), others_done.clone());
    let handler = move |r: Record| {
        let (l, done, state) = (l.clone(), done.clone(), state.clone());
        async move {
            let t = text(&r);
            if t == "blocker" {
                l.lock().unwrap().push("blocker started".into());
                if let Some(tx) = state.0.lock().unwrap().take() {
                    let _ = tx.send(());
                }
                // Synchronous, before any `.await`: this thread is held until the test says.
                state.1.lock().unwrap().recv().unwrap();
                l.lock().unwrap().push("blocker finished".into());
            } else {
                let mut g = l.lock().unwrap();
                g.push(format!("{t} finished"));
                if g.iter().filter(|e| e.starts_with("key-")).count() == OTHERS {
                    done.notify_one();
                }
            }
            Ok::<_, HandlerError>(())
        }
    };
    let stop = Arc::new(Notify::new());
    let s = stop.clone();
    let consumer = f.builder().concurrency(50).build().unwrap();
    let run = tokio::spawn(consumer.run(handler, async move { s.notified().await }));

    // Only once the blocker is blocked are the other keys' records produced: they must be
    // fetched, dispatched and finished while it is still blocked.
    tokio::time::timeout(Duration::from_secs(60), started_rx)
        .await
        .expect("the blocker started")
        .unwrap();
    let others: Vec<(String, String)> = (0..OTHERS).map(|k| (key(k), key(k))).collect();
    let (b, t) = (f.broker.clone(), f.topic.name().to_owned());
    tokio::task::spawn_blocking(move || send(&b, &t, &others))
        .await
        .unwrap();
    let waited = tokio::time::timeout(Duration::from_secs(60), others_done.notified()).await;
    log.lock().unwrap().push("released".into());
    release_tx.send(()).unwrap();
    assert!(
        waited.is_ok(),
        "the other keys did not finish while the blocker blocked: {:?}",
        log.lock().unwrap()
    );
    stop.notify_one();
    run.await.unwrap().expect("clean run");

    let log = log.lock().unwrap().clone();
    assert_eq!(log[0], "blocker started");
    assert_eq!(log[OTHERS + 1], "released", "{log:?}");
    assert_eq!(log[OTHERS + 2], "blocker finished", "{log:?}");
    assert!(
        log[1..=OTHERS].iter().all(|e| e.starts_with("key-")),
        "{log:?}"
    );
}

#[tokio::test]
async fn run_works_on_a_current_thread_runtime_and_keeps_per_key_order() {
    const KEYS: usize = 20;
    const PER_KEY: usize = 10;
    let f = Fixture::new("rt-current-thread", 2).await;
    // Blocks this runtime's only thread, before anything else runs on it.
    common::produce(&f.broker, &f.topic, KEYS, PER_KEY);
    let ledger = Ledger::default();
    let all = Arc::new(Notify::new());
    let (l, a) = (ledger.clone(), all.clone());
    let handler = move |r: Record| {
        let (l, a) = (l.clone(), a.clone());
        async move {
            tokio::task::yield_now().await;
            if l.record(&r) == KEYS * PER_KEY {
                a.notify_one();
            }
            Ok::<_, HandlerError>(())
        }
    };
    let run = f
        .builder()
        .concurrency(16)
        .build()
        .unwrap()
        .run(handler, async move { all.notified().await });
    ends_cleanly(run, Duration::from_secs(120)).await;
    ledger.check(KEYS, PER_KEY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_times_out_is_retried_and_then_dead_lettered_with_reason_timeout() {
    let f = Fixture::new("rt-timeout", 1).await;
    let records = [("slow", "slow:0"), ("quick", "quick:0"), ("slow", "slow:1")]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
    tokio::task::block_in_place(|| send(&f.broker, f.topic.name(), &records));
    // What the handlers did, in order.
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    let finished = Arc::new(Notify::new());
    let (l, done) = (log.clone(), finished.clone());
    let handler = move |r: Record| {
        let (l, done) = (l.clone(), done.clone());
        async move {
            let t = text(&r);
            if t == "slow:0" {
                l.lock()
                    .unwrap()
                    .push(format!("{t} attempt {}", r.attempt()));
                std::future::pending::<()>().await;
            }
            l.lock().unwrap().push(format!("{t} done"));
            if t == "slow:1" {
                done.notify_one();
            }
            Ok::<_, HandlerError>(())
        }
    };
    let run = f
        .builder()
        .handler_timeout(Duration::from_millis(200))
        .retry(RetryPolicy {
            max_attempts: 3,
            base_backoff_ms: 50,
            max_backoff_ms: 200,
        })
        .build()
        .unwrap()
        .run(handler, async move { finished.notified().await });
    ends_cleanly(run, Duration::from_secs(120)).await;

    let log = log.lock().unwrap().clone();
    let slow: Vec<&String> = log.iter().filter(|e| e.starts_with("slow")).collect();
    assert_eq!(
        slow,
        [
            "slow:0 attempt 1",
            "slow:0 attempt 2",
            "slow:0 attempt 3",
            "slow:1 done"
        ],
        "{log:?}"
    );
    assert!(log.contains(&"quick:0 done".to_owned()), "{log:?}");

    let m = first_dead_letter(&f.broker, &format!("{}.dlq", f.topic.name()));
    assert_eq!(m.payload(), Some("slow:0".as_bytes()));
    assert_eq!(header(&m, headers::REASON), "timeout");
    assert_eq!(header(&m, headers::ATTEMPTS), "3");
}

/// Log lines, kept for the test to read.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn lines(&self, containing: &str) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .filter(|l| l.contains(containing))
            .map(str::to_owned)
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_stuck_in_flight_shows_in_the_gauge_and_a_warning_naming_it_until_it_finishes() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let metrics = recorder.handle();
    metrics::set_global_recorder(recorder).unwrap();
    let logs = Captured::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .json()
        .with_writer(move || writer.clone())
        .init();
    let stuck_keys = || {
        metrics
            .render()
            .lines()
            .find(|l| l.starts_with("kafkaesque_stuck_keys"))
            .and_then(|l| l.rsplit(' ').next().map(str::to_owned))
    };

    let f = Fixture::new("rt-stuck", 1).await;
    let records = [
        ("quick", "quick:0"),
        ("stuck", "stuck:0"),
        ("quick", "quick:1"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()));
    tokio::task::block_in_place(|| send(&f.broker, f.topic.name(), &records));
    let release = Arc::new(Notify::new());
    let quick_done = Arc::new(Notify::new());
    let (r, q) = (release.clone(), quick_done.clone());
    let handler = move |rec: Record| {
        let (r, q) = (r.clone(), q.clone());
        async move {
            match text(&rec).as_str() {
                "stuck:0" => r.notified().await,
                "quick:1" => q.notify_one(),
                _ => {}
            }
            Ok::<_, HandlerError>(())
        }
    };
    let stop = Arc::new(Notify::new());
    let s = stop.clone();
    let consumer = f
        .builder()
        .stuck_key_alarm(Duration::from_millis(300))
        .build()
        .unwrap();
    let run = tokio::spawn(consumer.run(handler, async move { s.notified().await }));
    quick_done.notified().await;

    // While the handler of `stuck` waits: the gauge counts it and one warning names it.
    let alarm = async {
        while stuck_keys().as_deref() != Some("1") || logs.lines("key stuck").is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), alarm)
        .await
        .expect("the stuck-key alarm went off");
    let warning = logs.lines("key stuck").remove(0);
    for field in [
        r#""level":"WARN""#,
        r#""key":"stuck""#,
        r#""partition":0"#,
        r#""offset":1"#,
    ] {
        assert!(warning.contains(field), "{field} missing from {warning}");
    }

    // Once it finishes, the gauge goes back to zero.
    release.notify_one();
    let cleared = async {
        while stuck_keys().as_deref() != Some("0") {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), cleared)
        .await
        .expect("the alarm cleared");
    assert_eq!(
        logs.lines("key stuck").len(),
        1,
        "the warning is given once"
    );
    stop.notify_one();
    run.await.unwrap().expect("clean run");
}
