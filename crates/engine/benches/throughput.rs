//! The engine alone: records scheduled and completed per second on one core with a no-op handler,
//! for 1, 1,000 and 1,000,000 distinct keys.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use kafkaesque_engine::sim::noop_loop;

const RECORDS: u64 = 1_000_000;

fn throughput(c: &mut Criterion) {
    let mut g = c.benchmark_group("engine_noop");
    g.throughput(Throughput::Elements(RECORDS));
    g.sample_size(10);
    for keys in [1u64, 1_000, 1_000_000] {
        g.bench_with_input(BenchmarkId::from_parameter(keys), &keys, |b, &keys| {
            b.iter(|| assert_eq!(noop_loop(keys, RECORDS), RECORDS))
        });
    }
    g.finish();
}

criterion_group!(benches, throughput);
criterion_main!(benches);
