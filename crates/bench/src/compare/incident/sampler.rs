//! The group's committed offsets, sampled on a thread of their own (the client call blocks)
//! while a replay runs: what the lag is computed from.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::{Offset, TopicPartitionList};

use super::lag::Sample;
use crate::load::drive::now_ms;
use crate::rig::ServiceEnv;

/// How often the committed offsets are sampled.
pub(super) const SAMPLE_EVERY: Duration = Duration::from_millis(250);

/// Samples a group's committed offsets on a thread of its own (the client call blocks).
pub(super) struct Sampler {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    thread: std::thread::JoinHandle<()>,
}

impl Sampler {
    pub(super) fn start(env: &ServiceEnv, group: &str) -> Result<Sampler> {
        // A client of the group that never joins it: it only asks for the committed offsets.
        let client: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &env.config.kafka_brokers)
            .set("group.id", group)
            .create()?;
        let mut partitions = TopicPartitionList::new();
        for p in 0..env.topic.partitions() {
            partitions.add_partition_offset(env.topic.name(), p, Offset::Invalid)?;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
        let (s, out) = (Arc::clone(&stop), Arc::clone(&samples));
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let began = Instant::now();
                if let Ok(list) =
                    client.committed_offsets(partitions.clone(), Duration::from_secs(2))
                {
                    let committed = list
                        .elements()
                        .iter()
                        .filter_map(|e| match e.offset() {
                            Offset::Offset(o) => Some((e.partition(), o)),
                            _ => None,
                        })
                        .collect::<BTreeMap<_, _>>();
                    let sample = Sample {
                        at_ms: now_ms(),
                        committed,
                    };
                    out.lock().expect("samples lock").push(sample);
                }
                std::thread::sleep(SAMPLE_EVERY.saturating_sub(began.elapsed()));
            }
        });
        Ok(Sampler {
            stop,
            samples,
            thread,
        })
    }

    pub(super) fn latest(&self) -> Option<BTreeMap<i32, i64>> {
        let samples = self.samples.lock().expect("samples lock");
        samples.last().map(|s| s.committed.clone())
    }

    pub(super) fn stop(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        let mut samples = self.samples.lock().expect("samples lock");
        std::mem::take(&mut *samples)
    }
}
