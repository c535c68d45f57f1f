//! The engine's state and its partition-level events: assign, drain, revoke, commit, inspect.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;

use rustc_hash::FxBuildHasher;

use crate::codec::{self, CodecError};
use crate::config::{ConfigError, EngineConfig, NoKey, ProcessingOrder};
use crate::lane::{Item, Lane, LaneKind, Route};
use crate::offsets::OffsetTracker;
use crate::slab::Slab;
use crate::types::*;
use crate::{Millis, Offset};

/// The largest lane queue buffer kept for the next lane when a lane is freed (see `new_lane`).
const KEPT_QUEUE_CAPACITY: usize = 16;

pub(crate) type KeyMap = HashMap<Arc<[u8]>, u32, FxBuildHasher>;

/// The state of one assigned partition.
#[derive(Debug)]
pub(crate) struct Part {
    pub(crate) tp: TopicPartition,
    pub(crate) epoch: u32,
    pub(crate) role: Role,
    /// Slot of the linked overflow partition (main partitions only).
    pub(crate) overflow: Option<u32>,
    pub(crate) tracker: OffsetTracker,
    /// Key lanes of this partition (overflow items live in their main partition's lanes).
    pub(crate) keys: KeyMap,
    /// The shared lane for partition/unordered modes and keyless records.
    pub(crate) shared: Option<u32>,
    /// The legacy-design baseline's hashed lanes.
    pub(crate) hashed: Vec<u32>,
    /// Solo lanes of unordered items waiting out a retry.
    pub(crate) solo: Vec<u32>,
    /// Lanes with an item that may start, round-robin.
    pub(crate) ready: VecDeque<u32>,
    pub(crate) in_ready_parts: bool,
    /// Items fetched from this partition that the engine owns: queued, in flight, waiting for a
    /// retry, or at a sink.
    pub(crate) held: usize,
    pub(crate) held_bytes: usize,
    /// Items fetched from this partition and in flight.
    pub(crate) in_flight: usize,
    pub(crate) paused: Option<(PauseReason, Option<(u32, u32)>)>,
    /// While paused: the refused record, the next one this partition must be given.
    pub(crate) resume_at: Offset,
    pub(crate) draining: bool,
    /// Diverted lanes of this partition.
    pub(crate) diverted: Vec<u32>,
    /// Diverted keys inherited from commit metadata whose lane does not exist yet.
    pub(crate) inherited: HashMap<u64, Offset, FxBuildHasher>,
    pub(crate) last_commit: Option<(Offset, String)>,
    pub(crate) committed: Option<Offset>,
}

#[derive(Debug)]
pub(crate) struct Flight<P> {
    pub(crate) lane: u32,
    pub(crate) lane_gen: u32,
    pub(crate) epoch: u32,
    pub(crate) item: Item<P>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SinkKind {
    DeadLetter,
    Divert,
}

#[derive(Debug)]
pub(crate) struct SinkWait {
    pub(crate) src: u32,
    pub(crate) epoch: u32,
    pub(crate) lane: u32,
    pub(crate) lane_gen: u32,
    pub(crate) kind: SinkKind,
    pub(crate) offsets: crate::lane::Offsets,
    pub(crate) bytes: usize,
}

/// The sans-I/O consumer core. See the crate documentation for the model.
pub struct Engine<P> {
    pub(crate) cfg: EngineConfig<P>,
    pub(crate) parts: Vec<Option<Part>>,
    free_parts: Vec<u32>,
    by_tp: HashMap<TopicPartition, u32, FxBuildHasher>,
    next_epoch: u32,
    pub(crate) lanes: Vec<Lane<P>>,
    pub(crate) free_lanes: Vec<u32>,
    pub(crate) flights: Slab<Flight<P>>,
    pub(crate) sinks: Slab<SinkWait>,
    /// Partitions with ready lanes, round-robin.
    pub(crate) ready_parts: VecDeque<u32>,
    /// Lanes whose retry back-off has ended; served before fresh work.
    pub(crate) retry_ready: VecDeque<(u32, u32)>,
    pub(crate) timers: BinaryHeap<Reverse<(Millis, u32, u32)>>,
    pub(crate) now: Millis,
    pub(crate) in_flight: usize,
    pub(crate) held: usize,
    pub(crate) held_bytes: usize,
    pub(crate) waiting_retries: usize,
    pub(crate) paused: Vec<u32>,
    pub(crate) rng: u64,
    pub(crate) actions: Vec<Action<P>>,
    pub(crate) counters: Counters,
    /// Scratch space for routing a fetched record, kept to avoid an allocation per record.
    pub(crate) routed: Vec<(Route, P)>,
    /// What the last call to `fetched` refused, until taken (see [`Engine::take_refused`]).
    pub(crate) refused: Option<P>,
}

impl<P> std::fmt::Debug for Engine<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("ordering", &self.cfg.ordering)
            .field("partitions", &self.by_tp.len())
            .field("in_flight", &self.in_flight)
            .field("held", &self.held)
            .finish_non_exhaustive()
    }
}

impl<P: Clone> Engine<P> {
    /// Creates an engine, or names the configuration field that cannot work.
    pub fn new(cfg: EngineConfig<P>) -> Result<Self, ConfigError> {
        cfg.validate()?;
        let rng = cfg.seed | 1;
        Ok(Engine {
            cfg,
            parts: Vec::new(),
            free_parts: Vec::new(),
            by_tp: HashMap::default(),
            next_epoch: 1,
            lanes: Vec::new(),
            free_lanes: Vec::new(),
            flights: Slab::default(),
            sinks: Slab::default(),
            ready_parts: VecDeque::new(),
            retry_ready: VecDeque::new(),
            timers: BinaryHeap::new(),
            now: 0,
            in_flight: 0,
            held: 0,
            held_bytes: 0,
            waiting_retries: 0,
            paused: Vec::new(),
            rng,
            actions: Vec::new(),
            counters: Counters::default(),
            routed: Vec::new(),
            refused: None,
        })
    }

    /// Takes a partition on, starting at `start` (the committed offset). `metadata` is the string
    /// committed with it: completed offsets it lists are skipped when fetched, and keys it lists
    /// as diverted stay diverted. Unreadable metadata is ignored and reported in the result.
    /// Assigning a partition that is already assigned replaces the old assignment.
    pub fn assign(
        &mut self,
        tp: TopicPartition,
        start: Offset,
        metadata: Option<&str>,
        role: Role,
    ) -> (PartitionHandle, Option<CodecError>) {
        if let Some(h) = self.handle(&tp) {
            self.revoke(h);
        }
        let main = match role {
            Role::Overflow { main } => Some(self.slot(main).expect("main partition is assigned")),
            Role::Main => None,
        };
        let (decoded, warning) = match metadata.filter(|m| !m.is_empty()) {
            None => (codec::Decoded::default(), None),
            Some(m) => match codec::decode(m, start) {
                Ok(d) => (d, None),
                Err(e) => (codec::Decoded::default(), Some(e)),
            },
        };
        let epoch = self.next_epoch;
        self.next_epoch = self.next_epoch.wrapping_add(1).max(1);
        let index = self.free_parts.pop().unwrap_or_else(|| {
            self.parts.push(None);
            (self.parts.len() - 1) as u32
        });
        let mut part = Part {
            tp: tp.clone(),
            epoch,
            role,
            overflow: None,
            tracker: OffsetTracker::new(start, decoded.completed),
            keys: KeyMap::default(),
            shared: None,
            hashed: Vec::new(),
            solo: Vec::new(),
            ready: VecDeque::new(),
            in_ready_parts: false,
            held: 0,
            held_bytes: 0,
            in_flight: 0,
            paused: None,
            resume_at: 0,
            draining: false,
            diverted: Vec::new(),
            inherited: decoded.diverted.into_iter().collect(),
            // What is committed already: nothing to commit until the position moves.
            last_commit: Some((start, metadata.unwrap_or_default().to_owned())),
            committed: Some(start),
        };
        if main.is_none() {
            let shared = match (self.cfg.ordering, self.cfg.no_key) {
                (ProcessingOrder::Partition, _) | (ProcessingOrder::Key, NoKey::PartitionQueue) => {
                    Some(LaneKind::Ordered)
                }
                (ProcessingOrder::Unordered, _) | (ProcessingOrder::Key, NoKey::Unordered) => {
                    Some(LaneKind::Unordered)
                }
                (ProcessingOrder::HashedQueues { .. }, _) => None,
            };
            part.shared = shared.map(|k| self.new_lane(index, None, k));
            if let ProcessingOrder::HashedQueues { queues } = self.cfg.ordering {
                part.hashed = (0..queues)
                    .map(|_| self.new_lane(index, None, LaneKind::Ordered))
                    .collect();
            }
        }
        self.parts[index as usize] = Some(part);
        self.by_tp.insert(tp, index);
        if let Some(m) = main {
            self.part_mut(m).overflow = Some(index);
        }
        (PartitionHandle { index, epoch }, warning)
    }

    /// The current handle of a partition, if it is assigned.
    pub fn handle(&self, tp: &TopicPartition) -> Option<PartitionHandle> {
        let index = *self.by_tp.get(tp)?;
        let epoch = self.parts[index as usize].as_ref()?.epoch;
        Some(PartitionHandle { index, epoch })
    }

    /// Stops starting work from a partition that is being revoked; its in-flight items may
    /// still complete (and count) until [`revoke`](Self::revoke). Returns how many are in flight.
    pub fn drain(&mut self, h: PartitionHandle) -> usize {
        let Some(i) = self.slot(h) else { return 0 };
        let overflow = self.part(i).overflow;
        let mut n = 0;
        for slot in std::iter::once(i).chain(overflow) {
            let p = self.part_mut(slot);
            p.draining = true;
            n += p.in_flight;
        }
        n
    }

    /// Items in flight from a partition (and its overflow partition).
    /// The offset a paused partition must be given next (the record it refused), or `None` when
    /// it is not paused.
    pub fn resume_at(&self, h: PartitionHandle) -> Option<Offset> {
        let p = self.part(self.slot(h)?);
        p.paused.map(|_| p.resume_at)
    }

    /// Items in flight from a partition, its overflow partition included (0 for a stale handle).
    pub fn in_flight_of(&self, h: PartitionHandle) -> usize {
        let Some(i) = self.slot(h) else { return 0 };
        let p = self.part(i);
        p.in_flight + p.overflow.map_or(0, |o| self.part(o).in_flight)
    }

    /// Gives a partition up (and its overflow partition with it). Returns the final commits to
    /// make synchronously; everything still held is dropped (the next owner replays it: duplicates,
    /// never loss) and completions of its in-flight items will be ignored.
    pub fn revoke(&mut self, h: PartitionHandle) -> Vec<Commit> {
        let Some(i) = self.slot(h) else {
            return Vec::new();
        };
        let mut slots = vec![i];
        slots.extend(self.part(i).overflow);
        if let Role::Overflow { main } = self.part(i).role {
            if let Some(m) = self.slot(main) {
                self.part_mut(m).overflow = None;
            }
        }
        let mut commits = Vec::new();
        for slot in slots {
            commits.push(self.commit_of(slot));
            let part = self.parts[slot as usize].take().expect("assigned");
            self.held -= part.held;
            self.held_bytes -= part.held_bytes;
            let lanes: Vec<u32> = part
                .keys
                .values()
                .copied()
                .chain(part.shared)
                .chain(part.hashed.iter().copied())
                .chain(part.solo.iter().copied())
                .collect();
            for l in lanes {
                self.drop_lane(l);
            }
            self.paused.retain(|p| *p != slot);
            self.ready_parts.retain(|p| *p != slot);
            self.by_tp.remove(&part.tp);
            self.free_parts.push(slot);
        }
        // Items of surviving partitions may have waited for the capacity this frees.
        self.check_resumes();
        self.pump();
        commits
    }

    /// Commits for every partition whose position or metadata changed since the last call.
    pub fn commits(&mut self) -> Vec<Commit> {
        let mut out = Vec::new();
        for slot in 0..self.parts.len() as u32 {
            if self.parts[slot as usize].is_none() {
                continue;
            }
            self.prune_diversions(slot);
            let c = self.commit_of(slot);
            let p = self.part_mut(slot);
            let current = Some((c.offset, c.metadata.clone()));
            if p.last_commit != current {
                p.last_commit = current;
                out.push(c);
            }
        }
        out
    }

    /// The driver's commit of `offset` succeeded.
    pub fn committed(&mut self, h: PartitionHandle, offset: Offset) {
        if let Some(i) = self.slot(h) {
            let p = self.part_mut(i);
            p.committed = Some(p.committed.map_or(offset, |c| c.max(offset)));
        }
    }

    /// The driver's commit failed: the next [`commits`](Self::commits) call returns it again.
    pub fn commit_failed(&mut self, h: PartitionHandle) {
        if let Some(i) = self.slot(h) {
            self.part_mut(i).last_commit = None;
        }
    }

    fn commit_of(&mut self, slot: u32) -> Commit {
        let p = self.part(slot);
        let offset = p.tracker.watermark();
        let completed = p.tracker.completed_ranges();
        let diverted = self.diverted_marks(slot);
        let (metadata, truncated_from) = if completed.is_empty() && diverted.is_empty() {
            (String::new(), None)
        } else {
            codec::encode(
                offset,
                &completed,
                &diverted,
                self.cfg.limits.metadata_max_bytes,
            )
        };
        if truncated_from.is_some() {
            self.counters.metadata_truncated += 1;
        }
        let p = self.part(slot);
        Commit {
            partition: PartitionHandle {
                index: slot,
                epoch: p.epoch,
            },
            tp: p.tp.clone(),
            offset,
            metadata,
            truncated_from,
        }
    }

    /// Diverted keys with their marks, for the metadata.
    fn diverted_marks(&self, slot: u32) -> Vec<(u64, Offset)> {
        let p = self.part(slot);
        let mut v: Vec<(u64, Offset)> = p.inherited.iter().map(|(h, m)| (*h, *m)).collect();
        for &l in &p.diverted {
            let lane = &self.lanes[l as usize];
            if let (Some(d), Some(k)) = (&lane.divert, &lane.key) {
                if let Some(mark) = d.mark {
                    v.push((codec::key_hash(k), mark));
                }
            }
        }
        v.sort_unstable();
        v
    }

    /// Forgets diversions whose overflow items are all complete and that hold nothing.
    fn prune_diversions(&mut self, slot: u32) {
        let Some(of) = self.part(slot).overflow else {
            return;
        };
        let wm = self.part(of).tracker.watermark();
        self.part_mut(slot).inherited.retain(|_, mark| *mark >= wm);
        let lanes = std::mem::take(&mut self.part_mut(slot).diverted);
        let mut keep = Vec::with_capacity(lanes.len());
        for l in lanes {
            if self.try_undivert(l, wm) {
                let lane = &self.lanes[l as usize];
                if lane.idle() && lane.kind == LaneKind::Key {
                    self.free_key_lane(l);
                }
            } else {
                keep.push(l);
            }
        }
        self.part_mut(slot).diverted = keep;
    }

    /// Ends a lane's diversion if everything it diverted has been processed from the overflow
    /// partition (whose watermark is `overflow_wm`). Does not touch the partition's list.
    pub(crate) fn try_undivert(&mut self, l: u32, overflow_wm: Offset) -> bool {
        let lane = &mut self.lanes[l as usize];
        match &lane.divert {
            Some(d)
                if d.unacked == 0 && d.barrier == 0 && d.mark.is_none_or(|m| overflow_wm > m) =>
            {
                lane.divert = None;
                true
            }
            Some(_) => false,
            None => true,
        }
    }

    /// Changes the caps while running. Lowered caps admit nothing new until holdings are below
    /// them; raised caps resume what they no longer justify pausing.
    pub fn set_limits(&mut self, limits: crate::Limits) -> Result<(), ConfigError> {
        let mut cfg = self.cfg.clone();
        cfg.limits = limits;
        cfg.validate()?;
        self.cfg = cfg;
        self.check_resumes();
        self.pump();
        Ok(())
    }

    /// Whether actions are waiting to be drained.
    pub fn has_actions(&self) -> bool {
        !self.actions.is_empty()
    }

    /// The actions produced by the events so far, in order.
    pub fn drain_actions(&mut self) -> std::vec::Drain<'_, Action<P>> {
        self.actions.drain(..)
    }

    /// Moves the actions produced so far to the end of `into`. When `into` is empty the two
    /// buffers are swapped, so a driver that keeps one buffer and empties it every time takes
    /// each batch of actions without copying it (an action is about a hundred and fifty bytes,
    /// and a driver takes one per record at least).
    pub fn take_actions(&mut self, into: &mut Vec<Action<P>>) {
        if into.is_empty() {
            std::mem::swap(&mut self.actions, into);
        } else {
            into.append(&mut self.actions);
        }
    }

    // ---- slots and lanes

    pub(crate) fn slot(&self, h: PartitionHandle) -> Option<u32> {
        match self.parts.get(h.index as usize) {
            Some(Some(p)) if p.epoch == h.epoch => Some(h.index),
            _ => None,
        }
    }

    pub(crate) fn part(&self, slot: u32) -> &Part {
        self.parts[slot as usize].as_ref().expect("assigned")
    }

    pub(crate) fn part_mut(&mut self, slot: u32) -> &mut Part {
        self.parts[slot as usize].as_mut().expect("assigned")
    }

    pub(crate) fn new_lane(&mut self, part: u32, key: Option<Arc<[u8]>>, kind: LaneKind) -> u32 {
        match self.free_lanes.pop() {
            Some(l) => {
                // The freed lane's queue keeps a small buffer: most keys come and go with one
                // item each, and a buffer per new lane would be an allocation per record. A hot
                // key's big buffer is not kept for whichever key comes next.
                let old = &mut self.lanes[l as usize];
                let (gen, mut queue) = (old.gen.wrapping_add(1), std::mem::take(&mut old.queue));
                queue.clear();
                if queue.capacity() > KEPT_QUEUE_CAPACITY {
                    queue = VecDeque::new();
                }
                self.lanes[l as usize] = Lane {
                    gen,
                    queue,
                    ..Lane::new(part, key, kind)
                };
                l
            }
            None => {
                self.lanes.push(Lane::new(part, key, kind));
                (self.lanes.len() - 1) as u32
            }
        }
    }

    /// Releases an idle key lane and its map entry.
    pub(crate) fn free_key_lane(&mut self, l: u32) {
        let lane = &mut self.lanes[l as usize];
        let (part, key) = (lane.part, lane.key.take());
        lane.live = false;
        if let Some(k) = key {
            if let Some(p) = self.parts[part as usize].as_mut() {
                p.keys.remove(&k);
            }
        }
        self.free_lanes.push(l);
    }

    fn drop_lane(&mut self, l: u32) {
        let lane = &mut self.lanes[l as usize];
        lane.live = false;
        lane.key = None;
        lane.queue.clear();
        if lane.waiting {
            self.waiting_retries -= 1;
        }
        lane.waiting = false;
        self.free_lanes.push(l);
    }
}
