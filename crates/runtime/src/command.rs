//! What the [`Control`](crate::Control) handle asks of the driver: the commands and their
//! arguments, plain data that the handle sends and the driver state carries out.

use kafkaesque_engine::{Limits, TopicPartition};
use tokio::sync::oneshot;

use crate::error::Result;

/// What a pause or a resume applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Target {
    /// Every partition: those assigned now and those assigned later.
    All,
    /// Every partition of one topic, now and later.
    Topic(String),
    /// One partition, while this consumer owns it.
    Partition(TopicPartition),
}

impl Target {
    /// Every partition of `topic`.
    pub fn topic(topic: impl Into<String>) -> Self {
        Target::Topic(topic.into())
    }

    /// One partition.
    pub fn partition(topic: &str, partition: i32) -> Self {
        Target::Partition(TopicPartition::new(topic, partition))
    }
}

/// How a shutdown treats the records the consumer has taken in but not yet handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ShutdownMode {
    /// Stop starting work, let what is in flight finish (up to the drain timeout), commit, leave
    /// the group. Records queued in memory are left for the next owner to fetch again. This is
    /// what the `shutdown` future of [`Consumer::run`](crate::Consumer::run) asks for.
    #[default]
    FinishInFlight,
    /// Stop fetching, then handle everything already taken from librdkafka — queued in the
    /// engine, kept by a partition held at its cap, or on its way from the fetcher thread — up
    /// to the drain timeout, commit, leave the group. Records of a partition paused by this
    /// handle are not taken in, so they are not handled either; records diverted to an overflow
    /// topic are in Kafka, not in memory, and are left there.
    DrainFetched,
}

/// A command for the driver, with where to answer.
#[derive(Debug)]
pub(crate) enum Command {
    Pause(Target, bool, oneshot::Sender<Result<()>>),
    Limits(Limits, oneshot::Sender<Result<()>>),
    Shutdown(ShutdownMode, oneshot::Sender<Result<()>>),
}
