//! What the Kafka comparisons share: filling a topic, a raw rdkafka poll loop (the ceiling of
//! any consumer on this broker), and a timed run of this consumer.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use kafkaesque_runtime::{Consumer, ConsumerBuilder, HandlerError, Output, Record};
use kafkaesque_testkit::{unique_name, Broker};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::Message;
use tokio::sync::Notify;

use crate::rig::GROUP_PROPERTIES;
use crate::stats::process_cpu_seconds;

/// The fetch back-off the consumer sets (`crates/runtime/src/config.rs`) instead of librdkafka's
/// 1 s, given to the raw loop too so that both fetch alike.
const RAW_FETCH: (&str, &str) = ("fetch.queue.backoff.ms", "20");

/// How long one consumer run may take before the comparison gives up on it.
const RUN_LIMIT: Duration = Duration::from_secs(300);

/// What one timed run measured, from the first record to the last.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    pub rate: f64,
    /// CPU the whole process spent per record meanwhile, in µs (see
    /// [`process_cpu_seconds`]); `None` where the kernel does not tell.
    pub cpu_us: Option<f64>,
}

/// A point to time a run from (or to).
#[derive(Debug, Clone, Copy)]
struct Mark {
    at: Instant,
    cpu: Option<f64>,
}

impl Mark {
    fn now() -> Self {
        Mark {
            at: Instant::now(),
            cpu: process_cpu_seconds(),
        }
    }

    /// `records` taken between `self` and `end`.
    fn run_to(self, end: Mark, records: usize) -> Run {
        let n = records as f64;
        Run {
            rate: n / (end.at - self.at).as_secs_f64(),
            cpu_us: end.cpu.zip(self.cpu).map(|(b, a)| (b - a) * 1e6 / n),
        }
    }
}

/// Writes `records` records of 100 bytes over `keys` keys (`key-0`, `key-1`, …) into `topic`.
/// Blocking: call it from `spawn_blocking`.
///
/// # Errors
/// When the producer cannot be created or does not flush within two minutes.
pub fn produce(broker: &Broker, topic: &str, records: usize, keys: usize) -> Result<()> {
    let p: BaseProducer = broker
        .client_config()
        .set("enable.idempotence", "true")
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "2000000")
        .create()?;
    let value = vec![b'x'; 100];
    for i in 0..records {
        let key = format!("key-{}", i % keys.max(1));
        while p
            .send(BaseRecord::<str, [u8]>::to(topic).key(&key).payload(&value))
            .is_err()
        {
            p.poll(Duration::from_millis(5));
        }
    }
    p.flush(Duration::from_secs(120))?;
    Ok(())
}

/// Records per second (and CPU per record) of a bare poll loop over `topic` in a new group, from
/// the first record to the last. Blocking: call it from `spawn_blocking`.
///
/// It fetches as the consumer does (`RAW_FETCH`: `fetch.queue.backoff.ms=20`): with librdkafka's own default, a run whose
/// local queue fills stands still for a whole second, so the raw rate varies several-fold from
/// one run to the next — and a median of that measures luck.
///
/// # Errors
/// When the consumer cannot be created or the records do not all arrive in time.
pub fn raw(broker: &Broker, topic: &str, records: usize) -> Result<Run> {
    let c: BaseConsumer = broker
        .group_config(&unique_name("bench-raw"))
        .set("auto.offset.reset", "earliest")
        .set(RAW_FETCH.0, RAW_FETCH.1)
        .create()?;
    c.subscribe(&[topic])?;
    let limit = Instant::now() + RUN_LIMIT;
    let mut n = 0;
    let mut first = None;
    while n < records {
        anyhow::ensure!(Instant::now() < limit, "raw loop: {n} of {records} records");
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            std::hint::black_box(m.offset());
            first.get_or_insert_with(Mark::now);
            n += 1;
        }
    }
    Ok(first.context("no record")?.run_to(Mark::now(), records))
}

/// Records per second (and CPU per record) through this consumer (`builder`, given its
/// ordering and limits) over `topic` in a new group, from the first handler call to the
/// `records`-th completion; each handler call sleeps `handler` first.
///
/// # Errors
/// When the consumer fails or does not finish in time.
pub async fn ours(
    broker: &Broker,
    topic: &str,
    records: usize,
    builder: ConsumerBuilder,
    handler: Duration,
) -> Result<Run> {
    let mut builder = builder
        .brokers(broker.bootstrap_servers())
        .group_id(unique_name("bench-ours"))
        .topics([topic]);
    for (k, v) in GROUP_PROPERTIES {
        builder = builder.set(k, v);
    }
    timed(builder.build()?, records, move |r: Record| async move {
        if !handler.is_zero() {
            tokio::time::sleep(handler).await;
        }
        Ok(r.coalesced())
    })
    .await
}

/// Runs `consumer` until `handler` has finished `records` records (it returns how many each call
/// finished: a coalesced delivery stands for several), then stops it; returns records per second
/// from the first handler call to the last completion — the group join before is not counted —
/// and the CPU the process spent per record meanwhile.
///
/// The bookkeeping around each call is one reference count, one atomic read and one atomic add:
/// with a no-op handler it is part of what is measured, so it must cost next to nothing.
///
/// # Errors
/// When the consumer fails or does not finish within five minutes.
pub async fn timed<H, F>(consumer: Consumer, records: usize, handler: H) -> Result<Run>
where
    H: Fn(Record) -> F + Send + Sync + 'static,
    F: Future<Output = Result<usize, HandlerError>> + Send + 'static,
{
    let tally = Tally::new(records, handler);
    let t = tally.clone();
    let handle = move |r: Record| {
        let t = t.clone();
        async move {
            t.started();
            let n = (t.handler)(r).await?;
            t.finished(n);
            Ok::<(), HandlerError>(())
        }
    };
    let end = Arc::new(OnceLock::new());
    consumer
        .run(handle, tally.clone().stop(end.clone()))
        .await?;
    tally.run(&end)
}

/// Like [`timed`], with a handler that returns one output per record for the consumer to produce
/// to `out` (its key and payload): a record completes once its output is acknowledged, and in
/// exactly-once mode, once its transaction commits.
///
/// # Errors
/// When the consumer fails or does not finish within five minutes.
pub async fn timed_producing(
    consumer: Consumer,
    records: usize,
    out: &str,
    handler: Duration,
) -> Result<Run> {
    let tally = Tally::new(records, out.to_owned());
    let t = tally.clone();
    let handle = move |r: Record| {
        let t = t.clone();
        async move {
            t.started();
            if !handler.is_zero() {
                tokio::time::sleep(handler).await;
            }
            let output = Output::new(&t.handler)
                .key(r.key_bytes().cloned().unwrap_or_default())
                .payload(r.payload_bytes().cloned().unwrap_or_default());
            t.finished(1);
            Ok::<_, HandlerError>(vec![output])
        }
    };
    let end = Arc::new(OnceLock::new());
    consumer
        .run_producing(handle, tally.clone().stop(end.clone()))
        .await?;
    tally.run(&end)
}

/// What a timed run counts: when its first record started, and how many have finished; and
/// what its handler needs, so that each call clones one reference count.
struct Tally<H> {
    handler: H,
    records: usize,
    first: OnceLock<Mark>,
    count: AtomicUsize,
    done: Notify,
}

impl<H> Tally<H> {
    fn new(records: usize, handler: H) -> Arc<Self> {
        Arc::new(Tally {
            handler,
            records,
            first: OnceLock::new(),
            count: AtomicUsize::new(0),
            done: Notify::new(),
        })
    }

    fn started(&self) {
        self.first.get_or_init(Mark::now);
    }

    fn finished(&self, n: usize) {
        if self.count.fetch_add(n, AtomicOrdering::Relaxed) + n >= self.records {
            self.done.notify_one();
        }
    }

    /// The consumer's shutdown signal: every record finished (or the run limit passed); marks
    /// the end in `end`.
    async fn stop(self: Arc<Self>, end: Arc<OnceLock<Mark>>) {
        let _ = tokio::time::timeout(RUN_LIMIT, self.done.notified()).await;
        let _ = end.set(Mark::now());
    }

    fn run(&self, end: &OnceLock<Mark>) -> Result<Run> {
        let n = self.count.load(AtomicOrdering::Relaxed);
        anyhow::ensure!(
            n >= self.records,
            "consumer: {n} of {} records in time",
            self.records
        );
        let start = self.first.get().context("no record")?;
        let stop = end.get().context("no end")?;
        Ok(start.run_to(*stop, self.records))
    }
}

/// As [`ours`] with a no-op batch handler ([`Consumer::run_batches`]): `builder` sets the batch
/// size. Records per second from the first batch to the last completion.
///
/// # Errors
/// When the consumer fails or does not finish within five minutes.
pub async fn ours_batches(
    broker: &Broker,
    topic: &str,
    records: usize,
    builder: ConsumerBuilder,
) -> Result<Run> {
    let mut builder = builder
        .brokers(broker.bootstrap_servers())
        .group_id(unique_name("bench-batches"))
        .topics([topic]);
    for (k, v) in GROUP_PROPERTIES {
        builder = builder.set(k, v);
    }
    let first = Arc::new(OnceLock::new());
    let count = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(Notify::new());
    let (f, c, d) = (first.clone(), count.clone(), done.clone());
    let handle = move |batch: Vec<Record>| {
        let (f, c, d) = (f.clone(), c.clone(), d.clone());
        async move {
            f.get_or_init(Mark::now);
            let n: usize = batch.iter().map(Record::coalesced).sum();
            if c.fetch_add(n, AtomicOrdering::Relaxed) + n >= records {
                d.notify_one();
            }
            Ok::<(), HandlerError>(())
        }
    };
    let end = Arc::new(OnceLock::new());
    let e = end.clone();
    builder
        .build()?
        .run_batches(handle, async move {
            let _ = tokio::time::timeout(RUN_LIMIT, done.notified()).await;
            let _ = e.set(Mark::now());
        })
        .await?;
    let n = count.load(AtomicOrdering::Relaxed);
    anyhow::ensure!(n >= records, "consumer: {n} of {records} records in time");
    let start = first.get().context("no record")?;
    let stop = end.get().context("no end")?;
    Ok(start.run_to(*stop, records))
}

/// Runs a blocking closure on the blocking pool.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f).await?
}
