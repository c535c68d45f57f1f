//! The comparisons, one module each. Each one runs its variants in the same run, interleaved
//! where it can (variant A, B, C, then A, B, C again), so that a noisy minute hurts all of them
//! alike; returns [`Figure`](crate::report::Figure)s — medians, ratios against its baseline,
//! targets — and, where a picture says more, [`Series`](crate::report::Series) to plot.
//!
//! - [`engine`]: the sans-I/O engine alone, in-process;
//! - [`overhead`]: a raw rdkafka poll loop vs this consumer with a no-op handler;
//! - [`concurrency`]: one partition, a 5 ms handler: this consumer vs partition-serial vs the
//!   legacy design vs the theoretical bound;
//! - [`exactly_once`]: exactly-once against at-least-once, a produced output per record, on the
//!   no-op run and on the 5 ms run;
//! - [`incident`]: the legacy system's incident replayed through the service's consumer;
//! - [`http_edge`]: the API's acknowledged updates per second vs the same server's `/healthz`;
//! - [`apply_rate`]: the service's apply rate vs a plain `UPDATE` loop;
//! - [`peers`]: Confluent's Parallel Consumer (Java) side by side with this consumer;
//! - [`kafka`]: what several of them share: producing, a raw poll loop, a timed consumer run.

pub mod apply_rate;
pub mod concurrency;
pub mod engine;
pub mod exactly_once;
pub mod http_edge;
pub mod incident;
pub mod kafka;
pub mod overhead;
pub mod peers;

use kafkaesque_engine::EngineConfig;
use kafkaesque_runtime::{ConsumerBuilder, HotKeyPolicy};

/// Worker queues per partition of the legacy design, as in the engine's simulation
/// (`kafkaesque_engine::sim::incident_configs`).
pub const LEGACY_QUEUES: u32 = 64;

/// Records the legacy design's one global cap lets the consumer hold, as in the engine's simulation.
pub const LEGACY_GLOBAL_CAP: usize = 20_000;

/// `builder` turned into the legacy design: hashed worker queues, one global cap of `cap` records
/// held (fetching stops everywhere once it is reached), no hot-key protection; the concurrency
/// stays.
pub fn legacy_design(builder: ConsumerBuilder, concurrency: usize, cap: usize) -> ConsumerBuilder {
    let legacy = EngineConfig::<()>::legacy_design(LEGACY_QUEUES, cap, concurrency);
    builder
        .ordering(legacy.ordering)
        .limits(legacy.limits)
        .hot_key(HotKeyPolicy::Backpressure)
}
