//! librdkafka's callbacks on the group consumer. Rebalance callbacks run on the driver thread,
//! inside `poll`, and go to the [`RebalanceHandler`] installed; commit results and statistics
//! are forwarded without touching the driver's state.

use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use kafkaesque_engine::TopicPartition;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaResult;
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tracing::error;

use crate::callbacks::{forward_user_callbacks, UserCallbacks};
use crate::events::{Event, EventTx};
use crate::observe::Observer;

/// What the group consumer's rebalance callbacks call: the driver state. Each runs on the
/// driver thread, inside `poll`, so the driver never holds the handler across `poll`.
pub(crate) trait RebalanceHandler: Send {
    /// Partitions are about to be assigned; librdkafka has not started fetching them yet.
    fn assigning(&mut self, consumer: &Arc<BaseConsumer<GroupContext>>, tps: Vec<TopicPartition>);
    /// Partitions were assigned.
    fn assigned(&mut self, consumer: &BaseConsumer<GroupContext>, tpl: &TopicPartitionList);
    /// Partitions are being taken away; `lost` when the group has moved on already.
    fn revoking(
        &mut self,
        consumer: &BaseConsumer<GroupContext>,
        tpl: &TopicPartitionList,
        lost: bool,
    );
}

/// The group consumer's context.
pub(crate) struct GroupContext {
    handler: OnceLock<Arc<Mutex<dyn RebalanceHandler>>>,
    tx: Mutex<EventTx>,
    observer: Observer,
    /// The consumer this context belongs to: giving a partition a queue of its own takes a
    /// reference to it, and the rebalance callback is handed only a borrow. Weak, or the
    /// consumer would own itself.
    consumer: OnceLock<Weak<BaseConsumer<GroupContext>>>,
    /// The user's callbacks: tokens, logs, errors, and the statistics after the observer's turn.
    user: UserCallbacks,
}

impl GroupContext {
    pub(crate) fn new(tx: EventTx, observer: Observer, user: UserCallbacks) -> Self {
        GroupContext {
            handler: OnceLock::new(),
            tx: Mutex::new(tx),
            observer,
            consumer: OnceLock::new(),
            user,
        }
    }

    /// Hands the context its rebalance handler and the consumer it belongs to, before the
    /// first poll.
    pub(crate) fn install(
        &self,
        handler: Arc<Mutex<dyn RebalanceHandler>>,
        consumer: &Arc<BaseConsumer<GroupContext>>,
    ) {
        let _ = self.handler.set(handler);
        let _ = self.consumer.set(Arc::downgrade(consumer));
    }

    fn handler(&self) -> MutexGuard<'_, dyn RebalanceHandler + 'static> {
        self.handler
            .get()
            .expect("rebalance handler installed before polling")
            .lock()
            .expect("state lock")
    }
}

impl ClientContext for GroupContext {
    forward_user_callbacks!();

    fn stats(&self, stats: Statistics) {
        // The user's turn after the consumer's own figures are read.
        crate::stats::record(&self.observer, stats.clone());
        self.user.stats(&stats);
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let lost = consumer.assignment_lost();
                self.handler().revoking(consumer, tpl, lost);
            }
            Rebalance::Assign(tpl) => {
                // Before librdkafka applies the assignment and starts fetching (see `feeds`).
                if let Some(c) = self.consumer.get().and_then(Weak::upgrade) {
                    let tps = tpl
                        .elements()
                        .iter()
                        .map(|e| TopicPartition::new(e.topic(), e.partition()))
                        .collect::<Vec<_>>();
                    self.handler().assigning(&c, tps);
                }
            }
            Rebalance::Error(e) => error!(error = %e, "rebalance error"),
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            self.handler().assigned(consumer, tpl);
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        forward_commits(&self.tx, result, offsets);
    }
}

/// Sends the driver a [`Event::Committed`] for each partition of a commit librdkafka reports.
pub(crate) fn forward_commits(
    tx: &Mutex<EventTx>,
    result: KafkaResult<()>,
    offsets: &TopicPartitionList,
) {
    let tx = tx.lock().expect("event channel lock");
    for e in offsets.elements() {
        if let Offset::Offset(offset) = e.offset() {
            let ok = result.is_ok() && e.error().is_ok();
            let tp = TopicPartition::new(e.topic(), e.partition());
            let _ = tx.send(Event::Committed { tp, offset, ok });
        }
    }
}
