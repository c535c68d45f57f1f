//! Side by side with the peer: Confluent's Parallel Consumer 0.5.3.3 (Java) measured against
//! this consumer in the same run, on the same broker, topics and data, the sides interleaved
//! repetition by repetition, each in a process of its own ([`side`]).
//!
//! - [`throughput`] (row a): a no-op handler over 8 partitions: Parallel Consumer (KEY), ours,
//!   the plain Java consumer and the raw rdkafka loop; records/s and CPU per record;
//! - [`readme`] (row b): Parallel Consumer's own README scenario, 10,000 records on one
//!   partition, a 0–5 ms handler, concurrency 100, KEY and PARTITION order; ours also at
//!   concurrency 1,000, against the handler's own ceiling;
//! - [`incident`] (row c): one flooded key under Parallel Consumer (KEY) and under ours
//!   (Coalesce, Divert, Backpressure), with the same synthetic handler; the other keys' p99 and
//!   the lag over time, next to each side's no-flood baseline;
//! - memory (row d): each process's peak RSS in a, b and c, beside the row's other figures;
//! - [`replays`] (row e): a consumer SIGKILLed mid-run and restarted: records handled twice.
//!
//! The peer runs from the Maven project `peers/parallel-consumer/`, built on first use
//! ([`harness`]); ours runs in `kafkaesque bench --peer-worker` ([`worker`]).

pub mod harness;
pub mod incident;
pub mod readme;
pub mod replays;
pub mod side;
pub mod throughput;
pub mod worker;

use anyhow::Result;
use kafkaesque_testkit::{unique_name, Broker, TestTopic};

use crate::compare::kafka::{blocking, produce};
use crate::report::Figure;
use side::{Handler, Job, Order, Outcome, Side};

/// The memory table's name (row d): every row adds its processes' peak RSS to it.
pub const MEMORY: &str = "peers d: peak RSS";

/// How big the peer rows are.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// Row a: records per run, and the warm-up before each.
    pub noop_records: usize,
    pub noop_warmup: usize,
    /// Row b: records (10,000 in the README) and repetitions of the slow PARTITION runs.
    pub readme_records: usize,
    pub readme_partition_reps: usize,
    pub incident: incident::Sizes,
    /// Row e: records of the run that is killed half-way.
    pub replay_records: usize,
}

impl Side {
    pub fn label(self) -> &'static str {
        match self {
            Side::ParallelConsumer => "Parallel Consumer",
            Side::PlainJava => "plain Java consumer",
            Side::Ours => "kafkaesque",
            Side::Raw => "raw rdkafka loop",
        }
    }
}

/// A job of `side` over `topic` in a new group; the rest as given.
#[allow(clippy::too_many_arguments)]
fn job(
    side: Side,
    broker: &Broker,
    topic: &str,
    order: Order,
    concurrency: usize,
    records: usize,
    warmup: usize,
    handler: Handler,
) -> Job {
    Job {
        side,
        brokers: broker.bootstrap_servers().to_owned(),
        topic: topic.to_owned(),
        group: unique_name("bench-peers"),
        records,
        warmup,
        order,
        concurrency,
        handler,
        policy: None,
        stream: false,
        samples: false,
    }
}

/// The peak RSS of `runs` (MiB), as a row of the memory table.
fn memory(row: &str, variant: &str, runs: &[Outcome]) -> Figure {
    Figure::new(
        MEMORY,
        &format!("{row}: {variant}"),
        "MiB",
        runs.iter().map(Outcome::rss_mib).collect(),
    )
}

/// `ours` against the peer's figure of the same row: less is the target.
fn less_memory(ours: Figure, peer: &Figure) -> Figure {
    ours.vs(peer).at_most("< 1× Parallel Consumer", 0.999)
}

/// A new topic of `partitions` holding `records` records of 100 bytes over `keys` keys.
async fn filled_topic(
    broker: &Broker,
    prefix: &str,
    partitions: i32,
    records: usize,
    keys: usize,
) -> Result<TestTopic> {
    let topic = broker.create_topic(prefix, partitions).await?;
    let (b, name) = (broker.clone(), topic.name().to_owned());
    blocking(move || produce(&b, &name, records, keys)).await?;
    Ok(topic)
}

/// `f` with a note of which thread was busiest in `runs` (after any note it has).
fn with_busiest(f: Figure, runs: &[Outcome]) -> Figure {
    match busiest(runs) {
        Some(b) => {
            let note = f.note.clone().map_or(b.clone(), |n| format!("{n}; {b}"));
            f.note(note)
        }
        None => f,
    }
}

/// The busiest threads of the run of `runs` that took the median time, with their shares of a
/// core between its first record handled and its last.
fn busiest(runs: &[Outcome]) -> Option<String> {
    let mut by_time: Vec<&Outcome> = runs.iter().collect();
    by_time.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
    let median = by_time.get(by_time.len().checked_sub(1)? / 2)?;
    Some(format!(
        "busiest threads of the median run, share of a core from its first record handled to its last: {}",
        median.busiest.as_ref()?
    ))
}
