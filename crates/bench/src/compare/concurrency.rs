//! Concurrency beyond partitions: one partition, 10,000 keys, a 5 ms handler, concurrency 1,000.
//! This consumer (key order) vs partition-serial (Kafka's native model) vs the seed's design
//! (hashed worker queues and one global cap) vs the bound min(C / L, raw poll rate of that
//! partition). Targets: ≥ 0.9× the bound, ≥ 100× partition-serial.

use std::time::Duration;

use anyhow::Result;
use kafkaesque_runtime::{Consumer, Ordering};
use kafkaesque_testkit::Broker;

use super::kafka::{blocking, ours, produce, raw};
use super::{seed_design, SEED_GLOBAL_CAP, SEED_QUEUES};
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
    for _ in 0..reps {
        let (b, name) = (broker.clone(), topic.name().to_owned());
        rw.push(blocking(move || raw(&b, &name, records)).await?);
        let key = Consumer::builder()
            .ordering(Ordering::Key)
            .concurrency(CONCURRENCY);
        k.push(ours(broker, topic.name(), records, key, HANDLER).await?);
        let seed = Consumer::builder().concurrency(CONCURRENCY);
        let seed = seed_design(seed, CONCURRENCY, SEED_GLOBAL_CAP);
        sd.push(ours(broker, topic.name(), records / 5, seed, HANDLER).await?);
        let part = Consumer::builder()
            .ordering(Ordering::Partition)
            .concurrency(CONCURRENCY);
        s.push(ours(broker, topic.name(), serial, part, HANDLER).await?);
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
    let key = key.vs(&bound).at_least("≥ 0.9× bound", 0.9);
    let seed = Figure::new("concurrency", "seed design", "records/s", sd)
        .vs(&bound)
        .note(format!(
            "{SEED_QUEUES} hashed worker queues per partition, one global cap of {SEED_GLOBAL_CAP}, \
             no hot-key policy; a fifth of the records per run (it is slow)"
        ));
    Ok(vec![bound, key, key_vs_serial, seed, serial])
}
