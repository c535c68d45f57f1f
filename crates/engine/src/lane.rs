//! Lanes: the queues that carry order.
//!
//! In key mode every key with work has a lane of its own (no hashing of unrelated keys onto a
//! shared queue); a lane exists only while its key has something queued, in flight, waiting, or
//! diverted, so idle keys cost nothing. Partition and unordered modes use one shared lane per
//! partition with a different in-flight bound; the legacy-design baseline uses `queues` hashed
//! lanes per partition.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::{Millis, Offset};

/// The lane one item of a fetched record goes to: a shared lane, or its key's — `None` while
/// the key has none yet.
pub(crate) enum Route {
    Shared(u32),
    Key(Arc<[u8]>, Option<u32>),
}

/// The offsets one item stands for: one record, or several folded by coalescing.
#[derive(Debug, Clone)]
pub(crate) enum Offsets {
    One(Offset),
    Many(Vec<Offset>),
}

impl Offsets {
    pub(crate) fn first(&self) -> Offset {
        match self {
            Offsets::One(o) => *o,
            Offsets::Many(v) => *v.first().expect("never empty"),
        }
    }

    pub(crate) fn last(&self) -> Offset {
        match self {
            Offsets::One(o) => *o,
            Offsets::Many(v) => *v.last().expect("never empty"),
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Offsets::One(_) => 1,
            Offsets::Many(v) => v.len(),
        }
    }

    pub(crate) fn push(&mut self, more: Offsets) {
        let mut v = match std::mem::replace(self, Offsets::Many(Vec::new())) {
            Offsets::One(o) => vec![o],
            Offsets::Many(v) => v,
        };
        match more {
            Offsets::One(o) => v.push(o),
            Offsets::Many(m) => v.extend(m),
        }
        *self = Offsets::Many(v);
    }

    pub(crate) fn for_each(&self, mut f: impl FnMut(Offset)) {
        match self {
            Offsets::One(o) => f(*o),
            Offsets::Many(v) => v.iter().copied().for_each(f),
        }
    }
}

/// A unit of work: one key's share of one record (or of several, once coalesced).
#[derive(Debug, Clone)]
pub(crate) struct Item<P> {
    /// Partition slot the records were fetched from (the overflow partition for diverted items
    /// coming back).
    pub(crate) src: u32,
    pub(crate) offsets: Offsets,
    pub(crate) payload: P,
    pub(crate) bytes: usize,
    /// Counted attempts so far.
    pub(crate) attempts: u32,
    /// All attempts so far, counted or transient (drives the back-off).
    pub(crate) tries: u32,
    pub(crate) last_error: Option<String>,
}

impl<P> Item<P> {
    /// A record just fetched from partition slot `src`: not yet attempted.
    pub(crate) fn fetched(src: u32, offset: Offset, payload: P, bytes: usize) -> Self {
        Item {
            src,
            offsets: Offsets::One(offset),
            payload,
            bytes,
            attempts: 0,
            tries: 0,
            last_error: None,
        }
    }
}

/// How many items of a lane may run at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LaneKind {
    /// One key: one at a time, and the key caps and hot-key policy apply.
    Key,
    /// A partition's shared ordered lane (partition mode, keyless records, hashed queues).
    Ordered,
    /// A partition's unordered lane: as many at once as the global limit allows.
    Unordered,
    /// A lane of its own for one unordered item waiting out a retry, so that it does not hold
    /// up the unordered lane; dropped once idle.
    Solo,
}

/// A key diverted to the overflow partition.
#[derive(Debug, Clone, Default)]
pub(crate) struct Diversion {
    /// Items sent to the sink and not yet acknowledged.
    pub(crate) unacked: u32,
    /// Overflow offset of the last acknowledged diverted item; the key may return to the main
    /// path once the overflow partition's watermark has passed it.
    pub(crate) mark: Option<Offset>,
    /// Items of the key that were in flight when it was diverted and have not finished. Nothing
    /// is sent to the overflow until they have (later items wait in the lane, within the key's
    /// cap), so an overflow record always means "every earlier item of this key is done or is
    /// ahead of me in the overflow". That is what lets a new owner process every overflow record
    /// it finds without ever applying a key's items out of order.
    pub(crate) barrier: u32,
}

#[derive(Debug)]
pub(crate) struct Lane<P> {
    pub(crate) gen: u32,
    pub(crate) live: bool,
    /// Owning (main) partition slot.
    pub(crate) part: u32,
    pub(crate) key: Option<Arc<[u8]>>,
    pub(crate) kind: LaneKind,
    pub(crate) queue: VecDeque<Item<P>>,
    /// Bytes of the items queued and in flight (a key's cap covers both).
    pub(crate) bytes: usize,
    pub(crate) in_flight: u32,
    /// When the oldest item in flight started.
    pub(crate) in_flight_since: Millis,
    /// In its partition's ready list or the retry-ready list.
    pub(crate) listed: bool,
    /// The head item waits out a retry back-off.
    pub(crate) waiting: bool,
    /// Reached its cap under `Coalesce`: new items merge into the tail until the queue drains.
    pub(crate) coalescing: bool,
    pub(crate) divert: Option<Diversion>,
}

impl<P> Lane<P> {
    pub(crate) fn new(part: u32, key: Option<Arc<[u8]>>, kind: LaneKind) -> Self {
        Lane {
            gen: 0,
            live: true,
            part,
            key,
            kind,
            queue: VecDeque::new(),
            bytes: 0,
            in_flight: 0,
            in_flight_since: 0,
            listed: false,
            waiting: false,
            coalescing: false,
            divert: None,
        }
    }

    fn max_in_flight(&self) -> u32 {
        match self.kind {
            LaneKind::Key | LaneKind::Ordered | LaneKind::Solo => 1,
            LaneKind::Unordered => u32::MAX,
        }
    }

    /// Items queued and in flight: what a key's cap counts.
    pub(crate) fn count(&self) -> usize {
        self.queue.len() + self.in_flight as usize
    }

    /// Has an item that may start now.
    pub(crate) fn ready(&self) -> bool {
        !self.queue.is_empty() && !self.waiting && self.in_flight < self.max_in_flight()
    }

    /// Holds nothing and owes nothing: a key lane in this state is dropped.
    pub(crate) fn idle(&self) -> bool {
        self.queue.is_empty() && self.in_flight == 0 && self.divert.is_none()
    }
}
