//! What operators see while it runs: a snapshot of partitions and the busiest keys, refreshed
//! every second for an HTTP endpoint or a log line, and Prometheus metrics through the `metrics`
//! facade (install any recorder; the service installs the Prometheus one).
//!
//! Every metric carries the consumer's `group` and `client_id` labels, so that consumers in one
//! process keep metrics of their own. Partition gauges are refreshed every second for the
//! partitions the consumer owns, and only for those: a revoked partition's gauges are never set
//! again. The `metrics` facade has no way to remove a series, so whether they leave the
//! exporter's output is the recorder's business: Prometheus' with
//! `PrometheusBuilder::idle_timeout(MetricKindMask::GAUGE, ..)` drops them once that long has
//! passed without an update.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use kafkaesque_engine::{Counters, Engine, KeyStats, PartitionStats, TopicPartition};
use metrics::{counter, gauge, Label};

use crate::Record;

/// The consumer as of its last refresh (every second).
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Every partition this consumer owns.
    pub partitions: Vec<PartitionView>,
    /// Keys holding the most queued work.
    pub top_keys_by_queued: Vec<KeyStats>,
    /// Keys whose current item has run the longest.
    pub top_keys_by_time_in_flight: Vec<KeyStats>,
    /// The engine's running totals since the consumer started.
    pub counters: Counters,
    /// Records handed to the dead-letter or overflow producer and not yet acknowledged.
    pub pending_sinks: usize,
}

/// One partition: the engine's figures plus lag.
#[derive(Debug, Clone)]
pub struct PartitionView {
    /// What the engine holds for it: queued, in flight, uncommitted, paused.
    pub stats: PartitionStats,
    /// Messages behind the partition's end, from librdkafka's statistics.
    pub lag_messages: Option<i64>,
    /// Age of the oldest record not yet committed, in milliseconds.
    pub lag_ms: Option<u64>,
}

/// A handle to the snapshot, cheap to clone and share with an HTTP server.
#[derive(Debug, Clone, Default)]
pub struct Observer {
    pub(crate) inner: Arc<Mutex<Snapshot>>,
    /// librdkafka's figures per partition, from its statistics (see [`crate::stats`]).
    pub(crate) fetching: Arc<Mutex<HashMap<TopicPartition, Fetching>>>,
    pub(crate) labels: Labels,
}

/// What librdkafka's statistics say of one partition.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fetching {
    /// Messages behind the partition's end.
    pub(crate) lag: i64,
    /// Fetched by librdkafka and not yet taken by the consumer.
    pub(crate) queued_messages: i64,
    pub(crate) queued_bytes: u64,
}

/// The labels every metric of one consumer carries: its group and its client id.
#[derive(Debug, Clone, Default)]
pub(crate) struct Labels(Arc<[Label]>);

impl Labels {
    pub(crate) fn new(group: &str, client_id: &str) -> Self {
        Labels(Arc::from(vec![
            Label::new("group", group.to_owned()),
            Label::new("client_id", client_id.to_owned()),
        ]))
    }

    pub(crate) fn get(&self) -> Vec<Label> {
        self.0.to_vec()
    }

    /// These labels and `extra`.
    pub(crate) fn with(&self, extra: &[(&'static str, String)]) -> Vec<Label> {
        let mut v = self.get();
        v.extend(extra.iter().map(|(k, val)| Label::new(*k, val.clone())));
        v
    }
}

impl Observer {
    pub(crate) fn new(labels: Labels) -> Self {
        Observer {
            labels,
            ..Observer::default()
        }
    }

    /// The latest snapshot (at most a second old), copied out so the lock is not held.
    pub fn snapshot(&self) -> Snapshot {
        self.inner.lock().expect("observer lock").clone()
    }
}

/// Samples of (offset, timestamp) per partition, to tell the age of the oldest uncommitted record
/// without keeping a timestamp per record.
#[derive(Debug, Default)]
pub(crate) struct Ages {
    samples: HashMap<TopicPartition, VecDeque<(i64, i64)>, rustc_hash::FxBuildHasher>,
}

/// Offsets between two samples of a partition.
pub(crate) const SAMPLE_EVERY: i64 = 64;

impl Ages {
    /// Samples the record at `offset` unless the partition's last sample is near; returns the
    /// offset of the partition's newest sample (`offset` when it has none, so that a caller that
    /// waits [`SAMPLE_EVERY`] offsets before calling again also tries again a record without a
    /// timestamp only that often).
    pub(crate) fn fetched(
        &mut self,
        tp: &TopicPartition,
        offset: i64,
        timestamp: Option<i64>,
    ) -> i64 {
        let Some(ts) = timestamp else { return offset };
        let q = match self.samples.get_mut(tp) {
            Some(q) => q,
            None => self.samples.entry(tp.clone()).or_default(),
        };
        if q.back().is_none_or(|(o, _)| offset - o >= SAMPLE_EVERY) {
            q.push_back((offset, ts));
        }
        q.back().map_or(offset, |(o, _)| *o)
    }

    pub(crate) fn forget(&mut self, tp: &TopicPartition) {
        self.samples.remove(tp);
    }

    /// Age of the oldest sampled record at or above `watermark`.
    fn age(&mut self, tp: &TopicPartition, watermark: i64, now_ms: i64) -> Option<u64> {
        let q = self.samples.get_mut(tp)?;
        while q.len() > 1 && q[1].0 <= watermark {
            q.pop_front();
        }
        let &(o, ts) = q.front()?;
        (o <= watermark || q.len() == 1).then(|| (now_ms - ts).max(0) as u64)
    }
}

/// Refreshes the snapshot and the metrics from the engine.
pub(crate) fn publish(
    engine: &Engine<Record>,
    observer: &Observer,
    ages: &mut Ages,
    pending_sinks: usize,
) {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let fetching = observer.fetching.lock().expect("fetching lock").clone();
    let partitions: Vec<PartitionView> = engine
        .partition_stats()
        .into_iter()
        .map(|stats| {
            let caught_up = stats.uncommitted == 0;
            let lag_ms = if caught_up {
                Some(0)
            } else {
                ages.age(&stats.tp, stats.watermark, now_ms)
            };
            PartitionView {
                lag_messages: fetching.get(&stats.tp).map(|f| f.lag),
                lag_ms,
                stats,
            }
        })
        .collect();
    for p in &partitions {
        let labels = observer.labels.with(&[
            ("topic", p.stats.tp.topic.to_string()),
            ("partition", p.stats.tp.partition.to_string()),
        ]);
        if let Some(f) = fetching.get(&p.stats.tp) {
            gauge!("kafkaesque_partition_fetch_queue_messages", labels.clone())
                .set(f.queued_messages as f64);
            gauge!("kafkaesque_partition_fetch_queue_bytes", labels.clone())
                .set(f.queued_bytes as f64);
        }
        gauge!("kafkaesque_partition_held_records", labels.clone()).set(p.stats.held as f64);
        gauge!("kafkaesque_partition_in_flight", labels.clone()).set(p.stats.in_flight as f64);
        gauge!("kafkaesque_partition_uncommitted_records", labels.clone())
            .set(p.stats.uncommitted as f64);
        gauge!("kafkaesque_partition_paused", labels.clone())
            .set(f64::from(u8::from(p.stats.paused.is_some())));
        gauge!("kafkaesque_partition_diverted_keys", labels.clone())
            .set(p.stats.diverted_keys as f64);
        if let Some(l) = p.lag_messages {
            gauge!("kafkaesque_partition_lag_messages", labels.clone()).set(l as f64);
        }
        if let Some(ms) = p.lag_ms {
            gauge!("kafkaesque_partition_lag_seconds", labels.clone()).set(ms as f64 / 1000.0);
        }
    }
    let c = engine.counters().clone();
    let labels = observer.labels.get();
    counter!("kafkaesque_records_fetched_total", labels.clone()).absolute(c.fetched);
    counter!("kafkaesque_records_completed_total", labels.clone()).absolute(c.completed);
    counter!("kafkaesque_records_skipped_total", labels.clone()).absolute(c.skipped);
    counter!("kafkaesque_dispatched_total", labels.clone()).absolute(c.dispatched);
    counter!("kafkaesque_retries_total", labels.clone()).absolute(c.retried);
    counter!("kafkaesque_dead_lettered_total", labels.clone()).absolute(c.dead_lettered);
    counter!("kafkaesque_diverted_total", labels.clone()).absolute(c.diverted);
    counter!("kafkaesque_coalesced_total", labels.clone()).absolute(c.coalesced);
    counter!("kafkaesque_pauses_total", labels.clone()).absolute(c.pauses);
    counter!("kafkaesque_stale_events_total", labels.clone()).absolute(c.stale);
    counter!("kafkaesque_metadata_truncated_total", labels.clone()).absolute(c.metadata_truncated);
    gauge!("kafkaesque_in_flight", labels.clone()).set(engine.in_flight() as f64);
    gauge!("kafkaesque_held_records", labels.clone()).set(engine.held().0 as f64);
    gauge!("kafkaesque_held_bytes", labels.clone()).set(engine.held().1 as f64);
    let (by_queued, by_time) = engine.top_keys(20);
    *observer.inner.lock().expect("observer lock") = Snapshot {
        partitions,
        top_keys_by_queued: by_queued,
        top_keys_by_time_in_flight: by_time,
        counters: c,
        pending_sinks,
    };
}
