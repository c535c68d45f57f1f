//! Concurrency beyond partitions: one partition, 10,000 keys, a 5 ms handler, concurrency 1,000.
//! This consumer (key order) vs partition-serial (Kafka's native model) vs the legacy design
//! (hashed worker queues and one global cap) vs the bound min(C / L, raw poll rate of that
//! partition). Targets: ≥ 0.9× the bound, ≥ 100× partition-serial.
//!
//! C / L assumes a handler that takes exactly 5 ms. A tokio sleep ends on the timer's next
//! millisecond tick and its task must then be woken on one of two shared cores, so the same
//! handler takes longer; the *timer ceiling* — C tasks doing nothing but that sleep in a loop, no
//! Kafka and no consumer — measures what the handler allows on this machine, and the consumer is
//! also reported against it.

use std::time::Duration;

use anyhow::Result;
use kafkaesque_runtime::{Consumer, ProcessingOrder};
use kafkaesque_testkit::Broker;

use super::kafka::{blocking, ours, produce, raw};
use super::{legacy_design, LEGACY_GLOBAL_CAP, LEGACY_QUEUES};
use crate::report::Figure;
use crate::stats::median;

const KEYS: usize = 10_000;
const CONCURRENCY: usize = 1_000;
const HANDLER: Duration = Duration::from_millis(5);

/// `records` records; partition-serial runs `serial` of them (5 ms each is slow).
///
/// # Errors
/// When the topic cannot be made or a run fails.
pub async fn run(
    broker: &Broker,
    records: usize,
    serial: usize,
    reps: usize,
) -> Result<Vec<Figure>> {
    let topic = broker.create_topic("bench-concurrency", 1).await?;
    let name = topic.name().to_owned();
    let b = broker.clone();
    blocking(move || produce(&b, &name, records, KEYS)).await?;
    let (mut rw, mut k, mut sd, mut s) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut ceiling = Vec::new();
    for _ in 0..reps {
        let (b, name) = (broker.clone(), topic.name().to_owned());
        rw.push(blocking(move || raw(&b, &name, records)).await?.rate);
        ceiling.push(timer_ceiling(CONCURRENCY, HANDLER, CEILING_WINDOW).await);
        let key = Consumer::builder()
            .ordering(ProcessingOrder::Key)
            .concurrency(CONCURRENCY);
        k.push(
            ours(broker, topic.name(), records, key, HANDLER)
                .await?
                .rate,
        );
        let legacy = Consumer::builder().concurrency(CONCURRENCY);
        let legacy = legacy_design(legacy, CONCURRENCY, LEGACY_GLOBAL_CAP);
        sd.push(
            ours(broker, topic.name(), records / 5, legacy, HANDLER)
                .await?
                .rate,
        );
        let part = Consumer::builder()
            .ordering(ProcessingOrder::Partition)
            .concurrency(CONCURRENCY);
        s.push(
            ours(broker, topic.name(), serial, part, HANDLER)
                .await?
                .rate,
        );
    }
    let c_over_l = CONCURRENCY as f64 / HANDLER.as_secs_f64();
    let raw_one = median(&rw);
    let bound = Figure::new(
        "concurrency",
        "bound min(C/L, raw)",
        "records/s",
        rw.iter().map(|r| r.min(c_over_l)).collect(),
    )
    .note(format!(
        "C/L = {c_over_l:.0}/s; raw poll loop on this partition {raw_one:.0}/s (median); \
         {records} records, 1 partition, {KEYS} keys, 5 ms handler, concurrency {CONCURRENCY}"
    ));
    let serial = Figure::new("concurrency", "partition-serial", "records/s", s).note(format!(
        "{serial} records per run: at 5 ms each, longer runs add nothing"
    ));
    let key = Figure::new("concurrency", "kafkaesque (key order)", "records/s", k);
    let key_vs_serial = Figure {
        variant: "kafkaesque vs partition-serial".into(),
        ..key.clone()
    }
    .vs(&serial)
    .at_least("≥ 100× serial", 100.0);
    let ceiling = Figure::new("concurrency", "timer ceiling", "records/s", ceiling).note(format!(
        "{CONCURRENCY} tokio tasks looping a 5 ms sleep for {} s, no Kafka: what the handler \
         itself allows on this machine",
        CEILING_WINDOW.as_secs()
    ));
    let key_vs_ceiling = Figure {
        variant: "kafkaesque vs timer ceiling".into(),
        ..key.clone()
    }
    .vs(&ceiling);
    let key = key.vs(&bound).at_least("≥ 0.9× bound", 0.9);
    let legacy = Figure::new("concurrency", "legacy design", "records/s", sd)
        .vs(&bound)
        .note(format!(
            "{LEGACY_QUEUES} hashed worker queues per partition, one global cap of {LEGACY_GLOBAL_CAP}, \
             no hot-key policy; a fifth of the records per run (it is slow)"
        ));
    Ok(vec![
        bound,
        ceiling,
        key,
        key_vs_ceiling,
        key_vs_serial,
        legacy,
        serial,
    ])
}

/// How long the timer ceiling runs per repetition.
const CEILING_WINDOW: Duration = Duration::from_secs(2);

/// Completions per second of `tasks` tasks that each sleep `latency` in a loop for `window`.
async fn timer_ceiling(tasks: usize, latency: Duration, window: Duration) -> f64 {
    let start = tokio::time::Instant::now();
    let end = start + window;
    let loops: Vec<_> = (0..tasks)
        .map(|_| {
            tokio::spawn(async move {
                let mut n = 0u64;
                while tokio::time::Instant::now() < end {
                    tokio::time::sleep(latency).await;
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut done = 0u64;
    for l in loops {
        done += l.await.unwrap_or(0);
    }
    done as f64 / start.elapsed().as_secs_f64()
}
