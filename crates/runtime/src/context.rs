//! librdkafka's callbacks. Rebalance callbacks run on the driver thread, inside `poll`; commit
//! results and statistics are forwarded without touching the driver's state.

use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use kafkaesque_engine::TopicPartition;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaResult;
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tracing::error;

use crate::events::{Event, EventTx};
use crate::observe::Observer;
use crate::state::State;

/// The group consumer's context: owns the driver state so rebalance callbacks can reach it.
pub(crate) struct GroupContext {
    state: Mutex<Option<State>>,
    tx: Mutex<EventTx>,
    observer: Observer,
    /// The consumer this context belongs to: giving a partition a queue of its own takes a
    /// reference to it, and the rebalance callback is handed only a borrow. Weak, or the
    /// consumer would own itself.
    consumer: OnceLock<Weak<BaseConsumer<GroupContext>>>,
}

impl GroupContext {
    pub(crate) fn new(tx: EventTx, observer: Observer) -> Self {
        GroupContext {
            state: Mutex::new(None),
            tx: Mutex::new(tx),
            observer,
            consumer: OnceLock::new(),
        }
    }

    /// Hands the context its state and the consumer it belongs to, before the first poll.
    pub(crate) fn install(&self, state: State, consumer: &Arc<BaseConsumer<GroupContext>>) {
        *self.state.lock().expect("state lock") = Some(state);
        let _ = self.consumer.set(Arc::downgrade(consumer));
    }

    /// The driver state. Never held across `poll` (callbacks inside it take it too).
    pub(crate) fn state(&self) -> StateGuard<'_> {
        StateGuard(self.state.lock().expect("state lock"))
    }
}

pub(crate) struct StateGuard<'a>(MutexGuard<'a, Option<State>>);

impl std::ops::Deref for StateGuard<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        self.0.as_ref().expect("state installed before polling")
    }
}

impl std::ops::DerefMut for StateGuard<'_> {
    fn deref_mut(&mut self) -> &mut State {
        self.0.as_mut().expect("state installed before polling")
    }
}

impl ClientContext for GroupContext {
    fn stats(&self, stats: Statistics) {
        let mut lag = self.observer.lag.lock().expect("lag lock");
        for (topic, t) in stats.topics {
            for (p, ps) in t.partitions {
                if p >= 0 && ps.consumer_lag >= 0 {
                    lag.insert(TopicPartition::new(topic.as_str(), p), ps.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let lost = consumer.assignment_lost();
                self.state().on_revoke(consumer, tpl, lost);
            }
            Rebalance::Assign(tpl) => {
                // Before librdkafka applies the assignment and starts fetching (see `feeds`).
                if let Some(c) = self.consumer.get().and_then(Weak::upgrade) {
                    let tps = tpl
                        .elements()
                        .iter()
                        .map(|e| TopicPartition::new(e.topic(), e.partition()))
                        .collect::<Vec<_>>();
                    self.state().feeds.split(&c, tps);
                }
            }
            Rebalance::Error(e) => error!(error = %e, "rebalance error"),
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            self.state().on_assign(consumer, tpl);
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        forward_commits(&self.tx, result, offsets);
    }
}

/// The overflow consumer's context: commit results go to the driver as events, because this
/// consumer is polled while the driver holds its state.
pub(crate) struct OverflowContext {
    tx: Mutex<EventTx>,
}

impl OverflowContext {
    pub(crate) fn new(tx: EventTx) -> Self {
        OverflowContext { tx: Mutex::new(tx) }
    }
}

impl ClientContext for OverflowContext {}

impl ConsumerContext for OverflowContext {
    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        forward_commits(&self.tx, result, offsets);
    }
}

fn forward_commits(tx: &Mutex<EventTx>, result: KafkaResult<()>, offsets: &TopicPartitionList) {
    let tx = tx.lock().expect("event channel lock");
    for e in offsets.elements() {
        if let Offset::Offset(offset) = e.offset() {
            let ok = result.is_ok() && e.error().is_ok();
            let tp = TopicPartition::new(e.topic(), e.partition());
            let _ = tx.send(Event::Committed { tp, offset, ok });
        }
    }
}
