//! Batches gathered from the engine's dispatches (`Batcher`): whatever the interleaving of
//! fetches, batch outcomes (success or failure of every record in it) and time, a batch never
//! holds a key twice, and each key's records succeed exactly once each, in offset order.

use std::collections::{HashMap, HashSet};

use kafkaesque_engine::*;
use proptest::prelude::*;

const KEYS: u8 = 6;
const IN_FLIGHT: usize = 12;

/// An engine whose dispatches a batcher gathers, the batches running, and what succeeded.
struct Run {
    e: Engine<u64>,
    h: PartitionHandle,
    b: Batcher<u64>,
    keys: Vec<u8>,
    fetched: usize,
    now: Millis,
    running: Vec<Vec<(WorkId, u64)>>,
    applied: HashMap<u8, Vec<u64>>,
}

impl Run {
    fn new(keys: Vec<u8>, size: usize) -> Run {
        let mut cfg = EngineConfig::<u64>::default();
        cfg.limits.max_in_flight = IN_FLIGHT;
        cfg.retry = RetryPolicy {
            max_attempts: 1_000,
            base_backoff_ms: 1,
            max_backoff_ms: 4,
        };
        let mut e = Engine::new(cfg).unwrap();
        let (h, _) = e.assign(TopicPartition::new("t", 0), 0, None, Role::Main);
        Run {
            e,
            h,
            b: Batcher::new(size, 10),
            keys,
            fetched: 0,
            now: 0,
            running: Vec::new(),
            applied: HashMap::new(),
        }
    }

    /// 0: fetch the next record; 1: the oldest running batch succeeds; 2: it fails. Then time
    /// moves on and what was dispatched is gathered.
    fn step(&mut self, choice: u8) {
        self.now += 3;
        self.e.advance_time(self.now);
        match choice {
            0 if self.fetched < self.keys.len() => {
                let k = [b'k', self.keys[self.fetched]];
                let o = self.fetched;
                self.e
                    .fetched(self.h, o as i64, 10, [(Some(&k[..]), o as u64)]);
                self.fetched += 1;
            }
            1 if !self.running.is_empty() => self.finish(true),
            2 if !self.running.is_empty() => self.finish(false),
            _ => {}
        }
        let dispatched: Vec<(WorkId, u64)> = self
            .e
            .drain_actions()
            .filter_map(|a| match a {
                Action::Dispatch(w) => Some((w.id, w.payload)),
                _ => None,
            })
            .collect();
        for (id, offset) in dispatched {
            self.running.extend(self.b.push(id, offset, self.now));
        }
        let stalled = self.e.in_flight() >= IN_FLIGHT;
        self.running.extend(self.b.due(self.now, stalled));
    }

    fn finish(&mut self, ok: bool) {
        let batch = self.running.remove(0);
        let distinct: HashSet<u8> = batch.iter().map(|&(_, o)| self.keys[o as usize]).collect();
        assert_eq!(distinct.len(), batch.len(), "a key twice in {batch:?}");
        for (id, offset) in batch {
            if ok {
                let key = self.keys[offset as usize];
                self.applied.entry(key).or_default().push(offset);
                self.e.complete(id);
            } else {
                self.e.fail(id, Failure::Retry("the batch failed".into()));
            }
        }
    }

    fn settled(&self) -> bool {
        self.fetched == self.keys.len() && self.e.in_flight() == 0 && self.e.held() == (0, 0)
    }
}

proptest! {
    #[test]
    fn batches_never_hold_a_key_twice_and_keep_each_keys_offset_order(
        keys in prop::collection::vec(0..KEYS, 1..150),
        size in 1usize..8,
        steps in prop::collection::vec(0u8..4, 0..400),
    ) {
        let mut run = Run::new(keys.clone(), size);
        for choice in steps {
            run.step(choice);
        }
        // Then everything is fetched, and every batch succeeds.
        for _ in 0..10_000 {
            if run.settled() {
                break;
            }
            let fetch = run.fetched < keys.len();
            run.step(if fetch { 0 } else { 1 });
            while !run.running.is_empty() {
                run.finish(true);
            }
        }
        prop_assert!(run.settled());
        for k in 0..KEYS {
            let expected: Vec<u64> = (0..keys.len() as u64).filter(|&o| keys[o as usize] == k).collect();
            prop_assert_eq!(run.applied.remove(&k).unwrap_or_default(), expected, "key {}", k);
        }
    }
}
