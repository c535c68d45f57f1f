//! The legacy system's incident, replayed through the service's consumer on the real broker and
//! PostgreSQL: one app links most of its subscriptions to one email address and floods them with
//! contradictory updates, every one mirrored onto that parent row, whose write is made slow; the
//! other apps send ordinary traffic into the same partitions.
//!
//! Four replays, each with a topic, database and consumer group of its own: the other apps'
//! traffic alone (the baseline, with the service's consumer), then the flood under the legacy
//! design, under `Coalesce` (the service as it ships) and under `Divert`. Each replay's
//! consumer runs in a child process ([`worker`]); this side produces, samples the group's
//! committed offsets and computes the lag ([`lag`]).
//!
//! Figures: the other apps' p50/p99 end-to-end delay (produce to applied) against the baseline
//! (target: p99 ≤ 1.5× under kafkaesque), the peak lag and whether it drained, and the peak
//! memory of the consumer process. Plots: lag over time, in messages and in seconds.

mod figures;
pub mod lag;
mod sampler;
pub mod worker;

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::stream::{self, StreamExt};
use indicatif::ProgressBar;
use kafkaesque_testkit::unique_name;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::load::drive::{drive, now_ms, Pace, Sent};
use crate::load::target::{split, DirectTarget};
use crate::load::traffic::{Scenario, Traffic};
use crate::report::{Figure, Series};
use crate::rig::{Rig, ServiceEnv};
use lag::{LagPoint, Produced, Sample};
use sampler::{Sampler, SAMPLE_EVERY};
use worker::{Job, Outcome, Variant};

/// Partitions of each replay's topic: apps are the topic's keys, so the flooding app shares its
/// partition with some of the others.
const PARTITIONS: i32 = 4;

/// Handlers at once in every variant's consumer.
const CONCURRENCY: usize = 256;

/// How long the replay's producer gathers records into one batch (`linger.ms`): as long as the
/// API's own producer, so that the other apps' delay is what a client of the service sees.
const PRODUCER_LINGER_MS: &str = "1";

/// How long the set-up (creating and linking the subscriptions) may take to be committed.
const SETUP_LIMIT: Duration = Duration::from_secs(180);

/// How big a replay is.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// Updates per second of all apps together, and for how long.
    pub rate: f64,
    pub seconds: f64,
    /// How long a replay may take to drain its lag after the traffic stops.
    pub drain_seconds: f64,
    pub apps: usize,
    pub subscriptions: usize,
    /// Share of all updates that are the flooding app's.
    pub flood_share: f64,
    /// How long each write of the hot parent row takes.
    pub hot_write_ms: u64,
}

/// What one replay found.
#[derive(Debug, Clone)]
struct Replay {
    label: &'static str,
    lag: Vec<LagPoint>,
    /// End-to-end delays of the other apps' records, sorted: produce to applied, or — for those
    /// never applied — produce to the end of the replay (a lower bound).
    other_delays_ms: Vec<f64>,
    /// How many of them were never applied.
    other_unapplied: usize,
    peak_rss_bytes: Option<u64>,
    /// Seconds after the traffic stopped until the lag was gone; `None`: not within the limit.
    drained_after: Option<f64>,
    /// Why the consumer process ended abnormally, if it did.
    crashed: Option<String>,
}

/// Runs the four replays one after another, or all at once when `parallel` (for a smoke run,
/// whose figures do not matter).
///
/// # Errors
/// When a replay cannot be set up; a crashed consumer is a finding, not an error.
pub async fn run(rig: &Rig, sizes: Sizes, parallel: bool) -> Result<(Vec<Figure>, Vec<Series>)> {
    let exe = std::env::current_exe()?;
    let variants = [
        None,
        Some(Variant::Legacy),
        Some(Variant::Coalesce),
        Some(Variant::Divert),
    ];
    let replays = if parallel {
        let all = variants.map(|v| replay(rig, sizes, v, &exe));
        futures::future::try_join_all(all).await?
    } else {
        let mut replays = Vec::new();
        for v in variants {
            replays.push(replay(rig, sizes, v, &exe).await?);
        }
        replays
    };
    Ok(figures::summarize(&replays, sizes))
}

/// One replay: set up its topic, database and traffic, start its consumer, flood it once the
/// set-up is applied, and collect what it found.
async fn replay(
    rig: &Rig,
    sizes: Sizes,
    variant: Option<Variant>,
    exe: &std::path::Path,
) -> Result<Replay> {
    let mut setup = Setup::new(rig, sizes, variant).await?;
    let out = std::env::temp_dir().join(format!("{}.json", unique_name("replay")));
    let job = setup.job(sizes, variant, &out);
    let mut child = start_worker(exe, &job)?;
    let sampler = Sampler::start(&setup.env, &job.group)?;
    let settled = wait_for_setup(&sampler, &mut child, &setup.records).await?;
    let flood = if settled {
        flood(&mut setup, sizes, sampler, &mut child).await?
    } else {
        sampler.stop();
        Flood::default()
    };
    collect(variant, child, settled, flood, &out).await
}

/// A replay's topic and database, its traffic, and the records of its set-up (every
/// subscription created and linked), which the consumer applies before the flood.
struct Setup {
    env: ServiceEnv,
    target: DirectTarget,
    traffic: Traffic,
    /// Updates per second of the measured traffic.
    rate: f64,
    flood_app: uuid::Uuid,
    hot_row: uuid::Uuid,
    records: Vec<Produced>,
}

impl Setup {
    async fn new(rig: &Rig, sizes: Sizes, variant: Option<Variant>) -> Result<Setup> {
        let env = rig.service_env("bench-incident", PARTITIONS).await?;
        let counts = split(sizes.apps, sizes.subscriptions, true);
        let mut config = env.config.clone();
        config
            .producer_properties
            .push(("linger.ms".to_owned(), PRODUCER_LINGER_MS.to_owned()));
        let (target, apps, created) = DirectTarget::setup(&config, &counts).await?;
        let flood_app = apps[0].id;
        let (mut traffic, rate) = match variant {
            None => (
                Traffic::new(Scenario::Uniform, apps[1..].to_vec(), 0.0, 11),
                sizes.rate * (1.0 - sizes.flood_share),
            ),
            Some(_) => (
                Traffic::new(Scenario::Incident, apps, sizes.flood_share, 11),
                sizes.rate,
            ),
        };
        let hot_row = traffic.hot_parent().unwrap_or(flood_app);
        let linked = stream::iter(traffic.link_round())
            .map(|p| target.send(p))
            .buffer_unordered(512)
            .collect::<Vec<_>>()
            .await;
        let records = linked
            .into_iter()
            .filter_map(|r| r.ok().flatten())
            .chain(created)
            .map(|(partition, offset)| Produced {
                partition,
                offset,
                sent_ms: 0,
                acked_ms: 0,
            })
            .collect();
        Ok(Setup {
            env,
            target,
            traffic,
            rate,
            flood_app,
            hot_row,
            records,
        })
    }

    /// What the replay's consumer process is told to do; it writes its outcome to `out`.
    fn job(&self, sizes: Sizes, variant: Option<Variant>, out: &std::path::Path) -> Job {
        Job {
            brokers: self.env.config.kafka_brokers.clone(),
            topic: self.env.config.topic.clone(),
            group: self.env.config.group_id.clone(),
            database: self.env.database.connection_string(),
            variant: variant.unwrap_or(Variant::Coalesce),
            concurrency: CONCURRENCY,
            hot_row: self.hot_row,
            hot_write_ms: sizes.hot_write_ms,
            flood_app: Some(self.flood_app),
            out: out.to_owned(),
        }
    }
}

/// Starts the replay's consumer in a child process of this same executable ([`worker`]).
fn start_worker(exe: &std::path::Path, job: &Job) -> Result<tokio::process::Child> {
    Command::new(exe)
        .args(["bench", "--replay-worker", &serde_json::to_string(job)?])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))
}

/// What the flood left: the lag over time, what was sent, and when the lag was gone.
#[derive(Default)]
struct Flood {
    lag: Vec<LagPoint>,
    sent: Vec<Sent>,
    drained_after: Option<f64>,
}

/// Tells the consumer the flood begins, sends the measured traffic, and waits (up to the drain
/// limit) for the lag to go.
async fn flood(
    setup: &mut Setup,
    sizes: Sizes,
    sampler: Sampler,
    child: &mut tokio::process::Child,
) -> Result<Flood> {
    if let Some(stdin) = child.stdin.as_mut() {
        stdin
            .write_all(format!("{}\n", worker::FLOOD).as_bytes())
            .await?;
        stdin.flush().await?;
    }
    let start_ms = now_ms();
    let pace = Pace {
        rate: setup.rate,
        duration: Duration::from_secs_f64(sizes.seconds),
        in_flight: 1_024,
    };
    let target = &setup.target;
    let sent = drive(
        &mut setup.traffic,
        pace,
        |p| target.send(p),
        &ProgressBar::hidden(),
    )
    .await;
    let produced = produced(&sent);
    let stopped = Instant::now();
    let mut drained_after = None;
    while stopped.elapsed().as_secs_f64() < sizes.drain_seconds {
        if child.try_wait()?.is_some() {
            break;
        }
        if sampler
            .latest()
            .is_some_and(|c| lag::drained(&produced, &c))
        {
            drained_after = Some(stopped.elapsed().as_secs_f64());
            break;
        }
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
    let samples: Vec<Sample> = sampler
        .stop()
        .into_iter()
        .filter(|s| s.at_ms >= start_ms)
        .collect();
    Ok(Flood {
        lag: lag::series(start_ms, &produced, &samples),
        sent,
        drained_after,
    })
}

/// Stops the consumer, reads the outcome it wrote to `out`, and says how the replay went.
async fn collect(
    variant: Option<Variant>,
    mut child: tokio::process::Child,
    settled: bool,
    flood: Flood,
    out: &std::path::Path,
) -> Result<Replay> {
    let mut crashed = None;
    drop(child.stdin.take());
    let status = match tokio::time::timeout(Duration::from_secs(60), child.wait()).await {
        Ok(status) => Some(status?),
        Err(_) => {
            child.kill().await.ok();
            crashed = Some("did not stop within 60 s".to_owned());
            None
        }
    };
    if let Some(status) = status.filter(|s| !s.success()) {
        use std::os::unix::process::ExitStatusExt;
        crashed = Some(match status.signal() {
            Some(11) => "crashed (librdkafka segfault, see docs/consumer.md)".to_owned(),
            Some(sig) => format!("killed by signal {sig}"),
            None => format!("exited with {status}"),
        });
    }
    if !settled && crashed.is_none() {
        crashed = Some(format!(
            "the set-up was not applied within {} s",
            SETUP_LIMIT.as_secs()
        ));
    }
    let outcome: Outcome = std::fs::read(out)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let _ = std::fs::remove_file(out);
    let ended_ms = now_ms();
    let (other_delays_ms, other_unapplied) = other_delays(&flood.sent, &outcome, ended_ms);
    Ok(Replay {
        label: variant.map_or("no incident (baseline)", Variant::label),
        lag: flood.lag,
        other_delays_ms,
        other_unapplied,
        peak_rss_bytes: outcome.peak_rss_bytes,
        drained_after: flood.drained_after,
        crashed,
    })
}

/// Waits until the replay's consumer has committed the set-up (every subscription created and
/// linked, at PostgreSQL's own speed). Returns false when it did not within [`SETUP_LIMIT`] or
/// its process ended.
async fn wait_for_setup(
    sampler: &Sampler,
    child: &mut tokio::process::Child,
    setup: &[Produced],
) -> Result<bool> {
    let limit = Instant::now() + SETUP_LIMIT;
    while Instant::now() < limit {
        if child.try_wait()?.is_some() {
            return Ok(false);
        }
        if sampler.latest().is_some_and(|c| lag::drained(setup, &c)) {
            return Ok(true);
        }
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
    Ok(false)
}

/// The measured traffic's records, as the producer reported them.
fn produced(sent: &[Sent]) -> Vec<Produced> {
    sent.iter()
        .filter_map(|s| {
            let (partition, offset) = s.delivered?;
            Some(Produced {
                partition,
                offset,
                sent_ms: s.at_ms,
                acked_ms: s.at_ms + s.latency.as_millis() as i64,
            })
        })
        .collect()
}

/// The other apps' end-to-end delays, sorted, and how many of their records were never applied
/// (counted at `ended_ms`, a lower bound: leaving them out would flatter a design that stalls).
fn other_delays(sent: &[Sent], outcome: &Outcome, ended_ms: i64) -> (Vec<f64>, usize) {
    let applied: std::collections::HashMap<(i32, i64), i64> = outcome
        .other_applied
        .iter()
        .map(|(p, o, at)| ((*p, *o), *at))
        .collect();
    let (mut delays, mut unapplied) = (Vec::new(), 0);
    for s in sent.iter().filter(|s| !s.flood) {
        let Some(at) = s.delivered else { continue };
        let done = applied.get(&at).copied().unwrap_or_else(|| {
            unapplied += 1;
            ended_ms
        });
        delays.push((done - s.at_ms) as f64);
    }
    delays.sort_by(f64::total_cmp);
    (delays, unapplied)
}
