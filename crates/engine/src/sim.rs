//! A deterministic simulation of a consumer around the engine, on virtual time.
//!
//! It drives the same [`Engine`] the runtime drives — fetches with pause and seek, handlers with a
//! latency, an overflow partition for diverted keys — but on a millisecond clock of its own, so a
//! scenario such as the legacy system's incident runs in a fraction of a second, gives the same figures
//! every time, and can compare designs side by side. Benchmarks print its figures; tests assert
//! only what must be true of them (a watermark that moves, a design that stalls).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;

use crate::{
    Action, Engine, EngineConfig, HotKeyPolicy, Intake, Millis, Offset, PartitionHandle, Role,
    SinkId, TopicPartition, WorkId,
};

/// What one simulated record carries: when it was produced, how many records it stands for
/// (coalescing folds several), and whether it belongs to the hot key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimPayload {
    /// Virtual time the record was produced, in milliseconds (the oldest, after coalescing).
    pub produced_at: Millis,
    /// Records it stands for: 1, more after coalescing.
    pub records: u32,
    /// Whether it belongs to the hot key.
    pub hot: bool,
}

/// A last-writer-wins merge for simulated payloads, for [`HotKeyPolicy::Coalesce`].
pub fn coalesce_policy() -> HotKeyPolicy<SimPayload> {
    HotKeyPolicy::Coalesce(Arc::new(
        |_: &[u8], older: &mut SimPayload, newer: SimPayload| {
            older.produced_at = older.produced_at.min(newer.produced_at);
            older.records += newer.records;
            64
        },
    ))
}

/// The traffic: `rate` records per millisecond over `partitions` partitions and `keys` ordinary
/// keys, of which a share `hot_share` goes to one hot key in partition 0 whose handler takes
/// `hot_latency_ms` instead of `latency_ms`.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Main partitions; ordinary key `k` goes to partition `k % partitions`.
    pub partitions: usize,
    /// Ordinary keys, drawn uniformly.
    pub keys: u64,
    /// Records produced per millisecond, over all partitions together.
    pub rate_per_ms: u64,
    /// How long records are produced, in milliseconds; the run lasts four times as long so the backlog can drain.
    pub duration_ms: Millis,
    /// Handler time of an ordinary record, in milliseconds.
    pub latency_ms: Millis,
    /// Fraction (0 to 1) of records that go to the hot key.
    pub hot_share: f64,
    /// Handler time of a hot-key record, in milliseconds.
    pub hot_latency_ms: Millis,
    /// Seed of the key generator, so runs are reproducible.
    pub seed: u64,
}

impl Scenario {
    /// The legacy system's incident in small: a quarter of all records go to one key whose write is
    /// 20 times slower, alongside ordinary traffic over 10,000 keys in 4 partitions.
    pub fn incident(duration_ms: Millis) -> Self {
        Scenario {
            partitions: 4,
            keys: 10_000,
            rate_per_ms: 20,
            duration_ms,
            latency_ms: 5,
            hot_share: 0.25,
            hot_latency_ms: 100,
            seed: 7,
        }
    }

    /// The same ordinary traffic without the hot key: the baseline to compare against.
    pub fn without_hot_key(&self) -> Self {
        let other = (self.rate_per_ms as f64 * (1.0 - self.hot_share)).round() as u64;
        Scenario {
            rate_per_ms: other,
            hot_share: 0.0,
            ..self.clone()
        }
    }
}

/// The configurations the incident is replayed with: the legacy design (hashed worker queues and
/// one global cap) and this engine with each hot-key policy, all at the same concurrency.
pub fn incident_configs(concurrency: usize) -> Vec<(&'static str, EngineConfig<SimPayload>)> {
    let ours = |hot_key| {
        let mut cfg = EngineConfig {
            hot_key,
            ..EngineConfig::default()
        };
        cfg.limits.max_in_flight = concurrency;
        cfg.limits.key_max_records = 100;
        cfg.limits.global_max_records = 20_000;
        cfg.limits.partition_max_records = 5_000;
        cfg
    };
    vec![
        (
            "legacy design",
            EngineConfig::legacy_design(64, 20_000, concurrency),
        ),
        ("kafkaesque coalesce", ours(coalesce_policy())),
        ("kafkaesque divert", ours(HotKeyPolicy::Divert)),
    ]
}

/// What happened to the records of the ordinary keys.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Ordinary records produced.
    pub other_produced: u64,
    /// Ordinary records completed (counted at dispatch: a simulated handler always succeeds).
    pub other_completed: u64,
    /// End-to-end delay of ordinary records (produce to completion), sorted, in ms.
    pub other_delays: Vec<Millis>,
    /// Every second: (time ms, records not yet below the commit watermark, summed over partitions).
    pub lag: Vec<(Millis, u64)>,
    /// Every second: the smallest commit-watermark advance, in records, of any partition that
    /// had records left to commit (0 means some partition's commits stood still that second).
    pub min_watermark_advance: Vec<i64>,
    /// Peak of records held by the engine.
    pub peak_held: usize,
}

impl Report {
    /// The `q` quantile (0..=1) of ordinary records' delay.
    pub fn other_delay_quantile(&self, q: f64) -> Millis {
        if self.other_delays.is_empty() {
            return 0;
        }
        let i = ((self.other_delays.len() - 1) as f64 * q).round() as usize;
        self.other_delays[i]
    }
}

struct Part {
    /// (hot, key, produced_at) by offset.
    log: Vec<(bool, u64, Millis)>,
    pos: usize,
    paused: bool,
    handle: PartitionHandle,
    overflow: Option<Overflow>,
}

struct Overflow {
    handle: PartitionHandle,
    log: Vec<SimPayload>,
    pos: usize,
    paused: bool,
}

/// Everything the simulated driver keeps besides the partitions.
struct World<'s> {
    s: &'s Scenario,
    now: Millis,
    running: BinaryHeap<Reverse<(Millis, WorkId)>>,
    acks: VecDeque<(usize, SinkId, SimPayload)>,
    report: Report,
}

/// Runs the scenario against an engine built from `cfg`.
pub fn run(cfg: EngineConfig<SimPayload>, s: &Scenario) -> Report {
    let divert = matches!(cfg.hot_key, HotKeyPolicy::Divert);
    let mut engine = Engine::new(cfg).expect("a valid simulation config");
    let mut parts: Vec<Part> = (0..s.partitions)
        .map(|i| {
            let tp = TopicPartition::new("sim", i as i32);
            let (handle, _) = engine.assign(tp, 0, None, Role::Main);
            let overflow = divert.then(|| {
                let tp = TopicPartition::new("sim.overflow", i as i32);
                let (h, _) = engine.assign(tp, 0, None, Role::Overflow { main: handle });
                Overflow {
                    handle: h,
                    log: Vec::new(),
                    pos: 0,
                    paused: false,
                }
            });
            Part {
                log: Vec::new(),
                pos: 0,
                paused: false,
                handle,
                overflow,
            }
        })
        .collect();
    let mut w = World {
        s,
        now: 0,
        running: BinaryHeap::new(),
        acks: VecDeque::new(),
        report: Report::default(),
    };
    let mut rng = s.seed | 1;
    let hot_every = if s.hot_share > 0.0 {
        (1.0 / s.hot_share).round() as u64
    } else {
        0
    };
    let mut produced: u64 = 0;
    let mut last_wm = vec![0; s.partitions];
    // Production stops at `duration_ms`; the rest of the time lets the backlog drain.
    for now in 0..s.duration_ms * 4 {
        w.now = now;
        engine.advance_time(now);
        if now < s.duration_ms {
            for _ in 0..s.rate_per_ms {
                produced += 1;
                let hot = hot_every > 0 && produced % hot_every == 0;
                let (p, key) = if hot {
                    (0, u64::MAX)
                } else {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let k = rng % s.keys;
                    ((k % s.partitions as u64) as usize, k)
                };
                parts[p].log.push((hot, key, now));
                w.report.other_produced += u64::from(!hot);
            }
        }
        while let Some(&Reverse((due, id))) = w.running.peek() {
            if due > now {
                break;
            }
            w.running.pop();
            engine.complete(id);
        }
        while let Some((p, id, payload)) = w.acks.pop_front() {
            let o = parts[p].overflow.as_mut().expect("divert has an overflow");
            o.log.push(payload);
            engine.sink_acked(id, Some(o.log.len() as Offset - 1));
        }
        apply_actions(&mut engine, &mut parts, &mut w);
        for i in 0..parts.len() {
            fetch(&mut engine, &mut parts[i]);
            apply_actions(&mut engine, &mut parts, &mut w);
        }
        w.report.peak_held = w.report.peak_held.max(engine.held().0);
        if now % 1000 == 999 {
            sample(&engine, &parts, &mut last_wm, &mut w.report, now + 1);
        }
    }
    w.report.other_delays.sort_unstable();
    w.report
}

fn fetch(engine: &mut Engine<SimPayload>, part: &mut Part) {
    while !part.paused {
        let Some(&(hot, key, at)) = part.log.get(part.pos) else {
            break;
        };
        let offset = part.pos as Offset;
        part.pos += 1;
        let payload = SimPayload {
            produced_at: at,
            records: 1,
            hot,
        };
        let item = [(Some(key.to_le_bytes()), payload)];
        if engine.fetched(part.handle, offset, 64, item) == Intake::Refused {
            part.paused = true; // the Pause action repositions it
            break;
        }
    }
    if let Some(o) = part.overflow.as_mut() {
        while !o.paused && o.pos < o.log.len() {
            let (payload, offset) = (o.log[o.pos], o.pos as Offset);
            o.pos += 1;
            let key = Some(u64::MAX.to_le_bytes());
            if engine.fetched_overflow(o.handle, offset, key, 64, payload) == Intake::Refused {
                o.paused = true;
                break;
            }
        }
    }
}

fn apply_actions(engine: &mut Engine<SimPayload>, parts: &mut [Part], w: &mut World<'_>) {
    let actions: Vec<Action<SimPayload>> = engine.drain_actions().collect();
    for a in actions {
        match a {
            Action::Dispatch(work) => {
                let p = work.payload;
                let latency = if p.hot {
                    w.s.hot_latency_ms
                } else {
                    w.s.latency_ms
                };
                let done = w.now + latency.max(1);
                if !p.hot {
                    w.report.other_completed += u64::from(p.records);
                    let delay = done - p.produced_at;
                    w.report.other_delays.extend((0..p.records).map(|_| delay));
                }
                w.running.push(Reverse((done, work.id)));
            }
            Action::Pause {
                partition, seek_to, ..
            } => {
                for part in parts.iter_mut() {
                    if part.handle == partition {
                        part.paused = true;
                        part.pos = seek_to as usize;
                    } else if let Some(o) = part.overflow.as_mut().filter(|o| o.handle == partition)
                    {
                        o.paused = true;
                        o.pos = seek_to as usize;
                    }
                }
            }
            Action::Resume { partition, .. } => {
                for part in parts.iter_mut() {
                    if part.handle == partition {
                        part.paused = false;
                    } else if let Some(o) = part.overflow.as_mut().filter(|o| o.handle == partition)
                    {
                        o.paused = false;
                    }
                }
            }
            Action::Divert(r) => w.acks.push_back((r.tp.partition as usize, r.id, r.payload)),
            Action::DeadLetter(_) => {}
        }
    }
}

fn sample(
    engine: &Engine<SimPayload>,
    parts: &[Part],
    last: &mut [Offset],
    r: &mut Report,
    at: Millis,
) {
    let stats = engine.partition_stats();
    let mut lag = 0;
    let mut min_adv = None::<i64>;
    for (i, part) in parts.iter().enumerate() {
        let wm = stats
            .iter()
            .find(|x| x.tp.topic.as_ref() == "sim" && x.tp.partition == i as i32)
            .map_or(0, |x| x.watermark);
        let end = part.log.len() as Offset;
        lag += (end - wm) as u64;
        if wm < end {
            let adv = wm - last[i];
            min_adv = Some(min_adv.map_or(adv, |m| m.min(adv)));
        }
        last[i] = wm;
    }
    r.lag.push((at, lag));
    r.min_watermark_advance.push(min_adv.unwrap_or(0));
}

/// Feeds `records` records over `keys` distinct keys (one partition) through an engine whose
/// handler does nothing, completing each item as soon as it is dispatched: the engine's own cost
/// per record, scheduling and completion included. Returns the records completed.
pub fn noop_loop(keys: u64, records: u64) -> u64 {
    let mut cfg = EngineConfig::<u64>::default();
    cfg.limits.max_in_flight = 1_000;
    cfg.limits.key_max_records = 100_000;
    let mut engine = Engine::new(cfg).expect("valid");
    let tp = TopicPartition::new("bench", 0);
    let (h, _) = engine.assign(tp, 0, None, Role::Main);
    let mut ids: Vec<WorkId> = Vec::with_capacity(1_000);
    let mut offset: Offset = 0;
    let mut done = 0;
    while done < records {
        let before = done + offset as u64;
        // A fetch batch, as a poll loop would hand over.
        let batch = (records - offset as u64).min(500);
        for _ in 0..batch {
            let key = (offset as u64 % keys).to_le_bytes();
            if engine.fetched(h, offset, 64, [(Some(key), offset as u64)]) != Intake::Accepted {
                break;
            }
            offset += 1;
        }
        loop {
            ids.extend(engine.drain_actions().filter_map(|a| match a {
                Action::Dispatch(w) => Some(w.id),
                _ => None,
            }));
            if ids.is_empty() {
                break;
            }
            for id in ids.drain(..) {
                engine.complete(id);
                done += 1;
            }
        }
        assert!(
            done + offset as u64 > before,
            "the engine refused records with nothing in flight"
        );
    }
    done
}
