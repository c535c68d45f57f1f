//! The stuck-key alarm: a key whose record has been in flight longer than a threshold.
//!
//! Why: a handler that hangs (a lock never released, a call with no timeout) fails nothing, so
//! no retry or dead letter shows it; it holds its key and its partition's commits back in
//! silence. Checked once a second, from the engine's items in flight.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use kafkaesque_engine::{Engine, Offset, TopicPartition};
use tracing::warn;

use super::key_text;
use crate::record::Record;

/// A record in flight: its partition, offset and key.
type InFlight = (TopicPartition, Offset, Option<Arc<[u8]>>);

/// The records reported stuck at the last check, so that each is logged once, not every second.
#[derive(Debug, Default)]
pub(crate) struct Alarm {
    reported: HashSet<InFlight>,
}

impl Alarm {
    /// Sets `kafkaesque_stuck_keys` to the keys in flight for `after` or longer, and logs a
    /// warning for each one newly stuck, naming its key, partition and offset.
    pub(crate) fn check(
        &mut self,
        engine: &Engine<Record>,
        after: Duration,
        labels: Vec<metrics::Label>,
    ) {
        let stuck = engine.stuck(after.as_millis() as u64);
        metrics::gauge!("kafkaesque_stuck_keys", labels).set(stuck.len() as f64);
        let mut now = HashSet::with_capacity(stuck.len());
        for s in stuck {
            let id = (s.tp, s.offset, s.key);
            if !self.reported.contains(&id) {
                let (tp, offset, key) = &id;
                warn!(
                    topic = %tp.topic, partition = tp.partition, offset = *offset,
                    key = %key_text(key), in_flight_ms = s.in_flight_ms,
                    "key stuck: its record has been in flight longer than {after:?}"
                );
            }
            now.insert(id);
        }
        self.reported = now;
    }
}
