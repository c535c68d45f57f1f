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
//! A [`ProduceHandler`] returns records to produce ([`Output`]), run with
//! [`Consumer::run_producing`]: a record completes only once its outputs are acknowledged. With
//! [`ConsumerBuilder::exactly_once`], outputs, dead letters, diversions and the consumed offsets
//! commit in one Kafka transaction per commit interval (`docs/consumer.md` says how that
//! composes with the commit metadata).
//!
//! Handlers run as tokio tasks on the runtime that calls [`Consumer::run`] (any runtime, a
//! current-thread one included); user code never runs on the consumer's own threads unless
//! asked ([`ConsumerBuilder::inline_first_poll`]). The Kafka clients and the engine live on one
//! driver thread (see [`consumer`] for why). [`Consumer::run_batches`] takes a
//! [`BatchHandler`] instead, many records per call; [`ConsumerBuilder::handler_timeout`] bounds
//! each attempt and [`ConsumerBuilder::stuck_key_alarm`] reports a key stuck in flight.
//!
//! [`Consumer::control`], before `run`, gives a [`Control`] handle that pauses and resumes
//! partitions, changes the limits and asks for either [`ShutdownMode`]. Hooks are told of
//! partitions assigned ([`AssignHook`]) and revoked ([`RevokeHook`]). A topic name starting with
//! `^` subscribes by pattern. Every metric carries the consumer's `group` and `client_id` labels
//! (see `docs/consumer.md` for the list, librdkafka's statistics included).
#![deny(missing_docs)]

mod admin;
mod batch;
mod callbacks;
mod clients;
mod command;
mod config;
pub mod consumer;
mod context;
mod control;
mod error;
mod events;
mod feeds;
mod fetcher;
mod handler;
mod observe;
mod produce;
mod record;
pub mod replication;
mod sinks;
mod spawn;
mod state;
mod stats;

pub use batch::BatchHandler;
pub use callbacks::ClientCallbacks;
pub use command::{ShutdownMode, Target};
pub use config::{AssignHook, ConsumerBuilder, KeyRouter, RevokeHook};
pub use consumer::Consumer;
pub use control::Control;
pub use error::{login_refused, AssignError, Error, Result};
pub use handler::{FailureKind, Handler, HandlerError};
pub use kafkaesque_engine::{
    HotKeyPolicy, KeyStats, Limits, Merge, NoKey, PartitionStats, ProcessingOrder, RetryPolicy,
    TopicPartition,
};
pub use observe::{Observer, PartitionView, Snapshot};
pub use produce::{Output, ProduceHandler};
/// The rdkafka version this crate is built on, for the types its API shares with rdkafka
/// ([`ClientCallbacks`]'s tokens, log levels and statistics; [`login_refused`]'s client).
pub use rdkafka;
#[cfg(feature = "serde")]
pub use record::JsonError;
pub use record::{headers, Header, Record, RecordData};
pub use replication::Replication;
