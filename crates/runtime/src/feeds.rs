//! A queue of its own for every assigned partition, so that back-pressure stops *taking* records
//! from a full partition instead of pausing it in librdkafka.
//!
//! Why: pausing a partition and seeking it back to the refused record makes librdkafka discard
//! everything it had prefetched for it, and after the resume the partition's next fetch leaves
//! only when the long-poll already waiting at the broker returns (`fetch.wait.max.ms`). An
//! engine that fills up and drains many times a second (a slow handler under a partition cap)
//! then spends most of its time waiting for records it had fetched once already. With a queue
//! per partition, a full partition is simply left alone: librdkafka keeps what it fetched and
//! stops fetching more once the queue holds `queued.max.messages.kbytes`, and the one record the
//! engine refused is kept here and offered again first when the engine resumes the partition.
//!
//! Pause and seek remain the fallback whenever the kept record cannot be the next one the engine
//! wants (a second record of a held partition was refused: it reached the consumer's main queue,
//! fetched before the split).

use std::sync::Arc;
use std::thread::Thread;

use kafkaesque_engine::{PartitionHandle, TopicPartition};
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::BaseConsumer;
use tracing::warn;

use crate::context::GroupContext;
use crate::Record;

/// What the driver does with a partition's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hold {
    /// Takes its records.
    Polling,
    /// Leaves it alone: the engine refused the record in `kept` and paused the partition.
    Kept,
    /// The partition is paused and sought back in librdkafka (the fallback); resuming it is
    /// librdkafka's business too.
    PausedInKafka,
    /// Leaves it alone until the assign hook has succeeded for it (see [`crate::AssignHook`]).
    Gated,
}

pub(crate) struct Feed {
    pub(crate) tp: TopicPartition,
    /// Set once the engine has taken the partition on (after the split, in the same rebalance).
    pub(crate) handle: Option<PartitionHandle>,
    pub(crate) queue: PartitionQueue<GroupContext>,
    pub(crate) hold: Hold,
    pub(crate) kept: Option<Record>,
    /// The offset from which the next record is sampled for the partition's age.
    pub(crate) next_sample: i64,
}

/// The split partitions, polled round-robin.
///
/// Each queue holds a reference to the consumer, and the consumer (through its context) holds
/// these queues: [`Feeds::clear`] must run before the consumer is dropped, or it never is.
#[derive(Default)]
pub(crate) struct Feeds {
    pub(crate) list: Vec<Feed>,
    /// Where the next round of polling starts, so that no partition is always served first.
    pub(crate) next: usize,
}

impl Feeds {
    /// Gives each partition of `tps` a queue of its own. Must run before librdkafka starts
    /// fetching them (in the rebalance callback, before the assignment is applied): records
    /// fetched earlier would reach the main queue and could be taken out of order. `driver` is
    /// woken whenever an idle queue receives something.
    pub(crate) fn split(
        &mut self,
        consumer: &Arc<BaseConsumer<GroupContext>>,
        tps: impl IntoIterator<Item = TopicPartition>,
        driver: &Thread,
    ) {
        for tp in tps {
            self.remove(&tp);
            let Some(mut queue) = consumer.split_partition_queue(&tp.topic, tp.partition) else {
                warn!(topic = %tp.topic, partition = tp.partition, "could not give the partition a queue of its own; its records come through the main queue");
                continue;
            };
            let driver = driver.clone();
            queue.set_nonempty_callback(move || driver.unpark());
            self.list.push(Feed {
                tp,
                handle: None,
                queue,
                hold: Hold::Polling,
                kept: None,
                next_sample: i64::MIN,
            });
        }
    }

    pub(crate) fn get_mut(&mut self, tp: &TopicPartition) -> Option<&mut Feed> {
        self.list.iter_mut().find(|f| f.tp == *tp)
    }

    /// Drops a partition's queue (it was revoked), with the record it kept, if any: the next
    /// owner fetches it again.
    pub(crate) fn remove(&mut self, tp: &TopicPartition) {
        self.list.retain(|f| f.tp != *tp);
    }

    pub(crate) fn clear(&mut self) {
        self.list.clear();
    }
}
