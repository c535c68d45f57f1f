//! The engine's vocabulary: handles it gives out, actions it asks for, and what it reports.

use std::fmt;
use std::sync::Arc;

use crate::Offset;

/// A topic and partition, cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// The topic's name.
    pub topic: Arc<str>,
    /// The partition number within the topic.
    pub partition: i32,
}

impl TopicPartition {
    /// Makes one from a topic name and a partition number.
    pub fn new(topic: impl Into<Arc<str>>, partition: i32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}

/// One assignment of one partition. The epoch changes with every assignment, so events that
/// carry a handle from an earlier assignment (a rebalance in between) are recognised and ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PartitionHandle {
    pub(crate) index: u32,
    pub(crate) epoch: u32,
}

impl PartitionHandle {
    /// The assignment epoch, unique per assignment within one engine.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }
}

/// An item handed to a worker by [`Action::Dispatch`]; report its outcome with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkId {
    pub(crate) slot: u32,
    pub(crate) gen: u32,
}

/// An item handed to a sink by [`Action::DeadLetter`] or [`Action::Divert`]; acknowledge it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SinkId {
    pub(crate) slot: u32,
    pub(crate) gen: u32,
}

/// Whether a partition is one of the consumer's topics or the overflow of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Role {
    /// A partition of a topic the consumer subscribes to.
    Main,
    /// The overflow partition holding diverted items of the given main partition.
    Overflow {
        /// The main partition whose diverted items this overflow partition holds.
        main: PartitionHandle,
    },
}

/// An item ready to run.
#[derive(Debug, Clone)]
pub struct Work<P> {
    /// Identifies the item when its outcome is reported (`complete` or `fail`).
    pub id: WorkId,
    /// The assignment the item was fetched under (the overflow partition's, for an item fetched back from the overflow).
    pub partition: PartitionHandle,
    /// The item's topic and partition, for logs and metrics.
    pub tp: TopicPartition,
    /// The ordering key (`None` for keyless records and in partition/unordered modes).
    pub key: Option<Arc<[u8]>>,
    /// The offset of the newest record folded into this item.
    pub offset: Offset,
    /// Records this item stands for (more than one after coalescing).
    pub records: usize,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The record's payload (the merged payload, after coalescing).
    pub payload: P,
}

/// Why a partition was paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PauseReason {
    /// The partition holds its cap of items or bytes.
    PartitionFull,
    /// The engine holds its global cap.
    GlobalFull,
    /// One key holds its cap and the policy is [`HotKeyPolicy::Backpressure`](crate::HotKeyPolicy).
    KeyFull,
    /// Too many records wait above the commit watermark.
    UncommittedFull,
}

/// An item sent to a sink instead of a worker.
#[derive(Debug, Clone)]
pub struct SinkRecord<P> {
    /// Identifies the item when the sink acknowledges it (`sink_acked`).
    pub id: SinkId,
    /// The assignment the item was fetched under.
    pub partition: PartitionHandle,
    /// The item's topic and partition.
    pub tp: TopicPartition,
    /// The ordering key (`None` for keyless records).
    pub key: Option<Arc<[u8]>>,
    /// Newest offset of the records this item stands for.
    pub offset: Offset,
    /// Records this item stands for (more than one after coalescing).
    pub records: usize,
    /// Attempts made before it was sent (0 when it never ran).
    pub attempts: u32,
    /// A short machine-readable reason, e.g. `key_queue_full`, `max_attempts`, `fatal`, `hot_key`.
    pub reason: &'static str,
    /// The last error, when it failed.
    pub error: Option<String>,
    /// The record's payload, to be produced to the sink.
    pub payload: P,
}

/// What the engine asks its driver to do. Drain them with [`Engine::drain_actions`] after every
/// event.
///
/// [`Engine::drain_actions`]: crate::Engine::drain_actions
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Action<P> {
    /// Run this item; then call `complete` or `fail` with its id.
    Dispatch(Work<P>),
    /// Stop fetching this partition and seek it to `seek_to`: that record and every later one
    /// were refused and must be fetched again after [`Action::Resume`].
    Pause {
        /// The assignment to pause.
        partition: PartitionHandle,
        /// Its topic and partition, for the consumer client.
        tp: TopicPartition,
        /// The first refused offset: fetching resumes from here.
        seek_to: Offset,
        /// Which cap was reached.
        reason: PauseReason,
    },
    /// Fetch this partition again.
    Resume {
        /// The assignment to resume.
        partition: PartitionHandle,
        /// Its topic and partition, for the consumer client.
        tp: TopicPartition,
    },
    /// Produce this item to the dead-letter sink, then call `sink_acked`.
    DeadLetter(SinkRecord<P>),
    /// Produce this item to the partition's overflow sink, then call `sink_acked` with the
    /// offset it got there.
    Divert(SinkRecord<P>),
}

/// How a worker's item failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// Retry with back-off; counts towards the attempt limit, then dead-letter.
    Retry(String),
    /// The attempt ran past its time limit: counted like [`Failure::Retry`], but a record whose
    /// last attempt timed out is dead-lettered with the reason `timeout` rather than
    /// `max_attempts`, so an operator can tell a slow dependency from a failing one.
    TimedOut(String),
    /// The downstream is unavailable (database down, timeout): retry with back-off forever,
    /// without counting an attempt. Nothing is dead-lettered because a dependency is down.
    Transient(String),
    /// Will never succeed (bad input): dead-letter now, with `reason` as the dead-letter reason
    /// (a short code such as `unknown_player`; `fatal` when there is nothing better to say).
    Fatal {
        /// The dead-letter reason code.
        reason: &'static str,
        /// The error, kept with the dead-lettered record.
        error: String,
    },
}

/// Offset and metadata to commit for one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// The assignment the commit belongs to; drop the commit if it is no longer current.
    pub partition: PartitionHandle,
    /// The topic and partition to commit.
    pub tp: TopicPartition,
    /// The commit watermark: every record below it is complete, so fetching restarts here.
    pub offset: Offset,
    /// The completed offsets above `offset` and the diverted keys, encoded by [`codec`](crate::codec); empty when there are none.
    pub metadata: String,
    /// First completed offset the metadata had no room for (it will be replayed), if any.
    pub truncated_from: Option<Offset>,
}

/// What happened to a fetched record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Intake {
    /// Queued (or coalesced, diverted, dead-lettered): the engine owns it now.
    Accepted,
    /// A previous owner completed it (commit metadata) or it had no items: nothing to do.
    Skipped,
    /// Refused by a limit; the partition is paused and will be sought back to it.
    Refused,
    /// From an earlier assignment, a revoked or draining partition, or below what was already
    /// fetched: ignored.
    Stale,
}

/// Outcome of `complete`, `fail` and `sink_acked`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The outcome was recorded.
    Applied,
    /// The item belonged to an earlier assignment (fenced by its epoch) and was ignored.
    Stale,
}

/// Per-partition view, cheap enough to read every second.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionStats {
    /// The topic and partition.
    pub tp: TopicPartition,
    /// The assignment epoch, as [`PartitionHandle::epoch`].
    pub epoch: u32,
    /// A main partition, or the overflow of one.
    pub role: Role,
    /// Everything below it is complete: the offset a commit would carry.
    pub watermark: Offset,
    /// The last offset the driver reported as committed.
    pub committed: Option<Offset>,
    /// Items held: queued, in flight, waiting for a retry, or waiting for a sink.
    pub held: usize,
    /// Payload bytes of the items held.
    pub held_bytes: usize,
    /// Items of this partition in flight.
    pub in_flight: usize,
    /// Records fetched and not yet below the watermark.
    pub uncommitted: usize,
    /// Keys that have a lane: queued or in-flight items (idle keys have none).
    pub active_keys: usize,
    /// Keys diverted to the overflow, including those inherited from the commit metadata.
    pub diverted_keys: usize,
    /// Why fetching is paused, or `None` while it fetches.
    pub paused: Option<PauseReason>,
    /// Whether the partition is draining before a revoke: no new work starts from it.
    pub draining: bool,
}

/// One key among the busiest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyStats {
    /// The key's topic and partition.
    pub tp: TopicPartition,
    /// The key (`None` for the shared lane of keyless records or of partition/unordered modes).
    pub key: Option<Arc<[u8]>>,
    /// Items queued and not yet dispatched.
    pub queued: usize,
    /// Bytes of its queued and in-flight items.
    pub bytes: usize,
    /// Items in flight.
    pub in_flight: usize,
    /// How long its oldest in-flight item has run, in milliseconds.
    pub in_flight_ms: u64,
    /// Whether the key is diverted to the overflow sink.
    pub diverted: bool,
    /// Whether new items of the key are being merged into its last queued item.
    pub coalescing: bool,
}

/// A key whose item has been in flight longer than a threshold (see [`Engine::stuck`](crate::Engine::stuck)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stuck {
    /// The key's topic and partition.
    pub tp: TopicPartition,
    /// The key (`None` for keyless records).
    pub key: Option<Arc<[u8]>>,
    /// The first offset of the item in flight.
    pub offset: Offset,
    /// How long it has been in flight, in milliseconds.
    pub in_flight_ms: u64,
}

/// Running totals since the engine was created.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Records accepted from fetches (queued or run inline).
    pub fetched: u64,
    /// Fetched records skipped: completed by a previous owner, or with no items.
    pub skipped: u64,
    /// Fetched records refused: by a cap, or because their partition was paused.
    pub refused: u64,
    /// Items handed to workers, first attempts and retries alike.
    pub dispatched: u64,
    /// Records completed successfully.
    pub completed: u64,
    /// Failed items scheduled for another attempt.
    pub retried: u64,
    /// Records sent to the dead-letter sink.
    pub dead_lettered: u64,
    /// Records diverted to an overflow sink.
    pub diverted: u64,
    /// Items merged into an earlier item of their key.
    pub coalesced: u64,
    /// Times a partition was paused.
    pub pauses: u64,
    /// Events ignored as stale: from an earlier assignment, a draining partition, or an offset already fetched.
    pub stale: u64,
    /// Commits whose metadata had no room for every completed offset (those will be replayed).
    pub metadata_truncated: u64,
}
