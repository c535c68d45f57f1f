//! Property tests: random interleavings of fetches, completions, failures, retries, sink
//! acknowledgements, commits, rebalances and limit changes, under every ordering mode and
//! hot-key policy. After every event the model checks per-key order, commit safety (offset and
//! metadata) and every memory cap; at the end it lets everything finish and checks that no
//! record was lost and every partition committed to its end.

mod support;

use std::sync::Arc;

use kafkaesque_engine::*;
use proptest::prelude::*;
use support::*;

fn logs() -> impl Strategy<Value = Vec<Vec<Rec>>> {
    let rec = (
        0u8..6,
        prop::option::of(0u8..6),
        prop::bool::weighted(0.1),
        1i64..3,
    );
    prop::collection::vec(prop::collection::vec(rec, 0..60), 1..4).prop_map(|parts| {
        parts
            .into_iter()
            .map(|recs| {
                let mut offset = 0;
                recs.into_iter()
                    .map(|(k, k2, keyless, gap)| {
                        offset += gap; // gaps: compacted offsets and transaction markers
                        let mut keys = vec![k];
                        if let Some(k2) = k2.filter(|k2| *k2 != k) {
                            keys.push(k2);
                        }
                        Rec {
                            offset,
                            keys,
                            keyless,
                        }
                    })
                    .collect()
            })
            .collect()
    })
}

fn events() -> impl Strategy<Value = Vec<Event>> {
    let ev = prop_oneof![
        6 => (0usize..4, 1usize..8, prop::bool::weighted(0.3))
            .prop_map(|(part, n, overflow)| Event::Fetch { part, n, overflow }),
        8 => (any::<usize>(), prop_oneof![
                6 => Just(Outcome2::Ok),
                2 => Just(Outcome2::Retry),
                1 => Just(Outcome2::Transient),
                1 => Just(Outcome2::Fatal),
            ]).prop_map(|(pick, outcome)| Event::Finish { pick, outcome }),
        3 => any::<usize>().prop_map(|pick| Event::AckSink { pick }),
        2 => (1u64..500).prop_map(|ms| Event::Advance { ms }),
        2 => Just(Event::Commit),
        1 => (0usize..4, any::<bool>()).prop_map(|(part, drain)| Event::Rebalance { part, drain }),
        1 => (2usize..6, 2usize..12, 4usize..24)
            .prop_map(|(key, part, global)| Event::Limits { key, part, global }),
    ];
    prop::collection::vec(ev, 0..300)
}

fn policy() -> impl Strategy<Value = HotKeyPolicy<Pay>> {
    prop_oneof![
        Just(HotKeyPolicy::Coalesce(
            Arc::new(|_: &[u8], older: &mut Pay, newer: Pay| {
                older.extend(newer);
                BYTES
            }) as Arc<dyn Merge<Pay>>
        )),
        Just(HotKeyPolicy::Divert),
        Just(HotKeyPolicy::Backpressure),
        Just(HotKeyPolicy::DeadLetter),
    ]
}

fn ordering() -> impl Strategy<Value = (ProcessingOrder, NoKey)> {
    prop_oneof![
        4 => Just((ProcessingOrder::Key, NoKey::Unordered)),
        2 => Just((ProcessingOrder::Key, NoKey::PartitionQueue)),
        1 => Just((ProcessingOrder::Partition, NoKey::Unordered)),
        1 => Just((ProcessingOrder::Unordered, NoKey::Unordered)),
        1 => Just((ProcessingOrder::HashedQueues { queues: 3 }, NoKey::Unordered)),
    ]
}

fn config(
    (ordering, no_key): (ProcessingOrder, NoKey),
    hot_key: HotKeyPolicy<Pay>,
    (key, part, global, in_flight, retries): (usize, usize, usize, usize, usize),
    seed: u64,
    metadata_max_bytes: usize,
) -> EngineConfig<Pay> {
    EngineConfig {
        ordering,
        no_key,
        hot_key,
        limits: caps(
            key,
            part,
            global,
            Limits {
                partition_max_uncommitted: 40,
                max_in_flight: in_flight,
                max_waiting_retries: retries,
                max_diverted_keys: 3,
                resume_percent: 50,
                metadata_max_bytes,
                ..Limits::default()
            },
        ),
        retry: RetryPolicy {
            max_attempts: 3,
            base_backoff_ms: 10,
            max_backoff_ms: 200,
        },
        seed,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn engine_keeps_its_promises(
        logs in logs(),
        events in events(),
        ordering in ordering(),
        policy in policy(),
        limits in (2usize..6, 2usize..12, 4usize..24, 1usize..6, 1usize..4),
        seed in any::<u64>(),
        budget in prop_oneof![Just(4096usize), Just(100usize), Just(64usize), Just(24usize)],
    ) {
        let mut h = Harness::new(config(ordering, policy, limits, seed, budget), logs);
        for ev in &events {
            h.step(ev);
        }
        h.run_to_end();
    }
}

/// The property above is only as good as the paths it reaches: generate a fixed set of cases and
/// check that together they coalesce, divert, come back from the overflow, skip records by commit
/// metadata, dead-letter, pause, retry, fence stale completions, and run records at once with every
/// ending.
#[test]
fn the_generated_cases_reach_every_path() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, TestRunner};
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        proptest::test_runner::TestRng::deterministic_rng(
            proptest::test_runner::RngAlgorithm::ChaCha,
        ),
    );
    let strategy = (
        logs(),
        events(),
        ordering(),
        policy(),
        (2usize..6, 2usize..12, 4usize..24, 1usize..6, 1usize..4),
        any::<u64>(),
    );
    let mut total = Counters::default();
    let mut duplicates = 0;
    let mut runs_now = [0; 4];
    for _ in 0..400 {
        let (logs, events, ordering, policy, limits, seed) =
            strategy.new_tree(&mut runner).expect("a case").current();
        let mut h = Harness::new(config(ordering, policy, limits, seed, 4096), logs);
        for ev in &events {
            h.step(ev);
        }
        h.run_to_end();
        let c = h.engine.counters();
        total.coalesced += c.coalesced;
        total.diverted += c.diverted;
        total.skipped += c.skipped;
        total.dead_lettered += c.dead_lettered;
        total.pauses += c.pauses;
        total.retried += c.retried;
        total.stale += c.stale;
        duplicates += h.duplicates;
        for (sum, n) in runs_now.iter_mut().zip(h.runs_now) {
            *sum += n;
        }
    }
    for (what, n) in [
        ("coalesced", total.coalesced),
        ("diverted", total.diverted),
        ("skipped by metadata", total.skipped),
        ("dead-lettered", total.dead_lettered),
        ("pauses", total.pauses),
        ("retries", total.retried),
        ("stale events", total.stale),
        ("duplicates after rebalances", duplicates),
        ("runs at once done", runs_now[0]),
        ("runs at once still running", runs_now[1]),
        ("runs at once failed", runs_now[2]),
        ("runs at once not run", runs_now[3]),
    ] {
        assert!(n > 0, "no case reached: {what} ({total:?})");
    }
}
