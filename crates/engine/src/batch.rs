//! Gathering dispatched work into batches for a handler that takes many records per call.
//!
//! Why here, on top of the engine's dispatches rather than beside them: the engine already puts
//! at most one item of a key in flight, in offset order, and starts the next only once the
//! previous one is done. A batch made of dispatched items therefore holds at most one item per
//! key (from any partition), and a key's items reach the handler in offset order within and
//! across batches — per-key order holds with no rule of the batch's own. Commits, retries and
//! dead letters stay per item: the driver reports each item of a batch on its own.

use crate::types::WorkId;
use crate::Millis;

/// Items dispatched but not yet handed to the handler, and when the oldest of them came.
#[derive(Debug)]
pub struct Batcher<T> {
    max_records: usize,
    max_wait: Millis,
    pending: Vec<(WorkId, T)>,
    since: Millis,
}

impl<T> Batcher<T> {
    /// Batches of up to `max_records` items (at least one), each waiting at most `max_wait`
    /// milliseconds after its first item for more.
    pub fn new(max_records: usize, max_wait: Millis) -> Self {
        Batcher {
            max_records: max_records.max(1),
            max_wait,
            pending: Vec::new(),
            since: 0,
        }
    }

    /// An item the engine dispatched at `now`. Returns the batch it completes, if it fills one.
    pub fn push(&mut self, id: WorkId, item: T, now: Millis) -> Option<Vec<(WorkId, T)>> {
        if self.pending.is_empty() {
            self.since = now;
        }
        self.pending.push((id, item));
        (self.pending.len() >= self.max_records).then(|| self.take())
    }

    /// The batch gathered so far, if its wait is over at `now`, or at once when `stalled`: the
    /// engine can dispatch nothing more (its concurrency is used up by the items gathered and the
    /// batches running), so waiting would only delay them.
    pub fn due(&mut self, now: Millis, stalled: bool) -> Option<Vec<(WorkId, T)>> {
        let waited = now.saturating_sub(self.since) >= self.max_wait;
        (!self.pending.is_empty() && (waited || stalled)).then(|| self.take())
    }

    /// Items gathered and not yet handed over.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether nothing is gathered.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    fn take(&mut self) -> Vec<(WorkId, T)> {
        std::mem::replace(&mut self.pending, Vec::with_capacity(self.max_records))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(slot: u32) -> WorkId {
        WorkId { slot, gen: 0 }
    }

    #[test]
    fn a_batch_is_handed_over_when_it_is_full_in_the_order_it_was_gathered() {
        let mut b = Batcher::new(3, 1_000);
        assert!(b.push(id(0), 'a', 0).is_none());
        assert!(b.push(id(1), 'b', 0).is_none());
        let batch = b.push(id(2), 'c', 0).expect("full");
        assert_eq!(batch.iter().map(|e| e.1).collect::<String>(), "abc");
        assert!(b.is_empty());
    }

    #[test]
    fn a_partial_batch_waits_until_its_first_item_has_waited_max_wait() {
        let mut b = Batcher::new(10, 5);
        assert!(b.push(id(0), 'a', 100).is_none());
        assert!(b.push(id(1), 'b', 103).is_none());
        assert!(b.due(104, false).is_none());
        assert_eq!(b.due(105, false).map(|v| v.len()), Some(2));
        assert!(b.due(1_000, false).is_none(), "nothing left to hand over");
    }

    #[test]
    fn a_stalled_engine_gets_its_partial_batch_at_once() {
        let mut b = Batcher::new(10, 5);
        b.push(id(0), 'a', 100);
        assert_eq!(b.due(100, true).map(|v| v.len()), Some(1));
    }
}
