//! # kafkaesque-rdqueue
//!
//! A partition's own queue in librdkafka, taken from a batch at a time.
//!
//! Why a crate of its own, and the only `unsafe` in the workspace: the `rdkafka` crate hands
//! out one message per `poll`, and wraps each in an event, a reference-counted owner and two
//! clock reads. For a consumer whose ceiling is the CPU it spends per record, that wrapping is
//! a large share of the whole: librdkafka's own batch call, `rd_kafka_consume_batch_queue`,
//! takes the same records without it (`docs/benchmarks.md`, "Overhead", has the figures).
//! `rdkafka` does not expose it, so this crate does, behind an interface with nothing unsafe
//! left to its callers: [`PartitionQueue::take_into`] moves messages into a [`Taken`], which
//! keeps their client alive, lends them out only while it is borrowed and destroys them when
//! dropped, so none can outlive its client or be read after it is destroyed. A `Taken` may move
//! between threads: the one that takes records need not be the one that reads them.
//!
//! Everything else — creating the consumer, assigning, seeking, committing — stays with
//! `rdkafka`; a queue keeps its consumer alive, as `rdkafka`'s own partition queues do.
#![deny(missing_docs)]

mod message;
mod queue;
mod taken;

pub use message::{Header, Headers, Message};
pub use queue::PartitionQueue;
pub use taken::Taken;
