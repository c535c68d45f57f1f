//! A model driver for the engine: simulated partitions (with gaps), an overflow log per
//! partition, committed offsets that survive rebalances, and a record of what the "handler"
//! applied — checked against the engine's promises after every event.
#![allow(dead_code, unreachable_pub)]

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use kafkaesque_engine::*;

/// One item's identity: (main partition, offset, key). Key 255 means keyless.
pub type ItemId = (u32, Offset, u8);
/// A payload is the list of items it stands for (several once coalesced).
pub type Pay = Vec<ItemId>;

pub const BYTES: usize = 10;

#[derive(Debug, Clone)]
pub struct Rec {
    pub offset: Offset,
    pub keys: Vec<u8>,
    pub keyless: bool,
}

#[derive(Debug, Clone)]
pub struct OverflowRec {
    pub offset: Offset,
    pub key: Option<Arc<[u8]>>,
    pub payload: Pay,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome2 {
    Ok,
    Retry,
    Transient,
    Fatal,
}

#[derive(Debug, Clone)]
pub enum Event {
    Fetch {
        part: usize,
        n: usize,
        overflow: bool,
    },
    Finish {
        pick: usize,
        outcome: Outcome2,
    },
    AckSink {
        pick: usize,
    },
    Advance {
        ms: u64,
    },
    Commit,
    Rebalance {
        part: usize,
        drain: bool,
    },
    Limits {
        key: usize,
        part: usize,
        global: usize,
    },
}

struct PState {
    log: Vec<Rec>,
    pos: usize,
    handle: PartitionHandle,
    paused: bool,
    committed: (Offset, String),
    ovf_log: Vec<OverflowRec>,
    ovf_pos: usize,
    ovf_handle: Option<PartitionHandle>,
    ovf_paused: bool,
    ovf_committed: (Offset, String),
}

pub struct Harness {
    pub engine: Engine<Pay>,
    parts: Vec<PState>,
    in_flight: Vec<Work<Pay>>,
    /// Items abandoned by a revoke whose drain timed out: they still finish some time later,
    /// and the engine must ignore them (and free their concurrency slot).
    zombies: Vec<WorkId>,
    sinks: Vec<Action<Pay>>,
    now: u64,
    ordering: ProcessingOrder,
    limits: Limits,
    budget: usize,
    with_overflow: bool,
    /// Items applied by the handler or acknowledged by the dead-letter sink: final.
    pub finished: HashSet<ItemId>,
    /// Items acknowledged by the overflow sink (to be applied from there later).
    pub diverted: HashSet<ItemId>,
    /// Last applied offset per (partition, order key) in the current epoch of the partition.
    last_applied: HashMap<(u32, u8), Offset>,
    /// Highest offset applied for the first time, per (partition, order key), across epochs.
    first_applied: HashMap<(u32, u8), Offset>,
    /// Items applied so far (a second application is a duplicate).
    applied: HashSet<ItemId>,
    pub duplicates: u64,
    /// Items shed at a full key (DeadLetter policy): out of the key's order by design, also
    /// when an abandoned dead-letter produce makes them come back after a rebalance.
    shed: HashSet<ItemId>,
    pub applied_count: u64,
    pub dead_letters: u64,
    /// Records run at once, by how their run ended: done, still running, failed, not run.
    pub runs_now: [u64; 4],
}

/// `base` with caps of `key`, `part` and `global` items (and as many times [`BYTES`]).
pub fn caps(key: usize, part: usize, global: usize, base: Limits) -> Limits {
    Limits {
        key_max_records: key,
        key_max_bytes: key * BYTES,
        partition_max_records: part,
        partition_max_bytes: part * BYTES,
        global_max_records: global,
        global_max_bytes: global * BYTES,
        ..base
    }
}

fn key_bytes(k: u8) -> Arc<[u8]> {
    Arc::from(vec![b'k', k])
}

fn key_of(key: &Option<Arc<[u8]>>) -> u8 {
    key.as_ref().map_or(255, |k| k[1])
}

impl Harness {
    pub fn new(cfg: EngineConfig<Pay>, logs: Vec<Vec<Rec>>) -> Self {
        let ordering = cfg.ordering;
        let budget = cfg.limits.metadata_max_bytes;
        let limits = cfg.limits.clone();
        let with_overflow = matches!(cfg.hot_key, HotKeyPolicy::Divert);
        let mut engine = Engine::new(cfg).expect("valid config");
        let parts = logs
            .into_iter()
            .enumerate()
            .map(|(i, log)| {
                let (handle, warn) =
                    engine.assign(TopicPartition::new("t", i as i32), 0, None, Role::Main);
                assert!(warn.is_none());
                let ovf_handle = with_overflow.then(|| {
                    engine
                        .assign(
                            TopicPartition::new("t.overflow", i as i32),
                            0,
                            None,
                            Role::Overflow { main: handle },
                        )
                        .0
                });
                PState {
                    log,
                    pos: 0,
                    handle,
                    paused: false,
                    committed: (0, String::new()),
                    ovf_log: Vec::new(),
                    ovf_pos: 0,
                    ovf_handle,
                    ovf_paused: false,
                    ovf_committed: (0, String::new()),
                }
            })
            .collect();
        Harness {
            engine,
            parts,
            in_flight: Vec::new(),
            zombies: Vec::new(),
            sinks: Vec::new(),
            now: 0,
            ordering,
            limits,
            budget,
            with_overflow,
            finished: HashSet::new(),
            diverted: HashSet::new(),
            last_applied: HashMap::new(),
            first_applied: HashMap::new(),
            applied: HashSet::new(),
            duplicates: 0,
            shed: HashSet::new(),
            applied_count: 0,
            dead_letters: 0,
            runs_now: [0; 4],
        }
    }

    fn part_of(&self, h: PartitionHandle) -> Option<(usize, bool)> {
        self.parts.iter().enumerate().find_map(|(i, p)| {
            if p.handle == h {
                Some((i, false))
            } else if p.ovf_handle == Some(h) {
                Some((i, true))
            } else {
                None
            }
        })
    }

    /// Applies one event, then checks every invariant that must hold at all times.
    pub fn step(&mut self, ev: &Event) {
        let before = self.engine.held();
        let before_parts: Vec<usize> = self
            .engine
            .partition_stats()
            .iter()
            .map(|s| s.held)
            .collect();
        let before_keys = self.key_counts();
        match *ev {
            Event::Fetch { part, n, overflow } => self.fetch(part % self.parts.len(), n, overflow),
            Event::Finish { pick, outcome } => self.finish(pick, outcome),
            Event::AckSink { pick } => self.ack_sink(pick),
            Event::Advance { ms } => {
                self.now += ms;
                self.engine.advance_time(self.now);
            }
            Event::Commit => self.commit(),
            Event::Rebalance { part, drain } => self.rebalance(part % self.parts.len(), drain),
            Event::Limits { key, part, global } => {
                let l = caps(key, part, global, self.limits.clone());
                self.engine.set_limits(l.clone()).expect("valid limits");
                self.limits = l;
            }
        }
        self.process_actions();
        self.check_memory(before, &before_parts, &before_keys);
    }

    fn key_counts(&self) -> HashMap<(TopicPartition, Arc<[u8]>), usize> {
        let (all, _) = self.engine.top_keys(usize::MAX);
        all.into_iter()
            .filter_map(|k| Some(((k.tp, k.key?), k.queued + k.in_flight)))
            .collect()
    }

    fn fetch(&mut self, i: usize, n: usize, overflow: bool) {
        for _ in 0..n {
            let p = &self.parts[i];
            let intake = if overflow {
                let (Some(h), false) = (p.ovf_handle, p.ovf_paused) else {
                    return;
                };
                let Some(r) = p.ovf_log.get(p.ovf_pos).cloned() else {
                    return;
                };
                self.parts[i].ovf_pos += 1;
                self.engine
                    .fetched_overflow(h, r.offset, r.key.clone(), BYTES, r.payload.clone())
            } else {
                if p.paused {
                    return;
                }
                let Some(r) = p.log.get(p.pos).cloned() else {
                    return;
                };
                let handle = p.handle;
                self.parts[i].pos += 1;
                // Every other single-key record in key order is offered to run at once.
                let single = !r.keyless && r.keys.len() == 1;
                if self.ordering == ProcessingOrder::Key && single && r.offset % 2 == 0 {
                    let intake = self.fetch_now(i, handle, &r);
                    self.process_actions();
                    if intake == Intake::Refused {
                        return;
                    }
                    continue;
                }
                let items: Vec<(Option<Arc<[u8]>>, Pay)> = if r.keyless {
                    vec![(None, vec![(i as u32, r.offset, 255)])]
                } else {
                    r.keys
                        .iter()
                        .map(|k| (Some(key_bytes(*k)), vec![(i as u32, r.offset, *k)]))
                        .collect()
                };
                self.engine.fetched(handle, r.offset, BYTES, items)
            };
            self.process_actions();
            if intake == Intake::Refused {
                return;
            }
        }
    }

    /// Offers a single-key record to run at once and, if it may, ends the run as its offset
    /// says: done, still running, failed, or not run after all.
    fn fetch_now(&mut self, i: usize, handle: PartitionHandle, r: &Rec) -> Intake {
        let k = r.keys[0];
        let key = key_bytes(k);
        let busy = self.in_flight.iter().any(|o| {
            o.key.as_deref() == Some(&key[..]) && self.part_of(o.partition).map(|x| x.0) == Some(i)
        });
        let payload = vec![(i as u32, r.offset, k)];
        let run = match self
            .engine
            .fetched_inline(handle, r.offset, BYTES, &key, payload)
        {
            Inline::Taken(intake) => return intake,
            Inline::Run(run) => run,
            other => unreachable!("an Inline this model does not know: {other:?}"),
        };
        assert!(
            !busy,
            "key {k} run at once while an item of it is in flight"
        );
        let payload = run.payload().clone();
        let ending = (r.offset / 2) % 5;
        self.runs_now[match ending {
            0 | 1 => 0,
            2 => 1,
            3 => 2,
            _ => 3,
        }] += 1;
        match ending {
            0 | 1 => {
                run.done();
                self.apply(i as u32, &payload);
            }
            2 => {
                let id = run.running();
                self.in_flight.push(Work {
                    id,
                    partition: handle,
                    tp: TopicPartition::new("t", i as i32),
                    key: Some(key.clone()),
                    offset: r.offset,
                    records: 1,
                    attempt: 1,
                    payload,
                });
            }
            3 => {
                let outcome = run.fail(Failure::Retry("boom".into()));
                assert_eq!(outcome, kafkaesque_engine::Outcome::Applied);
            }
            _ => drop(run),
        }
        Intake::Accepted
    }

    fn process_actions(&mut self) {
        let actions: Vec<Action<Pay>> = self.engine.drain_actions().collect();
        for a in actions {
            match a {
                Action::Dispatch(w) => {
                    if matches!(
                        self.ordering,
                        ProcessingOrder::Key | ProcessingOrder::HashedQueues { .. }
                    ) && w.key.is_some()
                    {
                        let main = self
                            .part_of(w.partition)
                            .expect("dispatch from a live partition")
                            .0;
                        assert!(
                            !self.in_flight.iter().any(|o| o.key == w.key
                                && self.part_of(o.partition).map(|x| x.0) == Some(main)),
                            "two items of key {:?} in flight at once",
                            w.key
                        );
                    }
                    if self.ordering == ProcessingOrder::Partition {
                        let main = self.part_of(w.partition).unwrap().0;
                        assert!(
                            !self
                                .in_flight
                                .iter()
                                .any(|o| self.part_of(o.partition).map(|x| x.0) == Some(main)),
                            "two items of one partition in flight in partition mode"
                        );
                    }
                    self.in_flight.push(w);
                }
                Action::Pause {
                    partition, seek_to, ..
                } => {
                    let (i, ovf) = self.part_of(partition).expect("pause of a live partition");
                    let p = &mut self.parts[i];
                    if ovf {
                        p.ovf_paused = true;
                        p.ovf_pos = p
                            .ovf_log
                            .iter()
                            .position(|r| r.offset == seek_to)
                            .expect("seek");
                    } else {
                        p.paused = true;
                        p.pos = p
                            .log
                            .iter()
                            .position(|r| r.offset == seek_to)
                            .expect("seek");
                    }
                }
                Action::Resume { partition, .. } => {
                    let (i, ovf) = self.part_of(partition).expect("resume of a live partition");
                    if ovf {
                        self.parts[i].ovf_paused = false;
                    } else {
                        self.parts[i].paused = false;
                    }
                }
                Action::DeadLetter(r) => {
                    // Dead-lettering a failed item is how a key moves past it: it takes the item's
                    // place in the key's order. (Items shed at a full key are not in that order:
                    // shedding them ahead of the key's queue is the point of the policy.)
                    if r.reason != "key_queue_full" {
                        let main = self.part_of(r.partition).expect("live partition").0 as u32;
                        self.process(main, &r.payload, false);
                    } else {
                        self.shed.extend(r.payload.iter().copied());
                    }
                    self.sinks.push(Action::DeadLetter(r));
                }
                a @ Action::Divert(_) => self.sinks.push(a),
                other => unreachable!("an action this model does not know: {other:?}"),
            }
        }
    }

    fn apply(&mut self, main: u32, payload: &Pay) {
        self.process(main, payload, true);
    }

    fn process(&mut self, main: u32, payload: &Pay, applied: bool) {
        for &(p, o, k) in payload {
            assert_eq!(p, main);
            let order_key = match self.ordering {
                ProcessingOrder::Key | ProcessingOrder::HashedQueues { .. } if k != 255 => Some(k),
                ProcessingOrder::Partition => Some(0),
                _ => None,
            };
            let first = self.applied.insert((p, o, k));
            if !first {
                self.duplicates += 1;
            }
            if let Some(ok) = order_key.filter(|_| !self.shed.contains(&(p, o, k))) {
                // In partition mode the items of one multi-key record share the partition's lane.
                let same_ok = self.ordering == ProcessingOrder::Partition;
                if first {
                    // Items applied for the first time come in order, whatever crashed between.
                    let top = self.first_applied.entry((p, ok)).or_insert(-1);
                    assert!(
                        o > *top || (same_ok && o == *top),
                        "order broken on partition {p} key {ok}: first {o} after {top}"
                    );
                    *top = o;
                }
                // Within one assignment nothing is applied out of order either, except that an
                // overflow record left by an earlier owner may repeat an item (a duplicate).
                if !self.with_overflow {
                    let last = self.last_applied.entry((p, ok)).or_insert(-1);
                    let in_order = o > *last || (same_ok && o == *last);
                    assert!(
                        in_order,
                        "order broken on partition {p} key {ok}: {o} after {last}"
                    );
                    *last = o;
                }
            }
            if applied {
                self.finished.insert((p, o, k));
                self.applied_count += 1;
            }
        }
    }

    fn finish(&mut self, pick: usize, outcome: Outcome2) {
        if !self.zombies.is_empty() && (pick % 3 == 0 || self.in_flight.is_empty()) {
            let id = self.zombies.swap_remove(pick % self.zombies.len());
            assert_eq!(self.engine.complete(id), kafkaesque_engine::Outcome::Stale);
            return;
        }
        if self.in_flight.is_empty() {
            return;
        }
        let w = self.in_flight.swap_remove(pick % self.in_flight.len());
        let main = self
            .part_of(w.partition)
            .expect("in flight from a live partition")
            .0 as u32;
        let r = match outcome {
            Outcome2::Ok => {
                self.apply(main, &w.payload);
                self.engine.complete(w.id)
            }
            Outcome2::Retry => self.engine.fail(w.id, Failure::Retry("boom".into())),
            Outcome2::Transient => self.engine.fail(w.id, Failure::Transient("db down".into())),
            Outcome2::Fatal => self.engine.fail(
                w.id,
                Failure::Fatal {
                    reason: "bad_input",
                    error: "bad input".into(),
                },
            ),
        };
        assert_eq!(r, kafkaesque_engine::Outcome::Applied);
    }

    fn ack_sink(&mut self, pick: usize) {
        if self.sinks.is_empty() {
            return;
        }
        let mut pick = pick % self.sinks.len();
        // The overflow sink is one ordered partition per source partition (an idempotent
        // producer keeps its order): diverted items are acknowledged in the order they were sent.
        if let Action::Divert(r) = &self.sinks[pick] {
            let part = r.partition;
            pick = self
                .sinks
                .iter()
                .position(|a| matches!(a, Action::Divert(x) if x.partition == part))
                .expect("itself at least");
        }
        let a = self.sinks.remove(pick);
        match a {
            Action::DeadLetter(r) => {
                for id in &r.payload {
                    self.finished.insert(*id);
                }
                self.dead_letters += 1;
                self.engine.sink_acked(r.id, None);
            }
            Action::Divert(r) => {
                let (i, _) = self
                    .part_of(r.partition)
                    .expect("divert from a live partition");
                let p = &mut self.parts[i];
                let offset = p.ovf_log.last().map_or(0, |x| x.offset + 1);
                p.ovf_log.push(OverflowRec {
                    offset,
                    key: r.key.clone(),
                    payload: r.payload.clone(),
                });
                for id in &r.payload {
                    self.diverted.insert(*id);
                }
                self.engine.sink_acked(r.id, Some(offset));
            }
            _ => unreachable!(),
        }
    }

    fn commit(&mut self) {
        let commits = self.engine.commits();
        self.record_commits(commits);
    }

    fn record_commits(&mut self, commits: Vec<Commit>) {
        for c in commits {
            let Some((i, ovf)) = self.part_of(c.partition) else {
                continue;
            };
            assert!(c.metadata.len() <= self.budget, "metadata over budget");
            if !ovf {
                self.check_commit(i, c.offset, &c.metadata);
                self.parts[i].committed = (c.offset, c.metadata.clone());
            } else {
                self.parts[i].ovf_committed = (c.offset, c.metadata.clone());
            }
            self.engine.committed(c.partition, c.offset);
        }
    }

    /// No offset is committed, or listed complete in metadata, before all its items are done.
    fn check_commit(&self, i: usize, offset: Offset, metadata: &str) {
        let done = |r: &Rec| {
            let ids: Vec<ItemId> = if r.keyless {
                vec![(i as u32, r.offset, 255)]
            } else {
                r.keys.iter().map(|k| (i as u32, r.offset, *k)).collect()
            };
            ids.iter()
                .all(|id| self.finished.contains(id) || self.diverted.contains(id))
        };
        for r in self.parts[i].log.iter().take_while(|r| r.offset < offset) {
            assert!(
                done(r),
                "partition {i}: offset {offset} committed but {} is not done",
                r.offset
            );
        }
        if !metadata.is_empty() {
            let d = codec::decode(metadata, offset).expect("our own metadata decodes");
            for (s, e) in d.completed {
                for r in self.parts[i]
                    .log
                    .iter()
                    .filter(|r| r.offset >= s && r.offset < e)
                {
                    assert!(
                        done(r),
                        "partition {i}: metadata marks {} complete too early",
                        r.offset
                    );
                }
            }
        }
    }

    fn rebalance(&mut self, i: usize, drain: bool) {
        let h = self.parts[i].handle;
        self.engine.drain(h);
        let ovf = self.parts[i].ovf_handle;
        let mine = |w: &Work<Pay>| w.partition == h || Some(w.partition) == ovf;
        if drain {
            while let Some(pos) = self.in_flight.iter().position(mine) {
                self.finish(pos, Outcome2::Ok);
                self.process_actions();
            }
        } else {
            let (gone, keep): (Vec<_>, Vec<_>) = self.in_flight.drain(..).partition(|w| mine(w));
            self.in_flight = keep;
            self.zombies.extend(gone.into_iter().map(|w| w.id));
        }
        let commits = self.engine.revoke(h);
        self.record_commits(commits);
        // Sinks of the old assignment are never acknowledged now (their produce is abandoned).
        self.sinks.retain(|a| match a {
            Action::DeadLetter(r) | Action::Divert(r) => {
                r.partition != h && Some(r.partition) != ovf
            }
            _ => true,
        });
        self.last_applied.retain(|(p, _), _| *p != i as u32);
        let p = &self.parts[i];
        let (start, meta) = p.committed.clone();
        let (handle, warn) = self.engine.assign(
            TopicPartition::new("t", i as i32),
            start,
            Some(&meta),
            Role::Main,
        );
        assert!(warn.is_none(), "own metadata rejected: {warn:?}");
        let p = &mut self.parts[i];
        p.handle = handle;
        p.paused = false;
        p.pos = p
            .log
            .iter()
            .position(|r| r.offset >= start)
            .unwrap_or(p.log.len());
        if self.with_overflow {
            let (ostart, ometa) = p.ovf_committed.clone();
            let (oh, warn) = self.engine.assign(
                TopicPartition::new("t.overflow", i as i32),
                ostart,
                Some(&ometa),
                Role::Overflow { main: handle },
            );
            assert!(warn.is_none());
            let p = &mut self.parts[i];
            p.ovf_handle = Some(oh);
            p.ovf_paused = false;
            p.ovf_pos = p
                .ovf_log
                .iter()
                .position(|r| r.offset >= ostart)
                .unwrap_or(p.ovf_log.len());
        }
    }

    /// No step takes the engine over a cap (a step may leave it over a cap lowered just now,
    /// but then it must not grow).
    fn check_memory(
        &self,
        before: (usize, usize),
        before_parts: &[usize],
        before_keys: &HashMap<(TopicPartition, Arc<[u8]>), usize>,
    ) {
        let l = &self.limits;
        let (held, bytes) = self.engine.held();
        if held > before.0 {
            assert!(
                held <= l.global_max_records,
                "global cap: {held} > {}",
                l.global_max_records
            );
        }
        if bytes > before.1 {
            assert!(bytes <= l.global_max_bytes, "global byte cap");
        }
        for (i, s) in self.engine.partition_stats().iter().enumerate() {
            if s.held > before_parts.get(i).copied().unwrap_or(0) {
                assert!(
                    s.held <= l.partition_max_records,
                    "partition cap: {} > {}",
                    s.held,
                    l.partition_max_records
                );
            }
            assert!(
                s.uncommitted <= l.partition_max_uncommitted,
                "uncommitted cap"
            );
        }
        if self.ordering == ProcessingOrder::Key {
            for (k, n) in self.key_counts() {
                if n > before_keys.get(&k).copied().unwrap_or(0) {
                    assert!(
                        n <= l.key_max_records,
                        "key {k:?} holds {n} > cap {}",
                        l.key_max_records
                    );
                }
            }
        }
    }

    /// Lets everything finish: fetch all, complete all, acknowledge all, advance time.
    pub fn run_to_end(&mut self) {
        for _round in 0..100_000 {
            for i in 0..self.parts.len() {
                self.fetch(i, usize::MAX, false);
                self.fetch(i, usize::MAX, true);
            }
            while !self.in_flight.is_empty() || !self.zombies.is_empty() {
                self.finish(0, Outcome2::Ok);
                self.process_actions();
            }
            while !self.sinks.is_empty() {
                self.ack_sink(0);
                self.process_actions();
            }
            self.now += 60_000;
            self.engine.advance_time(self.now);
            self.process_actions();
            self.commit();
            let all_fetched = self
                .parts
                .iter()
                .all(|p| p.pos == p.log.len() && p.ovf_pos == p.ovf_log.len());
            if all_fetched
                && self.in_flight.is_empty()
                && self.sinks.is_empty()
                && self.engine.held().0 == 0
            {
                break;
            }
        }
        self.commit();
        for (i, p) in self.parts.iter().enumerate() {
            for r in &p.log {
                let ids: Vec<ItemId> = if r.keyless {
                    vec![(i as u32, r.offset, 255)]
                } else {
                    r.keys.iter().map(|k| (i as u32, r.offset, *k)).collect()
                };
                for id in ids {
                    assert!(self.finished.contains(&id), "lost item {id:?}");
                }
            }
            let end = p.log.last().map_or(0, |r| r.offset + 1);
            assert!(
                p.committed.0 >= end,
                "partition {i} committed {} < end {end}",
                p.committed.0
            );
            let oend = p.ovf_log.last().map_or(0, |r| r.offset + 1);
            assert!(
                p.ovf_committed.0 >= oend,
                "overflow {i} committed {} < end {oend}",
                p.ovf_committed.0
            );
        }
        assert_eq!(self.engine.in_flight(), 0);
        assert_eq!(self.engine.held(), (0, 0));
    }
}
