//! Row c: the production incident with a synthetic handler, the same on both sides. Open-loop
//! traffic into 4 partitions over 1,000 keys, half of it one hot key; the handler sleeps 1 ms per
//! record (the row write) and 20 ms more for the hot key, so that the hot key cannot keep up.
//! Parallel Consumer (KEY) and ours (Coalesce, Divert, Backpressure), each next to its own no-flood
//! baseline (the other keys' traffic alone). Measured from the handlers' own clock: the other
//! keys' delay (produced to handled) and the lag (produced, not yet handled) over time.
//! Target: under Coalesce and Divert, the other keys' p99 ≤ 1.5× the baseline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use kafkaesque_testkit::Broker;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use super::side::{Handler, Job, Order, Outcome, Policy, Running, Side};
use super::{job, memory, with_busiest};
use crate::compare::kafka::blocking;
use crate::load::drive::now_ms;
use crate::report::{Figure, Series};
use crate::stats::quantile;

const C: &str = "peers c: incident";
const PARTITIONS: i32 = 4;
const KEYS: usize = 1_000;
const CONCURRENCY: usize = 256;
const HOT_KEY: &str = "hot";
/// Records in the topic before the traffic: the warm-up pass consumes them in a group of its
/// own, and the timed pass starts on them, so that both sides have joined before the traffic.
const PRIMER: usize = 2_000;

/// How big the incident is.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// Records per second of all keys, and for how long.
    pub rate: f64,
    pub seconds: f64,
    /// How long a side may take to handle the rest once the traffic has stopped.
    pub drain_seconds: f64,
    /// Share of the traffic that is the hot key's.
    pub flood_share: f64,
}

fn handler() -> Handler {
    Handler {
        base_ms: 1,
        hot_key: Some(HOT_KEY.to_owned()),
        hot_ms: 20,
        ..Handler::default()
    }
}

/// One replay's label, side and policy, and whether the flood runs.
struct Variant {
    label: &'static str,
    side: Side,
    policy: Option<Policy>,
    flood: bool,
}

const VARIANTS: [Variant; 6] = [
    Variant {
        label: "Parallel Consumer, no flood",
        side: Side::ParallelConsumer,
        policy: None,
        flood: false,
    },
    Variant {
        label: "kafkaesque, no flood",
        side: Side::Ours,
        policy: None,
        flood: false,
    },
    Variant {
        label: "Parallel Consumer (KEY)",
        side: Side::ParallelConsumer,
        policy: None,
        flood: true,
    },
    Variant {
        label: "kafkaesque Coalesce",
        side: Side::Ours,
        policy: Some(Policy::Coalesce),
        flood: true,
    },
    Variant {
        label: "kafkaesque Divert",
        side: Side::Ours,
        policy: Some(Policy::Divert),
        flood: true,
    },
    Variant {
        label: "kafkaesque Backpressure",
        side: Side::Ours,
        policy: Some(Policy::Backpressure),
        flood: true,
    },
];

/// What one replay found, on the traffic's clock (ms since the epoch).
struct Replay {
    outcome: Outcome,
    start_ms: i64,
    /// Send time of every traffic record, and whether it was the hot key's.
    sent: Vec<(i64, bool)>,
    ended_ms: i64,
}

impl Replay {
    /// The other keys' delays, sorted: handled minus produced; those never handled count as
    /// handled at the end (a lower bound), the latest-sent first.
    fn other_delays(&self) -> Vec<f64> {
        let mut d: Vec<f64> = self
            .traffic()
            .filter(|s| s[2] == 0)
            .map(|s| (s[0] - s[1]) as f64)
            .collect();
        let sent: Vec<i64> = self.sent.iter().filter(|s| !s.1).map(|s| s.0).collect();
        let missing = sent.len().saturating_sub(d.len());
        d.extend(
            sent[sent.len() - missing..]
                .iter()
                .map(|t| (self.ended_ms - t) as f64),
        );
        d.sort_by(f64::total_cmp);
        d
    }

    fn unhandled_others(&self) -> usize {
        let sent = self.sent.iter().filter(|s| !s.1).count();
        sent.saturating_sub(self.traffic().filter(|s| s[2] == 0).count())
    }

    /// The samples of the traffic (not of the primer before it).
    fn traffic(&self) -> impl Iterator<Item = &[i64; 4]> {
        self.outcome
            .samples
            .iter()
            .filter(move |s| s[1] >= self.start_ms)
    }

    /// Records produced and not yet handled, every 250 ms from the traffic's start.
    fn lag(&self) -> Vec<(f64, f64)> {
        let mut sent: Vec<i64> = self.sent.iter().map(|s| s.0).collect();
        sent.sort_unstable();
        let mut done: Vec<(i64, i64)> = self.traffic().map(|s| (s[0], s[3])).collect();
        done.sort_unstable();
        let (mut i, mut j, mut handled) = (0, 0, 0i64);
        let mut points = Vec::new();
        let mut t = self.start_ms;
        while t <= self.ended_ms {
            while i < sent.len() && sent[i] <= t {
                i += 1;
            }
            while j < done.len() && done[j].0 <= t {
                handled += done[j].1;
                j += 1;
            }
            points.push((
                (t - self.start_ms) as f64 / 1e3,
                (i as i64 - handled).max(0) as f64,
            ));
            t += 250;
        }
        points
    }

    /// The other keys' p99 delay of the records handled in each second.
    fn p99_over_time(&self) -> Vec<(f64, f64)> {
        let mut by_second: std::collections::BTreeMap<i64, Vec<f64>> = Default::default();
        for s in self.traffic().filter(|s| s[2] == 0) {
            by_second
                .entry((s[0] - self.start_ms) / 1_000)
                .or_default()
                .push((s[0] - s[1]) as f64);
        }
        by_second
            .into_iter()
            .map(|(sec, mut d)| {
                d.sort_by(f64::total_cmp);
                (sec as f64 + 0.5, quantile(&d, 0.99))
            })
            .collect()
    }

    /// Seconds after the traffic stopped until the last record was handled, if all were.
    fn drained_after(&self, expected: usize) -> Option<f64> {
        let last_sent = self.sent.iter().map(|s| s.0).max()?;
        let last_done = self.traffic().map(|s| s[0]).max()?;
        (self.outcome.records >= expected).then(|| (last_done - last_sent).max(0) as f64 / 1e3)
    }
}

/// Runs the six replays one after another.
///
/// # Errors
/// When a topic cannot be made or a side fails.
pub async fn run(broker: &Broker, sizes: Sizes) -> Result<(Vec<Figure>, Vec<Series>)> {
    let mut replays = Vec::new();
    for v in &VARIANTS {
        replays.push(replay(broker, sizes, v).await?);
    }
    Ok(summarize(&replays, sizes))
}

async fn replay(broker: &Broker, sizes: Sizes, v: &Variant) -> Result<Replay> {
    let topic = broker
        .create_topic("bench-peers-incident", PARTITIONS)
        .await?;
    // One producer for the primer and the traffic: the traffic's first records must not wait
    // for an idempotent producer's set-up, or they would count against the consumer.
    let producer: Arc<BaseProducer> = Arc::new(
        broker
            .client_config()
            .set("enable.idempotence", "true")
            .set("linger.ms", "1")
            .create()?,
    );
    let (p, name) = (producer.clone(), topic.name().to_owned());
    blocking(move || send(&p, &name, PRIMER, f64::INFINITY, 0.0)).await?;
    let job = Job {
        policy: v.policy,
        samples: true,
        ..job(
            v.side,
            broker,
            topic.name(),
            Order::Key,
            CONCURRENCY,
            0,
            PRIMER,
            handler(),
        )
    };
    let mut running = Running::start(&job).await?;
    running.ready(Duration::from_secs(120)).await?;
    // The primer's last records, then the traffic.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (rate, share) = if v.flood {
        (sizes.rate, sizes.flood_share)
    } else {
        (sizes.rate * (1.0 - sizes.flood_share), 0.0)
    };
    let start_ms = now_ms();
    let (name, n) = (topic.name().to_owned(), (rate * sizes.seconds) as usize);
    let sent = blocking(move || send(&producer, &name, n, rate, share)).await?;
    running.expect(PRIMER + sent.len()).await?;
    let outcome = running
        .outcome(Duration::from_secs_f64(sizes.drain_seconds))
        .await?;
    let ended_ms = now_ms();
    if v.policy == Some(Policy::Divert) {
        // The overflow topic our consumer made beside the topic; the topic itself goes on drop.
        let admin: AdminClient<DefaultClientContext> = broker.client_config().create()?;
        let overflow = format!("{}.overflow", topic.name());
        let _ = admin
            .delete_topics(&[&overflow], &AdminOptions::new())
            .await;
    }
    Ok(Replay {
        outcome,
        start_ms,
        sent,
        ended_ms,
    })
}

/// Sends `n` records at `rate` a second, open loop (record i is due at i / rate, whatever the
/// broker does), a `share` of them the hot key's, the rest round-robin over the other keys;
/// returns when each was sent, and whether it was hot, once all are acknowledged. Blocking.
fn send(
    p: &BaseProducer,
    topic: &str,
    n: usize,
    rate: f64,
    share: f64,
) -> Result<Vec<(i64, bool)>> {
    let value = [b'x'; 100];
    let start = Instant::now();
    let mut sent = Vec::with_capacity(n);
    for i in 0..n {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        while let Some(wait) = due
            .checked_duration_since(Instant::now())
            .filter(|w| !w.is_zero())
        {
            p.poll(wait);
        }
        let hot = ((i + 1) as f64 * share).floor() > (i as f64 * share).floor();
        let key = if hot {
            HOT_KEY.to_owned()
        } else {
            format!("key-{}", i % KEYS)
        };
        while p
            .send(
                BaseRecord::<str, [u8]>::to(topic)
                    .key(&key)
                    .payload(&value[..]),
            )
            .is_err()
        {
            p.poll(Duration::from_millis(1));
        }
        sent.push((now_ms(), hot));
    }
    p.flush(Duration::from_secs(30))?;
    Ok(sent)
}

fn summarize(replays: &[Replay], sizes: Sizes) -> (Vec<Figure>, Vec<Series>) {
    let mut figures = Vec::new();
    let p99 = |i: usize| {
        Figure::new(
            C,
            &format!("{}: other keys p99", VARIANTS[i].label),
            "ms",
            vec![quantile(&replays[i].other_delays(), 0.99)],
        )
    };
    let p50 = |i: usize| {
        Figure::new(
            C,
            &format!("{}: other keys p50", VARIANTS[i].label),
            "ms",
            vec![quantile(&replays[i].other_delays(), 0.5)],
        )
    };
    let pc_base = p99(0).note(format!(
        "{:.0} records/s for {:.0} s into {PARTITIONS} partitions over {KEYS} keys, {:.0}% of them \
         one hot key (the baselines: the other keys' share alone); handler 1 ms per record, 21 ms \
         for the hot key, concurrency {CONCURRENCY} on both sides; delay = handled − produced, \
         from the record's timestamp; one run each",
        sizes.rate,
        sizes.seconds,
        sizes.flood_share * 100.0
    ));
    let ours_base = p99(1);
    figures.extend([p50(0), pc_base.clone(), p50(1), ours_base.clone()]);
    let pc_flood = p99(2).vs(&pc_base);
    for i in 2..VARIANTS.len() {
        let r = &replays[i];
        figures.push(p50(i));
        let mut f = if i == 2 {
            pc_flood.clone()
        } else {
            p99(i).vs(&ours_base)
        };
        if matches!(VARIANTS[i].policy, Some(Policy::Coalesce | Policy::Divert)) {
            f = f.at_most("≤ 1.5× baseline", 1.5);
        }
        let unhandled = r.unhandled_others();
        if unhandled > 0 {
            f = f.note(format!("{unhandled} of the other keys' records not handled by the end, counted as handled then (a lower bound)"));
        }
        figures.push(with_busiest(f, std::slice::from_ref(&r.outcome)));
        if i > 2 {
            let vs = Figure {
                variant: format!("{} vs Parallel Consumer: other keys p99", VARIANTS[i].label),
                ..p99(i)
            };
            figures.push(vs.vs(&pc_flood));
        }
    }
    for (i, r) in replays.iter().enumerate() {
        let peak = r.lag().iter().map(|p| p.1).fold(0.0, f64::max);
        let expected = PRIMER + r.sent.len();
        let lag = Figure::new(
            C,
            &format!("{}: peak lag", VARIANTS[i].label),
            "records",
            vec![peak],
        );
        figures.push(match r.drained_after(expected) {
            Some(s) => lag.note(format!("all handled {s:.1} s after the traffic stopped")),
            None => lag.note(format!(
                "{} of {expected} handled {:.0} s after the traffic stopped",
                r.outcome.records, sizes.drain_seconds
            )),
        });
    }
    let pc_mem = memory(
        "c",
        VARIANTS[2].label,
        std::slice::from_ref(&replays[2].outcome),
    );
    figures.push(pc_mem.clone());
    for i in [0, 1, 3, 4, 5] {
        let f = memory(
            "c",
            VARIANTS[i].label,
            std::slice::from_ref(&replays[i].outcome),
        );
        figures.push(if i >= 3 {
            super::less_memory(f, &pc_mem)
        } else {
            f
        });
    }
    let mut series = Vec::new();
    for (i, r) in replays.iter().enumerate() {
        series.push(Series {
            plot: "peers_incident_lag".into(),
            title: "Peers, incident: lag (records produced, not yet handled)".into(),
            x_label: "seconds since the traffic started".into(),
            y_label: "records".into(),
            name: VARIANTS[i].label.into(),
            points: r.lag(),
        });
    }
    for (i, r) in replays.iter().enumerate() {
        series.push(Series {
            plot: "peers_incident_p99".into(),
            title: "Peers, incident: other keys' p99 delay, per second handled".into(),
            x_label: "seconds since the traffic started".into(),
            y_label: "ms".into(),
            name: VARIANTS[i].label.into(),
            points: r.p99_over_time(),
        });
    }
    // The same without the two that stall every key, whose climb flattens the others to the axis.
    let stalled = |i: usize| {
        VARIANTS[i].side == Side::ParallelConsumer && VARIANTS[i].flood
            || VARIANTS[i].policy == Some(Policy::Backpressure)
    };
    for (i, r) in replays.iter().enumerate().filter(|(i, _)| !stalled(*i)) {
        series.push(Series {
            plot: "peers_incident_p99_unstalled".into(),
            title: "Peers, incident: other keys' p99 delay, without the stalled runs".into(),
            x_label: "seconds since the traffic started".into(),
            y_label: "ms".into(),
            name: VARIANTS[i].label.into(),
            points: r.p99_over_time(),
        });
    }
    (figures, series)
}
