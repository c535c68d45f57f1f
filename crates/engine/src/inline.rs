//! Running a record at once, on the caller's thread, when nothing else needs the capacity.
//!
//! Why: most records of a busy partition belong to a key with nothing queued or running, and a
//! driver whose handler can finish without waiting (a filter, a cache hit, an in-memory update)
//! would otherwise pay for a lane per record — created, keyed in the map, queued, listed as
//! ready, started into the flight table, and taken apart again — for work that is over before
//! anything else happens to the engine. [`Engine::fetched_inline`] skips all of that when it
//! changes nothing anyone could see: the key has no lane, there is capacity, nothing is waiting
//! for it, and the partition and engine caps allow the record. The engine stays borrowed by the
//! [`InlineRun`] it returns until the caller says how the run went, so no other event can come in
//! between; a run that has to wait becomes an ordinary item in flight, in its own key's lane.

use std::sync::Arc;

use crate::config::ProcessingOrder;
use crate::engine::Engine;
use crate::lane::{Item, LaneKind};
use crate::types::*;
use crate::{codec, Offset};

/// What [`Engine::fetched_inline`] made of a record.
#[must_use = "a run must be reported done, failed or still running"]
#[derive(Debug)]
#[non_exhaustive]
pub enum Inline<'a, P: Clone> {
    /// Taken, to run at once.
    Run(InlineRun<'a, P>),
    /// Dealt with as [`Engine::fetched`] deals with a record.
    Taken(Intake),
}

/// A record taken to run at once. Say how it went with [`done`](Self::done),
/// [`fail`](Self::fail) or [`running`](Self::running); dropped without a word, the record is
/// queued to be dispatched as usual.
pub struct InlineRun<'a, P: Clone> {
    engine: &'a mut Engine<P>,
    key: &'a [u8],
    /// Taken by whichever ending comes first.
    item: Option<Item<P>>,
}

impl<P: Clone> std::fmt::Debug for InlineRun<'_, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InlineRun")
            .field("key", &self.key)
            .field("offset", &self.item.as_ref().map(|i| i.offsets.last()))
            .finish_non_exhaustive()
    }
}

impl<P: Clone> Engine<P> {
    /// A record fetched with one ordering key, offered to run at once: [`Inline::Run`] when its key
    /// has no lane, the engine has capacity that no lane or retry is waiting for, and the
    /// partition's and the engine's caps allow it; otherwise it goes the way of
    /// [`Engine::fetched`] and the result says how. Key ordering only (other orderings share
    /// lanes between keys, so always go that way).
    pub fn fetched_inline<'a>(
        &'a mut self,
        h: PartitionHandle,
        offset: Offset,
        bytes: usize,
        key: &'a [u8],
        payload: P,
    ) -> Inline<'a, P> {
        self.refused = None;
        let slot = match self.admit(h, offset) {
            Ok(slot) => slot,
            Err(intake) => return Inline::Taken(intake),
        };
        if !self.may_run_now(slot, key, bytes) {
            return Inline::Taken(self.fetched(h, offset, bytes, [(Some(key), payload)]));
        }
        self.counters.fetched += 1;
        self.counters.dispatched += 1;
        self.part_mut(slot).tracker.fetch(offset, 1);
        self.hold(slot, 1, bytes);
        let item = Item::fetched(slot, offset, payload, bytes);
        Inline::Run(InlineRun {
            engine: self,
            key,
            item: Some(item),
        })
    }

    /// Whether a record of `key` in partition `slot` may skip the lanes (see the module
    /// documentation).
    fn may_run_now(&self, slot: u32, key: &[u8], bytes: usize) -> bool {
        let p = self.part(slot);
        self.cfg.ordering == ProcessingOrder::Key
            && p.role == Role::Main
            && self.in_flight < self.cfg.limits.max_in_flight
            && self.ready_parts.is_empty()
            && self.retry_ready.is_empty()
            && self.waiting_retries < self.cfg.limits.max_waiting_retries
            && !p.keys.contains_key(key)
            && (p.inherited.is_empty() || !p.inherited.contains_key(&codec::key_hash(key)))
            && self.scope_refusal(slot, 1, bytes).is_none()
    }
}

impl<P: Clone> InlineRun<'_, P> {
    /// The record, for the caller to run (it keeps its own copy for a retry).
    pub fn payload(&self) -> &P {
        &self.item.as_ref().expect("not ended yet").payload
    }

    /// It finished successfully: its record is complete.
    pub fn done(mut self) {
        let item = self.item.take().expect("not ended yet");
        let e = &mut *self.engine;
        e.counters.completed += 1;
        e.finish(item.src, &item);
        e.check_resumes();
        e.pump();
    }

    /// It failed: from here on it is an item that ran once and failed, retried or
    /// dead-lettered as [`Engine::fail`] decides.
    pub fn fail(mut self, failure: Failure) -> Outcome {
        let id = self.fly();
        self.engine.fail(id, failure)
    }

    /// It has to wait: it is now an item in flight in its key's lane, to be reported with
    /// [`Engine::complete`] or [`Engine::fail`] under the id returned.
    pub fn running(mut self) -> WorkId {
        self.fly()
    }

    /// Gives the item a lane of its key and puts it in flight there.
    fn fly(&mut self) -> WorkId {
        let item = self.item.take().expect("not ended yet");
        let l = self.lane(&item);
        self.engine.launch(l, item)
    }

    /// The key's new lane, counting the item's bytes (a key's cap covers what runs).
    fn lane(&mut self, item: &Item<P>) -> u32 {
        let e = &mut *self.engine;
        let l = e.key_lane(item.src, Arc::from(self.key));
        debug_assert_eq!(e.lanes[l as usize].kind, LaneKind::Key);
        e.lanes[l as usize].bytes += item.bytes;
        l
    }
}

impl<P: Clone> Drop for InlineRun<'_, P> {
    /// Not run after all: queued in its key's lane to be dispatched as usual.
    fn drop(&mut self) {
        let Some(item) = self.item.take() else {
            return;
        };
        let l = self.lane(&item);
        let e = &mut *self.engine;
        e.counters.dispatched -= 1;
        e.lanes[l as usize].queue.push_back(item);
        e.mark_ready(l);
        e.pump();
    }
}
