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
use std::time::Duration;

use kafkaesque_engine::{Engine, Intake, PartitionHandle, TopicPartition};
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::Offset;
use tracing::{error, warn};

use crate::context::GroupContext;
use crate::state::{single, State};
use crate::{Record, RecordData};

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

impl State {
    /// Takes records from the partitions' own queues, round-robin, at most `per_partition` from
    /// each; leaves alone those whose record the engine refused. Returns how many it took.
    pub(crate) fn poll_feeds<C: ConsumerContext>(
        &mut self,
        main: &BaseConsumer<C>,
        per_partition: usize,
    ) -> usize {
        // Lent out while their messages (which borrow them) are handed to the engine.
        let mut feeds = std::mem::take(&mut self.feeds);
        let n = feeds.list.len();
        let mut taken = 0;
        for i in 0..n {
            let f = &mut feeds.list[(feeds.next + i) % n];
            let Some(h) = f.handle.filter(|_| f.hold == Hold::Polling) else {
                continue;
            };
            for _ in 0..per_partition {
                let record = match f.queue.poll(Duration::ZERO) {
                    None => break,
                    Some(Err(e)) => {
                        warn!(topic = %f.tp.topic, partition = f.tp.partition, error = %e, "partition queue error (librdkafka will retry)");
                        break;
                    }
                    Some(Ok(m)) => Record::from(RecordData::from_message(&m, f.tp.topic.clone())),
                };
                taken += 1;
                if self.offer(h, record, &mut f.next_sample, &f.tp.topic) == Intake::Refused {
                    keep_refused(&mut self.engine, f, main);
                    break;
                }
            }
        }
        feeds.next = if n == 0 { 0 } else { (feeds.next + 1) % n };
        self.feeds = feeds;
        taken
    }

    /// Stops taking records of a partition until the engine resumes it. A partition with a queue
    /// of its own that kept the refused record is simply no longer polled; any other is paused
    /// and sought back to the refused record in librdkafka.
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
        if let Some(f) = self.feeds.get_mut(tp) {
            if f.hold == Hold::Kept && f.kept.as_ref().is_some_and(|r| r.offset == seek_to) {
                return;
            }
            f.kept = None;
            f.hold = Hold::PausedInKafka;
        }
        pause_and_seek(main, tp, seek_to);
    }

    /// Takes records of a paused partition again: the kept record first, if there is one.
    pub(crate) fn resume<C: ConsumerContext>(
        &mut self,
        main: &BaseConsumer<C>,
        tp: &TopicPartition,
    ) {
        if let Some(f) = self.feeds.get_mut(tp) {
            if f.hold == Hold::Gated {
                return; // nothing of it was taken, so nothing was paused
            }
            let hold = std::mem::replace(&mut f.hold, Hold::Polling);
            if let (Hold::Kept, Some(h)) = (hold, f.handle) {
                let Some(record) = f.kept.take() else { return };
                let mut next_sample = f.next_sample;
                let intake = self.offer(h, record, &mut next_sample, &tp.topic);
                let f = self
                    .feeds
                    .get_mut(tp)
                    .expect("offering leaves the queues alone");
                f.next_sample = next_sample;
                if intake == Intake::Refused {
                    keep_refused(&mut self.engine, f, main);
                }
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
}

/// The engine refused the record just taken from `feed`'s queue and paused the partition: keep
/// the record, to offer it again first when the engine resumes the partition, and leave the
/// queue alone until then (see [`crate::feeds`]).
fn keep_refused<C: ConsumerContext>(
    engine: &mut Engine<Record>,
    feed: &mut Feed,
    main: &BaseConsumer<C>,
) {
    if let Some(r) = engine.take_refused() {
        feed.kept = Some(r);
        feed.hold = Hold::Kept;
        return;
    }
    // Refused without a new pause: the partition was paused already, which a polled queue never
    // is (a pause is dealt with before its queue is polled again). Should it happen, the record
    // just taken is gone from the queue: fall back to seeking the partition back in librdkafka.
    let at = feed.handle.and_then(|h| engine.resume_at(h));
    error!(topic = %feed.tp.topic, partition = feed.tp.partition, offset = ?at, "a record was refused while its partition was not held; seeking back to the refused record");
    if let Some(at) = at {
        feed.kept = None;
        feed.hold = Hold::PausedInKafka;
        pause_and_seek(main, &feed.tp, at);
    }
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
