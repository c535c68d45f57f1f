//! Dispatch and outcomes: fair round-robin starts, completions, retries, sink acknowledgements,
//! time, and resuming paused partitions.

use std::cmp::Reverse;

use crate::engine::{Engine, Flight, SinkKind};
use crate::lane::{Item, LaneKind};
use crate::types::*;
use crate::{Millis, Offset};

impl<P: Clone> Engine<P> {
    /// The item finished successfully. Its records complete once all their items have.
    pub fn complete(&mut self, id: WorkId) -> Outcome {
        let Some((l, item)) = self.land(id) else {
            return Outcome::Stale;
        };
        self.lanes[l as usize].bytes -= item.bytes;
        self.counters.completed += item.offsets.len() as u64;
        self.finish(item.src, &item);
        self.pass_barrier(l, item.src);
        self.settle(l);
        Outcome::Applied
    }

    /// An item of a diverted lane finished for good. If it came from the main partition it is
    /// one the diversion waits for; once none is left, the lane's queue goes to the overflow.
    fn pass_barrier(&mut self, l: u32, src: u32) {
        let lane = &mut self.lanes[l as usize];
        let Some(d) = lane.divert.as_mut() else {
            return;
        };
        if d.barrier == 0 || src != lane.part {
            return;
        }
        d.barrier -= 1;
        if d.barrier == 0 {
            self.flush_to_overflow(l);
        }
    }

    /// The item failed. It is retried after a back-off (its key waits, nothing else does), or
    /// dead-lettered when it has used its attempts or can never succeed.
    pub fn fail(&mut self, id: WorkId, failure: Failure) -> Outcome {
        let Some((l, mut item)) = self.land(id) else {
            return Outcome::Stale;
        };
        item.tries += 1;
        let mut exhausted = "max_attempts";
        let (error, counted) = match failure {
            Failure::Retry(e) => (e, true),
            Failure::TimedOut(e) => {
                exhausted = "timeout";
                (e, true)
            }
            Failure::Transient(e) => (e, false),
            Failure::Fatal { reason, error } => {
                item.attempts += 1;
                item.last_error = Some(error);
                return self.dead_letter_failed(l, item, reason);
            }
        };
        if counted {
            item.attempts += 1;
        }
        item.last_error = Some(error);
        if item.attempts >= self.cfg.retry.max_attempts {
            return self.dead_letter_failed(l, item, exhausted);
        }
        self.counters.retried += 1;
        let l = if self.lanes[l as usize].kind == LaneKind::Unordered {
            self.lanes[l as usize].bytes -= item.bytes;
            let part = self.lanes[l as usize].part;
            let solo = self.new_lane(part, None, LaneKind::Solo);
            self.part_mut(part).solo.push(solo);
            self.lanes[solo as usize].bytes += item.bytes;
            self.settle(l);
            solo
        } else {
            l
        };
        let delay = self.backoff(item.tries);
        let lane = &mut self.lanes[l as usize];
        lane.queue.push_front(item);
        lane.waiting = true;
        self.waiting_retries += 1;
        self.timers.push(Reverse((self.now + delay, l, lane.gen)));
        self.settle(l);
        Outcome::Applied
    }

    /// A sink acknowledged an item. `overflow_offset` is where a diverted item landed.
    pub fn sink_acked(&mut self, id: SinkId, overflow_offset: Option<Offset>) -> Outcome {
        let Some(w) = self.sinks.remove(id.slot, id.gen) else {
            return Outcome::Stale;
        };
        if !self.valid(w.src, w.epoch) {
            self.counters.stale += 1;
            return Outcome::Stale;
        }
        self.unhold(w.src, 1, w.bytes);
        let tracker = &mut self.part_mut(w.src).tracker;
        w.offsets.for_each(|o| {
            tracker.complete(o);
        });
        let lane = &mut self.lanes[w.lane as usize];
        let lane_ok = lane.live && lane.gen == w.lane_gen;
        if w.kind == SinkKind::Divert && lane_ok {
            if let Some(d) = lane.divert.as_mut() {
                d.unacked -= 1;
                if let Some(o) = overflow_offset {
                    d.mark = Some(d.mark.map_or(o, |m| m.max(o)));
                }
            }
        }

        self.check_resumes();
        self.pump();
        Outcome::Applied
    }

    /// Whether a sink item still matters: its partition is still assigned to this engine. A failed
    /// produce of an item that no longer matters need not be sent again (the next owner replays
    /// its record).
    pub fn sink_is_live(&self, id: SinkId) -> bool {
        self.sinks
            .get(id.slot, id.gen)
            .is_some_and(|w| self.valid(w.src, w.epoch))
    }

    /// Time moved on (milliseconds on the driver's monotonic clock): retries whose back-off has
    /// ended become ready.
    pub fn advance_time(&mut self, now: Millis) {
        self.now = self.now.max(now);
        while let Some(&Reverse((due, l, gen))) = self.timers.peek() {
            if due > self.now {
                break;
            }
            self.timers.pop();
            let lane = &mut self.lanes[l as usize];
            if lane.live && lane.gen == gen && lane.waiting {
                lane.waiting = false;
                self.waiting_retries -= 1;
                if !lane.listed {
                    lane.listed = true;
                    self.retry_ready.push_back((l, gen));
                }
            }
        }
        self.pump();
    }

    /// When the next retry is due, so a driver knows how long it may sleep.
    pub fn next_timer(&self) -> Option<Millis> {
        self.timers.peek().map(|Reverse((due, _, _))| *due)
    }

    /// Removes an item from flight; `None` if it is stale (an earlier assignment).
    fn land(&mut self, id: WorkId) -> Option<(u32, Item<P>)> {
        let Flight {
            lane,
            lane_gen,
            epoch,
            item,
        } = self.flights.remove(id.slot, id.gen)?;
        self.in_flight -= 1;
        if !self.valid(item.src, epoch) || self.lanes[lane as usize].gen != lane_gen {
            self.counters.stale += 1;
            self.pump();
            return None;
        }
        self.part_mut(item.src).in_flight -= 1;
        self.lanes[lane as usize].in_flight -= 1;
        Some((lane, item))
    }

    fn dead_letter_failed(&mut self, l: u32, item: Item<P>, reason: &'static str) -> Outcome {
        // The item stays held while the sink has it: move it from the lane's count to the sink.
        self.lanes[l as usize].bytes -= item.bytes;
        self.unhold(item.src, 1, item.bytes);
        let src = item.src;
        self.send_to_sink(l, item, SinkKind::DeadLetter, reason);
        // Handing an item to the dead-letter sink is how its key moves past it.
        self.pass_barrier(l, src);
        self.settle(l);
        Outcome::Applied
    }

    /// An item left the engine: release what it held and complete its records.
    pub(crate) fn finish(&mut self, src: u32, item: &Item<P>) {
        self.unhold(src, 1, item.bytes);
        let tracker = &mut self.part_mut(src).tracker;
        item.offsets.for_each(|o| {
            tracker.complete(o);
        });
    }

    /// After a lane changed: drop it if idle, list it if ready, then resume and dispatch.
    fn settle(&mut self, l: u32) {
        let lane = &self.lanes[l as usize];
        if lane.idle() && !lane.waiting {
            match lane.kind {
                LaneKind::Key => self.free_key_lane(l),
                LaneKind::Solo => {
                    let lane = &mut self.lanes[l as usize];
                    lane.live = false;
                    let part = lane.part;
                    self.part_mut(part).solo.retain(|x| *x != l);
                    self.free_lanes.push(l);
                }
                LaneKind::Ordered | LaneKind::Unordered => {}
            }
        } else {
            self.mark_ready(l);
        }
        self.check_resumes();
        self.pump();
    }

    pub(crate) fn mark_ready(&mut self, l: u32) {
        let lane = &mut self.lanes[l as usize];
        if lane.listed || !lane.ready() {
            return;
        }
        let part = lane.part;
        let p = self.parts[part as usize].as_mut().expect("assigned");
        if p.draining {
            return;
        }
        self.lanes[l as usize].listed = true;
        p.ready.push_back(l);
        if !p.in_ready_parts {
            p.in_ready_parts = true;
            self.ready_parts.push_back(part);
        }
    }

    /// Starts items while there is capacity: retries first, then one lane per partition in turn,
    /// so that no partition or key starves the others.
    pub(crate) fn pump(&mut self) {
        while self.in_flight < self.cfg.limits.max_in_flight {
            if let Some((l, gen)) = self.retry_ready.pop_front() {
                let lane = &mut self.lanes[l as usize];
                if !lane.live || lane.gen != gen {
                    continue;
                }
                lane.listed = false;
                let part = lane.part;
                let draining = self.part(part).draining;
                if !draining && self.lanes[l as usize].ready() {
                    self.start(l);
                }
                self.mark_ready(l);
                continue;
            }
            if self.waiting_retries >= self.cfg.limits.max_waiting_retries {
                break; // only retries start while the retry budget is spent
            }
            let Some(pi) = self.ready_parts.pop_front() else {
                break;
            };
            let p = self.part_mut(pi);
            p.in_ready_parts = false;
            if p.draining {
                let stale: Vec<u32> = p.ready.drain(..).collect();
                for l in stale {
                    self.lanes[l as usize].listed = false;
                }
                continue;
            }
            let Some(l) = p.ready.pop_front() else {
                continue;
            };
            self.lanes[l as usize].listed = false;
            if self.lanes[l as usize].ready() {
                self.start(l);
            }
            self.mark_ready(l);
            let p = self.part_mut(pi);
            if !p.ready.is_empty() && !p.in_ready_parts {
                p.in_ready_parts = true;
                self.ready_parts.push_back(pi);
            }
        }
    }

    fn start(&mut self, l: u32) {
        let lane = &mut self.lanes[l as usize];
        let item = lane.queue.pop_front().expect("a ready lane has an item");
        if lane.queue.is_empty() {
            lane.coalescing = false;
        }
        let key = lane.key.clone();
        let src = item.src;
        let work_payload = item.payload.clone();
        let (offset, records, attempt) =
            (item.offsets.last(), item.offsets.len(), item.attempts + 1);
        let id = self.launch(l, item);
        let p = self.part(src);
        let (tp, epoch) = (p.tp.clone(), p.epoch);
        self.counters.dispatched += 1;
        self.actions.push(Action::Dispatch(Work {
            id,
            partition: PartitionHandle { index: src, epoch },
            tp,
            key,
            offset,
            records,
            attempt,
            payload: work_payload,
        }));
    }

    /// Puts `item` of lane `l` in flight.
    pub(crate) fn launch(&mut self, l: u32, item: Item<P>) -> WorkId {
        let now = self.now;
        let lane = &mut self.lanes[l as usize];
        if lane.in_flight == 0 {
            lane.in_flight_since = now;
        }
        lane.in_flight += 1;
        let lane_gen = lane.gen;
        self.in_flight += 1;
        let p = self.part_mut(item.src);
        p.in_flight += 1;
        let epoch = p.epoch;
        let (slot, gen) = self.flights.insert(Flight {
            lane: l,
            lane_gen,
            epoch,
            item,
        });
        WorkId { slot, gen }
    }

    pub(crate) fn hold(&mut self, src: u32, n: usize, bytes: usize) {
        let p = self.part_mut(src);
        p.held += n;
        p.held_bytes += bytes;
        self.held += n;
        self.held_bytes += bytes;
    }

    pub(crate) fn unhold(&mut self, src: u32, n: usize, bytes: usize) {
        let p = self.part_mut(src);
        p.held -= n;
        p.held_bytes -= bytes;
        self.held -= n;
        self.held_bytes -= bytes;
    }

    pub(crate) fn valid(&self, slot: u32, epoch: u32) -> bool {
        matches!(self.parts.get(slot as usize), Some(Some(p)) if p.epoch == epoch)
    }

    /// Resumes paused partitions whose scope has drained to its low-water mark.
    pub(crate) fn check_resumes(&mut self) {
        if self.paused.is_empty() {
            return;
        }
        let pct = self.cfg.limits.resume_percent as usize;
        let low = |cap: usize| cap / 100 * pct + cap % 100 * pct / 100;
        let l = self.cfg.limits.clone();
        let mut i = 0;
        while i < self.paused.len() {
            let slot = self.paused[i];
            let p = self.part(slot);
            let (reason, lane) = p.paused.expect("listed as paused");
            let ok = match reason {
                PauseReason::PartitionFull => {
                    p.held <= low(l.partition_max_records)
                        && p.held_bytes <= low(l.partition_max_bytes)
                }
                PauseReason::GlobalFull => {
                    self.held <= low(l.global_max_records)
                        && self.held_bytes <= low(l.global_max_bytes)
                }
                PauseReason::KeyFull => {
                    let (id, gen) = lane.expect("key pauses name the lane");
                    let lane = &self.lanes[id as usize];
                    !lane.live
                        || lane.gen != gen
                        || (lane.count() <= low(l.key_max_records)
                            && lane.bytes <= low(l.key_max_bytes))
                }
                PauseReason::UncommittedFull => {
                    p.tracker.uncommitted() <= low(l.partition_max_uncommitted)
                }
            };
            if !ok {
                i += 1;
                continue;
            }
            self.paused.swap_remove(i);
            let p = self.part_mut(slot);
            p.paused = None;
            let (tp, epoch) = (p.tp.clone(), p.epoch);
            self.actions.push(Action::Resume {
                partition: PartitionHandle { index: slot, epoch },
                tp,
            });
        }
    }

    /// Exponential back-off with full jitter: anywhere from 0 to the exponential bound, so
    /// retries of many keys that failed together spread over the whole window instead of
    /// hitting the downstream in lockstep. Full rather than equal jitter (half fixed, half
    /// random): the same spread of retries in time with less total waiting, and a key whose
    /// failure was a blip is retried sooner on average.
    pub(crate) fn backoff(&mut self, tries: u32) -> Millis {
        let r = &self.cfg.retry;
        let exp = r
            .base_backoff_ms
            .saturating_mul(1u64 << tries.saturating_sub(1).min(40))
            .min(r.max_backoff_ms);
        self.next_rand() % (exp.saturating_add(1))
    }

    /// Diverted keys a partition may have: the configured bound, and no more than the commit
    /// metadata can always carry.
    pub(crate) fn max_diverted(&self) -> usize {
        let l = &self.cfg.limits;
        l.max_diverted_keys
            .min(crate::codec::diverted_capacity(l.metadata_max_bytes))
    }

    /// xorshift64*: deterministic for a given seed, which simulations rely on.
    pub(crate) fn next_rand(&mut self) -> u64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[cfg(test)]
mod tests;
