//! The engine alone: records scheduled and completed per second on one core, in-process, with
//! a handler that completes at once — the engine's own cost per record, no Kafka, no I/O. The
//! same loop as the engine's criterion bench (`kafkaesque_engine::sim::noop_loop`).

use std::time::Instant;

use kafkaesque_engine::sim::noop_loop;

use crate::report::Figure;

/// `records` records over 1, 1,000 and 1,000,000 keys, `reps` times each, interleaved.
pub fn run(records: u64, reps: usize) -> Vec<Figure> {
    let keys = [1u64, 1_000, 1_000_000];
    let mut samples = vec![Vec::new(); keys.len()];
    for _ in 0..reps {
        for (i, &k) in keys.iter().enumerate() {
            let start = Instant::now();
            let done = noop_loop(k, records);
            samples[i].push(done as f64 / start.elapsed().as_secs_f64());
        }
    }
    let mut figures: Vec<Figure> = keys
        .iter()
        .zip(samples)
        .map(|(k, s)| Figure::new("engine alone", &format!("{k} keys"), "records/s/core", s))
        .collect();
    let one = figures[0].clone();
    for f in &mut figures[1..] {
        *f = f.clone().vs(&one);
    }
    figures[0] = figures[0].clone().note(format!(
        "{records} records per repetition, no-op handler, one thread"
    ));
    figures
}
