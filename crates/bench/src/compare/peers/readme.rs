//! Row b: Parallel Consumer's own README scenario — 10,000 records on one partition, a handler
//! that sleeps 0–5 ms (uniform), concurrency 100, KEY order over 10,000 keys and PARTITION order
//! (the README reports 2.13 s and 22.2 s on its hardware). Ours at 100 and at 1,000, and the
//! handler's own ceiling: as many tokio tasks running the same sleeps with no Kafka at all.
//! Each side's clock runs from the first record fetched to the last handler completed.
//! Targets: ours at 100 ≤ 0.5× Parallel Consumer's KEY time; ours at 1,000 ≥ 0.9× the ceiling.

use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use kafkaesque_testkit::Broker;

use super::side::{self, Handler, Order, Outcome, Side};
use super::{filled_topic, job, less_memory, memory, with_busiest};
use crate::report::Figure;
use crate::stats::process_cpu_seconds;

const C: &str = "peers b: README scenario";

/// The handler of the README's scenario: 0 to 5 ms, the same draw for a record on both sides.
fn handler() -> Handler {
    Handler {
        spread_ms: 5,
        ..Handler::default()
    }
}

/// `records` records; the PARTITION runs (serial: about 30 s each) `partition_reps` times.
///
/// # Errors
/// When the topic cannot be made or a run fails.
pub async fn run(
    broker: &Broker,
    records: usize,
    reps: usize,
    partition_reps: usize,
) -> Result<Vec<Figure>> {
    let topic = filled_topic(broker, "bench-peers-readme", 1, records, 10_000).await?;
    // The JIT's warm-up (and ours alike): a tenth of the records, in a group of its own.
    let warmup = records / 10;
    let run = |side: Side, order: Order, concurrency: usize, handler: Handler| {
        // PARTITION order is serial: a fiftieth of the records warm it up in a few seconds.
        let warmup = if order == Order::Partition {
            records / 50
        } else {
            warmup
        };
        let j = job(
            side,
            broker,
            topic.name(),
            order,
            concurrency,
            records,
            warmup,
            handler,
        );
        async move { side::run(&j).await }
    };
    let (mut pc, mut ours, mut ours_1000, mut ceiling_100, mut ceiling_1000) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut ceiling_1000_cpu = Vec::new();
    let (mut noop_runs, mut pc_part, mut ours_part, mut serial) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for rep in 0..reps {
        pc.push(run(Side::ParallelConsumer, Order::Key, 100, handler()).await?);
        ours.push(run(Side::Ours, Order::Key, 100, handler()).await?);
        ours_1000.push(run(Side::Ours, Order::Key, 1_000, handler()).await?);
        noop_runs.push(run(Side::Ours, Order::Key, 1_000, Handler::default()).await?);
        ceiling_100.push(ceiling(&handler(), records, 100).await);
        let (secs, cpu) = ceiling_cpu(&handler(), records, 1_000).await;
        ceiling_1000.push(secs);
        ceiling_1000_cpu.push(cpu);
        if rep < partition_reps {
            pc_part.push(run(Side::ParallelConsumer, Order::Partition, 100, handler()).await?);
            ours_part.push(run(Side::Ours, Order::Partition, 100, handler()).await?);
            // One tokio task through a tenth of the sleeps, scaled to all of them.
            serial.push(ceiling(&handler(), records / 10, 1).await * 10.0);
        }
    }
    let secs = |label: &str, r: &[Outcome]| {
        Figure::new(C, label, "s", r.iter().map(|o| o.seconds).collect())
    };
    let pc_key = secs("Parallel Consumer, KEY, concurrency 100", &pc).note(format!(
        "{records} records, 1 partition, 10,000 keys, handler sleeps 0–5 ms (drawn from the \
         offset: the same for both sides); warm-up {warmup} records in its own group first; \
         the README reports 2.13 s (KEY) and 22.2 s (PARTITION) on its own hardware"
    ));
    let ours_key = secs("kafkaesque, key order, concurrency 100", &ours)
        .vs(&pc_key)
        .at_most("≤ 0.5× Parallel Consumer", 0.5);
    let ours_key_1000 = secs("kafkaesque, key order, concurrency 1,000", &ours_1000).vs(&pc_key);
    let ours_key_1000 = with_busiest(ours_key_1000, &ours_1000);
    let noop_note = "the same records without the sleeps: what fetching and dispatching them take";
    let noop = secs("kafkaesque, no-op handler, concurrency 1,000", &noop_runs).note(noop_note);
    let noop = with_busiest(noop, &noop_runs);
    let ceiling_key_100 = Figure::new(C, "handler ceiling, 100 tasks", "s", ceiling_100).note(
        "the same sleeps for the same offsets run by that many tokio tasks, no Kafka: what the handler itself allows",
    );
    let ceiling_key_1000 = Figure::new(C, "handler ceiling, 1,000 tasks", "s", ceiling_1000);
    let rate = |f: &Figure, label: &str| {
        let rates = f.samples.iter().map(|s| records as f64 / s).collect();
        Figure::new(C, label, "records/s", rates)
    };
    let ceiling_rate = rate(&ceiling_key_1000, "handler ceiling, 1,000 tasks, rate");
    let ours_vs_ceiling = rate(&ours_key_1000, "kafkaesque at 1,000 vs the ceiling, rate")
        .vs(&ceiling_rate)
        .at_least("≥ 0.9× ceiling", 0.9);
    let ours_100_vs_ceiling = rate(&ours_key, "kafkaesque at 100 vs the ceiling at 100, rate")
        .vs(&rate(&ceiling_key_100, "handler ceiling, 100 tasks"));
    let pc_key = with_busiest(pc_key, &pc);
    let cpu_note = "CPU of the whole process (10 ms ticks) over the run, per record: what each record costs beyond its sleep";
    let ceiling_cpu = Figure::new(
        C,
        "handler ceiling, 1,000 tasks, CPU",
        "µs CPU/record",
        ceiling_1000_cpu,
    )
    .note(cpu_note);
    let ours_cpu = Figure::new(
        C,
        "kafkaesque at 1,000, CPU",
        "µs CPU/record",
        ours_1000.iter().map(Outcome::cpu_us).collect(),
    )
    .vs(&ceiling_cpu);
    let noop_cpu = Figure::new(
        C,
        "kafkaesque, no-op handler, CPU",
        "µs CPU/record",
        noop_runs.iter().map(Outcome::cpu_us).collect(),
    );
    let mut figures = vec![
        noop,
        pc_key.clone(),
        ours_key,
        ours_key_1000,
        ceiling_key_100,
        ceiling_key_1000,
        ceiling_rate,
        ours_vs_ceiling,
        ours_100_vs_ceiling,
        ceiling_cpu,
        ours_cpu,
        noop_cpu,
    ];
    if !pc_part.is_empty() {
        let pc_p = secs("Parallel Consumer, PARTITION, concurrency 100", &pc_part);
        let pc_p = with_busiest(pc_p, &pc_part);
        let ours_p = secs("kafkaesque, partition order, concurrency 100", &ours_part).vs(&pc_p);
        let ours_p = with_busiest(ours_p, &ours_part);
        let h = handler();
        let sum: u64 = (0..records as i64).map(|o| h.sleep_ms(o, false)).sum();
        let sum = Figure::new(
            C,
            "sum of the sleeps (serial bound)",
            "s",
            vec![sum as f64 / 1e3],
        )
        .note(
            "what a serial consumer of these records cannot go below: the handler's sleeps, added",
        );
        let serial = Figure::new(C, "one tokio task through the sleeps", "s", serial)
            .note("a tenth of the records' sleeps, one after another in one tokio task, times ten: tokio's timer ends a sleep on its next millisecond tick")
            .vs(&sum);
        let ours_vs_serial = Figure {
            variant: "kafkaesque, partition order vs one tokio task".into(),
            note: None,
            ..ours_p.clone()
        }
        .vs(&serial);
        figures.extend([pc_p, ours_p, sum, serial, ours_vs_serial]);
    }
    let pc_mem = memory("b", "Parallel Consumer, KEY 100", &pc);
    let ours_mem = less_memory(memory("b", "kafkaesque, key order 100", &ours), &pc_mem);
    let ours_mem_1000 = memory("b", "kafkaesque, key order 1,000", &ours_1000).vs(&pc_mem);
    figures.extend([pc_mem, ours_mem, ours_mem_1000]);
    Ok(figures)
}

/// Seconds `tasks` tokio tasks take to run the handler's sleeps for offsets 0 to `records` − 1,
/// each task taking the next offset as it finishes one: the handler's own ceiling.
async fn ceiling(handler: &Handler, records: usize, tasks: usize) -> f64 {
    ceiling_cpu(handler, records, tasks).await.0
}

/// [`ceiling`], and the CPU this process spent meanwhile in µs per record (NaN when the kernel
/// does not tell).
async fn ceiling_cpu(handler: &Handler, records: usize, tasks: usize) -> (f64, f64) {
    let cpu = process_cpu_seconds();
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let loops: Vec<_> = (0..tasks)
        .map(|_| {
            let (next, handler) = (next.clone(), handler.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, AtomicOrdering::Relaxed);
                    if i >= records {
                        break;
                    }
                    let ms = handler.sleep_ms(i as i64, false);
                    if ms > 0 {
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                    }
                }
            })
        })
        .collect();
    for l in loops {
        let _ = l.await;
    }
    let seconds = start.elapsed().as_secs_f64();
    let spent = cpu
        .zip(process_cpu_seconds())
        .map_or(f64::NAN, |(a, b)| (b - a) * 1e6 / records as f64);
    (seconds, spent)
}
