//! How big each comparison is at each size.

use crate::compare::{incident, peers};

/// Sizes of one benchmark run.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub mode: &'static str,
    /// Repetitions of every comparison but the incident (one replay per variant).
    pub reps: usize,
    pub engine_records: u64,
    pub overhead_records: usize,
    pub concurrency_records: usize,
    /// Records of the partition-serial runs: at 5 ms each, a few hundred say all there is.
    pub serial_records: usize,
    pub incident: incident::Sizes,
    pub http_seconds: f64,
    pub http_connections: usize,
    pub apply_rows: usize,
    pub apply_updates: usize,
    pub peers: peers::Sizes,
    /// Run the comparisons at once instead of one after another (smoke only: they would
    /// disturb each other's figures).
    pub parallel: bool,
}

impl Sizes {
    pub fn smoke() -> Self {
        Sizes {
            mode: "smoke",
            reps: 1,
            engine_records: 10_000,
            overhead_records: 1_000,
            concurrency_records: 1_000,
            serial_records: 20,
            incident: incident::Sizes {
                rate: 200.0,
                seconds: 1.0,
                drain_seconds: 5.0,
                apps: 3,
                subscriptions: 60,
                flood_share: 0.5,
                hot_write_ms: 20,
            },
            http_seconds: 0.5,
            http_connections: 16,
            apply_rows: 100,
            apply_updates: 300,
            peers: peers::Sizes {
                noop_records: 2_000,
                noop_warmup: 500,
                readme_records: 500,
                readme_partition_reps: 1,
                incident: peers::incident::Sizes {
                    rate: 200.0,
                    seconds: 1.0,
                    drain_seconds: 5.0,
                    flood_share: 0.5,
                },
                replay_records: 400,
            },
            parallel: true,
        }
    }

    pub fn quick() -> Self {
        Sizes {
            mode: "quick",
            reps: 3,
            engine_records: 1_000_000,
            overhead_records: 100_000,
            concurrency_records: 50_000,
            serial_records: 400,
            incident: incident::Sizes {
                rate: 1_000.0,
                seconds: 10.0,
                drain_seconds: 8.0,
                apps: 10,
                subscriptions: 2_000,
                flood_share: 0.5,
                hot_write_ms: 20,
            },
            http_seconds: 3.0,
            http_connections: 64,
            apply_rows: 2_000,
            apply_updates: 10_000,
            peers: peers::Sizes {
                noop_records: 100_000,
                noop_warmup: 20_000,
                readme_records: 10_000,
                readme_partition_reps: 1,
                incident: peers::incident::Sizes {
                    rate: 1_000.0,
                    seconds: 10.0,
                    drain_seconds: 8.0,
                    flood_share: 0.5,
                },
                replay_records: 15_000,
            },
            parallel: false,
        }
    }

    pub fn full() -> Self {
        Sizes {
            mode: "full",
            reps: 5,
            engine_records: 1_000_000,
            overhead_records: 300_000,
            concurrency_records: 200_000,
            serial_records: 400,
            incident: incident::Sizes {
                rate: 1_000.0,
                seconds: 60.0,
                drain_seconds: 30.0,
                apps: 20,
                subscriptions: 10_000,
                flood_share: 0.5,
                hot_write_ms: 20,
            },
            http_seconds: 10.0,
            http_connections: 128,
            apply_rows: 10_000,
            apply_updates: 50_000,
            peers: peers::Sizes {
                noop_records: 300_000,
                noop_warmup: 50_000,
                readme_records: 10_000,
                readme_partition_reps: 3,
                incident: peers::incident::Sizes {
                    rate: 1_000.0,
                    seconds: 30.0,
                    drain_seconds: 15.0,
                    flood_share: 0.5,
                },
                replay_records: 30_000,
            },
            parallel: false,
        }
    }
}
