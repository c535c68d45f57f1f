//! What exactly-once costs: the same topic and handlers, each record producing one output,
//! at least once (the baseline: a record completes once its output is acknowledged) and
//! exactly once (outputs and offsets committed in a transaction per commit interval, which
//! waits for the handler runs in flight), interleaved. Two runs: the no-op handler of
//! [`overhead`](super::overhead) (4 partitions, 10,000 keys) and the 5 ms handler of
//! [`concurrency`](super::concurrency) (1 partition, 10,000 keys, concurrency 1,000).

use std::time::Duration;

use anyhow::Result;
use kafkaesque_runtime::{Consumer, ConsumerBuilder, ProcessingOrder};
use kafkaesque_testkit::{unique_name, Broker};

use super::kafka::{blocking, produce, timed_producing};
use crate::report::Figure;
use crate::rig::GROUP_PROPERTIES;

const KEYS: usize = 10_000;
const CONCURRENCY: usize = 1_000;

/// `records` records through the no-op run, `slow` through the 5 ms run, `reps` times each.
///
/// # Errors
/// When a topic cannot be made or a run fails.
pub async fn run(broker: &Broker, records: usize, slow: usize, reps: usize) -> Result<Vec<Figure>> {
    let mut figures = one(broker, "no-op", 4, records, Duration::ZERO, reps).await?;
    figures.extend(one(broker, "5 ms", 1, slow, Duration::from_millis(5), reps).await?);
    Ok(figures)
}

async fn one(
    broker: &Broker,
    label: &str,
    partitions: i32,
    records: usize,
    handler: Duration,
    reps: usize,
) -> Result<Vec<Figure>> {
    let topic = broker.create_topic("bench-eos", partitions).await?;
    let out = broker.create_topic("bench-eos-out", partitions).await?;
    let name = topic.name().to_owned();
    let b = broker.clone();
    blocking(move || produce(&b, &name, records, KEYS)).await?;
    let (mut alo, mut eos) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        for (exactly_once, rates) in [(false, &mut alo), (true, &mut eos)] {
            let mut b = builder(broker, topic.name());
            if exactly_once {
                b = b.exactly_once();
            }
            let run = timed_producing(b.build()?, records, out.name(), handler).await?;
            rates.push(run.rate);
        }
    }
    let base = Figure::new(
        "exactly-once",
        &format!("{label}: at least once, one output per record"),
        "records/s",
        alo,
    )
    .note(format!(
        "{records} records, {partitions} partition(s), {KEYS} keys, concurrency {CONCURRENCY}, \
         commit interval 1 s; a new group per run"
    ));
    let eos = Figure::new(
        "exactly-once",
        &format!("{label}: exactly once, one output per record"),
        "records/s",
        eos,
    )
    .vs(&base);
    Ok(vec![base, eos])
}

fn builder(broker: &Broker, topic: &str) -> ConsumerBuilder {
    let mut b = Consumer::builder()
        .brokers(broker.bootstrap_servers())
        .group_id(unique_name("bench-eos"))
        .topics([topic])
        .ordering(ProcessingOrder::Key)
        .concurrency(CONCURRENCY);
    for (k, v) in GROUP_PROPERTIES {
        b = b.set(k, v);
    }
    b
}
