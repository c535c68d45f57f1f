//! What the consumer costs over a bare rdkafka poll loop: the same topic (4 partitions, 10,000
//! keys), the raw loop and this consumer with a no-op handler, interleaved. Target ≥ 0.9×.
//! The headline row runs handlers as the consumer does by default (each a tokio task); beside
//! it, the same with the inline first poll, and a no-op batch handler against the per-record one.

use std::time::Duration;

use anyhow::Result;
use kafkaesque_runtime::{Consumer, ProcessingOrder};
use kafkaesque_testkit::Broker;

use super::kafka::{blocking, ours, ours_batches, produce, raw, Run};
use crate::report::Figure;

/// Records per call of the batch handler.
const BATCH: usize = 256;

/// Returns the rates and, where the kernel tells it, the CPU each side spent per record.
///
/// # Errors
/// When the topic cannot be made or a run fails.
pub async fn run(broker: &Broker, records: usize, reps: usize) -> Result<Vec<Figure>> {
    let topic = broker.create_topic("bench-overhead", 4).await?;
    let name = topic.name().to_owned();
    let b = broker.clone();
    blocking(move || produce(&b, &name, records, 10_000)).await?;
    let (mut r, mut o, mut inline, mut batched) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let builder = || {
        Consumer::builder()
            .ordering(ProcessingOrder::Key)
            .concurrency(1_000)
    };
    for _ in 0..reps {
        let (b, name) = (broker.clone(), topic.name().to_owned());
        r.push(blocking(move || raw(&b, &name, records)).await?);
        o.push(ours(broker, topic.name(), records, builder(), Duration::ZERO).await?);
        let cheap = builder().inline_first_poll(true);
        inline.push(ours(broker, topic.name(), records, cheap, Duration::ZERO).await?);
        let batches = builder().batch(BATCH, Duration::from_millis(5));
        batched.push(ours_batches(broker, topic.name(), records, batches).await?);
    }
    let rates = |runs: &[Run]| runs.iter().map(|r| r.rate).collect();
    let raw_rate =
        Figure::new("overhead", "raw rdkafka poll loop", "records/s", rates(&r)).note(format!(
            "{records} records, 4 partitions, 10,000 keys, 100-byte values; a new group per run"
        ));
    let ours_rate = Figure::new(
        "overhead",
        "kafkaesque, no-op handler",
        "records/s",
        rates(&o),
    )
    .vs(&raw_rate)
    .at_least("≥ 0.9× raw", 0.9)
    .note("the default: each handler run is a tokio task");
    let inline_rate = Figure::new(
        "overhead",
        "kafkaesque, no-op handler, inline first poll",
        "records/s",
        rates(&inline),
    )
    .vs(&raw_rate)
    .note("inline_first_poll(true): each run polled once on the driver thread first");
    let batch_rate = Figure::new(
        "overhead",
        "kafkaesque, no-op batch handler",
        "records/s",
        rates(&batched),
    )
    .vs(&ours_rate)
    .note(format!(
        "run_batches, up to {BATCH} records or 5 ms per call; against the per-record handler"
    ));
    let mut figures = vec![raw_rate, ours_rate, inline_rate, batch_rate];
    // Where both sides fill the machine's cores, the CPU each spends per record is what the
    // rate ratio comes from; beside the rates, it tells a repetition that waited (rate down, CPU
    // per record not up) from one that worked harder. Left out when a run was too short for the
    // kernel's ticks.
    let cpu = |runs: &[Run]| runs.iter().map(|r| r.cpu_us).collect::<Option<Vec<f64>>>();
    let measured = |v: &Vec<f64>| v.iter().all(|&x| x > 0.0);
    if let (Some(rc), Some(oc)) = (cpu(&r).filter(measured), cpu(&o).filter(measured)) {
        let unit = "µs CPU/record";
        let raw_cpu = Figure::new("overhead", "raw rdkafka poll loop, CPU", unit, rc).note(
            "CPU of the whole process (user + system, /proc/self/stat, 10 ms ticks) from the first record to the last, per record",
        );
        let ours_cpu = Figure::new("overhead", "kafkaesque, CPU", unit, oc).vs(&raw_cpu);
        figures.extend([raw_cpu, ours_cpu]);
    }
    Ok(figures)
}
