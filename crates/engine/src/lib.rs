//! # kafkaesque-engine
//!
//! The sans-I/O heart of kafkaesque: per-key ordered scheduling, the commit buffer, memory limits
//! scoped per key, per partition and globally, hot-key policies and retries — as plain data
//! structures with no threads, no clock and no Kafka client. A driver (the runtime crate, a test,
//! a simulation) feeds it events and carries out the [`Action`]s it returns:
//!
//! | event | method |
//! |---|---|
//! | partition assigned / draining / revoked | [`Engine::assign`], [`Engine::drain`], [`Engine::revoke`] |
//! | record fetched | [`Engine::fetched`], or [`Engine::fetched_inline`] to run it at once |
//! | work finished / failed | [`Engine::complete`], [`Engine::fail`] |
//! | sink acknowledged a dead-letter or diverted item | [`Engine::sink_acked`] |
//! | time advanced | [`Engine::advance_time`] |
//! | time to commit | [`Engine::commits`] |
//!
//! ## Why it looks like this
//! The system this project comes from hashed each partition's records onto a fixed set of worker
//! queues and capped the records in memory with one global number. One hot row filled that cap,
//! every other queue went idle, fetching stopped, commits stopped, and lag climbed while the CPU
//! slept. Here, every key has its own queue, every scope has its own cap, and a key at its cap is
//! handled by a [`HotKeyPolicy`]: `Coalesce`, `Divert` and `DeadLetter` touch that key alone;
//! the default, `Backpressure`, pauses its partition. The legacy design remains available
//! ([`EngineConfig::legacy_design`]) so benchmarks can show the difference in one run.
//!
//! ## Guarantees
//! * Items of one key run one at a time, in offset order (across the overflow topic too).
//! * The committed offset never passes an incomplete record; completed records above it are
//!   carried in the commit metadata ([`codec`]) so a restart skips them.
//! * The engine never holds more than any cap (a record is refused, and its partition paused and
//!   sought back, rather than taken over a cap).
//! * Every accepted record is eventually completed, dead-lettered or diverted — or dropped on
//!   revoke, to be replayed by the next owner.

#![deny(missing_docs)]

mod batch;
pub mod codec;
mod config;
mod dispatch;
mod engine;
mod inline;
mod intake;
mod introspect;
mod lane;
mod offsets;
pub mod sim;
mod slab;
mod types;

pub use batch::Batcher;
pub use config::{
    ConfigError, EngineConfig, HotKeyPolicy, Limits, Merge, NoKey, ProcessingOrder, RetryPolicy,
};
pub use engine::Engine;
pub use inline::{Inline, InlineRun};
pub use types::*;

/// A Kafka offset.
pub type Offset = i64;
/// Milliseconds on the driver's monotonic clock.
pub type Millis = u64;
