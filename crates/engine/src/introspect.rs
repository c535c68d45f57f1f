//! What the engine can tell about itself, cheaply enough to ask every second.

use std::cmp::Reverse;

use crate::engine::Engine;
use crate::types::*;
use crate::Millis;

impl<P: Clone> Engine<P> {
    /// Per-partition figures.
    pub fn partition_stats(&self) -> Vec<PartitionStats> {
        self.parts
            .iter()
            .flatten()
            .map(|p| PartitionStats {
                tp: p.tp.clone(),
                epoch: p.epoch,
                role: p.role,
                watermark: p.tracker.watermark(),
                committed: p.committed,
                held: p.held,
                held_bytes: p.held_bytes,
                in_flight: p.in_flight,
                uncommitted: p.tracker.uncommitted(),
                active_keys: p.keys.len(),
                diverted_keys: p.diverted.len() + p.inherited.len(),
                paused: p.paused.map(|r| r.0),
                draining: p.draining,
            })
            .collect()
    }

    /// The `n` busiest lanes by queued items and by time in flight. Scans active lanes only
    /// (idle keys have none), so it is cheap enough to call every second.
    pub fn top_keys(&self, n: usize) -> (Vec<KeyStats>, Vec<KeyStats>) {
        let mut all: Vec<(usize, u64, u32)> = self
            .lanes
            .iter()
            .enumerate()
            .filter(|(_, l)| l.live && (l.in_flight > 0 || !l.queue.is_empty()))
            .map(|(i, l)| {
                let age = if l.in_flight > 0 {
                    self.now.saturating_sub(l.in_flight_since)
                } else {
                    0
                };
                (l.queue.len(), age, i as u32)
            })
            .collect();
        all.sort_unstable_by_key(|e| Reverse((e.0, e.1)));
        let by_queued = all.iter().take(n).map(|e| self.key_stats(e.2)).collect();
        all.sort_unstable_by_key(|e| Reverse((e.1, e.0)));
        let by_time = all
            .iter()
            .take(n)
            .filter(|e| e.1 > 0)
            .map(|e| self.key_stats(e.2))
            .collect();
        (by_queued, by_time)
    }

    fn key_stats(&self, l: u32) -> KeyStats {
        let lane = &self.lanes[l as usize];
        KeyStats {
            tp: self.part(lane.part).tp.clone(),
            key: lane.key.clone(),
            queued: lane.queue.len(),
            bytes: lane.bytes,
            in_flight: lane.in_flight as usize,
            in_flight_ms: if lane.in_flight > 0 {
                self.now.saturating_sub(lane.in_flight_since)
            } else {
                0
            },
            diverted: lane.divert.is_some(),
            coalescing: lane.coalescing,
        }
    }

    /// The items in flight for `older_than` milliseconds or more, oldest first: a handler that
    /// hangs holds up its key (and its partition's commits) without failing, so the driver
    /// raises an alarm from this. Scans the items in flight, so it suits a once-a-second check.
    pub fn stuck(&self, older_than: Millis) -> Vec<Stuck> {
        let mut stuck: Vec<Stuck> = self
            .flights
            .iter()
            .filter_map(|f| {
                let lane = &self.lanes[f.lane as usize];
                if !lane.live || lane.gen != f.lane_gen || !self.valid(f.item.src, f.epoch) {
                    return None;
                }
                let in_flight_ms = self.now.saturating_sub(lane.in_flight_since);
                (in_flight_ms >= older_than).then(|| Stuck {
                    tp: self.part(f.item.src).tp.clone(),
                    key: lane.key.clone(),
                    offset: f.item.offsets.first(),
                    in_flight_ms,
                })
            })
            .collect();
        stuck.sort_unstable_by_key(|s| Reverse(s.in_flight_ms));
        stuck
    }

    /// Running totals since the engine was created.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Items in flight across the engine.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Items and bytes the engine owns (queued, in flight, waiting for a retry, or at a sink).
    pub fn held(&self) -> (usize, usize) {
        (self.held, self.held_bytes)
    }
}
