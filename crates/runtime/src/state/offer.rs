//! The driver's side of taking records: offering them to the engine, from the fetcher's
//! batches or the main queue, and stopping and starting a partition's flow when the engine
//! pauses or resumes it. What a partition with a queue of its own keeps meanwhile is
//! [`Feeds`](crate::feeds::Feeds)' business.

use bytes::Bytes;
use kafkaesque_engine::{Inline, InlineRun, Intake, PartitionHandle, TopicPartition};
use rdkafka::consumer::{BaseConsumer, ConsumerContext};
use rdkafka::message::{BorrowedMessage, Message};
use tracing::{debug, error};

use super::{failure, State};
use crate::batch::Handlers;
use crate::config::KeyRouter;
use crate::context::GroupContext;
use crate::feeds::{self, Hold, Offer};
use crate::fetcher::Batches;
use crate::observe::SAMPLE_EVERY;
use crate::record::{Record, RecordData};
use crate::spawn::{Spawner, Started, AT_ONCE};

impl State {
    /// A record from the consumer's main queue: of a partition that has no queue of its own
    /// (see `feeds.rs`), which is rare, so it is looked up afresh each time.
    pub(crate) fn on_message(&mut self, m: &BorrowedMessage<'_>) {
        let (partition, offset) = (m.partition(), m.offset());
        let topic = self.intern(m.topic());
        let tp = TopicPartition {
            topic: topic.clone(),
            partition,
        };
        let Some(h) = self.engine.handle(&tp) else {
            debug!(topic = %tp.topic, partition, offset, "record of an unassigned partition ignored");
            return;
        };
        let record = Record::from(RecordData::from_message(m, topic));
        // `Ages` spaces its samples itself; a partition's own bound only spares it the lookup.
        let mut sample_from = i64::MIN;
        self.offer(h, record, &mut sample_from, &tp.topic);
    }

    /// Hands a record to the engine (under each key the router gives it, if there is one).
    pub(crate) fn offer(
        &mut self,
        h: PartitionHandle,
        record: Record,
        next_sample: &mut i64,
        topic: &str,
    ) -> Intake {
        let (offset, partition) = (record.offset(), record.partition());
        if offset >= *next_sample {
            let tp = TopicPartition {
                topic: record.data().topic.clone(),
                partition,
            };
            *next_sample = self.ages.fetched(&tp, offset, record.timestamp()) + SAMPLE_EVERY;
        }
        let weight = record.weight();
        let intake = match &self.cfg.router {
            Some(router) => {
                let items = route(router, &record)
                    .into_iter()
                    .map(|k| (k.clone(), record.clone().with_route(k)));
                self.engine.fetched(h, offset, weight, items)
            }
            None => match record.key() {
                Some(k) => {
                    self.key.clear();
                    self.key.extend_from_slice(k);
                    match self
                        .engine
                        .fetched_inline(h, offset, weight, &self.key, record)
                    {
                        Inline::Taken(intake) => intake,
                        Inline::Run(run) => {
                            match &mut self.spawn {
                                Handlers::Each(spawn) => {
                                    self.waiting += run_inline(run, spawn, &self.handler_seconds)
                                }
                                Handlers::Batched(batches) => {
                                    let record = run.payload().clone();
                                    let now = self.clock.elapsed().as_millis() as u64;
                                    self.waiting += 1;
                                    batches.push(run.running(), record, now);
                                }
                            }
                            Intake::Accepted
                        }
                        // A newer engine's way of taking a record: it has taken it.
                        _ => Intake::Accepted,
                    }
                }
                None => self
                    .engine
                    .fetched(h, offset, weight, [(None::<&[u8]>, record)]),
            },
        };
        if intake == Intake::Stale {
            debug!(topic, partition, offset, "stale record ignored");
        }
        intake
    }

    /// Offers the records of the batches the fetcher has handed over, or keeps them for a
    /// partition the engine holds. Returns how many records it took.
    pub(crate) fn take_batches<C: ConsumerContext>(
        &mut self,
        batches: &Batches<GroupContext>,
        main: &BaseConsumer<C>,
    ) -> usize {
        let mut taken = 0;
        // Enough for every partition to have its turn, not so much that the outcomes of the
        // work started meanwhile wait long.
        for _ in 0..64 {
            let Some(batch) = batches.try_next() else {
                break;
            };
            taken += batch.len();
            if let Some(offer) = self.feeds.take(&batch.queue, batch.seq, batch.records()) {
                self.offer_records(offer, main);
            }
            batch.queue.handed_over(&self.feeds.queues);
            batches.give_back(batch);
            // Start the batch's work before taking the next: records taken faster than they
            // are dispatched pile up in their keys' lanes, and a key would look hot (reach its
            // cap, be diverted or coalesced) only because the driver had not started its work.
            self.run_actions(main);
        }
        taken
    }

    /// Offers a partition's records in order until the engine refuses one: that one and the
    /// rest are kept then.
    pub(super) fn offer_records<C: ConsumerContext>(
        &mut self,
        mut offer: Offer<impl Iterator<Item = Record>>,
        main: &BaseConsumer<C>,
    ) {
        while let Some(record) = offer.records.next() {
            let intake = self.offer(offer.handle, record, &mut offer.next_sample, &offer.topic);
            if intake == Intake::Refused {
                self.feeds.refused(offer, &mut self.engine, main);
                return;
            }
        }
        self.feeds.offered(offer);
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
                feeds::pause_and_seek(c, tp, seek_to);
            }
            return;
        }
        if !self.feeds.pause(tp, seek_to, main) {
            feeds::pause_and_seek(main, tp, seek_to);
        }
    }

    /// Takes records of a paused partition again: the kept ones first, if there are any.
    pub(crate) fn resume<C: ConsumerContext>(
        &mut self,
        main: &BaseConsumer<C>,
        tp: &TopicPartition,
    ) {
        if let Some(hold) = self.feeds.hold_of(tp) {
            if hold == Hold::Gated {
                return; // nothing of it was taken, so nothing was paused
            }
            if self.release(main, tp) != Some(Hold::PausedInKafka) {
                return;
            }
        } else if self.pauses.is_paused(tp) {
            return; // the user's pause keeps it paused in librdkafka
        }
        let r = if self.is_overflow(&tp.topic) {
            self.overflow
                .as_ref()
                .map_or(Ok(()), |c| feeds::resume_in_kafka(c, tp))
        } else {
            feeds::resume_in_kafka(main, tp)
        };
        if let Err(e) = r {
            error!(topic = %tp.topic, partition = tp.partition, error = %e, "resume failed");
        }
    }

    /// Holds a partition (`held`) or lets it go again: used for the assign hook. Returns false
    /// for a partition without a queue of its own.
    pub(crate) fn hold<C: ConsumerContext>(
        &mut self,
        main: &BaseConsumer<C>,
        tp: &TopicPartition,
        held: bool,
    ) -> bool {
        if held {
            self.feeds.hold(tp)
        } else {
            self.release(main, tp).is_some()
        }
    }

    /// Ends a partition's hold: offers what it kept, then lets the fetcher go on. Returns the
    /// hold ended; `None` for a partition without a queue of its own.
    fn release<C: ConsumerContext>(
        &mut self,
        main: &BaseConsumer<C>,
        tp: &TopicPartition,
    ) -> Option<Hold> {
        let (hold, kept) = self.feeds.release(tp)?;
        if let Some(offer) = kept {
            self.offer_records(offer, main);
        }
        Some(hold)
    }
}

/// Runs a record the engine let skip its lanes (a first attempt), and tells the engine how it
/// went. Returns 1 if the run has to wait (its outcome arrives as an event), else 0.
fn run_inline(
    run: InlineRun<'_, Record>,
    spawn: &mut Spawner,
    handler_seconds: &metrics::Histogram,
) -> usize {
    match spawn.start(run.payload().clone()) {
        Started::Finished(result) => {
            handler_seconds.record(AT_ONCE.as_secs_f64());
            match result {
                Ok(()) => run.done(),
                Err(e) => {
                    run.fail(failure(e));
                }
            }
            0
        }
        Started::Waiting(fut) => {
            spawn.wait(fut, run.running());
            1
        }
    }
}

fn route(router: &KeyRouter, record: &Record) -> Vec<Option<Bytes>> {
    router(record).into_iter().map(Some).collect()
}
