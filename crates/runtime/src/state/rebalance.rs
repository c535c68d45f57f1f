//! Rebalances, as librdkafka reports them inside `poll` on the driver thread: taking partitions
//! on (with where the previous owner left them, metadata included) and giving them up (drain,
//! final commit, drop the rest for the next owner).

use std::sync::Arc;
use std::time::{Duration, Instant};

use kafkaesque_engine::{PartitionHandle, Role, TopicPartition};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::{Offset, TopicPartitionList};
use tracing::{error, info, warn};

use super::State;
use crate::context::{GroupContext, RebalanceHandler};
use crate::feeds;

/// First and longest wait before the assign hook is called again for partitions it failed for.
const GATE_FIRST: Duration = Duration::from_millis(100);
const GATE_MAX: Duration = Duration::from_secs(5);

/// Partitions whose assign hook failed: held until it succeeds for them.
#[derive(Debug)]
pub(super) struct Gate {
    tps: Vec<TopicPartition>,
    next: Instant,
    backoff: Duration,
}

impl Gate {
    /// Waits out the current back-off before the next call, and lengthens it.
    fn back_off(&mut self) {
        self.next = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(GATE_MAX);
    }
}

impl Default for Gate {
    fn default() -> Self {
        Gate {
            tps: Vec::new(),
            next: Instant::now(),
            backoff: GATE_FIRST,
        }
    }
}

impl RebalanceHandler for State {
    fn assigning(&mut self, consumer: &Arc<BaseConsumer<GroupContext>>, tps: Vec<TopicPartition>) {
        self.feeds.add(consumer, tps);
    }

    fn assigned(&mut self, consumer: &BaseConsumer<GroupContext>, tpl: &TopicPartitionList) {
        self.on_assign(consumer, tpl);
    }

    fn revoking(
        &mut self,
        consumer: &BaseConsumer<GroupContext>,
        tpl: &TopicPartitionList,
        lost: bool,
    ) {
        self.on_revoke(consumer, tpl, lost);
    }
}

impl State {
    /// Partitions were assigned: read where each stands (offset and metadata) and take it on.
    fn on_assign<C: ConsumerContext>(&mut self, main: &BaseConsumer<C>, tpl: &TopicPartitionList) {
        let committed = match main.committed_offsets(tpl.clone(), Duration::from_secs(10)) {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "could not read committed offsets; starting without metadata (some records may be replayed)");
                tpl.clone()
            }
        };
        let mut overflow_tpl = TopicPartitionList::new();
        for e in committed.elements() {
            let topic = self.intern(e.topic());
            let tp = TopicPartition {
                topic: topic.clone(),
                partition: e.partition(),
            };
            let start = match e.offset() {
                Offset::Offset(o) => o,
                _ => 0,
            };
            let (h, warning) =
                self.engine
                    .assign(tp.clone(), start, Some(e.metadata()), Role::Main);
            if let Some(w) = warning {
                warn!(topic = %tp.topic, partition = tp.partition, error = %w, "ignoring commit metadata; completed records above the commit will be replayed");
            }
            self.apply_pause(main, &tp);
            self.feeds.assigned(&tp, h);
            info!(topic = %tp.topic, partition = tp.partition, offset = start, "partition assigned");
            if self.overflow.is_some() {
                self.assign_overflow(&topic, e.partition(), h, &mut overflow_tpl);
            }
        }
        if let (Some(c), false) = (self.overflow.as_ref(), overflow_tpl.count() == 0) {
            if let Err(e) = c.incremental_assign(&overflow_tpl) {
                error!(error = %e, "assigning overflow partitions failed");
            }
        }
        if self.cfg.on_assign.is_some() {
            let assigned = committed
                .elements()
                .iter()
                .map(|e| TopicPartition::new(e.topic(), e.partition()))
                .collect();
            self.call_assign_hook(main, assigned);
        }
    }

    /// Calls the assign hook for `tps`; holds them if it fails, to be tried again later.
    fn call_assign_hook<C: ConsumerContext>(
        &mut self,
        main: &BaseConsumer<C>,
        tps: Vec<TopicPartition>,
    ) {
        let Some(hook) = self.cfg.on_assign.clone() else {
            return;
        };
        if tps.is_empty() {
            return;
        }
        let Err(reason) = hook(&tps) else {
            return;
        };
        warn!(partitions = tps.len(), %reason, cause = std::error::Error::source(&reason).map(tracing::field::display), "the assign hook failed; its partitions are held and it will be called again");
        self.hold_for_hook(main, &tps, true);
        let gate = self.gate.get_or_insert_with(Gate::default);
        gate.tps.extend(tps);
        gate.back_off();
    }

    /// Holds partitions for the assign hook, or lets them go: a partition with a queue of its own
    /// is simply not polled meanwhile; any other is paused in librdkafka.
    fn hold_for_hook<C: ConsumerContext>(
        &mut self,
        main: &BaseConsumer<C>,
        tps: &[TopicPartition],
        held: bool,
    ) {
        for tp in tps {
            if self.hold(main, tp, held) {
                continue;
            }
            let r = if held {
                feeds::pause_in_kafka(main, tp)
            } else {
                feeds::resume_in_kafka(main, tp)
            };
            if let Err(e) = r {
                error!(topic = %tp.topic, partition = tp.partition, held, error = %e, "pausing or resuming a partition for its assign hook failed");
            }
        }
    }

    /// Calls the assign hook again for the partitions it failed for, when their back-off is over;
    /// takes them on if it succeeds.
    pub(crate) fn retry_assign_hook<C: ConsumerContext>(&mut self, main: &BaseConsumer<C>) {
        let Some(gate) = self.gate.as_ref().filter(|g| Instant::now() >= g.next) else {
            return;
        };
        let tps = gate.tps.clone();
        let hook = self.cfg.on_assign.clone().expect("a gate implies a hook");
        if let Err(reason) = hook(&tps) {
            warn!(partitions = tps.len(), %reason, cause = std::error::Error::source(&reason).map(tracing::field::display), "the assign hook failed again; its partitions stay held");
            self.gate.as_mut().expect("checked").back_off();
            return;
        }
        info!(
            partitions = tps.len(),
            "the assign hook succeeded; taking the held partitions on"
        );
        self.gate = None;
        self.hold_for_hook(main, &tps, false);
    }

    /// Partitions are being taken away: stop dispatching them, let their in-flight work finish
    /// (up to the drain timeout), commit their final positions and metadata synchronously, and
    /// drop the rest for the next owner to replay.
    fn on_revoke<C: ConsumerContext>(
        &mut self,
        main: &BaseConsumer<C>,
        tpl: &TopicPartitionList,
        lost: bool,
    ) {
        let mut handles = Vec::new();
        let mut overflow_tpl = TopicPartitionList::new();
        for e in tpl.elements() {
            let topic = self.intern(e.topic());
            let tp = TopicPartition {
                topic,
                partition: e.partition(),
            };
            // Its queue goes now, with the record it kept, if any: the next owner fetches it.
            self.feeds.remove(&tp);
            self.pauses.revoked(&tp);
            if let Some(g) = self.gate.as_mut() {
                g.tps.retain(|t| *t != tp);
            }
            if let Some(h) = self.engine.handle(&tp) {
                handles.push((tp, h));
            }
            if self.overflow.is_some() {
                overflow_tpl.add_partition(&self.overflow_topic(e.topic()), e.partition());
            }
        }
        for (_, h) in &handles {
            self.engine.drain(*h);
        }
        // At shutdown the drain has been waited for already.
        if !lost && !self.shutdown {
            let deadline = Instant::now() + self.cfg.drain_timeout;
            let hs: Vec<PartitionHandle> = handles.iter().map(|(_, h)| *h).collect();
            let drained = self.drain_until(main, deadline, |st| {
                hs.iter().all(|h| st.engine.in_flight_of(*h) == 0)
            });
            if !drained {
                warn!(partitions = hs.len(), "drain timeout: in-flight work of revoked partitions abandoned to the next owner");
                if self.cfg.exactly_once {
                    // Its outputs could still join a transaction that the offsets do not match.
                    self.abort(
                        "work of revoked partitions did not finish within the drain timeout",
                    );
                }
            }
        }
        let mut commits = Vec::new();
        for (tp, h) in &handles {
            commits.extend(self.engine.revoke(*h));
            self.ages.forget(tp);
            info!(topic = %tp.topic, partition = tp.partition, lost, "partition revoked");
        }
        if self.gate.as_ref().is_some_and(|g| g.tps.is_empty()) {
            self.gate = None;
        }
        if lost {
            warn!("assignment lost: final commits skipped (the group has moved on)");
        } else {
            self.commit_final(main, commits);
        }
        if let (Some(c), false) = (self.overflow.as_ref(), overflow_tpl.count() == 0) {
            if let Err(e) = c.incremental_unassign(&overflow_tpl) {
                warn!(error = %e, "unassigning overflow partitions failed");
            }
        }
        if let Some(hook) = self.cfg.on_revoke.as_ref().filter(|_| tpl.count() > 0) {
            let revoked: Vec<TopicPartition> = tpl
                .elements()
                .iter()
                .map(|e| TopicPartition::new(e.topic(), e.partition()))
                .collect();
            hook(&revoked);
        }
    }
}
