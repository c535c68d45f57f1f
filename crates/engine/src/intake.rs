//! Intake: a fetched record becomes items in lanes, within every limit.
//!
//! Limits are checked *before* anything is taken: a record that would break one is refused and
//! its partition paused and sought back to it, so caps are never exceeded, not even by a fetch
//! batch. One exception keeps progress certain: a record is always taken by a partition (or an
//! engine) that holds nothing, even if it alone is bigger than a byte cap.

use std::sync::Arc;

use crate::codec;
use crate::config::{HotKeyPolicy, ProcessingOrder};
use crate::engine::{Engine, SinkKind, SinkWait};
use crate::lane::{Diversion, Item, LaneKind, Route};
use crate::offsets::Fetch;
use crate::types::*;
use crate::Offset;

impl<P: Clone> Engine<P> {
    /// A record was fetched. `items` are its shares by key — usually one, several when the record
    /// must be applied under several keys (an update mirrored to a linked parent row); none means
    /// there is nothing to do. `bytes` is the weight of each item for the byte caps.
    pub fn fetched<K, I>(
        &mut self,
        h: PartitionHandle,
        offset: Offset,
        bytes: usize,
        items: I,
    ) -> Intake
    where
        K: AsRef<[u8]>,
        I: IntoIterator<Item = (Option<K>, P)>,
    {
        self.refused = None;
        let slot = match self.admit(h, offset) {
            Ok(slot) => slot,
            Err(intake) => return intake,
        };
        if self.part(slot).role != Role::Main {
            debug_assert!(false, "overflow records go through fetched_overflow");
            return Intake::Stale;
        }
        // A buffer kept between calls: no allocation per record.
        let mut routed = std::mem::take(&mut self.routed);
        routed.extend(
            items
                .into_iter()
                .map(|(k, payload)| (self.route(slot, k.as_ref().map(|k| k.as_ref())), payload)),
        );
        self.take(slot, slot, offset, bytes, routed)
    }

    /// The first item of the record [`Engine::fetched`] just refused for a limit, handed back
    /// for a caller that would rather keep it than fetch it again: it is the record at the
    /// paused partition's `seek_to`. `None` when the last call refused nothing, or refused
    /// because the partition was paused already (its `seek_to` is an earlier record).
    pub fn take_refused(&mut self) -> Option<P> {
        self.refused.take()
    }

    /// A record was fetched from an overflow partition: an item diverted earlier (by this
    /// engine or a previous owner). It joins its key's lane in the main partition; the key stays
    /// diverted until it is done, so the key's later main records cannot overtake it.
    pub fn fetched_overflow<K: AsRef<[u8]>>(
        &mut self,
        h: PartitionHandle,
        offset: Offset,
        key: Option<K>,
        bytes: usize,
        payload: P,
    ) -> Intake {
        let slot = match self.admit(h, offset) {
            Ok(slot) => slot,
            Err(intake) => return intake,
        };
        let Role::Overflow { main } = self.part(slot).role else {
            debug_assert!(false, "main records go through fetched");
            return Intake::Stale;
        };
        let main = self.slot(main).expect("overflow outlives its main");
        let mut routed = std::mem::take(&mut self.routed);
        routed.push((self.route(main, key.as_ref().map(|k| k.as_ref())), payload));
        self.take(slot, main, offset, bytes, routed)
    }

    /// The checks every fetched record goes through first.
    pub(crate) fn admit(&mut self, h: PartitionHandle, offset: Offset) -> Result<u32, Intake> {
        let Some(slot) = self.slot(h) else {
            self.counters.stale += 1;
            return Err(Intake::Stale);
        };
        let p = self.part(slot);
        if p.draining {
            self.counters.stale += 1;
            return Err(Intake::Stale);
        }
        if p.paused.is_some() {
            self.counters.refused += 1;
            return Err(Intake::Refused);
        }
        match p.tracker.classify(offset) {
            Fetch::Stale => {
                self.counters.stale += 1;
                Err(Intake::Stale)
            }
            Fetch::AlreadyComplete => {
                self.part_mut(slot).tracker.fetch(offset, 0);
                self.counters.skipped += 1;
                Err(Intake::Skipped)
            }
            Fetch::Tracked => Ok(slot),
        }
    }

    /// Takes a routed record into the lanes of `lane_part`, unless a limit refuses it.
    fn take(
        &mut self,
        slot: u32,
        lane_part: u32,
        offset: Offset,
        bytes: usize,
        mut routed: Vec<(Route, P)>,
    ) -> Intake {
        let from_overflow = lane_part != slot;
        if routed.is_empty() {
            self.routed = routed;
            self.part_mut(slot).tracker.fetch(offset, 0);
            self.counters.skipped += 1;
            return Intake::Skipped;
        }
        if let Some(reason) = self.refusal(slot, lane_part, from_overflow, &routed, bytes) {
            self.refused = routed.drain(..).next().map(|(_, payload)| payload);
            routed.clear();
            self.routed = routed;
            self.refuse(slot, offset, reason);
            return Intake::Refused;
        }
        self.counters.fetched += 1;
        self.part_mut(slot)
            .tracker
            .fetch(offset, routed.len() as u32);
        for (route, payload) in routed.drain(..) {
            let lane = match route {
                Route::Shared(l) => l,
                Route::Key(_, Some(l)) => l,
                Route::Key(key, None) => self.key_lane(lane_part, key),
            };
            let item = Item::fetched(slot, offset, payload, bytes);
            self.place(lane, item, from_overflow, offset);
        }
        self.routed = routed;
        self.pump();
        Intake::Accepted
    }

    fn route(&self, part: u32, key: Option<&[u8]>) -> Route {
        let p = self.part(part);
        match (self.cfg.ordering, key) {
            (ProcessingOrder::HashedQueues { queues }, k) => {
                let h = codec::key_hash(k.unwrap_or_default());
                Route::Shared(p.hashed[(h % u64::from(queues)) as usize])
            }
            (ProcessingOrder::Key, Some(k)) => match p.keys.get_key_value(k) {
                Some((k, l)) => Route::Key(k.clone(), Some(*l)),
                None => Route::Key(Arc::from(k), None),
            },
            _ => Route::Shared(p.shared.expect("shared lane exists for this ordering")),
        }
    }

    /// Why this record cannot be taken now, if it cannot.
    fn refusal(
        &self,
        slot: u32,
        lane_part: u32,
        from_overflow: bool,
        routed: &[(Route, P)],
        bytes: usize,
    ) -> Option<(PauseReason, Option<(u32, u32)>)> {
        let l = &self.cfg.limits;
        if let Some(reason) = self.scope_refusal(slot, routed.len(), bytes) {
            return Some((reason, None));
        }
        for (i, (route, _)) in routed.iter().enumerate() {
            let Route::Key(_, Some(lane_id)) = route else {
                continue;
            };
            let lane = &self.lanes[*lane_id as usize];
            // Items of this same record ahead of this one in the same lane.
            let ahead = routed[..i]
                .iter()
                .filter(|(r, _)| matches!(r, Route::Key(_, Some(x)) if x == lane_id))
                .count();
            let count = lane.count() + ahead;
            let full = count > 0
                && (count + 1 > l.key_max_records
                    || lane.bytes + bytes * (ahead + 1) > l.key_max_bytes);
            let sending = lane.divert.as_ref().is_some_and(|d| d.barrier == 0);
            if !full || (sending && !from_overflow) {
                continue;
            }
            let backpressure = from_overflow
                || match &self.cfg.hot_key {
                    HotKeyPolicy::Backpressure => true,
                    // Merging needs a queued item to merge into.
                    HotKeyPolicy::Coalesce(_) => lane.queue.is_empty() && ahead == 0,
                    // Nothing may reach the overflow while an earlier item of the key runs: the
                    // partition waits for that one item (see `Diversion::barrier`).
                    HotKeyPolicy::Divert => {
                        lane.divert.is_some() || lane.in_flight > 0 || !self.can_divert(lane_part)
                    }
                    HotKeyPolicy::DeadLetter => false,
                };
            if backpressure {
                return Some((PauseReason::KeyFull, Some((*lane_id, lane.gen))));
            }
        }
        None
    }

    /// Why `n` items of `bytes` each cannot be taken from partition `slot` now, by the caps of
    /// the partition and of the engine (the key caps are the caller's to check).
    pub(crate) fn scope_refusal(&self, slot: u32, n: usize, bytes: usize) -> Option<PauseReason> {
        let l = &self.cfg.limits;
        let p = self.part(slot);
        let nb = bytes.saturating_mul(n);
        if p.tracker.uncommitted() >= l.partition_max_uncommitted {
            return Some(PauseReason::UncommittedFull);
        }
        if p.held > 0
            && (p.held + n > l.partition_max_records || p.held_bytes + nb > l.partition_max_bytes)
        {
            return Some(PauseReason::PartitionFull);
        }
        if self.held > 0
            && (self.held + n > l.global_max_records || self.held_bytes + nb > l.global_max_bytes)
        {
            return Some(PauseReason::GlobalFull);
        }
        None
    }

    fn refuse(&mut self, slot: u32, offset: Offset, reason: (PauseReason, Option<(u32, u32)>)) {
        if let (PauseReason::KeyFull, Some((l, _)), HotKeyPolicy::Divert) =
            (reason.0, reason.1, &self.cfg.hot_key)
        {
            let lane = &self.lanes[l as usize];
            if lane.divert.is_none() && lane.in_flight > 0 && self.can_divert(lane.part) {
                self.begin_diversion(l);
            }
        }
        self.counters.refused += 1;
        self.counters.pauses += 1;
        let p = self.part_mut(slot);
        p.paused = Some(reason);
        p.resume_at = offset;
        let (tp, epoch) = (p.tp.clone(), p.epoch);
        self.paused.push(slot);
        self.actions.push(Action::Pause {
            partition: PartitionHandle { index: slot, epoch },
            tp,
            seek_to: offset,
            reason: reason.0,
        });
    }

    /// The lane of `key`, created on first use. A new lane inherits a diversion recorded in the
    /// commit metadata by a previous owner.
    pub(crate) fn key_lane(&mut self, part: u32, key: Arc<[u8]>) -> u32 {
        let l = self.new_lane(part, Some(key.clone()), LaneKind::Key);
        let p = self.part_mut(part);
        if !p.inherited.is_empty() {
            if let Some(mark) = p.inherited.remove(&codec::key_hash(&key)) {
                p.diverted.push(l);
                self.lanes[l as usize].divert = Some(Diversion {
                    mark: Some(mark),
                    ..Diversion::default()
                });
            }
        }
        self.part_mut(part).keys.insert(key, l);
        l
    }

    /// Puts an accepted item into its lane, applying the hot-key policy at the key's cap.
    fn place(&mut self, l: u32, item: Item<P>, from_overflow: bool, offset: Offset) {
        let lane = &self.lanes[l as usize];
        let part = lane.part;
        if lane.kind == LaneKind::Key {
            if from_overflow {
                // Items coming back from the overflow keep the key diverted until they are done.
                if self.lanes[l as usize].divert.is_none() {
                    self.part_mut(part).diverted.push(l);
                }
                let d = self.lanes[l as usize]
                    .divert
                    .get_or_insert_with(Diversion::default);
                d.mark = Some(d.mark.map_or(offset, |m| m.max(offset)));
            } else if let Some(d) = &lane.divert {
                if d.barrier > 0 {
                    return self.enqueue(l, item); // within the cap: refused otherwise
                }
                let wm = self.overflow_watermark(part);
                if wm.is_some_and(|wm| self.try_undivert(l, wm)) {
                    self.part_mut(part).diverted.retain(|x| *x != l);
                } else {
                    return self.send_to_sink(l, item, SinkKind::Divert, "hot_key");
                }
            }
            let lim = &self.cfg.limits;
            let lane = &self.lanes[l as usize];
            let count = lane.count();
            let full = count > 0
                && (count + 1 > lim.key_max_records || lane.bytes + item.bytes > lim.key_max_bytes);
            let can_merge = !lane.queue.is_empty();
            if (full || (lane.coalescing && can_merge)) && !from_overflow {
                match self.cfg.hot_key.clone() {
                    HotKeyPolicy::Coalesce(merge) if can_merge => {
                        return self.coalesce(l, item, &*merge)
                    }
                    HotKeyPolicy::Coalesce(_) => {} // refused earlier unless it fits
                    HotKeyPolicy::Divert => return self.divert_lane(l, item),
                    HotKeyPolicy::DeadLetter => {
                        return self.send_to_sink(l, item, SinkKind::DeadLetter, "key_queue_full")
                    }
                    HotKeyPolicy::Backpressure => {} // refused earlier unless it fits
                }
            }
        }
        self.enqueue(l, item);
    }

    fn enqueue(&mut self, l: u32, item: Item<P>) {
        let (src, bytes) = (item.src, item.bytes);
        let lane = &mut self.lanes[l as usize];
        lane.bytes += bytes;
        lane.queue.push_back(item);
        self.hold(src, 1, bytes);
        self.mark_ready(l);
    }

    fn overflow_watermark(&self, part: u32) -> Option<Offset> {
        let of = self.part(part).overflow?;
        Some(self.part(of).tracker.watermark())
    }

    /// Folds every queued item of the lane into one, then `item` into it; from now on new items
    /// merge into the tail until the queue drains.
    fn coalesce(&mut self, l: u32, item: Item<P>, merge: &dyn crate::config::Merge<P>) {
        let lane = &mut self.lanes[l as usize];
        lane.coalescing = true;
        let key = lane.key.clone().unwrap_or_else(|| Arc::from(&[][..]));
        let folded: Vec<Item<P>> = lane.queue.drain(1..).collect();
        for q in &folded {
            // Queued items already count as held; they stop counting as items of their own.
            self.lanes[l as usize].bytes -= q.bytes;
            self.unhold(q.src, 1, q.bytes);
        }
        for newer in folded.into_iter().chain(std::iter::once(item)) {
            let lane = &mut self.lanes[l as usize];
            let tail = lane.queue.back_mut().expect("a coalescing lane has a tail");
            debug_assert_eq!(tail.src, newer.src, "main and overflow items never merge");
            let old = tail.bytes;
            let new = merge.merge(&key, &mut tail.payload, newer.payload);
            tail.offsets.push(newer.offsets);
            tail.bytes = new;
            let src = tail.src;
            lane.bytes = lane.bytes - old + new;
            self.unhold(src, 0, old);
            self.hold(src, 0, new);
            self.counters.coalesced += 1;
        }
    }

    /// Diverts the lane: its queued items and `item` go to the overflow sink, in order, and so
    /// will its later items until it returns to the main path.
    fn divert_lane(&mut self, l: u32, item: Item<P>) {
        debug_assert_eq!(
            self.lanes[l as usize].in_flight, 0,
            "refused while a key item runs"
        );
        self.begin_diversion(l);
        self.flush_to_overflow(l);
        self.send_to_sink(l, item, SinkKind::Divert, "hot_key");
    }

    /// A main partition may divert one more key: it has an overflow partition, and room for the
    /// key in its commit metadata.
    fn can_divert(&self, part: u32) -> bool {
        let p = self.part(part);
        p.overflow.is_some() && p.diverted.len() + p.inherited.len() < self.max_diverted()
    }

    /// Marks a lane diverted. If an item of the key is running, that item is the barrier: the
    /// lane's queued items go to the overflow only once it has finished.
    fn begin_diversion(&mut self, l: u32) {
        let lane = &mut self.lanes[l as usize];
        if lane.divert.is_some() {
            return;
        }
        lane.divert = Some(Diversion {
            barrier: lane.in_flight,
            ..Diversion::default()
        });
        lane.coalescing = false;
        let part = lane.part;
        self.part_mut(part).diverted.push(l);
    }

    /// Sends every queued item of a diverted lane to the overflow, in order.
    pub(crate) fn flush_to_overflow(&mut self, l: u32) {
        let lane = &mut self.lanes[l as usize];
        if lane.waiting {
            lane.waiting = false;
            self.waiting_retries -= 1;
        }
        let queued: Vec<Item<P>> = lane.queue.drain(..).collect();
        for q in queued {
            self.lanes[l as usize].bytes -= q.bytes;
            self.unhold(q.src, 1, q.bytes);
            self.send_to_sink(l, q, SinkKind::Divert, "hot_key");
        }
    }

    /// Hands an item that is not held by a lane to a sink; it stays held until acknowledged.
    pub(crate) fn send_to_sink(
        &mut self,
        l: u32,
        item: Item<P>,
        kind: SinkKind,
        reason: &'static str,
    ) {
        let src = item.src;
        self.hold(src, 1, item.bytes);
        let lane = &mut self.lanes[l as usize];
        if kind == SinkKind::Divert {
            lane.divert.get_or_insert_with(Diversion::default).unacked += 1;
        }
        let (key, lane_gen) = (lane.key.clone(), lane.gen);
        let p = self.part(src);
        let (tp, epoch) = (p.tp.clone(), p.epoch);
        let records = item.offsets.len();
        let offset = item.offsets.last();
        let (slot, gen) = self.sinks.insert(SinkWait {
            src,
            epoch,
            lane: l,
            lane_gen,
            kind,
            offsets: item.offsets,
            bytes: item.bytes,
        });
        let record = SinkRecord {
            id: SinkId { slot, gen },
            partition: PartitionHandle { index: src, epoch },
            tp,
            key,
            offset,
            records,
            attempts: item.attempts,
            reason,
            error: item.last_error,
            payload: item.payload,
        };
        self.actions.push(match kind {
            SinkKind::Divert => {
                self.counters.diverted += records as u64;
                Action::Divert(record)
            }
            SinkKind::DeadLetter => {
                self.counters.dead_lettered += records as u64;
                Action::DeadLetter(record)
            }
        });
    }
}
