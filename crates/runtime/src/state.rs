//! The driver's state: the engine and everything that carries out its actions. It is owned by
//! the driver thread alone; it sits behind a mutex only so that rebalance callbacks — which
//! librdkafka runs *inside* `poll`, on that same thread — can reach it while the loop is not
//! holding it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafkaesque_engine::{
    Action, Commit, Engine, Failure, Intake, Outcome, PartitionHandle, Role, TopicPartition, WorkId,
};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use tracing::{debug, error, info, warn};

use crate::config::{ConsumerConfig, Router};
use crate::events::{Event, EventRx};
use crate::handler::FailureKind;
use crate::observe::{self, Ages, Observer};
use crate::record::headers as h;
use crate::sinks::Sinks;
use crate::{HandlerError, Record};

/// Starts the handler for one item; returns its outcome (and how long it took) when it finished
/// without waiting, or `None` when it runs on as a task that will report on the channel.
pub(crate) type Spawn =
    Box<dyn Fn(Record, WorkId) -> Option<(Result<(), HandlerError>, Duration)> + Send + Sync>;

pub(crate) struct State {
    pub(crate) engine: Engine<Record>,
    pub(crate) rx: EventRx,
    pub(crate) spawn: Spawn,
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
}

impl State {
    pub(crate) fn new(
        engine: Engine<Record>,
        rx: EventRx,
        spawn: Spawn,
        sinks: Sinks,
        overflow: Option<BaseConsumer<crate::context::OverflowContext>>,
        cfg: ConsumerConfig,
        observer: Observer,
    ) -> Self {
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
        }
    }

    fn intern(&mut self, topic: &str) -> Arc<str> {
        if let Some(t) = self.topics.get(topic) {
            return t.clone();
        }
        let t: Arc<str> = Arc::from(topic);
        self.topics.insert(topic.to_owned(), t.clone());
        t
    }

    fn overflow_topic(&self, topic: &str) -> String {
        format!("{topic}{}", self.cfg.overflow_suffix)
    }

    fn is_overflow(&self, topic: &str) -> bool {
        self.overflow.is_some() && topic.ends_with(&self.cfg.overflow_suffix)
    }

    pub(crate) fn now_ms(&self) -> u64 {
        self.clock.elapsed().as_millis() as u64
    }

    /// A record from one of the consumer's topics.
    pub(crate) fn on_message(&mut self, m: &BorrowedMessage<'_>) {
        let topic = self.intern(m.topic());
        let tp = TopicPartition {
            topic: topic.clone(),
            partition: m.partition(),
        };
        let Some(h) = self.engine.handle(&tp) else {
            debug!(topic = %tp.topic, partition = tp.partition, offset = m.offset(), "record of an unassigned partition ignored");
            return;
        };
        let record = Record::from_message(m, topic);
        self.ages.fetched(&tp, record.offset, record.timestamp);
        let weight = record.weight();
        let offset = record.offset;
        let intake = match &self.cfg.router {
            Some(router) => {
                let items = route(router, &record).into_iter().map(|k| {
                    let mut r = record.clone();
                    r.route = k.clone();
                    (k, r)
                });
                self.engine.fetched(h, offset, weight, items)
            }
            None => self
                .engine
                .fetched(h, offset, weight, [(record.key.clone(), record)]),
        };
        if intake == Intake::Stale {
            debug!(topic = %tp.topic, partition = tp.partition, offset, "stale record ignored");
        }
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
        let mut record = Record::from_message(m, tp.topic.clone());
        let text = |name: &str| {
            record
                .header(name)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        // The handler sees the original record: its topic, partition, offset and key.
        let source_topic = text(h::SOURCE_TOPIC);
        let source_partition = text(h::SOURCE_PARTITION).and_then(|p| p.parse().ok());
        let source_offset = text(h::SOURCE_OFFSET).and_then(|o| o.parse().ok());
        let source_key = record.header(h::SOURCE_KEY).cloned();
        if let (Some(t), Some(p), Some(o)) = (source_topic, source_partition, source_offset) {
            record.topic = self.intern(&t);
            record.partition = p;
            record.offset = o;
        }
        record.route = m.key().map(Bytes::copy_from_slice);
        record.key = source_key;
        let weight = record.weight();
        let route = record.route.clone();
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
        metrics::histogram!("kafkaesque_handler_seconds").record(elapsed.as_secs_f64());
        let outcome = match result {
            Ok(()) => self.engine.complete(id),
            Err(e) => {
                let failure = match e.kind {
                    FailureKind::Retry => Failure::Retry(e.message),
                    FailureKind::Transient => Failure::Transient(e.message),
                    FailureKind::Fatal => Failure::Fatal {
                        reason: e.reason,
                        error: e.message,
                    },
                };
                self.engine.fail(id, failure)
            }
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
        // Outcomes of handlers that finished at once produce actions of their own.
        loop {
            let mut finished = Vec::new();
            self.run_actions_once(main, &mut finished);
            if finished.is_empty() {
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
        actions.extend(self.engine.drain_actions());
        for a in actions.drain(..) {
            match a {
                Action::Dispatch(w) => {
                    let mut r = w.payload;
                    r.attempt = w.attempt;
                    r.records = w.records;
                    if let Some((result, elapsed)) = (self.spawn)(r, w.id) {
                        finished.push((w.id, result, elapsed));
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
                    let tpl = single(&tp, Offset::Invalid);
                    let r = if self.is_overflow(&tp.topic) {
                        self.overflow.as_ref().map_or(Ok(()), |c| c.resume(&tpl))
                    } else {
                        main.resume(&tpl)
                    };
                    if let Err(e) = r {
                        error!(topic = %tp.topic, partition = tp.partition, error = %e, "resume failed");
                    }
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

    /// Stops fetching a partition and moves its position back to the first refused record.
    fn pause<C: ConsumerContext>(&self, main: &BaseConsumer<C>, tp: &TopicPartition, seek_to: i64) {
        let tpl = single(tp, Offset::Invalid);
        let result = if self.is_overflow(&tp.topic) {
            match self.overflow.as_ref() {
                Some(c) => c.pause(&tpl).and_then(|_| {
                    c.seek(
                        &tp.topic,
                        tp.partition,
                        Offset::Offset(seek_to),
                        Duration::from_secs(5),
                    )
                }),
                None => Ok(()),
            }
        } else {
            main.pause(&tpl).and_then(|_| {
                main.seek(
                    &tp.topic,
                    tp.partition,
                    Offset::Offset(seek_to),
                    Duration::from_secs(5),
                )
            })
        };
        if let Err(e) = result {
            error!(topic = %tp.topic, partition = tp.partition, offset = seek_to, error = %e, "pause and seek failed");
        }
    }

    /// Commits what the engine releases, asynchronously (on the interval). A failure is logged
    /// and the engine returns the same commit next time.
    pub(crate) fn commit<C: ConsumerContext>(
        &mut self,
        main: &BaseConsumer<C>,
        commits: Vec<Commit>,
    ) {
        for (list, overflow) in self.split(commits) {
            if let Err(e) = self.send_commit(main, &list, overflow, CommitMode::Async) {
                warn!(error = %e, partitions = list.len(), "commit failed; will retry");
                metrics::counter!("kafkaesque_commit_failures_total").increment(1);
                for c in &list {
                    self.engine.commit_failed(c.partition);
                }
            }
        }
    }

    /// Commits synchronously (revoke, shutdown), retrying a failed commit a few times: these
    /// are the last chance to record this owner's progress.
    pub(crate) fn commit_final<C: ConsumerContext>(
        &mut self,
        main: &BaseConsumer<C>,
        commits: Vec<Commit>,
    ) {
        for (list, overflow) in self.split(commits) {
            let mut attempt = 1;
            loop {
                match self.send_commit(main, &list, overflow, CommitMode::Sync) {
                    Ok(()) => {
                        for c in &list {
                            self.engine.committed(c.partition, c.offset);
                        }
                        break;
                    }
                    Err(e) if attempt < 5 => {
                        warn!(error = %e, attempt, "final commit failed; retrying");
                        metrics::counter!("kafkaesque_commit_failures_total").increment(1);
                        std::thread::sleep(Duration::from_millis(200 * attempt));
                        attempt += 1;
                    }
                    Err(e) => {
                        error!(error = %e, partitions = list.len(), "final commit failed; the next owner will replay from the last commit");
                        break;
                    }
                }
            }
        }
    }

    /// Group consumer commits and overflow consumer commits.
    fn split(&self, commits: Vec<Commit>) -> [(Vec<Commit>, bool); 2] {
        let (ovf, primary): (Vec<Commit>, Vec<Commit>) = commits
            .into_iter()
            .partition(|c| self.is_overflow(&c.tp.topic));
        [(primary, false), (ovf, true)]
    }

    fn send_commit<C: ConsumerContext>(
        &self,
        main: &BaseConsumer<C>,
        list: &[Commit],
        overflow: bool,
        mode: CommitMode,
    ) -> rdkafka::error::KafkaResult<()> {
        if list.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let mut tpl = TopicPartitionList::new();
        for c in list {
            if c.truncated_from.is_some() {
                debug!(topic = %c.tp.topic, partition = c.tp.partition, "commit metadata truncated; some completed records will be replayed after a restart");
            }
            let added =
                tpl.add_partition_offset(&c.tp.topic, c.tp.partition, Offset::Offset(c.offset));
            if let (Ok(()), Some(mut elem)) =
                (added, tpl.find_partition(&c.tp.topic, c.tp.partition))
            {
                elem.set_metadata(c.metadata.clone());
            }
        }
        let result = match (overflow, self.overflow.as_ref()) {
            (true, Some(o)) => o.commit(&tpl, mode),
            (true, None) => Ok(()),
            (false, _) => main.commit(&tpl, mode),
        };
        metrics::counter!("kafkaesque_commits_total").increment(1);
        metrics::histogram!("kafkaesque_commit_seconds").record(started.elapsed().as_secs_f64());
        result
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

    /// Partitions were assigned: read where each stands (offset and metadata) and take it on.
    pub(crate) fn on_assign<C: ConsumerContext>(
        &mut self,
        main: &BaseConsumer<C>,
        tpl: &TopicPartitionList,
    ) {
        let committed = match main.committed_offsets(tpl.clone(), Duration::from_secs(10)) {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "could not read committed offsets; starting without metadata (some records may be replayed)");
                tpl.clone()
            }
        };
        let mut overflow_tpl = TopicPartitionList::new();
        if let Some(hook) = &self.cfg.on_assign {
            let assigned: Vec<TopicPartition> = committed
                .elements()
                .iter()
                .map(|e| TopicPartition::new(e.topic(), e.partition()))
                .collect();
            hook(&assigned);
        }
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
    }

    fn assign_overflow(
        &mut self,
        topic: &str,
        partition: i32,
        main: PartitionHandle,
        out: &mut TopicPartitionList,
    ) {
        let name = self.overflow_topic(topic);
        let otopic = self.intern(&name);
        let c = self.overflow.as_ref().expect("checked");
        let mut q = TopicPartitionList::new();
        q.add_partition(&name, partition);
        let (start, metadata) = match c.committed_offsets(q, Duration::from_secs(10)) {
            Ok(r) => r
                .elements()
                .first()
                .map(|e| match e.offset() {
                    Offset::Offset(o) => (o, e.metadata().to_owned()),
                    _ => (0, String::new()),
                })
                .unwrap_or((0, String::new())),
            Err(e) => {
                warn!(topic = %name, partition, error = %e, "could not read overflow offsets; starting from its beginning");
                (0, String::new())
            }
        };
        let tp = TopicPartition {
            topic: otopic,
            partition,
        };
        let (_, warning) = self
            .engine
            .assign(tp, start, Some(&metadata), Role::Overflow { main });
        if let Some(w) = warning {
            warn!(topic = %name, partition, error = %w, "ignoring overflow commit metadata");
        }
        let _ = out.add_partition_offset(&name, partition, Offset::Offset(start));
    }

    /// Partitions are being taken away: stop dispatching them, let their in-flight work finish
    /// (up to the drain timeout), commit their final positions and metadata synchronously, and
    /// drop the rest for the next owner to replay.
    pub(crate) fn on_revoke<C: ConsumerContext>(
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
            }
        }
        let mut commits = Vec::new();
        for (tp, h) in &handles {
            commits.extend(self.engine.revoke(*h));
            self.ages.forget(tp);
            info!(topic = %tp.topic, partition = tp.partition, lost, "partition revoked");
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

fn route(router: &Router, record: &Record) -> Vec<Option<Bytes>> {
    router(record).into_iter().map(Some).collect()
}

fn single(tp: &TopicPartition, offset: Offset) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    let _ = tpl.add_partition_offset(&tp.topic, tp.partition, offset);
    tpl
}

pub(crate) fn key_text(key: &Option<Arc<[u8]>>) -> String {
    key.as_deref()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .unwrap_or_default()
}
