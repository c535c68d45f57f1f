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
//! When the engine refuses a record, the driver keeps it and the rest of its partition's
//! batches (at most two batches: the fetcher stops taking from a partition the driver has
//! closed) and offers them again, first, when the engine resumes the partition.
//!
//! Pause and seek remain the fallback whenever what is kept cannot be what the engine wants
//! next (a record was refused while its partition was already paused, which keeping all that
//! follows a refused record should make impossible).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use kafkaesque_engine::{Engine, Intake, PartitionHandle, TopicPartition};
use kafkaesque_rdqueue::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::Offset;
use tracing::{error, warn};

use crate::context::GroupContext;
use crate::fetcher::{Batches, Hub, Tap};
use crate::state::{single, State};
use crate::Record;

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

pub(crate) struct Feed {
    pub(crate) tp: TopicPartition,
    /// Set once the engine has taken the partition on (after the split, in the same rebalance).
    pub(crate) handle: Option<PartitionHandle>,
    pub(crate) tap: Arc<Tap>,
    /// The tap's position generation this driver expects batches of.
    seq: u32,
    pub(crate) hold: Hold,
    /// Records taken from the queue, in order, that the engine has not accepted yet.
    kept: VecDeque<Record>,
    /// The offset from which the next record is sampled for the partition's age.
    next_sample: i64,
}

impl Feed {
    /// Lets the fetcher take records of this partition only while they would be offered at once.
    fn update_tap(&self, hub: &Hub) {
        let open = self.handle.is_some() && self.hold == Hold::Polling && self.kept.is_empty();
        self.tap.set_open(open);
        if open {
            hub.wake_fetcher();
        }
    }
}

/// The split partitions and the hub they share with the fetcher.
///
/// Each queue holds a reference to the consumer, and the consumer (through its context) holds
/// these queues: [`Hub::close`] must run before the consumer is dropped, or it never is.
pub(crate) struct Feeds {
    list: Vec<Feed>,
    pub(crate) hub: Arc<Hub>,
}

impl Feeds {
    pub(crate) fn new(hub: Arc<Hub>) -> Self {
        Feeds {
            list: Vec::new(),
            hub,
        }
    }

    /// Gives each partition of `tps` a queue of its own. Must run before librdkafka starts
    /// fetching them (in the rebalance callback, before the assignment is applied): records
    /// fetched earlier would reach the main queue and could be taken out of order.
    pub(crate) fn split(
        &mut self,
        consumer: &Arc<BaseConsumer<GroupContext>>,
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
            let tap = self.hub.add(tp.clone(), queue);
            self.list.push(Feed {
                tp,
                handle: None,
                tap,
                seq: 0,
                hold: Hold::Polling,
                kept: VecDeque::new(),
                next_sample: i64::MIN,
            });
        }
    }

    /// The engine has taken a partition on: its records may come.
    pub(crate) fn assigned(&mut self, tp: &TopicPartition, h: PartitionHandle) {
        if let Some(f) = self.list.iter_mut().find(|f| f.tp == *tp) {
            f.handle = Some(h);
            f.update_tap(&self.hub);
        }
    }

    /// Drops a partition's queue (it was revoked), with the records it kept, if any: the next
    /// owner fetches them again.
    pub(crate) fn remove(&mut self, tp: &TopicPartition) {
        let hub = &self.hub;
        self.list.retain(|f| {
            let gone = f.tp == *tp;
            if gone {
                hub.remove(&f.tap);
            }
            !gone
        });
    }

    fn index(&self, tp: &TopicPartition) -> Option<usize> {
        self.list.iter().position(|f| f.tp == *tp)
    }
}

impl State {
    /// Offers the records of the batches the fetcher has handed over, or keeps them for a
    /// partition the engine holds. Returns how many records it took.
    pub(crate) fn take_batches<C: ConsumerContext>(
        &mut self,
        batches: &Batches,
        main: &BaseConsumer<C>,
    ) -> usize {
        let mut taken = 0;
        // Enough for every partition to have its turn, not so much that the outcomes of the
        // work started meanwhile wait long.
        for _ in 0..64 {
            let Ok(batch) = batches.try_recv() else {
                break;
            };
            taken += batch.len();
            self.take_batch(&batch.tap, batch.seq, batch.records(), main);
            batch.tap.handed_over(&self.feeds.hub);
            batch.spend(&self.spent);
            // Start the batch's work before taking the next: records taken faster than they
            // are dispatched pile up in their keys' lanes, and a key would look hot (reach its
            // cap, be diverted or coalesced) only because the driver had not started its work.
            self.run_actions(main);
        }
        taken
    }

    fn take_batch<C: ConsumerContext>(
        &mut self,
        tap: &Arc<Tap>,
        seq: u32,
        records: impl Iterator<Item = Record>,
        main: &BaseConsumer<C>,
    ) {
        let Some(i) = self.feeds.index(&tap.tp) else {
            return; // revoked since: the next owner fetches it again
        };
        let f = &mut self.feeds.list[i];
        if f.tap.id != tap.id || f.seq != seq || f.hold == Hold::PausedInKafka {
            return; // an earlier queue or position of the partition: fetched again from there
        }
        if f.hold != Hold::Polling {
            f.kept.extend(records);
            return;
        }
        // Whatever is kept comes first; usually nothing is, and the batch's records are offered
        // straight from it.
        let kept = std::mem::take(&mut f.kept);
        self.offer_records(i, kept.into_iter().chain(records), main);
    }

    /// Offers a partition's kept records in order until the engine refuses one.
    fn offer_kept<C: ConsumerContext>(&mut self, i: usize, main: &BaseConsumer<C>) {
        let kept = std::mem::take(&mut self.feeds.list[i].kept);
        self.offer_records(i, kept, main);
    }

    /// Offers `records` of a partition that keeps nothing, in order, until the engine refuses
    /// one: that one and the rest are kept then.
    fn offer_records<C: ConsumerContext>(
        &mut self,
        i: usize,
        records: impl IntoIterator<Item = Record>,
        main: &BaseConsumer<C>,
    ) {
        let Some(h) = self.feeds.list[i].handle else {
            self.feeds.list[i].kept.extend(records);
            return;
        };
        let mut next_sample = self.feeds.list[i].next_sample;
        let topic = self.feeds.list[i].tp.topic.clone();
        let mut records = records.into_iter();
        while let Some(record) = records.next() {
            if self.offer(h, record, &mut next_sample, &topic) == Intake::Refused {
                let f = &mut self.feeds.list[i];
                f.next_sample = next_sample;
                f.kept.extend(records);
                keep_refused(&mut self.engine, f, main);
                return;
            }
        }
        let f = &mut self.feeds.list[i];
        f.next_sample = next_sample;
        f.update_tap(&self.feeds.hub);
    }

    /// Stops taking records of a partition until the engine resumes it. A partition with a queue
    /// of its own that kept the refused record is simply no longer offered any; any other is
    /// paused and sought back to the refused record in librdkafka.
    pub(crate) fn pause<C: ConsumerContext>(
        &mut self,
        main: &BaseConsumer<C>,
        tp: &TopicPartition,
        seek_to: i64,
    ) {
        if self.is_overflow(&tp.topic) {
            if let Some(c) = self.overflow.as_ref() {
                pause_and_seek(c, tp, seek_to);
            }
            return;
        }
        let Some(i) = self.feeds.index(tp) else {
            return pause_and_seek(main, tp, seek_to);
        };
        let f = &mut self.feeds.list[i];
        if f.hold == Hold::Kept && f.kept.front().is_some_and(|r| r.offset == seek_to) {
            return;
        }
        seek_back(f, main, seek_to);
    }

    /// Holds a partition (`held`) or lets it go again: used for the assign hook.
    pub(crate) fn gate<C: ConsumerContext>(
        &mut self,
        main: &BaseConsumer<C>,
        tp: &TopicPartition,
        held: bool,
    ) -> bool {
        let Some(i) = self.feeds.index(tp) else {
            return false;
        };
        if held {
            let f = &mut self.feeds.list[i];
            f.hold = Hold::Gated;
            f.update_tap(&self.feeds.hub);
        } else {
            self.release(i, main);
        }
        true
    }

    /// Takes records of a paused partition again: the kept ones first, if there are any.
    pub(crate) fn resume<C: ConsumerContext>(
        &mut self,
        main: &BaseConsumer<C>,
        tp: &TopicPartition,
    ) {
        if let Some(i) = self.feeds.index(tp) {
            if self.feeds.list[i].hold == Hold::Gated {
                return; // nothing of it was taken, so nothing was paused
            }
            if self.release(i, main) != Hold::PausedInKafka {
                return;
            }
        }
        let tpl = single(tp, Offset::Invalid);
        let r = if self.is_overflow(&tp.topic) {
            self.overflow.as_ref().map_or(Ok(()), |c| c.resume(&tpl))
        } else {
            main.resume(&tpl)
        };
        if let Err(e) = r {
            error!(topic = %tp.topic, partition = tp.partition, error = %e, "resume failed");
        }
    }

    /// Ends a hold: offers what was kept, then lets the fetcher go on. Returns the hold ended.
    fn release<C: ConsumerContext>(&mut self, i: usize, main: &BaseConsumer<C>) -> Hold {
        let hold = std::mem::replace(&mut self.feeds.list[i].hold, Hold::Polling);
        self.offer_kept(i, main);
        hold
    }
}

/// The engine refused the record just offered from `feed` and paused the partition: keep it
/// first, to offer it again when the engine resumes the partition, and offer nothing of the
/// partition until then (see [`crate::feeds`]).
fn keep_refused<C: ConsumerContext>(
    engine: &mut Engine<Record>,
    feed: &mut Feed,
    main: &BaseConsumer<C>,
) {
    if let Some(r) = engine.take_refused() {
        feed.kept.push_front(r);
        feed.hold = Hold::Kept;
        feed.tap.set_open(false);
        return;
    }
    // Refused without a new pause: the partition was paused already, which a partition offered
    // records never is (a pause is dealt with before anything more of it is offered). Should it
    // happen, the record just offered is gone: seek the partition back in librdkafka.
    let at = feed.handle.and_then(|h| engine.resume_at(h));
    error!(topic = %feed.tp.topic, partition = feed.tp.partition, offset = ?at, "a record was refused while its partition was not held; seeking back to the refused record");
    if let Some(at) = at {
        seek_back(feed, main, at);
    }
}

/// The fallback: drops what the partition kept and what is on its way, and pauses and seeks
/// it in librdkafka; the fetcher takes nothing of it meanwhile.
fn seek_back<C: ConsumerContext>(feed: &mut Feed, main: &BaseConsumer<C>, seek_to: i64) {
    feed.kept.clear();
    feed.hold = Hold::PausedInKafka;
    feed.tap.set_open(false);
    let mut inner = feed.tap.lock();
    inner.seq = inner.seq.wrapping_add(1);
    feed.seq = inner.seq;
    pause_and_seek(main, &feed.tp, seek_to);
}

/// Pauses a partition in librdkafka and moves its position back to the refused record.
///
/// The seek is asynchronous (no timeout): a synchronous one waits for librdkafka's broker
/// thread, which may be waiting on a fetch, and the driver would stop completing work
/// meanwhile. librdkafka discards whatever it had fetched from before the seek.
pub(crate) fn pause_and_seek<C: ConsumerContext>(
    c: &BaseConsumer<C>,
    tp: &TopicPartition,
    seek_to: i64,
) {
    let tpl = single(tp, Offset::Invalid);
    let to = Offset::Offset(seek_to);
    let result = c
        .pause(&tpl)
        .and_then(|_| c.seek(&tp.topic, tp.partition, to, Duration::ZERO));
    if let Err(e) = result {
        error!(topic = %tp.topic, partition = tp.partition, offset = seek_to, error = %e, "pause and seek failed");
    }
}
