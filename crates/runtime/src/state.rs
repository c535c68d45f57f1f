//! The driver's state: the engine and everything that carries out its actions. It is owned by
//! the driver thread alone; it sits behind a mutex only so that rebalance callbacks — which
//! librdkafka runs *inside* `poll`, on that same thread — can reach it while the loop is not
//! holding it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafkaesque_engine::{
    Action, Engine, Failure, Intake, Now, Outcome, PartitionHandle, Role, RunNow, TopicPartition,
    WorkId,
};
use rdkafka::consumer::{BaseConsumer, ConsumerContext};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use tracing::{debug, warn};

use crate::config::{ConsumerConfig, Router};
use crate::events::{Event, EventRx};
use crate::feeds::Feeds;
use crate::fetcher::{Hub, Spent};
use crate::handler::FailureKind;
use crate::observe::{self, Ages, Observer, SAMPLE_EVERY};
use crate::record::headers as h;
use crate::sinks::Sinks;
use crate::spawn::{Spawner, Started, AT_ONCE};
use crate::{HandlerError, Record, RecordData};

/// What connects the driver state to other threads: events arrive on one channel; the hub is
/// shared with the fetcher, and read batches go back to it. (The fetcher's batches arrive on a
/// channel the driver thread owns: see [`crate::fetcher::Batches`].)
pub(crate) struct Inputs {
    pub(crate) events: EventRx,
    pub(crate) hub: Arc<Hub>,
    pub(crate) spent: Spent,
}

pub(crate) struct State {
    pub(crate) engine: Engine<Record>,
    pub(crate) rx: EventRx,
    pub(crate) spawn: Spawner,
    pub(crate) sinks: Sinks,
    /// Consumer of the overflow topics, assigned by hand alongside their main partitions and
    /// committing in a group of its own (`<group>.overflow`).
    pub(crate) overflow: Option<BaseConsumer<crate::context::OverflowContext>>,
    pub(crate) cfg: ConsumerConfig,
    pub(crate) observer: Observer,
    pub(crate) ages: Ages,
    pub(crate) clock: Instant,
    pub(crate) shutdown: bool,
    topics: HashMap<String, Arc<str>, rustc_hash::FxBuildHasher>,
    /// Actions being carried out; kept to avoid an allocation per batch.
    actions: Vec<Action<Record>>,
    /// The key of the record being offered, copied here rather than its `Bytes` cloned: a clone
    /// writes the shared count, a cache line the fetcher thread wrote last, while the copy reads
    /// only the key's bytes, which the engine reads anyway.
    key: Vec<u8>,
    /// The assigned partitions' own queues (see [`crate::feeds`]).
    pub(crate) feeds: Feeds,
    /// Read batches' messages, back to the fetcher.
    pub(crate) spent: Spent,
    /// Partitions held until the assign hook succeeds for them.
    pub(crate) gate: Option<crate::rebalance::Gate>,
    /// `kafkaesque_handler_seconds`, registered once: looking a metric up per record costs more
    /// than recording it.
    handler_seconds: metrics::Histogram,
}

impl State {
    pub(crate) fn new(
        engine: Engine<Record>,
        inputs: Inputs,
        spawn: Spawner,
        sinks: Sinks,
        overflow: Option<BaseConsumer<crate::context::OverflowContext>>,
        cfg: ConsumerConfig,
        observer: Observer,
    ) -> Self {
        let Inputs {
            events: rx,
            hub,
            spent,
        } = inputs;
        State {
            engine,
            rx,
            spawn,
            sinks,
            overflow,
            cfg,
            observer,
            ages: Ages::default(),
            clock: Instant::now(),
            shutdown: false,
            topics: HashMap::default(),
            actions: Vec::new(),
            key: Vec::new(),
            feeds: Feeds::new(hub),
            spent,
            gate: None,
            handler_seconds: metrics::histogram!("kafkaesque_handler_seconds"),
        }
    }

    pub(crate) fn intern(&mut self, topic: &str) -> Arc<str> {
        if let Some(t) = self.topics.get(topic) {
            return t.clone();
        }
        let t: Arc<str> = Arc::from(topic);
        self.topics.insert(topic.to_owned(), t.clone());
        t
    }

    pub(crate) fn overflow_topic(&self, topic: &str) -> String {
        format!("{topic}{}", self.cfg.overflow_suffix)
    }

    pub(crate) fn is_overflow(&self, topic: &str) -> bool {
        self.overflow.is_some() && topic.ends_with(&self.cfg.overflow_suffix)
    }

    pub(crate) fn now_ms(&self) -> u64 {
        self.clock.elapsed().as_millis() as u64
    }

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
        let (offset, partition) = (record.offset, record.partition);
        if offset >= *next_sample {
            let tp = TopicPartition {
                topic: record.topic.clone(),
                partition,
            };
            *next_sample = self.ages.fetched(&tp, offset, record.timestamp) + SAMPLE_EVERY;
        }
        let weight = record.weight();
        let intake = match &self.cfg.router {
            Some(router) => {
                let items = route(router, &record)
                    .into_iter()
                    .map(|k| (k.clone(), record.clone().with_route(k)));
                self.engine.fetched(h, offset, weight, items)
            }
            None => match record.key.as_deref() {
                Some(k) => {
                    self.key.clear();
                    self.key.extend_from_slice(k);
                    match self
                        .engine
                        .fetched_now(h, offset, weight, &self.key, record)
                    {
                        Now::Taken(intake) => intake,
                        Now::Run(run) => {
                            run_now(run, &mut self.spawn, &self.handler_seconds);
                            Intake::Accepted
                        }
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

    /// Polls the overflow consumer (which has no rebalance callbacks, so the lock may be held).
    pub(crate) fn poll_overflow(&mut self) -> usize {
        // Lent out while its messages (which borrow it) are handed to the engine.
        let Some(c) = self.overflow.take() else {
            return 0;
        };
        let mut n = 0;
        while n < 256 {
            match c.poll(Duration::ZERO) {
                None => break,
                Some(Err(e)) => {
                    warn!(error = %e, "overflow consumer error");
                    break;
                }
                Some(Ok(m)) => {
                    self.on_overflow_message(&m);
                    n += 1;
                }
            }
        }
        self.overflow = Some(c);
        n
    }

    fn on_overflow_message(&mut self, m: &BorrowedMessage<'_>) {
        let topic = self.intern(m.topic());
        let tp = TopicPartition {
            topic,
            partition: m.partition(),
        };
        let Some(h) = self.engine.handle(&tp) else {
            return;
        };
        let mut data = RecordData::from_message(m, tp.topic.clone());
        let text = |name: &str| {
            data.header(name)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        // The handler sees the original record: its topic, partition, offset and key.
        let source_topic = text(h::SOURCE_TOPIC);
        let source_partition = text(h::SOURCE_PARTITION).and_then(|p| p.parse().ok());
        let source_offset = text(h::SOURCE_OFFSET).and_then(|o| o.parse().ok());
        let source_key = data.header(h::SOURCE_KEY).cloned();
        if let (Some(t), Some(p), Some(o)) = (source_topic, source_partition, source_offset) {
            data.topic = self.intern(&t);
            data.partition = p;
            data.offset = o;
        }
        data.key = source_key;
        let route = m.key().map(Bytes::copy_from_slice);
        let record = Record::from(data).with_route(route.clone());
        let weight = record.weight();
        self.engine
            .fetched_overflow(h, m.offset(), route, weight, record);
    }

    /// Applies one event; returns false for shutdown.
    pub(crate) fn apply<C: ConsumerContext>(&mut self, ev: Event, main: &BaseConsumer<C>) {
        match ev {
            Event::Done {
                id,
                result,
                elapsed,
            } => self.outcome(id, result, elapsed),
            Event::Delivered { id, offset } => {
                self.sinks.delivered(id);
                self.engine.sink_acked(id, Some(offset));
            }
            Event::DeliveryFailed { id, error } => {
                let live = self.engine.sink_is_live(id);
                self.sinks.failed(id, &error, live);
            }
            Event::Committed { tp, offset, ok } => {
                let h = self.engine.handle(&tp);
                match (h, ok) {
                    (Some(h), true) => self.engine.committed(h, offset),
                    (Some(h), false) => {
                        metrics::counter!("kafkaesque_commit_failures_total").increment(1);
                        self.engine.commit_failed(h)
                    }
                    (None, _) => {}
                }
            }
            Event::Shutdown => self.shutdown = true,
        }
        self.run_actions(main);
    }

    /// A handler finished: tell the engine how.
    fn outcome(&mut self, id: WorkId, result: Result<(), HandlerError>, elapsed: Duration) {
        self.handler_seconds.record(elapsed.as_secs_f64());
        let outcome = match result {
            Ok(()) => self.engine.complete(id),
            Err(e) => self.engine.fail(id, failure(e)),
        };
        if outcome == Outcome::Stale {
            debug!("completion of an item from an earlier assignment ignored");
        }
    }

    /// Applies every event that has arrived. Returns how many.
    pub(crate) fn drain_events<C: ConsumerContext>(&mut self, main: &BaseConsumer<C>) -> usize {
        let mut n = 0;
        while let Ok(ev) = self.rx.try_recv() {
            self.apply(ev, main);
            n += 1;
        }
        n
    }

    /// Waits up to `timeout` for one event and applies it and any that follow.
    pub(crate) fn wait_event<C: ConsumerContext>(
        &mut self,
        main: &BaseConsumer<C>,
        timeout: Duration,
    ) {
        if let Ok(ev) = self.rx.recv_timeout(timeout) {
            self.apply(ev, main);
            self.drain_events(main);
        }
    }

    /// Carries out what the engine asked for.
    pub(crate) fn run_actions<C: ConsumerContext>(&mut self, main: &BaseConsumer<C>) {
        // Outcomes of handlers that finished at once produce actions of their own, and so does
        // a kept record offered again on resume.
        loop {
            let mut finished = Vec::new();
            self.run_actions_once(main, &mut finished);
            if finished.is_empty() && !self.engine.has_actions() {
                return;
            }
            for (id, result, elapsed) in finished {
                self.outcome(id, result, elapsed);
            }
        }
    }

    fn run_actions_once<C: ConsumerContext>(
        &mut self,
        main: &BaseConsumer<C>,
        finished: &mut Vec<(WorkId, Result<(), HandlerError>, Duration)>,
    ) {
        let mut actions = std::mem::take(&mut self.actions);
        self.engine.take_actions(&mut actions);
        for a in actions.drain(..) {
            match a {
                Action::Dispatch(w) => {
                    let mut r = w.payload;
                    r.attempt = w.attempt;
                    r.records = w.records;
                    match self.spawn.start(r) {
                        Started::Finished(result) => finished.push((w.id, result, AT_ONCE)),
                        Started::Waiting(fut) => self.spawn.wait(fut, w.id),
                    }
                }
                Action::Pause {
                    tp,
                    seek_to,
                    reason,
                    ..
                } => {
                    debug!(topic = %tp.topic, partition = tp.partition, offset = seek_to, ?reason, "pausing partition");
                    self.pause(main, &tp, seek_to);
                }
                Action::Resume { tp, .. } => {
                    debug!(topic = %tp.topic, partition = tp.partition, "resuming partition");
                    self.resume(main, &tp);
                }
                Action::DeadLetter(r) => {
                    warn!(
                        topic = %r.tp.topic, partition = r.tp.partition, offset = r.offset,
                        key = %key_text(&r.key), reason = r.reason, attempts = r.attempts,
                        error = r.error.as_deref().unwrap_or(""), "dead-lettering record"
                    );
                    let suffix = self.cfg.dead_letter_suffix.clone();
                    self.sinks.dead_letter(r, &suffix);
                }
                Action::Divert(r) => {
                    let suffix = self.cfg.overflow_suffix.clone();
                    self.sinks.divert(r, &suffix);
                }
            }
        }
        self.actions = actions;
    }

    /// Applies events until `done` holds or the deadline passes.
    pub(crate) fn drain_until<C: ConsumerContext>(
        &mut self,
        main: &BaseConsumer<C>,
        deadline: Instant,
        done: impl Fn(&State) -> bool,
    ) -> bool {
        loop {
            self.run_actions(main);
            if done(self) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            self.engine.advance_time(self.now_ms());
            self.sinks.retry_due(now);
            self.sinks.poll();
            self.wait_event(main, (deadline - now).min(Duration::from_millis(50)));
        }
    }

    /// Refreshes the snapshot and metrics.
    pub(crate) fn publish(&mut self) {
        observe::publish(
            &self.engine,
            &self.observer,
            &mut self.ages,
            self.sinks.pending(),
        );
    }

    /// Everything assigned, for shutdown.
    pub(crate) fn handles(&self) -> Vec<PartitionHandle> {
        self.engine
            .partition_stats()
            .iter()
            .filter(|s| s.role == Role::Main)
            .filter_map(|s| self.engine.handle(&s.tp))
            .collect()
    }
}

/// Runs a record the engine let skip its lanes (a first attempt), and tells the engine how it
/// went.
fn run_now(run: RunNow<'_, Record>, spawn: &mut Spawner, handler_seconds: &metrics::Histogram) {
    match spawn.start(run.payload().clone()) {
        Started::Finished(result) => {
            handler_seconds.record(AT_ONCE.as_secs_f64());
            match result {
                Ok(()) => run.done(),
                Err(e) => {
                    run.fail(failure(e));
                }
            }
        }
        Started::Waiting(fut) => spawn.wait(fut, run.running()),
    }
}

/// What the engine makes of a handler's error.
fn failure(e: HandlerError) -> Failure {
    match e.kind {
        FailureKind::Retry => Failure::Retry(e.message),
        FailureKind::Transient => Failure::Transient(e.message),
        FailureKind::Fatal => Failure::Fatal {
            reason: e.reason,
            error: e.message,
        },
    }
}

fn route(router: &Router, record: &Record) -> Vec<Option<Bytes>> {
    router(record).into_iter().map(Some).collect()
}

pub(crate) fn single(tp: &TopicPartition, offset: Offset) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    let _ = tpl.add_partition_offset(&tp.topic, tp.partition, offset);
    tpl
}

pub(crate) fn key_text(key: &Option<Arc<[u8]>>) -> String {
    key.as_deref()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .unwrap_or_default()
}
