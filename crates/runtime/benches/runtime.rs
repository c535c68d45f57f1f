//! Against the local broker (`scripts/broker start`), in one run: the raw rdkafka consume rate
//! with a no-op loop vs this runtime with a no-op handler; and one partition of 10,000 keys with
//! a 5 ms handler at concurrency 1,000 vs partition-serial processing. Prints medians of
//! interleaved repetitions and their ratios. Not a test: nothing here asserts a timing.
//!
//!     cargo bench -p kafkaesque-runtime --bench runtime [-- --quick]
//!
//! `BENCH_OVERHEAD_ONLY=1` or `BENCH_CONCURRENCY_ONLY=1` run one half; `BENCH_BIG_CAPS=1` raises
//! the partition and global caps to 1,000,000 records (the default caps pause the single
//! partition often, and every pause costs a seek and a re-fetch).

use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafkaesque_runtime::{Consumer, HandlerError, Ordering, Record};
use kafkaesque_testkit::{require_broker, unique_name, Broker};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::Message;
use tokio::sync::Notify;

fn produce(broker: &Broker, topic: &str, records: usize, keys: usize) {
    let p: BaseProducer = broker
        .client_config()
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "2000000")
        .create()
        .unwrap();
    let value = vec![b'x'; 100];
    for i in 0..records {
        let key = format!("key-{}", i % keys);
        while p
            .send(BaseRecord::<str, [u8]>::to(topic).key(&key).payload(&value))
            .is_err()
        {
            p.poll(Duration::from_millis(5));
        }
    }
    p.flush(Duration::from_secs(120)).unwrap();
}

/// Records per second of a bare poll loop, from the first record to the last.
fn raw(broker: &Broker, topic: &str, records: usize) -> f64 {
    let c: BaseConsumer = broker
        .group_config(&unique_name("raw"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    c.subscribe(&[topic]).unwrap();
    let mut n = 0;
    let mut first = None;
    while n < records {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            std::hint::black_box(m.offset());
            first.get_or_insert_with(Instant::now);
            n += 1;
        }
    }
    records as f64 / first.unwrap().elapsed().as_secs_f64()
}

/// Records per second through the runtime, from the first handler call to the last.
async fn ours(
    broker: &Broker,
    topic: &str,
    records: usize,
    ordering: Ordering,
    concurrency: usize,
    handler_ms: u64,
) -> f64 {
    let first = Arc::new(Mutex::new(None::<Instant>));
    let count = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(Notify::new());
    let (f, c, d) = (first.clone(), count.clone(), done.clone());
    let handler = move |_r: Record| {
        let (f, c, d) = (f.clone(), c.clone(), d.clone());
        async move {
            f.lock().unwrap().get_or_insert_with(Instant::now);
            if handler_ms > 0 {
                tokio::time::sleep(Duration::from_millis(handler_ms)).await;
            }
            if c.fetch_add(1, AtomicOrdering::Relaxed) + 1 == records {
                d.notify_one();
            }
            Ok::<(), HandlerError>(())
        }
    };
    let consumer = Consumer::builder()
        .brokers(broker.bootstrap_servers())
        .group_id(unique_name("ours"))
        .topics([topic])
        .ordering(ordering)
        .concurrency(concurrency)
        .limits(if std::env::var_os("BENCH_BIG_CAPS").is_some() {
            kafkaesque_runtime::Limits {
                partition_max_records: 1_000_000,
                global_max_records: 1_000_000,
                ..Default::default()
            }
        } else {
            Default::default()
        })
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "1000");
    let consumer = consumer.build().unwrap();
    let end = Arc::new(Mutex::new(None::<Instant>));
    let e = end.clone();
    consumer
        .run(handler, async move {
            done.notified().await;
            *e.lock().unwrap() = Some(Instant::now());
        })
        .await
        .unwrap();
    let (start, stop) = (first.lock().unwrap().unwrap(), end.lock().unwrap().unwrap());
    records as f64 / (stop - start).as_secs_f64()
}

/// Raw poll loop vs the runtime with a no-op handler; returns the raw rate.
async fn overhead(broker: &Broker, n: usize, reps: usize) -> f64 {
    let topic = broker.create_topic("bench-overhead", 4).await.unwrap();
    tokio::task::block_in_place(|| produce(broker, topic.name(), n, 10_000));
    let (mut r, mut o) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        r.push(tokio::task::block_in_place(|| raw(broker, topic.name(), n)));
        o.push(ours(broker, topic.name(), n, Ordering::Key, 1_000, 0).await);
    }
    let (raw_rate, our_rate) = (median(r), median(o));
    println!("overhead: {n} records x {reps} reps, 4 partitions, 10,000 keys, no-op handler");
    println!("  raw rdkafka poll loop   {raw_rate:>12.0} records/s");
    println!(
        "  kafkaesque (key order)  {our_rate:>12.0} records/s   ratio {:.2}x (target >= 0.9x)",
        our_rate / raw_rate
    );

    raw_rate
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
    let broker = require_broker().await;
    let (n, reps) = if quick { (100_000, 3) } else { (300_000, 5) };

    let only_concurrency = std::env::var_os("BENCH_CONCURRENCY_ONLY").is_some();
    let raw_rate = if only_concurrency {
        f64::INFINITY
    } else {
        overhead(&broker, n, reps).await
    };
    if std::env::var_os("BENCH_OVERHEAD_ONLY").is_some() {
        return;
    }
    let topic = broker.create_topic("bench-concurrency", 1).await.unwrap();
    let m = if quick { 50_000 } else { 200_000 };
    tokio::task::block_in_place(|| produce(&broker, topic.name(), m, 10_000));
    let raw_one = tokio::task::block_in_place(|| raw(&broker, topic.name(), m));
    let serial_n = 400; // 5 ms each: 2 s of partition-serial work
    let (mut c, mut s) = (Vec::new(), Vec::new());
    for _ in 0..reps.min(3) {
        c.push(ours(&broker, topic.name(), m, Ordering::Key, 1_000, 5).await);
        s.push(
            ours(
                &broker,
                topic.name(),
                serial_n,
                Ordering::Partition,
                1_000,
                5,
            )
            .await,
        );
    }
    let (conc, serial) = (median(c), median(s));
    let bound = (1_000.0 / 0.005f64).min(raw_rate).min(raw_one);
    println!("concurrency: 1 partition, 10,000 keys, 5 ms handler, concurrency 1,000");
    println!("  raw poll loop, 1 part.  {raw_one:>12.0} records/s");
    println!("  partition-serial        {serial:>12.0} records/s");
    println!(
        "  kafkaesque (key order)  {conc:>12.0} records/s   {:.0}x serial (target >= 100x)",
        conc / serial
    );
    println!(
        "  bound min(C/L, raw)     {bound:>12.0} records/s   {:.2}x of bound (target >= 0.9x)",
        conc / bound
    );
}
