//! How an [`Engine`](crate::Engine) schedules, limits and protects itself.

use std::fmt;
use std::sync::Arc;

/// What "in order" means for a consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProcessingOrder {
    /// Items of one key run one at a time, in offset order; different keys run concurrently.
    /// Each key has its own queue: unrelated keys never share one.
    Key,
    /// Records of one partition run one at a time, in offset order (Kafka's native model).
    Partition,
    /// No order: any record may run at any time, bounded only by the concurrency limit.
    Unordered,
    /// The legacy system's design, kept as a baseline for benchmarks: each partition has `queues`
    /// worker queues, a record goes to queue `hash(key) % queues`, each queue runs one at a time.
    /// Unrelated keys that hash alike wait for each other.
    HashedQueues {
        /// Worker queues per partition (at least 1).
        queues: u32,
    },
}

/// Where a record without a key goes in [`ProcessingOrder::Key`] mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NoKey {
    /// Runs as soon as there is capacity, in no particular order.
    Unordered,
    /// Shares one ordered queue per partition with the other keyless records.
    PartitionQueue,
}

/// What happens when one key reaches its own cap ([`Limits::key_max_records`] or
/// [`Limits::key_max_bytes`]). Whatever the choice, no key ever holds more than its cap.
#[derive(Clone)]
#[non_exhaustive]
pub enum HotKeyPolicy<P> {
    /// Fold the key's queued items into one with a caller-supplied merge, and keep merging new
    /// items into it until the key's queue drains. The folded records complete when the merged
    /// item completes. Exact for last-writer-wins updates: a hot key then costs one handler call
    /// per processing slot, however fast its records arrive.
    Coalesce(Arc<dyn Merge<P>>),
    /// Send the key's queued and later items, in order, to an overflow sink (an overflow topic in
    /// the runtime). Their source offsets complete once the sink acknowledges. While a key is
    /// diverted, *all* its new items are diverted too, so none of them can overtake an earlier
    /// diverted item; the key returns to the main path with its first new item after the
    /// overflow partition has completed everything diverted for it. The diverted set travels in
    /// the commit metadata, so a new owner keeps the rule after a rebalance.
    Divert,
    /// Pause the whole partition until the key drains (the legacy system's behaviour; a baseline).
    Backpressure,
    /// Send the items over the cap to the dead-letter sink with reason `key_queue_full`.
    DeadLetter,
}

impl<P> fmt::Debug for HotKeyPolicy<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HotKeyPolicy::Coalesce(_) => "Coalesce",
            HotKeyPolicy::Divert => "Divert",
            HotKeyPolicy::Backpressure => "Backpressure",
            HotKeyPolicy::DeadLetter => "DeadLetter",
        })
    }
}

/// Folds a newer queued item of one key into an older one, for [`HotKeyPolicy::Coalesce`].
///
/// Called on the thread that drives the engine, so it must be quick and must not block.
pub trait Merge<P>: Send + Sync {
    /// Merge `newer` into `older`. Returns the byte weight of the merged payload, which replaces
    /// the weights of both in the memory accounting.
    fn merge(&self, key: &[u8], older: &mut P, newer: P) -> usize;
}

impl<P, F> Merge<P> for F
where
    F: Fn(&[u8], &mut P, P) -> usize + Send + Sync,
{
    fn merge(&self, key: &[u8], older: &mut P, newer: P) -> usize {
        self(key, older, newer)
    }
}

/// Memory caps, scoped as small as possible. Counts cover every item the engine *holds*: queued,
/// in flight, waiting for a retry, or waiting for a sink acknowledgement. A record fanned out to
/// several keys counts once per key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Items one key may hold (at least 2: one running, one queued). Reaching it applies the
    /// [`HotKeyPolicy`].
    pub key_max_records: usize,
    /// Payload bytes one key may hold.
    pub key_max_bytes: usize,
    /// Items one partition may hold. Reaching it pauses that partition only.
    pub partition_max_records: usize,
    /// Payload bytes one partition may hold.
    pub partition_max_bytes: usize,
    /// Items the whole engine may hold. Reaching it pauses the partitions that deliver more.
    pub global_max_records: usize,
    /// Payload bytes the whole engine may hold.
    pub global_max_bytes: usize,
    /// A paused scope resumes once it is at or below this fraction of its cap (in percent).
    pub resume_percent: u8,
    /// Records fetched but not yet below the commit watermark, per partition. Bounds the commit
    /// buffer (and so the replay window after a crash) when one slow item holds the watermark.
    pub partition_max_uncommitted: usize,
    /// Items in flight across the engine: the consumer's concurrency.
    pub max_in_flight: usize,
    /// Items waiting out a retry back-off. While this many wait, no *first* attempt starts (only
    /// retries do), so a failing downstream cannot turn the intake into a retry queue.
    pub max_waiting_retries: usize,
    /// Keys diverted at once per partition ([`HotKeyPolicy::Divert`]); they are kept in the commit
    /// metadata. A key that would exceed it (or the room the metadata has for diverted keys) gets
    /// [`HotKeyPolicy::Backpressure`] instead.
    pub max_diverted_keys: usize,
    /// Room for commit metadata per partition: the broker's `offset.metadata.max.bytes` (Kafka's
    /// default is 4096). Diverted keys always fit in it; completed offsets as far as they do.
    pub metadata_max_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            key_max_records: 1_000,
            key_max_bytes: 4 << 20,
            partition_max_records: 20_000,
            partition_max_bytes: 64 << 20,
            global_max_records: 200_000,
            global_max_bytes: 512 << 20,
            resume_percent: 50,
            partition_max_uncommitted: 1_000_000,
            max_in_flight: 256,
            max_waiting_retries: 10_000,
            max_diverted_keys: 64,
            metadata_max_bytes: 4096,
        }
    }
}

/// Retries with exponential back-off and full jitter: the wait before attempt `n + 1` is drawn
/// uniformly from 0 to `min(base_backoff_ms * 2^(n-1), max_backoff_ms)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts before an item is dead-lettered (1 = no retry). [`Failure::Transient`]
    /// failures do not count.
    ///
    /// [`Failure::Transient`]: crate::Failure::Transient
    pub max_attempts: u32,
    /// Back-off before the second attempt, in milliseconds; doubles each attempt.
    pub base_backoff_ms: u64,
    /// Upper bound of the back-off, in milliseconds.
    pub max_backoff_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_backoff_ms: 100,
            max_backoff_ms: 30_000,
        }
    }
}

/// Everything an [`Engine`](crate::Engine) needs to know, with defaults that suit a typical
/// key-ordered consumer.
#[derive(Debug, Clone)]
pub struct EngineConfig<P> {
    /// What order items run in.
    pub ordering: ProcessingOrder,
    /// Where keyless records go in [`ProcessingOrder::Key`] mode.
    pub no_key: NoKey,
    /// Memory and concurrency caps.
    pub limits: Limits,
    /// What happens to a key that reaches its cap.
    pub hot_key: HotKeyPolicy<P>,
    /// Retries and back-off of failed items.
    pub retry: RetryPolicy,
    /// Seed of the jitter generator, so that simulations and tests are reproducible.
    pub seed: u64,
}

impl<P> Default for EngineConfig<P> {
    fn default() -> Self {
        EngineConfig {
            ordering: ProcessingOrder::Key,
            no_key: NoKey::Unordered,
            limits: Limits::default(),
            hot_key: HotKeyPolicy::Backpressure,
            retry: RetryPolicy::default(),
            seed: 0x6b61_666b_6165_7371,
        }
    }
}

/// A configuration that cannot work, naming the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The offending field's path, e.g. `limits.max_in_flight`.
    pub field: &'static str,
    /// What is wrong with it, e.g. `must be at least 1`.
    pub problem: &'static str,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid engine configuration: `{}` {}",
            self.field, self.problem
        )
    }
}

impl std::error::Error for ConfigError {}

impl<P> EngineConfig<P> {
    /// The legacy system's design: `queues` hashed worker queues per partition, one global cap
    /// on records held, and fetching paused everywhere once it is reached. Benchmarks run it side
    /// by side with the real thing.
    pub fn legacy_design(queues: u32, global_max_records: usize, max_in_flight: usize) -> Self {
        EngineConfig {
            ordering: ProcessingOrder::HashedQueues { queues },
            limits: Limits {
                key_max_records: usize::MAX,
                key_max_bytes: usize::MAX,
                partition_max_records: usize::MAX,
                partition_max_bytes: usize::MAX,
                global_max_records,
                global_max_bytes: usize::MAX,
                max_in_flight,
                ..Limits::default()
            },
            hot_key: HotKeyPolicy::Backpressure,
            ..EngineConfig::default()
        }
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        let checks: [(bool, &'static str, &'static str); 9] = [
            (
                l.max_in_flight == 0,
                "limits.max_in_flight",
                "must be at least 1",
            ),
            (
                l.key_max_records < 2,
                "limits.key_max_records",
                "must be at least 2",
            ),
            (
                l.partition_max_records == 0,
                "limits.partition_max_records",
                "must be at least 1",
            ),
            (
                l.global_max_records == 0,
                "limits.global_max_records",
                "must be at least 1",
            ),
            (
                l.resume_percent > 100,
                "limits.resume_percent",
                "must be at most 100",
            ),
            (
                l.partition_max_uncommitted == 0,
                "limits.partition_max_uncommitted",
                "must be at least 1",
            ),
            (
                self.retry.max_attempts == 0,
                "retry.max_attempts",
                "must be at least 1",
            ),
            (
                self.retry.base_backoff_ms > self.retry.max_backoff_ms,
                "retry.base_backoff_ms",
                "must not exceed retry.max_backoff_ms",
            ),
            (
                matches!(self.ordering, ProcessingOrder::HashedQueues { queues: 0 }),
                "ordering.queues",
                "must be at least 1",
            ),
        ];
        match checks.into_iter().find(|c| c.0) {
            Some((_, field, problem)) => Err(ConfigError { field, problem }),
            None => Ok(()),
        }
    }
}
