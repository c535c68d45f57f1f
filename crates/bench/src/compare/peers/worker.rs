//! Our side of a peer comparison, in a process of its own (`kafkaesque bench --peer-worker JOB`):
//! this consumer, or the raw rdkafka loop, speaking the protocol of [`super::side`] — the same as
//! the Java harness's.

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use kafkaesque_engine::Merge;
use kafkaesque_runtime::{Consumer, HandlerError, HotKeyPolicy, ProcessingOrder, Record};
use kafkaesque_testkit::Broker;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::Notify;

use super::side::{Job, Order, Outcome, Policy, Side};
use crate::compare::kafka::{blocking, raw};
use crate::load::drive::now_ms;
use crate::rig::GROUP_PROPERTIES;
use crate::stats::{peak_rss_bytes, process_cpu_seconds};

/// Runs the job, prints its outcome, and returns.
///
/// # Errors
/// When the job does not parse or the consumer fails.
pub async fn run(job: &str) -> Result<()> {
    let job: Job = serde_json::from_str(job).context("peer job")?;
    let outcome = match job.side {
        Side::Ours => {
            if job.warmup > 0 {
                let warm = Job {
                    group: format!("{}-warmup", job.group),
                    records: job.warmup,
                    stream: false,
                    samples: false,
                    ..job.clone()
                };
                ours(&warm, false).await?;
            }
            ours(&job, true).await?
        }
        Side::Raw => raw_loop(&job).await?,
        other => bail!("the peer worker runs ours or raw, not {other:?}"),
    };
    say(&serde_json::to_string(&outcome)?);
    Ok(())
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// The raw rdkafka loop of the overhead comparison ([`raw`]), warmed up alike.
async fn raw_loop(job: &Job) -> Result<Outcome> {
    let broker = Broker::connect(&job.brokers).await?;
    if job.warmup > 0 {
        let (b, t, n) = (broker.clone(), job.topic.clone(), job.warmup);
        blocking(move || raw(&b, &t, n)).await?;
    }
    let (b, t, n) = (broker.clone(), job.topic.clone(), job.records);
    let run = blocking(move || raw(&b, &t, n)).await?;
    let seconds = n as f64 / run.rate;
    Ok(Outcome {
        records: n,
        seconds,
        cpu_seconds: run.cpu_us.map_or(0.0, |us| us * n as f64 / 1e6),
        peak_rss_bytes: peak_rss_bytes().unwrap_or(0),
        samples: Vec::new(),
        busiest: None,
    })
}

/// A point in time and the process's CPU seconds then.
#[derive(Debug, Clone, Copy)]
struct Mark {
    at: Instant,
    cpu: f64,
}

impl Mark {
    fn now() -> Self {
        Mark {
            at: Instant::now(),
            cpu: process_cpu_seconds().unwrap_or(0.0),
        }
    }
}

/// One pass's count and clock, shared by the handler calls.
#[derive(Debug)]
struct Pass {
    expected: AtomicUsize,
    done: AtomicUsize,
    first: OnceLock<Mark>,
    last: OnceLock<Mark>,
    ready: AtomicBool,
    over: Notify,
    samples: Mutex<Vec<[i64; 4]>>,
}

impl Pass {
    fn finish(&self) {
        self.last.get_or_init(Mark::now);
        self.over.notify_one();
    }

    fn completed(&self, n: usize) {
        if self.done.fetch_add(n, AtomicOrdering::Relaxed) + n
            >= self.expected.load(AtomicOrdering::Relaxed)
        {
            self.finish();
        }
    }
}

/// One pass of this consumer over the job's topic: until `job.records` are handled, or as
/// standard input says when that is 0. The clock starts at the first handler call: the
/// consumer hands a record to its handler as it is offered, so that is where the record was
/// fetched, to within the driver's turn.
async fn ours(job: &Job, report: bool) -> Result<Outcome> {
    let mut builder = Consumer::builder()
        .brokers(&job.brokers)
        .group_id(&job.group)
        .topics([job.topic.clone()])
        .ordering(match job.order {
            Order::Key => ProcessingOrder::Key,
            Order::Partition => ProcessingOrder::Partition,
        })
        .concurrency(job.concurrency);
    builder = match job.policy {
        None => builder,
        Some(Policy::Coalesce) => {
            let merge: Arc<dyn Merge<Record>> = Arc::new(last_wins);
            builder.hot_key(HotKeyPolicy::Coalesce(merge))
        }
        Some(Policy::Divert) => builder.hot_key(HotKeyPolicy::Divert),
        Some(Policy::Backpressure) => builder.hot_key(HotKeyPolicy::Backpressure),
    };
    for (k, v) in GROUP_PROPERTIES {
        builder = builder.set(k, v);
    }
    let consumer = builder.build()?;
    let expected = if job.records == 0 {
        usize::MAX
    } else {
        job.records
    };
    let pass = Arc::new(Pass {
        expected: AtomicUsize::new(expected),
        done: AtomicUsize::new(0),
        first: OnceLock::new(),
        last: OnceLock::new(),
        ready: AtomicBool::new(false),
        over: Notify::new(),
        samples: Mutex::new(Vec::new()),
    });
    if report {
        let p = pass.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(tokio::io::stdin()).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(n) = line.trim().strip_prefix("expect ") {
                    if let Ok(n) = n.trim().parse::<usize>() {
                        p.expected.store(n, AtomicOrdering::Relaxed);
                        p.completed(0);
                    }
                }
            }
            p.finish();
        });
    }
    let (stream, samples) = (job.stream && report, job.samples && report);
    let hot_key = job.handler.hot_key.clone().map(Bytes::from);
    let handler = job.handler.clone();
    let p = pass.clone();
    let handle = move |r: Record| {
        let (pass, hot_key, handler) = (p.clone(), hot_key.clone(), handler.clone());
        async move {
            pass.first.get_or_init(Mark::now);
            let hot = hot_key.is_some() && r.key_bytes() == hot_key.as_ref();
            let ms = handler.sleep_ms(r.offset(), hot);
            if ms > 0 {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            if report && !pass.ready.swap(true, AtomicOrdering::Relaxed) {
                say("ready");
            }
            if stream {
                say(&format!("done {} {}", r.partition(), r.offset()));
            }
            if samples {
                let created = r.timestamp().unwrap_or(0);
                let sample = [now_ms(), created, i64::from(hot), r.coalesced() as i64];
                pass.samples.lock().expect("samples").push(sample);
            }
            pass.completed(r.coalesced());
            Ok::<(), HandlerError>(())
        }
    };
    let p = pass.clone();
    consumer
        .run(handle, async move {
            p.over.notified().await;
        })
        .await?;
    let start = pass.first.get().or(pass.last.get()).copied();
    let end = pass.last.get().copied();
    let (seconds, cpu_seconds) = match (start, end) {
        (Some(s), Some(e)) => ((e.at - s.at).as_secs_f64(), e.cpu - s.cpu),
        _ => (0.0, 0.0),
    };
    let records = pass.done.load(AtomicOrdering::Relaxed).min(expected);
    let samples = std::mem::take(&mut *pass.samples.lock().expect("samples"));
    Ok(Outcome {
        records,
        seconds,
        cpu_seconds,
        peak_rss_bytes: peak_rss_bytes().unwrap_or(0),
        samples,
        busiest: None,
    })
}

/// The synthetic incident's merge: the newer record wins and stands for both.
fn last_wins(_key: &[u8], older: &mut Record, newer: Record) -> usize {
    older.absorb(&newer);
    older.set_payload(newer.payload_bytes().cloned());
    older.payload().map_or(0, <[u8]>::len)
}
