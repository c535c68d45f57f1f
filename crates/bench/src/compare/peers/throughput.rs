//! Row a: a no-op handler over 8 partitions, 10,000 keys, 100-byte values — what each consumer
//! costs per record. Parallel Consumer (KEY order), ours (key order), the plain Java
//! `KafkaConsumer` poll loop (the JVM's own ceiling) and the raw rdkafka loop (ours'), each warmed
//! up in its process before the timed pass, interleaved repetition by repetition. Targets: ours ≥
//! 5× Parallel Consumer's records/s and ≥ 0.9× the plain Java consumer's.

use anyhow::Result;
use kafkaesque_testkit::Broker;

use super::side::{self, Handler, Order, Outcome, Side};
use super::{filled_topic, job, less_memory, memory, with_busiest};
use crate::report::Figure;

const C: &str = "peers a: no-op, 8 partitions";

/// Handlers at once on both sides: Parallel Consumer's default (`maxConcurrency` 16). Ours
/// completes a no-op handler inline, so its concurrency does not enter.
const CONCURRENCY: usize = 16;

/// The sides, in the order each repetition runs them.
const SIDES: [Side; 4] = [
    Side::ParallelConsumer,
    Side::Ours,
    Side::PlainJava,
    Side::Raw,
];

/// # Errors
/// When the topic cannot be made or a run fails.
pub async fn run(
    broker: &Broker,
    records: usize,
    warmup: usize,
    reps: usize,
) -> Result<Vec<Figure>> {
    let topic = filled_topic(broker, "bench-peers-noop", 8, records, 10_000).await?;
    let mut runs: [Vec<Outcome>; 4] = Default::default();
    for _ in 0..reps {
        for (i, s) in SIDES.into_iter().enumerate() {
            let j = job(
                s,
                broker,
                topic.name(),
                Order::Key,
                CONCURRENCY,
                records,
                warmup.min(records),
                Handler::default(),
            );
            runs[i].push(side::run(&j).await?);
        }
    }
    let [pc, ours, plain, raw] = &runs;
    let rate = |label: &str, r: &[Outcome]| {
        Figure::new(C, label, "records/s", r.iter().map(Outcome::rate).collect())
    };
    let pc_rate = rate("Parallel Consumer (KEY)", pc).note(format!(
        "{records} records, 8 partitions, 10,000 keys, 100-byte values; each side warmed up on \
         {} records in its own process first; a new group per run; maxConcurrency {CONCURRENCY}",
        warmup.min(records)
    ));
    let plain_rate = rate("plain Java consumer", plain);
    let raw_rate = rate("raw rdkafka loop", raw);
    let ours_rate = rate("kafkaesque (key order)", ours);
    let vs_pc = Figure {
        variant: "kafkaesque vs Parallel Consumer".into(),
        ..ours_rate.clone()
    }
    .vs(&pc_rate)
    .at_least("≥ 5× Parallel Consumer", 5.0);
    let vs_plain = Figure {
        variant: "kafkaesque vs plain Java consumer".into(),
        ..ours_rate.clone()
    }
    .vs(&plain_rate)
    .at_least("≥ 0.9× plain Java", 0.9);
    let ours_rate = ours_rate.vs(&raw_rate);
    let mut figures = vec![pc_rate, plain_rate, raw_rate, ours_rate, vs_pc, vs_plain];
    let cpu = |label: &str, r: &[Outcome]| {
        Figure::new(
            C,
            label,
            "µs CPU/record",
            r.iter().map(Outcome::cpu_us).collect(),
        )
    };
    let pc_cpu = cpu("Parallel Consumer, CPU", pc).note(
        "CPU of the side's whole process (user + system, /proc/self/stat, 10 ms ticks) from the first record fetched to the last handled, per record",
    );
    let pc_cpu = with_busiest(pc_cpu, pc);
    let plain_cpu = with_busiest(cpu("plain Java consumer, CPU", plain), plain);
    let raw_cpu = cpu("raw rdkafka loop, CPU", raw);
    let ours_cpu = with_busiest(cpu("kafkaesque, CPU", ours), ours).vs(&pc_cpu);
    let ours_vs_plain = Figure {
        variant: "kafkaesque, CPU vs plain Java".into(),
        ..ours_cpu.clone()
    }
    .vs(&plain_cpu);
    figures.extend([pc_cpu, plain_cpu, raw_cpu, ours_cpu, ours_vs_plain]);
    let pc_mem = memory("a", "Parallel Consumer", pc);
    let plain_mem = memory("a", "plain Java consumer", plain);
    let raw_mem = memory("a", "raw rdkafka loop", raw);
    let ours_mem = less_memory(memory("a", "kafkaesque", ours), &pc_mem);
    figures.extend([pc_mem, plain_mem, raw_mem, ours_mem]);
    Ok(figures)
}
