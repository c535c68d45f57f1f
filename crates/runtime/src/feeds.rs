//! A queue of its own for every assigned partition, so that back-pressure stops *taking* records
//! from a full partition instead of pausing it in librdkafka.
//!
//! Why: pausing a partition and seeking it back to the refused record makes librdkafka discard
//! everything it had prefetched for it, and after the resume the partition's next fetch leaves
//! only when the long-poll already waiting at the broker returns (`fetch.wait.max.ms`). An
//! engine that fills up and drains many times a second (a slow handler under a partition cap)
//! then spends most of its time waiting for records it had fetched once already. With a queue
//! per partition, a full partition is simply left alone: librdkafka keeps what it fetched and
//! stops fetching more once the queue holds `queued.max.messages.kbytes`.
//!
//! The queues are polled by the fetcher thread (`fetcher.rs`), which hands the driver batches.
//! When the engine refuses a record, its partition's [`Feed`] keeps it and the rest of the
//! partition's batches (at most two batches: the fetcher stops taking from a partition the
//! driver has closed) and offers them again, first, when the engine resumes the partition.
//! [`Feeds`] holds that state machine ([`Hold`]); the driver state offers what it hands out.
//!
//! Pause and seek remain the fallback whenever what is kept cannot be what the engine wants
//! next (a record was refused while its partition was already paused, which keeping all that
//! follows a refused record should make impossible).

use std::collections::{vec_deque, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use kafkaesque_engine::{Engine, PartitionHandle, TopicPartition};
use kafkaesque_rdqueue::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaResult;
use rdkafka::{Offset, TopicPartitionList};
use tracing::{error, warn};

use crate::fetcher::{Queues, SharedQueue};
use crate::record::Record;

/// What the driver does with a partition's records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hold {
    /// Offers them to the engine as they come.
    Polling,
    /// Keeps them: the engine refused the first in `kept` and paused the partition.
    Kept,
    /// The partition is paused and sought back in librdkafka (the fallback); resuming it is
    /// librdkafka's business too, and batches taken before the seek are dropped.
    PausedInKafka,
    /// Keeps them until the assign hook has succeeded for the partition (see
    /// [`crate::AssignHook`]).
    Gated,
}

/// One partition with a queue of its own.
struct Feed<C: ConsumerContext + 'static> {
    tp: TopicPartition,
    /// Set once the engine has taken the partition on (after its queue was added, in the same
    /// rebalance).
    handle: Option<PartitionHandle>,
    queue: Arc<SharedQueue<C>>,
    /// The queue's position generation this driver expects batches of.
    seq: u32,
    hold: Hold,
    /// Paused through the control handle: nothing more of it is offered, whatever its hold.
    paused: bool,
    /// Records taken from the queue, in order, that the engine has not accepted yet.
    kept: VecDeque<Record>,
    /// The offset from which the next record is sampled for the partition's age.
    next_sample: i64,
}

impl<C: ConsumerContext + 'static> Feed<C> {
    /// Lets the fetcher take records of this partition only while they would be offered at once.
    fn update_queue(&self, queues: &Queues<C>) {
        let open = self.handle.is_some()
            && self.hold == Hold::Polling
            && self.kept.is_empty()
            && !self.paused;
        self.queue.set_open(open);
        if open {
            queues.wake_fetcher();
        }
    }
}

/// Records of one partition for the driver to offer the engine, in order, until it refuses
/// one; then [`Feeds::refused`] keeps the rest, else [`Feeds::offered`] lets more come.
pub(crate) struct Offer<I> {
    index: usize,
    pub(crate) handle: PartitionHandle,
    pub(crate) topic: Arc<str>,
    /// The offset from which the next record is sampled for the partition's age.
    pub(crate) next_sample: i64,
    pub(crate) records: I,
}

/// What a partition kept, offered again.
pub(crate) type Kept = vec_deque::IntoIter<Record>;

/// The partitions with queues of their own, and the queues they share with the fetcher.
///
/// Each queue holds a reference to the consumer, and the consumer (through its context) holds
/// these queues: [`Queues::close`] must run before the consumer is dropped, or it never is.
pub(crate) struct Feeds<C: ConsumerContext + 'static> {
    list: Vec<Feed<C>>,
    pub(crate) queues: Arc<Queues<C>>,
}

impl<C: ConsumerContext + 'static> Feeds<C> {
    pub(crate) fn new(queues: Arc<Queues<C>>) -> Self {
        Feeds {
            list: Vec::new(),
            queues,
        }
    }

    /// Gives each partition of `tps` a queue of its own. Must run before librdkafka starts
    /// fetching them (in the rebalance callback, before the assignment is applied): records
    /// fetched earlier would reach the main queue and could be taken out of order.
    pub(crate) fn add(
        &mut self,
        consumer: &Arc<BaseConsumer<C>>,
        tps: impl IntoIterator<Item = TopicPartition>,
    ) {
        for tp in tps {
            // An earlier queue of the partition shares librdkafka's queue with the new one:
            // it must be gone first.
            self.remove(&tp);
            let Some(queue) = PartitionQueue::split(consumer, &tp.topic, tp.partition) else {
                warn!(topic = %tp.topic, partition = tp.partition, "could not give the partition a queue of its own; its records come through the main queue");
                continue;
            };
            let queue = self.queues.add(tp.clone(), queue);
            self.list.push(Feed {
                tp,
                handle: None,
                queue,
                seq: 0,
                hold: Hold::Polling,
                paused: false,
                kept: VecDeque::new(),
                next_sample: i64::MIN,
            });
        }
    }

    /// The engine has taken a partition on: its records may come.
    pub(crate) fn assigned(&mut self, tp: &TopicPartition, h: PartitionHandle) {
        if let Some(f) = self.list.iter_mut().find(|f| f.tp == *tp) {
            f.handle = Some(h);
            f.update_queue(&self.queues);
        }
    }

    /// Drops a partition's queue (it was revoked), with the records it kept, if any: the next
    /// owner fetches them again.
    pub(crate) fn remove(&mut self, tp: &TopicPartition) {
        let queues = &self.queues;
        self.list.retain(|f| {
            let gone = f.tp == *tp;
            if gone {
                queues.remove(&f.queue);
            }
            !gone
        });
    }

    fn index(&self, tp: &TopicPartition) -> Option<usize> {
        self.list.iter().position(|f| f.tp == *tp)
    }

    /// The records of a batch the fetcher took from `queue` at position `seq`, to offer now,
    /// after what the partition kept; `None` when the batch is of an earlier queue or position
    /// of the partition (it is fetched again from there) or when the partition holds (it keeps
    /// them).
    pub(crate) fn take<I: Iterator<Item = Record>>(
        &mut self,
        queue: &SharedQueue<C>,
        seq: u32,
        records: I,
    ) -> Option<Offer<std::iter::Chain<Kept, I>>> {
        let i = self.index(&queue.tp)?; // revoked since: the next owner fetches it again
        let f = &mut self.list[i];
        if f.queue.id != queue.id || f.seq != seq || f.hold == Hold::PausedInKafka {
            return None;
        }
        if f.hold != Hold::Polling || f.paused {
            f.kept.extend(records);
            return None;
        }
        // Whatever is kept comes first; usually nothing is, and the batch's records are offered
        // straight from it.
        let kept = std::mem::take(&mut f.kept);
        self.offer(i, kept.into_iter().chain(records))
    }

    /// `records` of a partition that keeps nothing, to offer; kept instead while the engine
    /// has not taken the partition on.
    fn offer<I: Iterator<Item = Record>>(&mut self, i: usize, records: I) -> Option<Offer<I>> {
        let f = &mut self.list[i];
        let Some(handle) = f.handle else {
            f.kept.extend(records);
            return None;
        };
        Some(Offer {
            index: i,
            handle,
            topic: f.tp.topic.clone(),
            next_sample: f.next_sample,
            records,
        })
    }

    /// The engine took every record of `offer`: the fetcher may take more of the partition.
    pub(crate) fn offered<I>(&mut self, offer: Offer<I>) {
        let f = &mut self.list[offer.index];
        f.next_sample = offer.next_sample;
        f.update_queue(&self.queues);
    }

    /// The engine refused the record just offered and paused the partition: keeps it first,
    /// with the rest of `offer`, to offer again when the engine resumes the partition, and
    /// offers nothing of the partition until then.
    pub(crate) fn refused<I: Iterator<Item = Record>, M: ConsumerContext>(
        &mut self,
        offer: Offer<I>,
        engine: &mut Engine<Record>,
        main: &BaseConsumer<M>,
    ) {
        let f = &mut self.list[offer.index];
        f.next_sample = offer.next_sample;
        f.kept.extend(offer.records);
        if let Some(r) = engine.take_refused() {
            f.kept.push_front(r);
            f.hold = Hold::Kept;
            f.queue.set_open(false);
            return;
        }
        // Refused without a new pause: the partition was paused already, which a partition
        // offered records never is (a pause is dealt with before anything more of it is
        // offered). Should it happen, the record just offered is gone: seek the partition back
        // in librdkafka.
        let at = engine.resume_at(offer.handle);
        error!(topic = %f.tp.topic, partition = f.tp.partition, offset = ?at, "a record was refused while its partition was not held; seeking back to the refused record");
        if let Some(at) = at {
            seek_back(f, main, at);
        }
    }

    /// The engine paused a partition at `seek_to`. A partition that kept the refused record is
    /// simply no longer offered any; one with a queue of its own that did not is sought back.
    /// Returns false for a partition without a queue of its own: the caller pauses it.
    pub(crate) fn pause<M: ConsumerContext>(
        &mut self,
        tp: &TopicPartition,
        seek_to: i64,
        main: &BaseConsumer<M>,
    ) -> bool {
        let Some(i) = self.index(tp) else {
            return false;
        };
        let f = &mut self.list[i];
        if f.hold == Hold::Kept && f.kept.front().is_some_and(|r| r.offset() == seek_to) {
            return true;
        }
        seek_back(f, main, seek_to);
        true
    }

    /// Holds a partition until its assign hook succeeds. Returns false for a partition without
    /// a queue of its own: the caller pauses it.
    pub(crate) fn hold(&mut self, tp: &TopicPartition) -> bool {
        let Some(i) = self.index(tp) else {
            return false;
        };
        let f = &mut self.list[i];
        f.hold = Hold::Gated;
        f.update_queue(&self.queues);
        true
    }

    /// How a partition is held; `None` for one without a queue of its own.
    pub(crate) fn hold_of(&self, tp: &TopicPartition) -> Option<Hold> {
        self.index(tp).map(|i| self.list[i].hold)
    }

    /// Ends a partition's hold: returns the hold ended and what the partition kept, to offer
    /// before the fetcher goes on (see [`Feeds::offered`]); `None` for a partition without a
    /// queue of its own.
    pub(crate) fn release(&mut self, tp: &TopicPartition) -> Option<(Hold, Option<Offer<Kept>>)> {
        let i = self.index(tp)?;
        let f = &mut self.list[i];
        let hold = std::mem::replace(&mut f.hold, Hold::Polling);
        if f.paused {
            return Some((hold, None)); // kept until the user's resume
        }
        let kept = std::mem::take(&mut f.kept);
        Some((hold, self.offer(i, kept.into_iter())))
    }

    /// Pauses or resumes a partition for the control handle: a paused one is neither taken from
    /// nor offered anything (what arrives is kept). Returns what to offer on a resume, as
    /// [`Feeds::release`] does; `None` for a partition without a queue of its own.
    pub(crate) fn set_paused(
        &mut self,
        tp: &TopicPartition,
        paused: bool,
    ) -> Option<Option<Offer<Kept>>> {
        let i = self.index(tp)?;
        let f = &mut self.list[i];
        f.paused = paused;
        if paused || f.hold != Hold::Polling {
            f.update_queue(&self.queues);
            return Some(None);
        }
        let kept = std::mem::take(&mut f.kept);
        Some(self.offer(i, kept.into_iter()))
    }

    /// Whether a partition that is neither paused by the user nor held for its assign hook
    /// keeps records not yet offered: a shutdown that drains what was fetched waits for them.
    pub(crate) fn keeps_any(&self) -> bool {
        self.list
            .iter()
            .any(|f| !f.kept.is_empty() && !f.paused && f.hold != Hold::Gated)
    }
}

/// The fallback: drops what the partition kept and what is on its way, and pauses and seeks
/// it in librdkafka; the fetcher takes nothing of it meanwhile.
fn seek_back<C: ConsumerContext + 'static, M: ConsumerContext>(
    feed: &mut Feed<C>,
    main: &BaseConsumer<M>,
    seek_to: i64,
) {
    feed.kept.clear();
    feed.hold = Hold::PausedInKafka;
    feed.queue.set_open(false);
    feed.seq = feed
        .queue
        .reposition(|| pause_and_seek(main, &feed.tp, seek_to));
}

/// Pauses a partition in librdkafka and moves its position back to the refused record.
///
/// The seek is asynchronous (no timeout): a synchronous one waits for librdkafka's broker
/// thread, which may be waiting on a fetch, and the driver would stop completing work
/// meanwhile. librdkafka discards whatever it had fetched from before the seek.
pub(crate) fn pause_and_seek<M: ConsumerContext>(
    c: &BaseConsumer<M>,
    tp: &TopicPartition,
    seek_to: i64,
) {
    let to = Offset::Offset(seek_to);
    let result =
        pause_in_kafka(c, tp).and_then(|_| c.seek(&tp.topic, tp.partition, to, Duration::ZERO));
    if let Err(e) = result {
        error!(topic = %tp.topic, partition = tp.partition, offset = seek_to, error = %e, "pause and seek failed");
    }
}

/// Pauses a partition in librdkafka: it fetches nothing more of it until resumed.
pub(crate) fn pause_in_kafka<M: ConsumerContext>(
    c: &BaseConsumer<M>,
    tp: &TopicPartition,
) -> KafkaResult<()> {
    c.pause(&single(tp))
}

/// Resumes a partition paused in librdkafka.
pub(crate) fn resume_in_kafka<M: ConsumerContext>(
    c: &BaseConsumer<M>,
    tp: &TopicPartition,
) -> KafkaResult<()> {
    c.resume(&single(tp))
}

/// The list of one partition that librdkafka's pause and resume take.
fn single(tp: &TopicPartition) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    let _ = tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Invalid);
    tpl
}
