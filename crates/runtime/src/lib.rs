//! # kafkaesque-runtime
//!
//! A production Kafka consumer around the sans-I/O [`kafkaesque_engine`]: far more concurrency
//! than partitions, strict per-key order, precise at-least-once commits (completed work above
//! the committed offset travels in the commit metadata), memory caps per key, per partition and
//! in all, and a policy for a key that reaches its cap: coalesce its queue, divert it in order to
//! an overflow topic, or dead-letter what is over the cap — each slows the hot key alone — or,
//! by default ([`HotKeyPolicy::Backpressure`]), pause its partition until the key drains, which
//! holds up the other keys of that partition too.
//!
//! ```no_run
//! use kafkaesque_runtime::{Consumer, HandlerError, Record};
//!
//! # async fn demo() -> Result<(), kafkaesque_runtime::Error> {
//! let consumer = Consumer::builder()
//!     .brokers("127.0.0.1:9092")
//!     .group_id("billing")
//!     .topics(["payments"])
//!     .concurrency(500)
//!     .build()?;
//! consumer
//!     .run(
//!         |record: Record| async move {
//!             println!("{}: {:?}", record.offset(), record.payload());
//!             Ok::<(), HandlerError>(())
//!         },
//!         async { tokio::signal::ctrl_c().await.ok(); },
//!     )
//!     .await
//! # }
//! ```
//!
//! Handlers run as tokio tasks on the runtime that calls [`Consumer::run`]; the Kafka clients and
//! the engine live on one driver thread (see [`consumer`] for why).
#![deny(missing_docs)]

mod admin;
mod callbacks;
mod clients;
mod config;
pub mod consumer;
mod context;
mod error;
mod events;
mod feeds;
mod fetcher;
mod handler;
mod observe;
mod record;
pub mod replication;
mod sinks;
mod spawn;
mod state;

pub use callbacks::ClientCallbacks;
pub use config::{AssignHook, ConsumerBuilder, KeyRouter};
pub use consumer::Consumer;
pub use error::{login_refused, AssignError, Error, Result};
pub use handler::{FailureKind, Handler, HandlerError};
pub use kafkaesque_engine::{
    HotKeyPolicy, KeyStats, Limits, Merge, NoKey, PartitionStats, ProcessingOrder, RetryPolicy,
    TopicPartition,
};
pub use observe::{Observer, PartitionView, Snapshot};
/// The rdkafka version this crate is built on, for the types its API shares with rdkafka
/// ([`ClientCallbacks`]'s tokens, log levels and statistics; [`login_refused`]'s client).
pub use rdkafka;
#[cfg(feature = "serde")]
pub use record::JsonError;
pub use record::{headers, Header, Record, RecordData};
pub use replication::Replication;
