//! The driver's state: the engine and everything that carries out its actions. It orchestrates;
//! what it drives (the partitions' feeds, the sinks, the spawner) lives in modules of its own.
//! It is owned by the driver thread alone; it sits behind a mutex only so that rebalance
//! callbacks — which librdkafka runs *inside* `poll`, on that same thread — can reach it while
//! the loop is not holding it.
//!
//! Its methods, by what they serve: here, events and the engine's actions; in [`offer`], taking
//! records and pausing and resuming partitions; in [`rebalance`], assignments, revokes and the
//! assign hook; in [`commit`], commits; in [`overflow`], the overflow consumer.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafkaesque_engine::{Action, Engine, Failure, Outcome, PartitionHandle, Role, WorkId};
use rdkafka::consumer::{BaseConsumer, ConsumerContext};
use tracing::{debug, warn};

use crate::batch::Handlers;
use crate::config::ConsumerConfig;
use crate::context::GroupContext;
use crate::events::{Event, EventRx};
use crate::feeds::Feeds;
use crate::fetcher::Queues;
use crate::handler::{FailureKind, HandlerError};
use crate::observe::{self, Ages, Observer};
use crate::record::Record;
use crate::sinks::Sinks;
use crate::spawn::{Started, AT_ONCE};

mod commit;
mod control;
mod offer;
mod overflow;
mod rebalance;
mod stuck;
mod transaction;

pub(crate) use control::Pauses;
pub(crate) use overflow::OverflowContext;
pub(crate) use transaction::transactional_id;

/// What connects the driver state to other threads: events arrive on one channel, and the
/// partitions' queues are shared with the fetcher. (The fetcher's batches arrive on a channel
/// the driver thread owns: see [`crate::fetcher::Batches`].)
pub(crate) struct Inputs {
    pub(crate) events: EventRx,
    pub(crate) queues: Arc<Queues<GroupContext>>,
}

pub(crate) struct State {
    pub(crate) engine: Engine<Record>,
    rx: EventRx,
    spawn: Handlers,
    pub(crate) sinks: Sinks,
    /// Consumer of the overflow topics, assigned by hand alongside their main partitions and
    /// committing in a group of its own (`<group>.overflow`).
    overflow: Option<BaseConsumer<OverflowContext>>,
    cfg: ConsumerConfig,
    observer: Observer,
    ages: Ages,
    clock: Instant,
    pub(crate) shutdown: bool,
    /// The shutdown asked for handles everything already fetched (see
    /// [`ShutdownMode::DrainFetched`](crate::ShutdownMode::DrainFetched)).
    pub(crate) drain_fetched: bool,
    /// What the control handle has paused.
    pauses: Pauses,
    topics: HashMap<String, Arc<str>, rustc_hash::FxBuildHasher>,
    /// Actions being carried out; kept to avoid an allocation per batch.
    actions: Vec<Action<Record>>,
    /// The key of the record being offered, copied here rather than its `Bytes` cloned: a clone
    /// writes the shared count, a cache line the fetcher thread wrote last, while the copy reads
    /// only the key's bytes, which the engine reads anyway.
    key: Vec<u8>,
    /// The assigned partitions' own queues (see [`crate::feeds`]).
    pub(crate) feeds: Feeds<GroupContext>,
    /// Partitions held until the assign hook succeeds for them.
    gate: Option<rebalance::Gate>,
    /// `kafkaesque_handler_seconds`, registered once: looking a metric up per record costs more
    /// than recording it.
    handler_seconds: metrics::Histogram,
    /// The keys already reported stuck (see [`stuck`]).
    stuck: stuck::Alarm,
    /// Exactly-once mode: new work is held back while a transaction closes (see
    /// [`transaction`]).
    holding: bool,
    /// Handler runs handed to the runtime whose outcome has not arrived yet. Not the engine's
    /// in-flight count, which also counts work it has asked for while `holding` keeps it back.
    waiting: usize,
    /// Why the consumer must stop: an aborted transaction (see [`transaction`]). Kept once
    /// set, so that nothing commits after the abort, not even the revoke of closing.
    pub(crate) fatal: Option<String>,
}

impl State {
    pub(crate) fn new(
        engine: Engine<Record>,
        inputs: Inputs,
        spawn: Handlers,
        sinks: Sinks,
        overflow: Option<BaseConsumer<OverflowContext>>,
        cfg: ConsumerConfig,
        observer: Observer,
    ) -> Self {
        let Inputs { events: rx, queues } = inputs;
        let handler_seconds =
            metrics::histogram!("kafkaesque_handler_seconds", observer.labels.get());
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
            drain_fetched: false,
            pauses: Pauses::default(),
            topics: HashMap::default(),
            actions: Vec::new(),
            key: Vec::new(),
            feeds: Feeds::new(queues),
            gate: None,
            handler_seconds,
            stuck: stuck::Alarm::default(),
            holding: false,
            waiting: 0,
            fatal: None,
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

    pub(crate) fn now_ms(&self) -> u64 {
        self.clock.elapsed().as_millis() as u64
    }

    /// Applies one event (a shutdown sets [`State::shutdown`]).
    pub(crate) fn apply<C: ConsumerContext>(&mut self, ev: Event, main: &BaseConsumer<C>) {
        match ev {
            Event::Done {
                id,
                result,
                elapsed,
            } => {
                self.waiting = self.waiting.saturating_sub(1);
                self.outcome(id, result, elapsed)
            }
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
                        metrics::counter!("kafkaesque_commit_failures_total", self.labels())
                            .increment(1);
                        self.engine.commit_failed(h)
                    }
                    (None, _) => {}
                }
            }
            Event::Shutdown => self.begin_shutdown(false),
            Event::Control(cmd) => self.control(cmd, main),
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

    /// Makes the calling thread, the driver, the one woken once `ring_at` events wait unread.
    pub(crate) fn answer_events_here(&self, ring_at: usize) {
        self.rx.answer_here(ring_at);
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
        if self.holding {
            self.launch();
            return;
        }
        self.flush_batch();
        loop {
            let mut finished = Vec::new();
            self.run_actions_once(main, &mut finished);
            if finished.is_empty() && !self.engine.has_actions() {
                self.launch();
                return;
            }
            for (id, result, elapsed) in finished {
                self.outcome(id, result, elapsed);
            }
        }
    }

    /// Hands the runs started in this pass to the runtime (see [`crate::spawn::Spawner`]).
    fn launch(&mut self) {
        if let Handlers::Each(spawn) = &mut self.spawn {
            spawn.flush();
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
                    r.set_delivery(w.attempt, w.records);
                    match &mut self.spawn {
                        Handlers::Each(spawn) => match spawn.start(r) {
                            Started::Finished(result) => finished.push((w.id, result, AT_ONCE)),
                            Started::Waiting(fut) => {
                                self.waiting += 1;
                                spawn.wait(fut, w.id)
                            }
                        },
                        Handlers::Batched(batches) => {
                            let now = self.clock.elapsed().as_millis() as u64;
                            self.waiting += 1;
                            batches.push(w.id, r, now);
                        }
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
                // Engine and runtime are released together; a newer engine's action that this
                // runtime predates is logged rather than a crash.
                other => warn!(action = ?other, "an engine action this runtime does not know"),
            }
        }
        self.actions = actions;
    }

    /// Hands the batch handler what it has gathered, once its wait is over or the engine can
    /// dispatch nothing more to join it.
    fn flush_batch(&mut self) {
        if let Handlers::Batched(batches) = &mut self.spawn {
            let stalled = self.engine.in_flight() >= self.cfg.engine.limits.max_in_flight;
            batches.flush_due(self.clock.elapsed().as_millis() as u64, stalled);
        }
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
        if let Some(after) = self.cfg.stuck_after {
            let labels = self.labels();
            self.stuck.check(&self.engine, after, labels);
        }
    }

    /// The labels of this consumer's metrics.
    pub(crate) fn labels(&self) -> Vec<metrics::Label> {
        self.observer.labels.get()
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

/// What the engine makes of a handler's error.
fn failure(e: HandlerError) -> Failure {
    match e.kind {
        FailureKind::Retry => Failure::Retry(e.message),
        FailureKind::Transient => Failure::Transient(e.message),
        FailureKind::TimedOut => Failure::TimedOut(e.message),
        FailureKind::Fatal => Failure::Fatal {
            reason: e.reason,
            error: e.message,
        },
    }
}

pub(crate) fn key_text(key: &Option<Arc<[u8]>>) -> String {
    key.as_deref()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .unwrap_or_default()
}
