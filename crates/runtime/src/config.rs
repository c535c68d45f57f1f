//! The consumer's builder: every knob, with defaults that suit a key-ordered consumer, and
//! validation that names the field at fault before anything connects.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafkaesque_engine::{
    EngineConfig, HotKeyPolicy, Limits, NoKey, ProcessingOrder, RetryPolicy, TopicPartition,
};

use crate::callbacks::{ClientCallbacks, UserCallbacks};
use crate::{AssignError, Error, Record, Replication, Result};

/// Maps a record to the ordering keys it must run under. The default is the record's key; a
/// router may return several (an update also mirrored onto a linked parent row runs once under
/// each) or none (nothing to do). Called on the driver thread: keep it quick.
pub type KeyRouter = Arc<dyn Fn(&Record) -> Vec<Bytes> + Send + Sync>;

/// Told which partitions the group has just given this consumer. Called on the driver thread,
/// before any record of those partitions reaches the [`KeyRouter`]: a router that keeps state about
/// the records of a partition (which rows are linked to which) can refresh it here from wherever
/// the previous owner left it.
///
/// When it cannot do that now (the database it reads is down), it returns an [`AssignError`]:
/// the partitions are then held — none of their records is taken — and it is called again for
/// them after a back-off (100 ms, doubling up to 5 s) until it succeeds or they are revoked. The
/// consumer meanwhile serves its other partitions, rebalances and shutdown, which a hook that
/// retried by itself would block. Each call blocks the driver: keep it short.
pub type AssignHook =
    Arc<dyn Fn(&[TopicPartition]) -> std::result::Result<(), AssignError> + Send + Sync>;

/// Told which partitions this consumer has just given up, once it is done with them. Called on
/// the driver thread, inside the rebalance (librdkafka's revoke callback, before the group moves
/// the partitions on), after the consumer has stopped taking their records, waited for their
/// in-flight work (up to the drain timeout) and committed their final offsets synchronously —
/// so a hook that flushes state kept per partition finds every handled record committed. When
/// the assignment was *lost* (the group moved on without this consumer: a session timeout), it
/// is called likewise, but nothing was waited for or committed. It is also called for every
/// partition at shutdown, as the consumer leaves the group. Each call blocks the driver and the
/// rebalance: keep it short.
pub type RevokeHook = Arc<dyn Fn(&[TopicPartition]) + Send + Sync>;

/// Everything [`Consumer::run`](crate::Consumer::run) needs, validated. The builder is the
/// public face of it.
#[derive(Clone)]
pub(crate) struct ConsumerConfig {
    pub(crate) brokers: String,
    pub(crate) group_id: String,
    pub(crate) topics: Vec<String>,
    pub(crate) engine: EngineConfig<Record>,
    pub(crate) dead_letter_suffix: String,
    pub(crate) overflow_suffix: String,
    pub(crate) commit_interval: Duration,
    pub(crate) drain_timeout: Duration,
    pub(crate) router: Option<KeyRouter>,
    pub(crate) on_assign: Option<AssignHook>,
    pub(crate) on_revoke: Option<RevokeHook>,
    pub(crate) replication: Replication,
    pub(crate) topic_retention: Option<Duration>,
    pub(crate) properties: Vec<(String, String)>,
    pub(crate) inline_first_poll: bool,
    pub(crate) handler_timeout: Option<Duration>,
    pub(crate) stuck_after: Option<Duration>,
    /// Most records per batch and longest wait for them, for a batch handler.
    pub(crate) batch: (usize, Duration),
    pub(crate) callbacks: UserCallbacks,
    /// See [`ConsumerBuilder::exactly_once`].
    pub(crate) exactly_once: bool,
}

impl std::fmt::Debug for ConsumerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerConfig")
            .field("brokers", &self.brokers)
            .field("group_id", &self.group_id)
            .field("topics", &self.topics)
            .field("ordering", &self.engine.ordering)
            .field("limits", &self.engine.limits)
            .field("hot_key", &self.engine.hot_key)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Consumer`](crate::Consumer). Only the group and the topics are required.
#[derive(Debug, Clone)]
pub struct ConsumerBuilder {
    cfg: ConsumerConfig,
    group_set: bool,
}

impl Default for ConsumerBuilder {
    fn default() -> Self {
        ConsumerBuilder {
            cfg: ConsumerConfig {
                brokers: "127.0.0.1:9092".into(),
                group_id: String::new(),
                topics: Vec::new(),
                engine: EngineConfig::default(),
                dead_letter_suffix: ".dlq".into(),
                overflow_suffix: ".overflow".into(),
                commit_interval: Duration::from_secs(1),
                drain_timeout: Duration::from_secs(10),
                router: None,
                on_assign: None,
                on_revoke: None,
                replication: Replication::default(),
                topic_retention: None,
                properties: Vec::new(),
                inline_first_poll: false,
                handler_timeout: None,
                stuck_after: None,
                batch: (64, Duration::from_millis(10)),
                callbacks: UserCallbacks::default(),
                exactly_once: false,
            },
            group_set: false,
        }
    }
}

impl ConsumerBuilder {
    /// Bootstrap servers, comma-separated (default `127.0.0.1:9092`).
    pub fn brokers(mut self, brokers: impl Into<String>) -> Self {
        self.cfg.brokers = brokers.into();
        self
    }

    /// The consumer group (required). Commits, assignments and the overflow consumer's group
    /// (`<group>.overflow`) all derive from it.
    pub fn group_id(mut self, group: impl Into<String>) -> Self {
        self.cfg.group_id = group.into();
        self.group_set = true;
        self
    }

    /// The topics to consume. A name that starts with `^` is a regular expression (librdkafka's
    /// own syntax): every topic matching it is consumed, including those created after the
    /// consumer starts, which it finds at its next metadata refresh
    /// (`topic.metadata.refresh.interval.ms`, 5 s when a pattern is given unless set). A pattern
    /// must not match the dead-letter and overflow topics (`<topic>.dlq`, `<topic>.overflow`), or
    /// the consumer reads its own dead letters back: anchor it (`^orders-[0-9]+$`). A pattern
    /// cannot be combined with [`HotKeyPolicy::Divert`] (refused by `build`): the overflow
    /// topics must exist before their topics are consumed.
    pub fn topics<I, S>(mut self, topics: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.cfg.topics = topics.into_iter().map(Into::into).collect();
        self
    }

    /// By key (default), by partition, or unordered.
    pub fn ordering(mut self, ordering: ProcessingOrder) -> Self {
        self.cfg.engine.ordering = ordering;
        self
    }

    /// Where keyless records go in key mode (default: unordered).
    pub fn no_key(mut self, no_key: NoKey) -> Self {
        self.cfg.engine.no_key = no_key;
        self
    }

    /// Handlers running at once across all partitions (default 256).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.cfg.engine.limits.max_in_flight = n;
        self
    }

    /// Memory caps per key, per partition and in all (see [`Limits`]).
    pub fn limits(mut self, limits: Limits) -> Self {
        let in_flight = self.cfg.engine.limits.max_in_flight;
        self.cfg.engine.limits = Limits {
            max_in_flight: in_flight,
            ..limits
        };
        self
    }

    /// What to do with a key that reaches its cap (default: back-pressure that partition).
    pub fn hot_key(mut self, policy: HotKeyPolicy<Record>) -> Self {
        self.cfg.engine.hot_key = policy;
        self
    }

    /// How a failed record is retried before it is dead-lettered (default: 5 attempts, full
    /// jitter from 100 ms doubling up to 30 s; see [`RetryPolicy`]). Only its key waits.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.cfg.engine.retry = retry;
        self
    }

    /// Dead-letter topic of topic `t` is `t` + suffix (default `.dlq`).
    pub fn dead_letter_suffix(mut self, suffix: impl Into<String>) -> Self {
        self.cfg.dead_letter_suffix = suffix.into();
        self
    }

    /// Overflow topic of topic `t` is `t` + suffix (default `.overflow`); it must have at least as
    /// many partitions as `t` and is created with as many if missing.
    pub fn overflow_suffix(mut self, suffix: impl Into<String>) -> Self {
        self.cfg.overflow_suffix = suffix.into();
        self
    }

    /// How the dead-letter and overflow topics are replicated when the consumer creates them
    /// (default: min(3, brokers) copies, two in sync where three or more; see [`Replication`]).
    pub fn replication(mut self, replication: Replication) -> Self {
        self.cfg.replication = replication;
        self
    }

    /// `retention.ms` of the dead-letter and overflow topics when the consumer creates them
    /// (default: the broker's `log.retention.*`). Topics that exist keep their own.
    pub fn topic_retention(mut self, retention: Duration) -> Self {
        self.cfg.topic_retention = Some(retention);
        self
    }

    /// How often completed progress is committed (default 1 s).
    pub fn commit_interval(mut self, every: Duration) -> Self {
        self.cfg.commit_interval = every;
        self
    }

    /// How long a revoked partition's (or a shutdown's) in-flight work may take to finish before
    /// it is abandoned to the next owner (default 10 s).
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.cfg.drain_timeout = timeout;
        self
    }

    /// Orders records by what they touch rather than by their Kafka key (see [`KeyRouter`]).
    pub fn key_router(mut self, router: KeyRouter) -> Self {
        self.cfg.router = Some(router);
        self
    }

    /// Called when partitions are assigned, before their records are routed (see [`AssignHook`]).
    pub fn on_assign(mut self, hook: AssignHook) -> Self {
        self.cfg.on_assign = Some(hook);
        self
    }

    /// Polls each handler run once on the consumer's driver thread before handing it to the
    /// runtime (default: off, every run is a tokio task from the start).
    ///
    /// The contract: turn it on only for a handler that is cheap and never blocks before its
    /// first `.await` (a filter, a cache lookup, an in-memory update, or one that awaits at once).
    /// Such a run then finishes without a task or a thread hand-off. A handler that blocks or
    /// computes for long before its first `.await` would stall the polling, commits and
    /// dispatching of every partition meanwhile. The handler timeout does not cover that first
    /// poll. Batch handlers ignore it.
    pub fn inline_first_poll(mut self, on: bool) -> Self {
        self.cfg.inline_first_poll = on;
        self
    }

    /// The longest one attempt of a handler may take (default: no limit). An attempt that runs
    /// past it is dropped at its next `.await` and counts as a failure of its record
    /// ([`FailureKind::TimedOut`](crate::FailureKind::TimedOut)): retried after the back-off,
    /// then dead-lettered with the reason `timeout`. For a batch handler it bounds each call,
    /// and every record of a batch that times out has failed an attempt. Needs a runtime with
    /// its timer enabled (as `#[tokio::main]` and `#[tokio::test]` make).
    pub fn handler_timeout(mut self, limit: Duration) -> Self {
        self.cfg.handler_timeout = Some(limit);
        self
    }

    /// Raises the stuck-key alarm for a key whose record has been in flight for `after` or
    /// longer (default: off): the gauge `kafkaesque_stuck_keys` counts such keys, and a WARN
    /// line names each one's key, topic, partition and offset once when it becomes stuck.
    /// Checked once a second.
    pub fn stuck_key_alarm(mut self, after: Duration) -> Self {
        self.cfg.stuck_after = Some(after);
        self
    }

    /// For [`Consumer::run_batches`](crate::Consumer::run_batches): at most `max_records` per
    /// call, handed over once the batch's first record has waited `max_wait` (default 64 and
    /// 10 ms). See [`BatchHandler`](crate::BatchHandler) for what a batch holds.
    pub fn batch(mut self, max_records: usize, max_wait: Duration) -> Self {
        self.cfg.batch = (max_records, max_wait);
        self
    }

    /// Called when partitions are revoked, after their work is finished and committed (see
    /// [`RevokeHook`]).
    pub fn on_revoke(mut self, hook: RevokeHook) -> Self {
        self.cfg.on_revoke = Some(hook);
        self
    }

    /// Exactly-once consume-transform-produce (default off: at least once). The consumer's
    /// producer becomes transactional: what handlers produce (see
    /// [`Consumer::run_producing`](crate::Consumer::run_producing)), dead letters, diverted
    /// records and the consumed offsets (with their commit metadata) commit in one transaction
    /// every [`commit_interval`](Self::commit_interval), so a `read_committed` reader of the
    /// outputs sees each once, crashes and rebalances included. The library sets the
    /// producer's `transactional.id` to `kafkaesque.<group>.<instance>`, where the instance is
    /// the `group.instance.id` property if set (static membership: a restarted instance then
    /// aborts its predecessor's open transaction at once) and otherwise unique to this
    /// consumer. What it costs and how it composes with the commit metadata:
    /// `docs/consumer.md`.
    pub fn exactly_once(mut self) -> Self {
        self.cfg.exactly_once = true;
        self
    }

    /// Any librdkafka property, passed to every client the consumer makes where it applies
    /// (checked by `build`): the group consumer, the overflow consumer, the dead-letter/overflow
    /// producer and the admin client. Consumer-only properties go to the consumers,
    /// producer-only ones to the producer; `client.id` becomes each client's own (`<id>`,
    /// `<id>-overflow`, `<id>-sinks`, `<id>-admin`); `group.instance.id` goes to the group
    /// consumer alone; a `transactional.id` given here is ignored (in
    /// [`exactly_once`](Self::exactly_once) mode the library sets the producer's own). The producer keeps
    /// `enable.idempotence=true` and `acks=all` whatever is set: the overflow's order and the
    /// dead letters' delivery rest on them. `group.id` is refused: use
    /// [`group_id`](Self::group_id).
    pub fn set(mut self, property: impl Into<String>, value: impl Into<String>) -> Self {
        self.cfg.properties.push((property.into(), value.into()));
        self
    }

    /// The user's own librdkafka callbacks (an `OAUTHBEARER` token source, logs, errors,
    /// statistics), given to every client the consumer makes alongside the consumer's own (see
    /// [`ClientCallbacks`]).
    pub fn client_callbacks(mut self, callbacks: Arc<dyn ClientCallbacks>) -> Self {
        self.cfg.callbacks = UserCallbacks(Some(callbacks));
        self
    }

    /// Checks the builder's own fields (the librdkafka properties are `clients::check`'s).
    pub(crate) fn validate(self) -> Result<ConsumerConfig> {
        let cfg = self.cfg;
        if !self.group_set || cfg.group_id.trim().is_empty() {
            return Err(Error::config("group_id", "a consumer group is required"));
        }
        if cfg.topics.is_empty() {
            return Err(Error::config("topics", "at least one topic is required"));
        }
        if let Some(t) = cfg.topics.iter().find(|t| t.trim().is_empty()) {
            return Err(Error::config("topics", format!("empty topic name {t:?}")));
        }
        if matches!(cfg.engine.hot_key, HotKeyPolicy::Divert)
            && cfg.topics.iter().any(|t| is_pattern(t))
        {
            return Err(Error::config(
                "hot_key",
                "Divert needs an overflow topic created beside each topic before it is consumed, \
                 which the topics a pattern comes to match cannot have: name the topics",
            ));
        }
        if cfg.engine.limits.max_in_flight == 0 {
            return Err(Error::config("concurrency", "must be at least 1"));
        }
        if cfg.dead_letter_suffix.is_empty() || cfg.overflow_suffix.is_empty() {
            return Err(Error::config(
                "dead_letter_suffix/overflow_suffix",
                "must not be empty",
            ));
        }
        if cfg.batch.0 == 0 {
            return Err(Error::config("batch.max_records", "must be at least 1"));
        }
        if cfg.handler_timeout.is_some_and(|t| t.is_zero()) {
            return Err(Error::config("handler_timeout", "must be positive"));
        }
        if cfg.stuck_after.is_some_and(|t| t.is_zero()) {
            return Err(Error::config("stuck_key_alarm", "must be positive"));
        }
        if cfg.commit_interval.is_zero() {
            return Err(Error::config("commit_interval", "must be positive"));
        }
        kafkaesque_engine::Engine::new(cfg.engine.clone())
            .map_err(|e| Error::config(e.field, e.problem))?;
        Ok(cfg)
    }
}

/// librdkafka subscribes to every topic matching a name that starts with `^` (a regular
/// expression), now and as topics are created.
pub(crate) fn is_pattern(topic: &str) -> bool {
    topic.starts_with('^')
}
